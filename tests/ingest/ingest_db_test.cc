// Ingest of real Fadul scans into a fresh database: bit-exact signatures,
// idempotent by SHA-256, original bytes kept.
#include <gtest/gtest.h>

#include <cstring>

#include "ballistics/ingest.h"
#include "store/test_database.h"
#include "test_paths.h"

namespace ballistics::ingest {
namespace {

CasingMetadata Meta(const std::string& exhibit) {
  CasingMetadata m;
  m.agency = "Fadul study";
  m.case_number = "slides-1-10";
  m.exhibit_id = exhibit;
  m.calibre = "9mm Luger";
  m.source = CasingSource::kTestFire;
  m.submitted_by = "ingest_db_test";
  return m;
}

class IngestDbTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(db_.url().empty());
    auto s = store::Store::Connect(db_.url());
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
    ASSERT_TRUE(store_->Migrate().ok());
  }
  testing::TestDatabase db_;
  std::unique_ptr<store::Store> store_;
};

TEST_F(IngestDbTest, FadulScansRoundTripBitExactAndIdempotent) {
  const char* names[] = {"fadul-1-1", "fadul-1-2", "fadul-2-1"};
  std::vector<PreparedScan> prepared;
  std::vector<std::int64_t> ids;
  for (const char* name : names) {
    auto p = PrepareScanFile(testing::SharedDataDir() / "fadul" / (std::string(name) + ".x3p"));
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    auto r = StorePrepared(*store_, Meta(name), *p);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_FALSE(r->already_existed);
    ids.push_back(r->casing_id);
    prepared.push_back(std::move(*p));
  }
  const auto counts = store_->Counts();
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ(counts->casings, 3);
  EXPECT_EQ(counts->signatures, 3);

  for (std::size_t i = 0; i < prepared.size(); ++i) {
    auto sigs = store_->GetSignatures(ids[i]);
    ASSERT_TRUE(sigs.ok()) << sigs.status().ToString();
    ASSERT_EQ(sigs->size(), 1u);
    const cv::Mat1f& a = (*sigs)[0].signature.values;
    const cv::Mat1f& b = prepared[i].normalized.breech_face.values;
    ASSERT_EQ(a.size(), b.size());
    ASSERT_TRUE(b.isContinuous());
    EXPECT_EQ(std::memcmp(a.data, b.data, b.total() * sizeof(float)), 0) << names[i];
    auto bytes = store_->GetOriginalBytes(ids[i]);
    ASSERT_TRUE(bytes.ok());
    EXPECT_EQ(*bytes, prepared[i].bytes);
    auto casing = store_->GetCasing(ids[i]);
    ASSERT_TRUE(casing.ok());
    EXPECT_EQ(casing->sha256_hex, prepared[i].sha256_hex);
    EXPECT_EQ(casing->width, prepared[i].scan.width());
    EXPECT_EQ(casing->height, prepared[i].scan.height());
    EXPECT_EQ(casing->header_length_unit, prepared[i].scan.header_length_unit);
  }

  // Same bytes again, even under another exhibit name: nothing new.
  auto again = StorePrepared(*store_, Meta("renamed"), prepared[1]);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_TRUE(again->already_existed);
  EXPECT_EQ(again->casing_id, ids[1]);
  EXPECT_EQ(store_->Counts()->casings, 3);
  EXPECT_EQ(db_.Count("scan_blobs"), 3);
}

TEST_F(IngestDbTest, InvalidMetadataWritesNothing) {
  auto p = PrepareScanFile(testing::SharedDataDir() / "fadul" / "fadul-3-1.x3p");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  CasingMetadata m = Meta("E1");
  m.calibre = "";
  auto r = StorePrepared(*store_, m, *p);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("calibre"), std::string::npos);
  EXPECT_EQ(store_->Counts()->casings, 0);
  EXPECT_EQ(db_.Count("agencies"), 0);
}

}  // namespace
}  // namespace ballistics::ingest
