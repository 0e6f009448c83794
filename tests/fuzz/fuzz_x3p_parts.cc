// libFuzzer harness, structure-aware X3P: the input names the zip entries
// (main.xml, bindata/data.bin, bindata/mask.png, md5checksum.hex, anything)
// in the format of fuzz_util.h; the harness zips them with libzip and sends
// the archive through the upload path without the database,
// ingest::PrepareScan: ReadScanBytes, pixel-size plausibility, Normalize
// (preprocess). Mutations therefore reach the XML header, the height decoder,
// the mask and the preprocessing instead of dying in deflate/CRC checks.
#include <zip.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "ballistics/ingest.h"
#include "fuzz_util.h"

namespace {

std::vector<std::uint8_t> Zip(const std::vector<ballistics::fuzz::Part>& parts, bool deflate) {
  zip_error_t error;
  zip_error_init(&error);
  zip_source_t* buffer = zip_source_buffer_create(nullptr, 0, 0, &error);
  zip_error_fini(&error);
  if (buffer == nullptr) return {};
  zip_source_keep(buffer);
  zip_t* zip = zip_open_from_source(buffer, ZIP_TRUNCATE, nullptr);
  std::vector<std::uint8_t> out;
  if (zip != nullptr) {
    for (const auto& p : parts) {
      zip_source_t* src = zip_source_buffer(zip, p.bytes.data(), p.bytes.size(), 0);
      if (src == nullptr) continue;
      const zip_int64_t idx = zip_file_add(zip, p.name.c_str(), src, ZIP_FL_ENC_GUESS);
      if (idx < 0) {  // duplicate or invalid name: the archive simply lacks it
        zip_source_free(src);
        continue;
      }
      zip_set_file_compression(zip, idx, deflate ? ZIP_CM_DEFLATE : ZIP_CM_STORE, 1);
    }
    if (zip_close(zip) != 0) zip_discard(zip);
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_source_open(buffer) == 0) {
      if (zip_source_stat(buffer, &st) == 0 && (st.valid & ZIP_STAT_SIZE)) {
        out.resize(st.size);
        if (zip_source_read(buffer, out.data(), out.size()) != static_cast<zip_int64_t>(out.size())) out.clear();
      }
      zip_source_close(buffer);
    }
  }
  zip_source_free(buffer);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ballistics;
  std::uint8_t flags = 0;
  std::vector<fuzz::Part> parts;
  if (!fuzz::DecodeParts({data, size}, flags, parts)) return 0;
  std::vector<std::uint8_t> archive = Zip(parts, flags & fuzz::kDeflate);
  if (archive.empty()) return 0;
  ingest::PrepareOptions options;
  options.read.verify_md5 = flags & fuzz::kVerifyMd5;
  StatusOr<ingest::PreparedScan> prepared = ingest::PrepareScan(std::move(archive), options);
  // FUZZ_VERBOSE=1 <target> <files>: what each input came to (seed debugging).
  static const bool verbose = std::getenv("FUZZ_VERBOSE") != nullptr;
  if (verbose) std::fprintf(stderr, "PrepareScan: %s\n", prepared.ok() ? "OK" : prepared.status().ToString().c_str());
  if (!prepared.ok()) {
    // Normalize refuses a scan it cannot use (too small, too little valid
    // data) with INVALID_ARGUMENT; its INTERNAL means a caught exception: a bug.
    fuzz::CheckRefusal(prepared.status());
    return 0;
  }
  fuzz::CheckScan(prepared->scan, options.read.limits);
  const Signature& bf = prepared->normalized.breech_face;
  if (bf.values.empty()) fuzz::Fail("prepared scan without a breech-face signature");
  return 0;
}
