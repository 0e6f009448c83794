// synth: synthetic cartridge cases with ground truth ("which firearm fired this").
//
// A firearm's breech face is machined (parallel filed or milled marks, arched
// cutter marks, circular turning marks, or a granular/sand-blasted texture) and
// its firing pin has a shape and fine marks of its own. Each test fire transfers
// these marks imperfectly onto the primer: partial contact, shot-specific primer
// texture, measurement noise, dropouts, small deformations, and a random
// rotation and shift of the casing in the scanner.
//
// Everything is reproducible: a firearm is a pure function of its seed, a shot a
// pure function of (firearm, shot seed, options). Same seeds and options give
// bit-identical output with the same build.
//
// Coordinates (used by ShotTruth and the affine helpers below). The *gun frame*
// is in µm with its origin on the firing-pin axis (the centre of the firing-pin
// aperture of the breech face), x to the right, y downwards (image rows). A shot
// image of W x H pixels of `pixel_um` has its *image frame* in µm with the origin
// on the centre of the grid, ((W-1)/2, (H-1)/2) in pixels, x along columns and y
// along rows. A gun-frame point p appears in the shot at
//     q = R(rotation_deg) p + (shift_x_um, shift_y_um),
//     R(a) = [[cos a, -sin a], [sin a, cos a]]
// (positive angles turn +x towards +y, i.e. clockwise on a screen whose rows go
// down). The casing, and so the primer disk, moves with the gun frame up to the
// shot's small primer play (ShotTruth::primer_offset_*).
//
// All functions are pure and thread-safe (per-thread caches only).
//
// Units are in the names; heights are µm (docs/synth.md has the calibration
// against the Fadul and DFSC scans).
#pragma once

#include <cstdint>
#include <string_view>

#include <opencv2/core.hpp>

#include "ballistics/status.h"
#include "ballistics/surface.h"

namespace ballistics::synth {

inline constexpr std::string_view kSynthVersion = "synth-1";

enum class BreechTexture { kParallelFiled, kArchedMachined, kCircularTurned, kGranular };
enum class FiringPinShape { kCircular, kElliptical, kRectangular };
std::string_view BreechTextureName(BreechTexture t);   // "parallel-filed", "arched", "circular", "granular"
std::string_view FiringPinShapeName(FiringPinShape s);  // "circular", "elliptical", "rectangular"

// A firearm: the parameters of its breech face and firing pin. Cheap to make
// (no pixels); RenderFirearm turns it into height maps.
struct FirearmModel {
  std::uint64_t seed = 0;
  BreechTexture texture = BreechTexture::kGranular;
  // RMS of the band-passed breech-face marks (Fadul: 1.1 to 2.6 µm, median 1.6).
  double mark_rms_um = 1.6;
  // Machined textures: share of the mark variance from an isotropic (granular)
  // component on top of the machining grooves; 1 for kGranular.
  double isotropic_share = 1.0;
  // Dominant spacing of the machining grooves (a spectral peak of the groove profile).
  double groove_spacing_um = 60.0;
  // Parallel: direction of the groove normal. Arched: direction from the aperture to the
  // centre of the cutter arcs. Unused for granular and circular.
  double mark_direction_deg = 0.0;
  double arc_radius_um = 0.0;          // arched: distance from the aperture axis to the arc centre
  double turning_center_um_x = 0.0;    // circular: centre of the turning marks (near the axis)
  double turning_center_um_y = 0.0;
  // Slope of the isotropic power spectrum, P(f) ~ f^-spectral_slope (2D, radially averaged).
  double spectral_slope = 3.0;
  // Inner edge of the breech-face annulus: the firing-pin aperture and the primer
  // flow-back around it carry no breech-face marks (Fadul: 1.33 mm median).
  double aperture_radius_um = 1300.0;
  // Mean offset of the primer centre from the firing-pin axis (the casing's seat in
  // the chamber); each shot adds its own play (ShotOptions::primer_play_um).
  double primer_offset_um_x = 0.0;
  double primer_offset_um_y = 0.0;
  // Firing pin: impression shape, size (semi-axes), orientation, depth, marks.
  FiringPinShape fp_shape = FiringPinShape::kCircular;
  double fp_radius_um = 500.0;         // semi-axis a (along fp_angle_deg)
  double fp_radius_b_um = 500.0;       // semi-axis b (equal to a for circular)
  double fp_angle_deg = 0.0;
  double fp_depth_um = 150.0;
  double fp_mark_rms_um = 1.0;
  // Consecutively manufactured firearms (Fadul's ten slides came off one tool) share
  // part of their breech-face marks, "subclass" marks: family_share is the share of
  // the mark variance that comes from the family's surface (keyed by family_seed).
  // 0 = an unrelated firearm. Raises the correlation of non-mates of one family.
  std::uint64_t family_seed = 0;
  double family_share = 0.0;
};

// Deterministic from the seed: texture type, spectra, aperture and firing pin are drawn
// from ranges documented in docs/synth.md.
FirearmModel MakeFirearm(std::uint64_t firearm_seed);
// A firearm of a family: the family's model (texture class, machining direction and
// spacing, aperture, firing-pin shape, as MakeFirearm(family_seed)) with its own seed,
// sharing family_share of the breech-face mark variance with its siblings.
FirearmModel MakeFirearmInFamily(std::uint64_t firearm_seed, std::uint64_t family_seed, double family_share);

// The rendered firearm: height maps in the gun frame. The random fields are defined in the continuous plane (spectral
// coefficients keyed by physical frequency), so the same firearm rendered at
// 6.25 µm and at 12.5 µm shows the same marks.
struct FirearmSurface {
  FirearmModel model;
  double requested_pixel_um = 0.0;   // what RenderFirearm was asked for
  // Maps are periodic (4 mm for the breech face, 1.6 mm for the firing pin) and their
  // centre pixel (cols/2, rows/2) is the firing-pin axis. Spacing <= requested, chosen
  // so that the period is a whole number of points.
  double pixel_um = 0.0;             // spacing of breech_face_um
  double firing_pin_pixel_um = 0.0;  // spacing of firing_pin_um
  cv::Mat1f breech_face_um;          // band-passed breech-face marks, zero mean, RMS mark_rms_um
  cv::Mat1f firing_pin_um;           // fine marks of the firing-pin tip (no crater shape)
};

// Errors: INVALID_ARGUMENT for pixel_um outside [0.5, 50] µm or a model with
// non-positive sizes.
StatusOr<FirearmSurface> RenderFirearm(const FirearmModel& gun, double pixel_um);

// Per-shot variation. Defaults give Fadul-like signatures (docs/synth.md).
struct ShotOptions {
  // Region for MakeShotSignature: breech face (annulus) or firing pin (impression).
  SignatureKind kind = SignatureKind::kBreechFace;
  double pixel_um = 6.25;
  // Output side in pixels (square); 0: just large enough for the region plus max_shift_um.
  int size_px = 0;
  // Rotation uniform in [-max_rotation_deg, max_rotation_deg]; 180 = any orientation.
  double max_rotation_deg = 180.0;
  // Shift of the gun frame from the grid centre, uniform in a disk of this radius.
  // Signatures are "normalized": small residual shifts. Scans can use larger ones.
  double max_shift_um = 50.0;
  // Per-shot play of the primer centre around the firearm's primer offset (disk radius).
  double primer_play_um = 40.0;
  // THE calibration knobs: share of the mark variance that is the firearm's (0..1).
  // The rest is the primer's own texture, new for every shot. Each shot draws its
  // share uniformly in [mark_transfer - mark_transfer_spread, mark_transfer] (some
  // test fires mark better than others). Two shots of one gun at full contact
  // correlate at about sqrt(t1 t2); shots of unrelated guns at about 0. Calibrated
  // against the Fadul KM/KNM distributions in docs/synth.md.
  double mark_transfer = 0.95;
  double mark_transfer_spread = 0.25;
  // Spectrum of the primer's own texture relative to the firearm's: its power-law
  // slope is this much flatter, so it holds relatively more fine detail. Real mates
  // agree best at long wavelengths (Fadul: whole-scan correlation of mates rises when
  // smoothed); 0 gives the per-shot texture the firearm's spectrum.
  double primer_slope_delta = 1.0;
  // Partial contact: 0 = uniform; 1 = the transferred marks fade to nothing over parts
  // of the face (a smooth random contact field times a random ramp, the primer tilted
  // against the breech face).
  double contact_variation = 0.3;
  // RMS of a smooth random displacement field (µm) between gun and primer.
  double deformation_um = 2.0;
  // White measurement noise RMS (µm).
  double noise_um = 0.05;
  // Missing data inside the region: blobs and specks, share uniform in [min, max].
  double min_dropout_fraction = 0.0;
  double max_dropout_fraction = 0.08;
  // Outer radius of the breech-face annulus: the flat part of the primer that met the
  // breech face (Fadul: 1.69 mm median). Jittered per shot by radius_jitter_um.
  double annulus_outer_um = 1690.0;
  double radius_jitter_um = 15.0;
  // --- MakeShotScan only ---
  // Primer radius (small pistol primer: 4.45 mm across) and the height its rounded
  // edge falls off between annulus_outer_um and primer_radius_um. Outside: NaN.
  double primer_radius_um = 2225.0;
  double primer_edge_drop_um = 200.0;
  // Height of the primer flow-back into the firing-pin aperture: a raised plateau
  // (DFSC K013sA1, a Ruger SR9: ~50 µm). Off by default: the norm-1 raw-scan
  // segmentation takes the plateau for the breech face (docs/synth.md).
  double flowback_um = 0.0;
  // Random plane: tilt up to this angle, any direction; random height offset.
  double max_tilt_deg = 1.5;
  // Optical scanners lose points on steep flanks (NA 0.3 ~ 17°); 0 keeps everything.
  double max_measurable_slope_deg = 0.0;
};

// What was applied to one shot (see the coordinate convention at the top).
struct ShotTruth {
  std::uint64_t firearm_seed = 0;
  std::uint64_t shot_seed = 0;
  double rotation_deg = 0.0;
  double shift_x_um = 0.0;
  double shift_y_um = 0.0;
  double primer_offset_um_x = 0.0;   // primer centre in the gun frame (firearm offset + play)
  double primer_offset_um_y = 0.0;
  double inner_radius_um = 0.0;      // BF annulus actually used for this shot
  double outer_radius_um = 0.0;
  double mark_transfer = 0.0;        // this shot's share of the firearm's marks
  double dropout_fraction = 0.0;     // drawn target share of missing points in the region
  double missing_fraction = 0.0;     // measured share of NaN inside the region
};

// A normalized-like signature: band-passed marks (µm) of the breech-face annulus
// (or of the firing-pin impression for kind = kFiringPin), NaN outside the region and
// in dropouts, on a square grid. Fast path for filling an index (bench: synth_bench).
// The overload without a FirearmSurface renders the firearm first (slow: use it once
// per gun, or keep the surface).
// Errors: INVALID_ARGUMENT naming the option (negative sizes, fractions outside [0,1],
// min > max, surface rendered for another pixel size).
StatusOr<Signature> MakeShotSignature(const FirearmSurface& gun, std::uint64_t shot_seed,
                                      const ShotOptions& options = {}, ShotTruth* truth = nullptr);
StatusOr<Signature> MakeShotSignature(const FirearmModel& gun, std::uint64_t shot_seed,
                                      const ShotOptions& options = {}, ShotTruth* truth = nullptr);

// A raw-like 3D scan of one test fire, in µm: primer disk with the breech-face marks,
// flow-back into the aperture, the firing-pin crater with its marks, rounded primer
// edge, NaN outside the primer, random tilt and offset, noise and dropouts. It goes
// through preprocess::Normalize like a real raw scan. Shift and rotation as for
// signatures (max_shift_um applies); the grid holds the whole primer.
StatusOr<Scan> MakeShotScan(const FirearmSurface& gun, std::uint64_t shot_seed,
                            const ShotOptions& options = {}, ShotTruth* truth = nullptr);
StatusOr<Scan> MakeShotScan(const FirearmModel& gun, std::uint64_t shot_seed,
                            const ShotOptions& options = {}, ShotTruth* truth = nullptr);

// Pixel affine maps (for cv::warpAffine) between frames, from the truths.
// GunToImage: gun-frame µm -> shot pixel (col, row).
cv::Matx23d GunToImagePixels(const ShotTruth& truth, cv::Size image_size, double pixel_um);
// ImageToImage: pixel of shot `from` -> pixel of shot `to` where the same gun point lies.
// warpAffine(from_image, out, ImageToImagePixels(...), to_size) puts `from` onto `to`'s grid.
cv::Matx23d ImageToImagePixels(const ShotTruth& from, cv::Size from_size, const ShotTruth& to,
                               cv::Size to_size, double pixel_um);

}  // namespace ballistics::synth
