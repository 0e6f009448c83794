// PrepareScan on the real Fadul scans (no database).
#include <gtest/gtest.h>

#include "ballistics/ingest.h"
#include "test_paths.h"

namespace ballistics::ingest {
namespace {

TEST(PrepareScanRealData, FadulFileGivesABreechFaceSignature) {
  const auto path = testing::SharedDataDir() / "fadul" / "fadul-1-1.x3p";
  ASSERT_TRUE(std::filesystem::exists(path)) << path;
  auto p = PrepareScanFile(path);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->sha256_hex, Sha256Hex(p->bytes));
  EXPECT_EQ(p->bytes.size(), std::filesystem::file_size(path));
  // About 545 x 545 points at 6.25 um (sizes differ by a few points per file).
  EXPECT_NEAR(p->scan.width(), 545, 20);
  EXPECT_NEAR(p->scan.height(), 545, 20);
  EXPECT_NEAR(p->scan.pixel_um_x, 6.25, 1e-9);
  const Signature& bf = p->normalized.breech_face;
  EXPECT_EQ(bf.kind, SignatureKind::kBreechFace);
  EXPECT_GT(bf.width(), 100);
  EXPECT_GT(bf.height(), 100);
  EXPECT_GT(bf.pixel_um, 0.0);
  EXPECT_EQ(bf.pipeline_version, std::string(kPipelineVersion));
  // The Fadul files have had the firing-pin impression removed.
  EXPECT_FALSE(p->normalized.firing_pin.has_value());
  ASSERT_EQ(p->Signatures().size(), 1u);
}

TEST(PrepareScanRealData, TruncatedFileIsRejected) {
  const auto path = testing::SharedDataDir() / "fadul" / "fadul-1-2.x3p";
  auto bytes = ReadFileBytes(path, 1ull << 30);
  ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
  bytes->resize(bytes->size() / 2);
  auto p = PrepareScan(std::move(*bytes));
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().code(), StatusCode::kInternal) << p.status().ToString();
  EXPECT_EQ(p.status().message().rfind("read: ", 0), 0u) << p.status().ToString();
}

}  // namespace
}  // namespace ballistics::ingest
