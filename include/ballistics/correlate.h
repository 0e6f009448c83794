// correlate stage: two Signatures -> how strongly their marks agree, and where.
//
// Pipeline of one comparison (reference R against target T, see
// docs/accuracy.md for the literature and the reasoning behind every default):
//   1. Orientation candidates: the coarse signatures are unwrapped into polar
//      images about their centres, where a turn is a circular shift along the
//      angle axis; one masked normalized cross-correlation (Padfield 2012)
//      over that axis scores every angle of the allowed range at once (full
//      360 degrees when the orientation is unknown). The best local maxima of
//      this profile are kept, and each gets its translation from a Cartesian
//      masked NCC of the coarse signatures at that angle (so the centres need
//      not coincide): the most significant peak, atanh(r) * sqrt(overlap),
//      not the highest (a chance peak over a half overlap is not taken).
//   2. The reference is cut into cells (8 x 8 grid). For each candidate,
//      every other cell (a checkerboard) is registered in a search region of
//      the target (masked NCC, region = cell +- one cell) and the cells vote
//      for a rigid transform; the candidate with the most congruent cells
//      wins (the CMC count decides, not the global CCF, which is easily
//      fooled by 180-degree symmetric machining marks). Candidates are
//      checked best polar score first and the rest skipped once one has
//      cmc_threshold agreeing vote cells.
//   3. Around the winner all cells are registered again at a few angles,
//      the consensus transform is refined by a least-squares rigid fit of the
//      congruent cells' positions, and cells are counted as congruent matching
//      cells (Song 2013): CCF >= threshold, angle and position agreeing with
//      the consensus. Both directions (R->T, then T->R at the inverse of the
//      forward consensus); the pair score is the smaller count.
//   Cells are located on a grid cell_search_downsample times coarser than
//   the cell grid (small FFTs) and each peak is refined on the cell grid by a
//   direct masked NCC around it: CCFs and positions are those of the cell grid.
//
// Geometry convention (all lengths in µm): coordinates are relative to the
// image centre of each signature, x to the right, y down (image rows). The
// result transform maps reference points p to target points q:
//   q = Rot(theta) p + (dx, dy),  Rot(theta) = [[cos, sin], [-sin, cos]],
// i.e. the target looks like the reference turned by theta degrees
// counter-clockwise as displayed (OpenCV's getRotationMatrix2D convention)
// and then shifted by (dx, dy).
//
// Thread safety: a Correlator and PreparedSignatures are immutable after
// creation; Prepare and Compare may be called from any number of threads.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ballistics/status.h"
#include "ballistics/surface.h"

namespace ballistics {

// Every parameter of the comparison. Defaults come from the literature and
// the physics of the marks (docs/accuracy.md), never from the test data.
struct CorrelationConfig {
  // --- grids ---
  // CMC cells are registered on this grid (cmcR: the 6.25 µm Fadul scans
  // downsampled x2). Signatures coarser than this are used as they are.
  double cell_pixel_um = 12.5;
  // Cells are first located on a grid this many times coarser than
  // cell_pixel_um (FFTs of a quarter of the points), then each cell's peak is
  // refined on the cell_pixel_um grid within +-refine_radius_px of where it
  // was found there; the CCF and position reported are the fine ones. 1 =
  // locate on the cell grid directly (the plain cmcR procedure, ~4x slower).
  int cell_search_downsample = 2;
  int refine_radius_px = 3;             // cell_pixel_um points (3: +-37.5 µm, > the coarse pixel)
  // The orientation search runs on this coarser grid.
  double coarse_pixel_um = 50.0;
  // The translation of each orientation candidate is found on this grid: it
  // only has to land within the cells' search margin (one cell side, ~425 µm
  // for a breech face), so 100 µm is ample and 16x cheaper than 25 µm.
  double translation_pixel_um = 100.0;
  // The reference is split into cell_grid x cell_grid square cells (NIST, cmcR: 8 x 8).
  int cell_grid = 8;
  // Cells with a smaller share of valid points are not used.
  double min_cell_valid_fraction = 0.5;
  // Search region of a cell in the target: the cell grown by this many cell
  // sides on every side (cmcR: region 3 x the cell, i.e. 1.0).
  double search_margin_cells = 1.0;
  // A displacement counts only where the valid overlap of cell and target is
  // at least this share of the cell's valid points.
  double min_overlap_fraction = 0.5;

  // --- rotation search ---
  double coarse_angle_step_deg = 1.0;   // angle bins of the polar orientation profile
  int polar_max_radial_shift = 2;       // coarse pixels of radial slack (centring errors)
  // The target's polar image is also taken about centres up to this far from
  // its own (even offsets: a 2-coarse-pixel grid through it): the two centres
  // may not mark the same point.
  double polar_center_search_um = 200.0;
  int max_candidates = 6;               // orientation candidates checked by cell voting
  double candidate_separation_deg = 9;  // candidate maxima closer than this are merged
  double cell_angle_step_deg = 3.0;     // cells are registered at consensus +- k * step
  int cell_angle_steps = 1;             // k = -steps..steps (1: -3, 0, +3 degrees)
  // The backward direction starts from the forward consensus, whose angle is
  // a least-squares fit of the congruent cells (a fraction of a degree off
  // for a match), so its cells are registered at that angle only (0) unless
  // set higher.
  int backward_cell_angle_steps = 0;
  // Orientation candidates are told apart by every n-th cell of the grid
  // ((row + col) % n == 0: a checkerboard for 2); the CMC count itself always
  // uses all cells. 1 = all cells vote.
  int candidate_cell_stride = 2;
  // Candidates are checked best polar score first; once one has
  // cmc_threshold congruent vote cells, the rest are skipped. The vote cells
  // are half of the grid, so that candidate alone already has as many cells
  // agreeing on one rigid transform as an identification needs; another
  // orientation winning the vote would need a second, different transform
  // backed by at least as many cells of the same pair of surfaces, which
  // one casing pressed once against one breech face does not produce. (For a
  // non-match no candidate gets there: all are checked, as before.)
  bool stop_at_identifying_candidate = true;

  // --- congruency (CMC) thresholds ---
  double ccf_threshold = 0.5;           // cmcR / NIST
  double angle_threshold_deg = 6.0;     // cmcR / NIST
  // A cell is congruent when the position where it was found lies within this
  // distance of where the consensus transform puts it.
  double translation_threshold_um = 50.0;
  // Identification threshold on the pair score (NIST: C >= 6).
  int cmc_threshold = 6;

  // Sub-pixel peak location by a parabola through the 3 x 3 neighbourhood.
  bool subpixel = true;

  // Defaults for firing-pin signatures (smaller: finer cells).
  static CorrelationConfig FiringPin();
  // INVALID_ARGUMENT naming the field when a value is out of range.
  Status Validate() const;
};

struct CompareOptions {
  // Unknown orientation (database search): all angles. Set to search only
  // |theta| <= max_rotation_deg (scans roughly aligned by the technician).
  std::optional<double> max_rotation_deg;
};

// One reference cell and where it was found in the target.
struct CellResult {
  int row = 0, col = 0;             // position in the cell grid
  double x_um = 0, y_um = 0;        // cell centre in the reference
  double size_um = 0;               // cell side
  double valid_fraction = 0;
  double theta_deg = 0;             // angle at which the cell correlated best
  double dx_um = 0, dy_um = 0;      // the cell's own translation: found centre - Rot(theta) * centre
  double target_x_um = 0, target_y_um = 0;  // where the cell's centre was found in the target
  double ccf = 0;                   // masked NCC at that angle and position
  bool congruent = false;
};

// One direction: reference cells registered in the target.
struct DirectionResult {
  int cmc = 0;                      // congruent matching cells
  int cells = 0;                    // cells used
  double theta_deg = 0, dx_um = 0, dy_um = 0;  // consensus transform (reference -> target)
  std::vector<CellResult> cell_results;
};

struct ComparisonResult {
  SignatureKind kind = SignatureKind::kBreechFace;
  int cmc = 0;                      // min(forward.cmc, backward.cmc): the pair score
  int cells = 0;                    // cells of the direction that gave `cmc`
  double ccf = 0;                   // masked NCC of the whole signatures at the consensus transform
  double theta_deg = 0, dx_um = 0, dy_um = 0;  // consensus transform (reference -> target)
  bool identification = false;      // cmc >= config.cmc_threshold
  DirectionResult forward;          // reference -> target
  DirectionResult backward;         // target -> reference (its transform is the inverse one)
  std::vector<double> candidate_angles_deg;  // orientation candidates that were checked
};

// Per-signature data computed once (downsampled grids, cell spectra) and
// reused across many comparisons. Immutable; share freely between threads.
class PreparedSignature;

// Bytes a prepared signature holds (grids, polar image, cell spectra): what a
// cache of FFT-ready signatures costs per scan.
std::size_t PreparedSignatureBytes(const PreparedSignature& signature);

class Correlator {
 public:
  // INVALID_ARGUMENT when the config is out of range.
  static StatusOr<Correlator> Create(const CorrelationConfig& config = {});

  const CorrelationConfig& config() const { return config_; }

  // INVALID_ARGUMENT for an empty signature, a bad pixel size, or one with
  // too little valid data to be compared.
  StatusOr<std::shared_ptr<const PreparedSignature>> Prepare(const Signature& signature) const;

  // Both must be of the same kind and modality (INVALID_ARGUMENT otherwise).
  StatusOr<ComparisonResult> Compare(const PreparedSignature& reference, const PreparedSignature& target,
                                     const CompareOptions& options = {}) const;
  StatusOr<ComparisonResult> Compare(const Signature& reference, const Signature& target,
                                     const CompareOptions& options = {}) const;

 private:
  explicit Correlator(const CorrelationConfig& config) : config_(config) {}
  CorrelationConfig config_;
};

// Robustness checks (orientation-unknown accuracy, tests, score-pairs
// --turn-seed): the scan turned by theta_deg about its centre (OpenCV
// convention, as above) and shifted by (dx_um, dy_um), on a canvas padded so
// nothing is cut off; values and NaN mask turn together (bilinear, a point
// stays valid only where all its neighbours were). The result is what a second
// scan of the same casing placed at another angle looks like to Normalize.
// INVALID_ARGUMENT for an empty scan or a bad pixel size.
StatusOr<Scan> TurnScan(const Scan& scan, double theta_deg, double dx_um, double dy_um);

// Masked normalized cross-correlation (Padfield 2012) of `tmpl` against
// `image` (NaN = invalid) at integer displacements: result(y, x) is the NCC of
// the template placed with its top-left corner at image (y - tmpl.rows + 1,
// x - tmpl.cols + 1), i.e. the "full" output of size (image + tmpl - 1);
// displacements where the valid overlap is below min_overlap points are 0.
// For tests and tools; the engine uses the same code on precomputed spectra.
cv::Mat1f MaskedNcc(const cv::Mat1f& tmpl, const cv::Mat1f& image, int min_overlap);

}  // namespace ballistics
