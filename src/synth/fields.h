// Band-limited Gaussian random fields for the generator, built in the Fourier
// domain: random spectral coefficients times an amplitude that follows a power
// law f^(-slope/2) (power f^-slope, the usual model of machined and blasted
// surfaces, e.g. Persson et al. 2005, J. Phys.: Condens. Matter 17 R1) shaped by
// the Gaussian band-pass of ISO 16610-61 that the preprocess stage applies.
#pragma once

#include <cstdint>
#include <vector>

#include <opencv2/core.hpp>

namespace ballistics::synth::internal {

struct Spectrum {
  double slope = 3.0;       // power ~ f^-slope
  double short_um = 16.0;   // Gaussian low-pass cutoff wavelength; 0 = none
  double long_um = 500.0;   // Gaussian high-pass cutoff wavelength; 0 = none
  double peak_um = 0.0;     // optional log-normal bump in the amplitude at this wavelength
  double peak_gain = 0.0;   // bump height relative to the power-law amplitude at the peak
  double peak_width = 0.35; // bump width in natural-log units of frequency
};

// Amplitude (sqrt of power) at spatial frequency f (cycles per µm), f > 0.
double SpectrumAmplitude(const Spectrum& s, double f_per_um);

// A field keyed by physical frequency: the coefficient of frequency (kx, ky)/period
// comes from a hash of (key, kx, ky), so the same key gives the same continuous
// surface whatever n is (n only sets the sampling, pixel = period_um / n).
// n x n samples, n even; sample j lies at j * period_um / n. Zero mean, unit RMS.
cv::Mat1f KeyedField2D(std::uint64_t key, int n, double period_um, const Spectrum& s);

// Same idea in 1D: n samples (n even) over period_um. Zero mean, unit RMS.
std::vector<float> KeyedProfile1D(std::uint64_t key, int n, double period_um, const Spectrum& s);

// A field from a random stream (not resolution-independent; for per-shot variation).
// rows, cols even. The amplitude table is cached per thread for the last few
// (size, pixel, spectrum) combinations. Zero mean, unit RMS.
cv::Mat1f StreamField2D(std::uint64_t seed, int rows, int cols, double pixel_um, const Spectrum& s);

// Smallest even size >= n that cv::dft handles fast (a product of 2, 3 and 5).
int EvenDftSize(int n);

}  // namespace ballistics::synth::internal
