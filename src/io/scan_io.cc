// Entry points of the io stage: file -> bytes -> format by magic bytes -> Scan.
#include <cstring>
#include <fstream>
#include <new>
#include <system_error>

#include <opencv2/core.hpp>

#include "io_internal.h"

namespace ballistics {
namespace io_internal {

bool HasPngSignature(std::span<const std::uint8_t> bytes) {
  static constexpr std::uint8_t kSig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  return bytes.size() >= 8 && std::memcmp(bytes.data(), kSig, 8) == 0;
}

StatusOr<PngHeader> ParsePngHeader(std::span<const std::uint8_t> bytes) {
  // PNG spec (ISO/IEC 15948) 11.2.2: IHDR must be the first chunk, length 13.
  if (!HasPngSignature(bytes)) return InvalidArgument("png: missing PNG signature");
  if (bytes.size() < 8 + 8 + 13) {
    return DataLoss("png: file of " + std::to_string(bytes.size()) + " bytes is too short for an IHDR chunk");
  }
  auto be32 = [&](std::size_t at) {
    return (std::uint32_t{bytes[at]} << 24) | (std::uint32_t{bytes[at + 1]} << 16) |
           (std::uint32_t{bytes[at + 2]} << 8) | std::uint32_t{bytes[at + 3]};
  };
  if (be32(8) != 13 || std::memcmp(bytes.data() + 12, "IHDR", 4) != 0) {
    return InvalidArgument("png: first chunk is not a 13-byte IHDR");
  }
  PngHeader h;
  h.width = be32(16);
  h.height = be32(20);
  h.bit_depth = bytes[24];
  h.color_type = bytes[25];
  return h;
}

Status CheckDimensions(std::string_view what, std::int64_t width, std::int64_t height,
                       const ReadLimits& limits) {
  const std::string w = std::string(what);
  if (width <= 0 || height <= 0) {
    return InvalidArgument(w + ": dimensions " + std::to_string(width) + " x " + std::to_string(height) +
                           " are not positive");
  }
  if (width > limits.max_dimension || height > limits.max_dimension) {
    return ResourceExhausted(w + ": dimensions " + std::to_string(width) + " x " + std::to_string(height) +
                             " exceed max_dimension=" + std::to_string(limits.max_dimension));
  }
  const auto points = static_cast<std::uint64_t>(width) * static_cast<std::uint64_t>(height);
  if (points > limits.max_points) {
    return ResourceExhausted(w + ": " + std::to_string(width) + " x " + std::to_string(height) + " = " +
                             std::to_string(points) + " points exceed max_points=" +
                             std::to_string(limits.max_points));
  }
  return Status::Ok();
}

}  // namespace io_internal

StatusOr<std::vector<std::uint8_t>> ReadFileBytes(const std::filesystem::path& path,
                                                  std::uint64_t max_bytes) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) {
    return NotFound("cannot open " + path.string() + ": no such file");
  }
  if (!std::filesystem::is_regular_file(status)) {
    return InvalidArgument(path.string() + " is not a regular file");
  }
  const std::uint64_t size = std::filesystem::file_size(path, ec);
  if (ec) return InvalidArgument("cannot stat " + path.string() + ": " + ec.message());
  if (size > max_bytes) {
    return ResourceExhausted(path.string() + ": file of " + std::to_string(size) +
                             " bytes exceeds max_file_bytes=" + std::to_string(max_bytes));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return PermissionDenied("cannot open " + path.string() + " for reading");
  std::vector<std::uint8_t> bytes(size);
  in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size));
  if (static_cast<std::uint64_t>(in.gcount()) != size) {
    return DataLoss(path.string() + ": read " + std::to_string(in.gcount()) + " of " + std::to_string(size) +
                    " bytes (file changed while reading?)");
  }
  return bytes;
}

StatusOr<Scan> ReadScanFile(const std::filesystem::path& path, const ReadOptions& options) {
  auto bytes = ReadFileBytes(path, options.limits.max_file_bytes);
  if (!bytes.ok()) return bytes.status();
  auto scan = ReadScanBytes(*bytes, options);
  if (!scan.ok()) return scan.status().WithContext(path.filename().string());
  return scan;
}

StatusOr<Scan> ReadScanBytes(std::span<const std::uint8_t> bytes, const ReadOptions& options) {
  using namespace io_internal;
  if (bytes.empty()) return InvalidArgument("empty input (0 bytes)");
  if (bytes.size() > options.limits.max_file_bytes) {
    return ResourceExhausted("input of " + std::to_string(bytes.size()) + " bytes exceeds max_file_bytes=" +
                             std::to_string(options.limits.max_file_bytes));
  }
  // The exceptions of OpenCV and the standard library stop here (docs/architecture.md, "Errors").
  try {
    StatusOr<Scan> scan = InvalidArgument("unreachable");
    auto starts_with = [&](std::initializer_list<std::uint8_t> magic) {
      return bytes.size() >= magic.size() && std::equal(magic.begin(), magic.end(), bytes.begin());
    };
    if (starts_with({'P', 'K', 3, 4})) {
      scan = ReadX3p(bytes, options);
    } else if (HasPngSignature(bytes)) {
      scan = ReadPng(bytes, options);
    } else if (starts_with({'I', 'I', 42, 0}) || starts_with({'M', 'M', 0, 42})) {
      scan = ReadTiff(bytes, options);
    } else {
      std::string head;
      for (std::size_t i = 0; i < std::min<std::size_t>(bytes.size(), 4); ++i) {
        head += HexLower(bytes.subspan(i, 1));
      }
      return InvalidArgument("unknown file format (first bytes 0x" + head +
                             "): expected X3P (zip), PNG or TIFF");
    }
    if (!scan.ok()) return scan;
    scan->sha256_hex = Sha256Hex(bytes);
    scan->original_size_bytes = bytes.size();
    return scan;
  } catch (const std::bad_alloc&) {
    return ResourceExhausted("out of memory while decoding a " + std::to_string(bytes.size()) + "-byte file");
  } catch (const cv::Exception& e) {
    return InvalidArgument(std::string("image decoder: ") + e.what());
  } catch (const std::exception& e) {
    return Internal(std::string("io: unexpected exception: ") + e.what());
  }
}

}  // namespace ballistics
