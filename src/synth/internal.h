// Shared between firearm.cc and shot.cc.
#pragma once

#include "ballistics/synth.h"
#include "fields.h"

namespace ballistics::synth::internal {

// The breech-face marks are periodic over a square of this side, centred on the
// firing-pin axis. Marks are needed up to the flat of the primer (annulus_outer_um
// plus primer offset and play, about 1.95 mm by default): 4 mm covers it, and is a
// multiple of the usual pixel sizes (6.25 µm -> 640 points, a fast DFT size).
// Larger annuli see the marks repeat (docs/synth.md).
inline constexpr double kGunPeriodUm = 4000.0;
// The firing-pin marks: 1.6 mm, enough for the largest impressions.
inline constexpr double kFiringPinPeriodUm = 1600.0;

// Band of the breech-face marks: the preprocess stage's default band-pass
// (cmcR / x3ptools: 16 to 500 µm), so synthetic signatures look band-passed.
inline constexpr double kBreechShortUm = 16.0;
inline constexpr double kBreechLongUm = 500.0;
// Firing-pin marks: the preprocess FP band (16 to 250 µm).
inline constexpr double kFiringPinLongUm = 250.0;

Spectrum BreechIsotropicSpectrum(const FirearmModel& gun);
Spectrum FiringPinSpectrum();

// Normalized radius of point (x, y) (µm, gun frame) in the firing-pin footprint:
// < 1 inside. Circular and elliptical: ellipse norm; rectangular (Glock-style):
// superellipse of exponent 4 (a rounded rectangle).
double FiringPinNorm(const FirearmModel& gun, double x_um, double y_um);
// Largest distance of the footprint from the axis.
double FiringPinExtentUm(const FirearmModel& gun);

Status ValidateModel(const FirearmModel& gun);

}  // namespace ballistics::synth::internal
