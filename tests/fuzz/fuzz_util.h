// Shared by the libFuzzer harnesses and the seed generator of tests/fuzz/.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include "ballistics/io.h"
#include "ballistics/status.h"

namespace ballistics::fuzz {

// Stops the run with a message: libFuzzer records the input as a crash.
[[noreturn]] inline void Fail(const std::string& what) {
  std::fprintf(stderr, "fuzz invariant violated: %s\n", what.c_str());
  std::abort();
}

// A reader may refuse an input only with the codes io.h promises (malformed:
// INVALID_ARGUMENT, over a limit: RESOURCE_EXHAUSTED, corrupt payload:
// DATA_LOSS), with a message. INTERNAL ("unexpected exception") or an empty
// message is a bug in the reader, so it counts as a finding.
inline void CheckRefusal(const Status& s) {
  if (s.ok()) return;
  if (s.message().empty()) Fail("error status without a message: " + s.ToString());
  switch (s.code()) {
    case StatusCode::kInvalidArgument:
    case StatusCode::kResourceExhausted:
    case StatusCode::kDataLoss:
      return;
    default:
      Fail("unexpected status code: " + s.ToString());
  }
}

// What a successfully read scan must satisfy whatever the input was.
inline void CheckScan(const Scan& scan, const ReadLimits& limits) {
  if (scan.values.empty()) Fail("ok scan with no values");
  if (scan.values.cols > limits.max_dimension || scan.values.rows > limits.max_dimension) {
    Fail("ok scan over max_dimension");
  }
  if (!(std::isfinite(scan.pixel_um_x) && scan.pixel_um_x > 0 && std::isfinite(scan.pixel_um_y) &&
        scan.pixel_um_y > 0)) {
    Fail("ok scan with pixel size " + std::to_string(scan.pixel_um_x) + " x " + std::to_string(scan.pixel_um_y));
  }
  const bool image = scan.modality == Modality::kImage2d;
  for (int y = 0; y < scan.values.rows; ++y) {
    const float* row = scan.values[y];
    for (int x = 0; x < scan.values.cols; ++x) {
      const float v = row[x];
      if (std::isinf(v)) Fail("ok scan holds an infinite value");
      if (image && !(v >= 0.0f && v <= 1.0f)) Fail("2D luminance outside [0, 1]: " + std::to_string(v));
    }
  }
}

// The structure-aware X3P input (fuzz_x3p_parts): one flags byte, then
// entries until the input ends, each
//   u8 name length, name bytes, u32 little-endian data length, data bytes
// (a length past the end takes what is left). The harness zips the entries
// itself, so mutations hit main.xml / data.bin / mask.png directly instead of
// breaking deflate streams and CRCs.
struct Part {
  std::string name;
  std::vector<std::uint8_t> bytes;
};
inline constexpr std::uint8_t kVerifyMd5 = 1;  // flags bit 0: ReadOptions::verify_md5
inline constexpr std::uint8_t kDeflate = 2;    // flags bit 1: deflate the entries (else store)

inline std::vector<std::uint8_t> EncodeParts(std::uint8_t flags, const std::vector<Part>& parts) {
  std::vector<std::uint8_t> out{flags};
  for (const Part& p : parts) {
    out.push_back(static_cast<std::uint8_t>(p.name.size()));
    out.insert(out.end(), p.name.begin(), p.name.begin() + std::min<std::size_t>(p.name.size(), 255));
    const auto n = static_cast<std::uint32_t>(p.bytes.size());
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<std::uint8_t>(n >> (8 * i)));
    out.insert(out.end(), p.bytes.begin(), p.bytes.end());
  }
  return out;
}

inline bool DecodeParts(std::span<const std::uint8_t> in, std::uint8_t& flags, std::vector<Part>& parts) {
  if (in.empty()) return false;
  flags = in[0];
  std::size_t pos = 1;
  while (pos < in.size() && parts.size() < 16) {
    Part p;
    const std::size_t declared_len = in[pos++];  // read before the remaining size is taken
    const std::size_t name_len = std::min(declared_len, in.size() - pos);
    p.name.assign(in.begin() + pos, in.begin() + pos + name_len);
    pos += name_len;
    if (in.size() - pos < 4) return !parts.empty();
    std::uint32_t n = 0;
    for (int i = 0; i < 4; ++i) n |= std::uint32_t{in[pos + i]} << (8 * i);
    pos += 4;
    const std::size_t len = std::min<std::size_t>(n, in.size() - pos);
    p.bytes.assign(in.begin() + pos, in.begin() + pos + len);
    pos += len;
    parts.push_back(std::move(p));
  }
  return !parts.empty();
}

}  // namespace ballistics::fuzz
