// Internals of the io stage shared by its source files (not a public header).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "ballistics/io.h"

namespace ballistics::io_internal {

inline constexpr std::uint64_t kMiB = 1ull << 20;

// Format-specific readers; `bytes` already passed the file-size limit. They
// fill everything except sha256_hex and original_size_bytes.
StatusOr<Scan> ReadX3p(std::span<const std::uint8_t> bytes, const ReadOptions& options);
StatusOr<Scan> ReadPng(std::span<const std::uint8_t> bytes, const ReadOptions& options);
StatusOr<Scan> ReadTiff(std::span<const std::uint8_t> bytes, const ReadOptions& options);

// PNG header facts read straight from the IHDR chunk, so that limits can be
// checked before any pixel is decoded.
struct PngHeader {
  std::uint32_t width = 0;
  std::uint32_t height = 0;
  int bit_depth = 0;
  int color_type = 0;  // 0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA
};
bool HasPngSignature(std::span<const std::uint8_t> bytes);
StatusOr<PngHeader> ParsePngHeader(std::span<const std::uint8_t> bytes);
// DATA_LOSS when the IDAT chunks are too short to inflate to the image the
// header declares (checked before a decoder allocates the whole image).
Status CheckPngPayload(std::span<const std::uint8_t> bytes, const PngHeader& header);

// Width/height against limits.max_dimension and max_points; `what` names the
// source in the message ("png", "x3p: main.xml").
Status CheckDimensions(std::string_view what, std::int64_t width, std::int64_t height,
                       const ReadLimits& limits);

std::string HexLower(std::span<const unsigned char> bytes);

}  // namespace ballistics::io_internal
