// io stage: file bytes -> Scan.
//
// Readers for ISO 25178-72 X3P topographies (3D) and PNG/TIFF photographs (2D),
// plus an X3P writer. Every reader is hardened against hostile files: sizes
// are checked against ReadLimits *before* anything is inflated or decoded, and
// every rejection is a Status naming the limit and the offending value
// (RESOURCE_EXHAUSTED for limits, INVALID_ARGUMENT for malformed headers,
// DATA_LOSS for checksum or size mismatches of the payload).
//
// Units: Scan values are µm for 3D (whatever unit the file used, see
// src/io/x3p_reader.cc for the metre/micrometre rule), [0, 1] luminance for 2D.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ballistics/status.h"
#include "ballistics/surface.h"

namespace ballistics {

// Limits against hostile files; each violation is a clear error naming the limit and the value.
struct ReadLimits {
  std::uint64_t max_file_bytes = 512ull << 20;          // compressed/original file
  std::uint64_t max_uncompressed_bytes = 1ull << 30;    // sum of zip entries we inflate
  std::uint64_t max_entry_compression_ratio = 200;      // zip-bomb guard (uncompressed/compressed, entries > 1 MiB)
  std::uint64_t max_xml_bytes = 4ull << 20;
  int max_dimension = 20000;                            // SizeX, SizeY, image width/height
  std::uint64_t max_points = 100'000'000;               // SizeX*SizeY
};

struct ReadOptions {
  // Pixel size for 2D images. Required for images without TIFF resolution
  // tags; when given it takes precedence over the tags. Ignored for X3P (the
  // header's increments are authoritative).
  std::optional<double> pixel_um;
  // X3P data.bin MD5 (Record3 MD5ChecksumPointData) and md5checksum.hex for
  // main.xml when present.
  bool verify_md5 = true;
  ReadLimits limits;
};

// Reads a scan from disk (size checked against limits.max_file_bytes before reading).
StatusOr<Scan> ReadScanFile(const std::filesystem::path& path, const ReadOptions& options = {});

// Format detected from magic bytes (zip "PK\3\4" -> X3P, PNG signature, TIFF II*/MM*), not from the name.
StatusOr<Scan> ReadScanBytes(std::span<const std::uint8_t> bytes, const ReadOptions& options = {});

// ISO 25178-72 X3P writer (metres, data type 'D' or 'F', MD5 sums written);
// used by the synthetic casing generator and tests. NaN stays NaN.
// Round trip through ReadScanBytes: bit-exact for 'D'. For 'F' the heights are
// stored as float32 *metres* (as the standard asks), and µm -> m -> µm in
// float32 cannot be exact for every value (1e6 is not a power of two: about
// 4 % of random floats have no float32 metre value that maps back onto them);
// the error is at most 1 ulp of the float32 µm value. Use 'D' where exactness matters.
StatusOr<std::vector<std::uint8_t>> WriteX3pBytes(const Scan& scan, char data_type = 'F');
Status WriteX3pFile(const Scan& scan, const std::filesystem::path& path, char data_type = 'F');

// Lower-case hex digests (OpenSSL EVP).
std::string Sha256Hex(std::span<const std::uint8_t> bytes);
std::string Md5Hex(std::span<const std::uint8_t> bytes);

// Reads a whole file into memory, refusing files larger than max_bytes
// (RESOURCE_EXHAUSTED) before reading them.
StatusOr<std::vector<std::uint8_t>> ReadFileBytes(const std::filesystem::path& path,
                                                  std::uint64_t max_bytes);

}  // namespace ballistics
