// libFuzzer harness: arbitrary file bytes -> ReadScanBytes (format by magic
// bytes: X3P zip, PNG, TIFF), with the server's default limits. Built as
// fuzz_x3p and fuzz_image, which differ only in their seed corpora.
//
// Oracle (beyond ASan/UBSan/leaks/timeouts/OOM): a refusal carries one of the
// codes io.h promises; an accepted scan is within the limits, has a positive
// finite pixel size and no infinite values (2D: luminance in [0, 1]).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>

#include "ballistics/io.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ballistics;
  const std::span<const std::uint8_t> bytes(data, size);
  ReadOptions options;
  StatusOr<Scan> scan = ReadScanBytes(bytes, options);
  if (!scan.ok() && scan.status().message().find("pass --pixel-um") != std::string::npos) {
    // What a user does next for an image without a usable resolution tag.
    options.pixel_um = 2.5;
    scan = ReadScanBytes(bytes, options);
  }
  // FUZZ_VERBOSE=1 <target> <files>: what each input came to (seed debugging).
  static const bool verbose = std::getenv("FUZZ_VERBOSE") != nullptr;
  if (verbose) std::fprintf(stderr, "ReadScanBytes: %s\n", scan.ok() ? "OK" : scan.status().ToString().c_str());
  fuzz::CheckRefusal(scan.status());
  if (scan.ok()) {
    fuzz::CheckScan(*scan, options.limits);
    if (scan->original_size_bytes != size || scan->sha256_hex.size() != 64) fuzz::Fail("bad provenance fields");
  }
  return 0;
}
