// FFT plumbing of the correlate stage: a process-wide cache of FFTW float
// plans (one per size, created under a mutex because FFTW's planner is not
// thread-safe, executed from any thread with the new-array API), the spectra
// of masked images and the masked normalized cross-correlation of
// Padfield (2012), "Masked object registration in the Fourier domain",
// IEEE Trans. Image Processing 21(5).
#pragma once

#include <complex>
#include <cstddef>
#include <vector>

#include <fftw3.h>
#include <opencv2/core.hpp>

namespace ballistics::correlate_internal {

// Allocator handing out FFTW-aligned memory, so that every buffer has the
// alignment the plans were made for (a requirement of fftwf_execute_dft_*).
template <typename T>
struct FftwAllocator {
  using value_type = T;
  FftwAllocator() = default;
  template <typename U>
  FftwAllocator(const FftwAllocator<U>&) {}  // NOLINT(google-explicit-constructor)
  T* allocate(std::size_t n) {
    void* p = fftwf_malloc(n * sizeof(T));
    if (p == nullptr) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t) { fftwf_free(p); }
  template <typename U>
  bool operator==(const FftwAllocator<U>&) const { return true; }
};

using RealBuffer = std::vector<float, FftwAllocator<float>>;
using ComplexBuffer = std::vector<std::complex<float>, FftwAllocator<std::complex<float>>>;

// Smallest n' >= n of the form 2^a 3^b 5^c (sizes FFTW handles fastest).
int FastFftSize(int n);
// A size >= n for the many small transforms (cell regions, candidate
// translation maps): see fft.cc.
int FastFftSizeRegion(int n);

// Forward (r2c) and inverse (c2r) plans for a rows x cols real array. Created
// once per size and kept for the life of the process.
struct FftPlan {
  int rows = 0, cols = 0;
  fftwf_plan r2c = nullptr;
  fftwf_plan c2r = nullptr;
  int ComplexCols() const { return cols / 2 + 1; }
  std::size_t RealSize() const { return static_cast<std::size_t>(rows) * cols; }
  std::size_t ComplexSize() const { return static_cast<std::size_t>(rows) * ComplexCols(); }
};
const FftPlan& GetPlan(int rows, int cols);

// Spectra of a masked image placed at the top-left of a zero-padded
// rows x cols array: F(f*m), F(m), F(f^2*m). `valid` = sum of m.
struct MaskedSpectra {
  int rows = 0, cols = 0;
  ComplexBuffer fm, m, f2m;  // m is left empty when `full`
  double valid = 0;
  double sum_f = 0, sum_f2 = 0;  // sums of f*m and f^2*m
  // The mask is 1 on the whole values.rows x values.cols array it was made
  // from: correlations with it are box sums (no FFT needed).
  bool full = false;
  int src_rows = 0, src_cols = 0;
};

// `values` must be 0 where `mask` is 0; mask is 0/1. Both at most rows x cols.
void ComputeSpectra(const cv::Mat1f& values, const cv::Mat1f& mask, int rows, int cols,
                    MaskedSpectra* out);

// Circular masked NCC maps of template t against image i (same FFT size):
// ncc(y, x) = NCC of the template shifted by (y, x) (mod size) over the
// overlap of both masks; overlap(y, x) = number of overlapping valid points.
// Points whose overlap is below min_overlap get ncc = -2 (never a peak).
// Only the rows/cols [0, limit_rows) x [0, limit_cols) are computed when the
// limits are positive (the rest of the maps is left undefined).
void MaskedNccMaps(const MaskedSpectra& t, const MaskedSpectra& i, double min_overlap,
                   cv::Mat1f* ncc, cv::Mat1f* overlap, int limit_rows = 0, int limit_cols = 0);

// The same maps as MaskedNccMaps (whole, no limits) of template t against an
// image given as values/mask (at most t.rows x t.cols, at the top-left of
// the zero-padded grid): its spectra are computed here, two real transforms
// in one complex one, and the six correlations are inverted in pairs.
void MaskedNccMapsOfImage(const MaskedSpectra& t, const cv::Mat1f& values, const cv::Mat1f& mask,
                          double min_overlap, cv::Mat1f* ncc, cv::Mat1f* overlap);

// Only the rows listed (negative = counted from the end) of the map above:
// ncc row k is map row rows[k].
void MaskedNccRows(const MaskedSpectra& t, const MaskedSpectra& i, double min_overlap, const std::vector<int>& rows,
                   cv::Mat1f* ncc);

// Spectra of each row of a masked image (1D transforms along dimension 1,
// cols / 2 + 1 frequencies per row): f*m, m, f^2*m. For correlations that
// are circular along the columns (the angle axis of a polar image) and need
// only a few shifts along the rows: MaskedNccRadial.
struct RowSpectra {
  int rows = 0, cols = 0;
  // Frequencies per row, cols / 2 + 1 rounded up to a multiple of 16 (zeros
  // past the end) so that the sums over rows run on whole SIMD vectors.
  int stride = 0;
  // Six planes of rows x stride floats, real and imaginary parts apart:
  // Re F(fm), Im F(fm), Re F(m), Im F(m), Re F(f2m), Im F(f2m).
  RealBuffer planes;
  double valid = 0;
  const float* Plane(int k, int row) const {
    return planes.data() + (static_cast<std::size_t>(k) * rows + row) * stride;
  }
};
void ComputeRowSpectra(const cv::Mat1f& values, const cv::Mat1f& mask, RowSpectra* out);

// Masked NCC of t against i for every circular shift u along the columns and
// the row shifts s = -max_shift..max_shift (ncc row s + max_shift):
// ncc(s, u) = NCC of t(r, x) with i(r + s, x + u) over the overlap of both
// masks (rows outside either image count as invalid), -2 where the overlap
// is below min_overlap. The same values as MaskedNccRows on 2D spectra with
// enough zero rows that nothing wraps (up to float round-off).
void MaskedNccRadial(const RowSpectra& t, const RowSpectra& i, double min_overlap, int max_shift, cv::Mat1f* ncc);

// Template spectra for MaskedNccRegion: like ComputeSpectra, but the mask
// spectrum is skipped when the mask is full (`full` set).
void ComputeTemplateSpectra(const cv::Mat1f& values, const cv::Mat1f& mask, int rows, int cols,
                            MaskedSpectra* out);

// The same NCC map as MaskedNccMaps (rows/cols [0, limit)) of a template
// (ComputeTemplateSpectra) against a region given as values/mask, where every
// displacement in [0, limit)^2 keeps the template inside the region. Terms
// that involve a full mask are box sums (integral images) or constants
// instead of FFT correlations: 2 to 5 FFTs instead of 9 when the template or
// the region is fully valid. region_valid: the sum of region_m when the
// caller has it (< 0: computed here).
void MaskedNccRegion(const MaskedSpectra& t, const cv::Mat1f& region_v, const cv::Mat1f& region_m,
                     double min_overlap, int limit, cv::Mat1f* ncc,
                     double region_valid = -1);

// Direct (no FFT) masked NCC of a template (tv, tm: s x s) at the n x n
// displacements of its top-left corner inside the patch (pv, pm:
// (s + n - 1)^2): for small search windows, where it is cheaper than FFTs.
void DirectMaskedNcc(const cv::Mat1f& tv, const cv::Mat1f& tm, const cv::Mat1f& pv, const cv::Mat1f& pm, int n,
                     double min_overlap, cv::Mat1f* ncc);
// One displacement (dy, dx) of the above; t2 = tv^2 and p2 = pv^2 given.
float DirectMaskedNccAt(const cv::Mat1f& tv, const cv::Mat1f& tm, const cv::Mat1f& t2, const cv::Mat1f& pv,
                        const cv::Mat1f& pm, const cv::Mat1f& p2, int dy, int dx, double min_overlap);

}  // namespace ballistics::correlate_internal
