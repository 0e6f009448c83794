// Ingest: file bytes -> (io) Scan -> (preprocess) signatures -> (store) PostgreSQL.
//
// Two halves so callers can parallelize the expensive part: PrepareScan reads,
// hashes and normalizes without touching the database (thread-safe, run it on
// worker threads); StorePrepared writes one casing in one transaction through a
// Store (one per thread). Reused by `ballisticsctl ingest` and by the gRPC service.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "ballistics/io.h"
#include "ballistics/preprocess.h"
#include "ballistics/status.h"
#include "ballistics/store.h"
#include "ballistics/surface.h"

namespace ballistics::ingest {

// Plausible pixel sizes of a cartridge-case scan, µm. Confocal / focus-variation
// breech-face scans are ~0.5-10 µm per point and 2D photographs ~1-30 µm; a
// value outside this range almost always means a wrong unit (an X3P increment
// read as µm when it was metres, or --pixel-um given in mm), so it is rejected
// rather than normalized into a meaningless signature.
inline constexpr double kMinPlausiblePixelUm = 0.05;
inline constexpr double kMaxPlausiblePixelUm = 200.0;
// Longest accepted metadata text (agency, case number, exhibit, calibre, submitter).
inline constexpr std::size_t kMaxMetadataChars = 200;

struct PrepareOptions {
  ReadOptions read;
  NormalizeConfig normalize;
};

// Everything needed to store one casing, computed without the database.
struct PreparedScan {
  std::vector<std::uint8_t> bytes;  // the original file, byte for byte
  std::string sha256_hex;           // of `bytes`
  Scan scan;                        // decoded
  NormalizedCasing normalized;      // BF (+ FP) signatures, segmentation, warnings

  // BF first, then FP when present: what is stored.
  std::vector<Signature> Signatures() const;
};

// Checks the options themselves (a --pixel-um that is NaN, <= 0 or implausible).
Status ValidatePrepareOptions(const PrepareOptions& options);

// Read (format from magic bytes) + SHA-256 + normalize. Errors keep the stage as
// context ("read: x3p: ...", "normalize: ..."); bad pixel sizes (NaN, <= 0, or
// outside the plausible range) are INVALID_ARGUMENT naming the value.
StatusOr<PreparedScan> PrepareScan(std::vector<std::uint8_t> bytes, const PrepareOptions& options = {});
// Same from a file; errors are prefixed with the path.
StatusOr<PreparedScan> PrepareScanFile(const std::filesystem::path& path, const PrepareOptions& options = {});

// Checks submitter-supplied metadata before anything is read or stored:
// agency, case number, exhibit id, calibre and submitter non-empty (after
// trimming), at most kMaxMetadataChars, no control characters; captured_at,
// when set, an ISO 8601 date or date-time; firearm_id, when set, positive.
// Calibre is free text (agencies name calibres differently: "9mm Luger",
// "9x19mm Parabellum"); it is only trimmed, never mapped onto a fixed list.
Status ValidateMetadata(const CasingMetadata& metadata);
// Trims surrounding whitespace of every text field and collapses inner runs of
// spaces in the calibre, so "9mm  Luger " and "9mm Luger" are the same calibre.
CasingMetadata NormalizedMetadata(CasingMetadata metadata);

// Validates, then stores one prepared scan in one transaction (idempotent by
// SHA-256: the same bytes again give already_existed = true, nothing written).
StatusOr<store::IngestResult> StorePrepared(store::Store& store, const CasingMetadata& metadata,
                                            const PreparedScan& prepared);

}  // namespace ballistics::ingest
