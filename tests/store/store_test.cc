// Store: bit-exact round trips, idempotent and atomic ingest, bulk shard reads,
// NOTIFY on insert. Synthetic scans here; tests/ingest/ covers real Fadul files.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <thread>
#include <atomic>

#include "ballistics/store.h"
#include "store/test_database.h"

namespace ballistics::store {
namespace {

using testing::TestDatabase;

std::vector<std::uint8_t> RandomBytes(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<std::uint8_t> b(n);
  for (auto& x : b) x = static_cast<std::uint8_t>(rng());
  return b;
}

Scan MakeScan(int w, int h) {
  Scan s;
  s.values = cv::Mat1f(h, w, 1.0f);
  s.values(0, 0) = std::numeric_limits<float>::quiet_NaN();
  s.pixel_um_x = 6.25;
  s.pixel_um_y = 6.25;
  s.header_length_unit = "m";
  s.scanner.manufacturer = "Sensofar";
  s.scanner.model = "S neox";
  return s;
}

// Awkward float patterns on purpose: NaNs with payloads and sign, -0, denormals,
// infinities, and values whose decimal printing would not round-trip at 6 digits.
Signature MakeSignature(SignatureKind kind, int w, int h, unsigned seed) {
  Signature s;
  s.kind = kind;
  s.pipeline_version = "test-1";
  s.pixel_um = 6.25;
  s.values = cv::Mat1f(h, w);
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 0.7f);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) s.values(y, x) = nd(rng);
  const std::uint32_t patterns[] = {0x7fc00000u, 0x7fc00001u, 0xffc00000u, 0x7f800001u,
                                    0x80000000u, 0x00000001u, 0x7f800000u, 0xff800000u};
  for (std::size_t i = 0; i < std::size(patterns) && i < s.values.total(); ++i) {
    reinterpret_cast<float*>(s.values.data)[i * 3] = std::bit_cast<float>(patterns[i]);
  }
  s.quality.valid_fraction = 0.875;
  s.quality.rms_height = 0.1 + 1e-17;
  s.quality.valid_area_mm2 = 1.0 / 3.0;
  return s;
}

CasingMetadata Meta(std::string exhibit) {
  CasingMetadata m;
  m.agency = "Test PD";
  m.case_number = "2024-001";
  m.exhibit_id = std::move(exhibit);
  m.calibre = "9mm Luger";
  m.source = CasingSource::kTestFire;
  m.captured_at = "2024-05-01T10:00:00Z";
  m.submitted_by = "tech1";
  return m;
}

bool SameBytes(const cv::Mat1f& a, const cv::Mat1f& b) {
  return a.size() == b.size() && a.isContinuous() && b.isContinuous() &&
         std::memcmp(a.data, b.data, a.total() * sizeof(float)) == 0;
}

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(db_.url().empty());
    auto s = Store::Connect(db_.url());
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
    auto m = store_->Migrate();
    ASSERT_TRUE(m.ok()) << m.status().ToString();
  }
  StoreCounts CountsOrDie() {
    auto c = store_->Counts();
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? *c : StoreCounts{};
  }
  void ExpectEmpty() {
    const StoreCounts c = CountsOrDie();
    EXPECT_EQ(c.agencies, 0);
    EXPECT_EQ(c.cases, 0);
    EXPECT_EQ(c.casings, 0);
    EXPECT_EQ(c.scans, 0);
    EXPECT_EQ(c.signatures, 0);
    EXPECT_EQ(db_.Count("scan_blobs"), 0);
  }
  TestDatabase db_;
  std::unique_ptr<Store> store_;
};

TEST(CasingSource, ParsesBothSpellings) {
  EXPECT_EQ(*ParseCasingSource("crime-scene"), CasingSource::kCrimeScene);
  EXPECT_EQ(*ParseCasingSource("police_issued"), CasingSource::kPoliceIssued);
  auto bad = ParseCasingSource("found-on-street");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("found-on-street"), std::string::npos);
}

TEST_F(StoreTest, SignatureRoundTripIsBitExact) {
  const auto bytes = RandomBytes(5000, 1);
  const Scan scan = MakeScan(40, 30);
  // Odd sizes so the mask's last byte is partial.
  std::vector<Signature> sigs = {MakeSignature(SignatureKind::kBreechFace, 37, 29, 7),
                                 MakeSignature(SignatureKind::kFiringPin, 13, 11, 8)};
  auto r = store_->IngestCasing(Meta("E1"), scan, bytes, sigs);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(r->already_existed);
  EXPECT_EQ(r->signature_ids.size(), 2u);

  auto back = store_->GetSignatures(r->casing_id);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_EQ(back->size(), 2u);
  for (const StoredSignature& s : *back) {
    const Signature& orig = s.signature.kind == SignatureKind::kBreechFace ? sigs[0] : sigs[1];
    EXPECT_TRUE(SameBytes(s.signature.values, orig.values)) << SignatureKindName(orig.kind);
    EXPECT_EQ(s.signature.pipeline_version, orig.pipeline_version);
    EXPECT_EQ(s.signature.pixel_um, orig.pixel_um);
    EXPECT_EQ(s.signature.quality.valid_fraction, orig.quality.valid_fraction);
    EXPECT_EQ(s.signature.quality.rms_height, orig.quality.rms_height);
    EXPECT_EQ(s.signature.quality.valid_area_mm2, orig.quality.valid_area_mm2);
    EXPECT_EQ(s.casing_id, r->casing_id);
    EXPECT_GE(s.shard, 0);
    EXPECT_LT(s.shard, kSignatureShards);
  }
  // The mask column agrees with the NaNs: count its set bits in SQL.
  const std::int64_t finite = cv::countNonZero(sigs[0].ValidMask());
  EXPECT_EQ(testing::QueryInt(db_.url(),
                              "SELECT bit_count(mask) FROM signatures WHERE kind = 'BF'"),
            finite);
  auto original = store_->GetOriginalBytes(r->casing_id);
  ASSERT_TRUE(original.ok());
  EXPECT_EQ(*original, bytes);
}

// One signature by (casing, id): the same bytes and shard as the casing's full
// read, the other kind not returned; NOT_FOUND for an id of another casing.
TEST_F(StoreTest, GetSignatureReadsOneByCasingAndId) {
  std::vector<Signature> sigs = {MakeSignature(SignatureKind::kBreechFace, 37, 29, 21),
                                 MakeSignature(SignatureKind::kFiringPin, 13, 11, 22)};
  auto a = store_->IngestCasing(Meta("E1"), MakeScan(8, 8), RandomBytes(64, 21), sigs);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  auto b = store_->IngestCasing(Meta("E2"), MakeScan(8, 8), RandomBytes(64, 22), {&sigs[0], 1});
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  auto all = store_->GetSignatures(a->casing_id);
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  ASSERT_EQ(all->size(), 2u);
  for (const StoredSignature& want : *all) {
    auto got = store_->GetSignature(a->casing_id, want.id);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(got->id, want.id);
    EXPECT_EQ(got->casing_id, a->casing_id);
    EXPECT_EQ(got->scan_id, want.scan_id);
    EXPECT_EQ(got->shard, want.shard);
    EXPECT_EQ(got->signature.kind, want.signature.kind);
    EXPECT_TRUE(SameBytes(got->signature.values, want.signature.values)) << want.id;
    EXPECT_EQ(got->signature.quality.rms_height, want.signature.quality.rms_height);
  }
  // Casing b's signature asked under casing a (and the reverse): not found, whatever partitions they are in.
  auto wrong = store_->GetSignature(a->casing_id, b->signature_ids[0]);
  EXPECT_EQ(wrong.status().code(), StatusCode::kNotFound) << wrong.status().ToString();
  EXPECT_NE(wrong.status().message().find(std::to_string(b->signature_ids[0])), std::string::npos);
  EXPECT_EQ(store_->GetSignature(b->casing_id, a->signature_ids[0]).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->GetSignature(a->casing_id, -1).status().code(), StatusCode::kNotFound);
}

TEST_F(StoreTest, CasingMetadataReadsBack) {
  const auto bytes = RandomBytes(1000, 2);
  std::vector<Signature> sigs = {MakeSignature(SignatureKind::kBreechFace, 8, 8, 1)};
  CasingMetadata md = Meta("E7");
  md.firearm_id = 42;
  auto r = store_->IngestCasing(md, MakeScan(8, 9), bytes, sigs);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto c = store_->GetCasing(r->casing_id);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->metadata.agency, "Test PD");
  EXPECT_EQ(c->metadata.case_number, "2024-001");
  EXPECT_EQ(c->metadata.exhibit_id, "E7");
  EXPECT_EQ(c->metadata.calibre, "9mm Luger");
  EXPECT_EQ(c->metadata.source, CasingSource::kTestFire);
  EXPECT_EQ(c->metadata.captured_at, std::optional<std::string>("2024-05-01T10:00:00Z"));
  EXPECT_EQ(c->metadata.firearm_id, std::optional<std::int64_t>(42));
  EXPECT_EQ(c->width, 8);
  EXPECT_EQ(c->height, 9);
  EXPECT_EQ(c->pixel_um_x, 6.25);
  EXPECT_EQ(c->original_size_bytes, bytes.size());
  EXPECT_EQ(c->sha256_hex.size(), 64u);
  EXPECT_NE(c->scanner_json.find("Sensofar"), std::string::npos);
  ASSERT_EQ(c->signatures.size(), 1u);
  EXPECT_EQ(c->signatures[0].width, 8);

  EXPECT_EQ(store_->GetCasing(r->casing_id + 1000).status().code(), StatusCode::kNotFound);
}

TEST_F(StoreTest, SameBytesTwiceIsIdempotent) {
  const auto bytes = RandomBytes(3000, 3);
  std::vector<Signature> sigs = {MakeSignature(SignatureKind::kBreechFace, 16, 16, 1)};
  auto first = store_->IngestCasing(Meta("E1"), MakeScan(16, 16), bytes, sigs);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  const StoreCounts before = CountsOrDie();
  // Different metadata, same bytes: still the same casing, nothing written.
  auto second = store_->IngestCasing(Meta("E2"), MakeScan(16, 16), bytes, sigs);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_TRUE(second->already_existed);
  EXPECT_EQ(second->casing_id, first->casing_id);
  EXPECT_EQ(second->scan_id, first->scan_id);
  EXPECT_TRUE(second->signature_ids.empty());
  const StoreCounts after = CountsOrDie();
  EXPECT_EQ(after.casings, before.casings);
  EXPECT_EQ(after.scans, before.scans);
  EXPECT_EQ(after.signatures, before.signatures);
}

TEST_F(StoreTest, ConcurrentIngestOfSameBytesStoresOnce) {
  // Several clients submit the same file at the same moment (same exhibit, so
  // the losers may collide on the exhibit before the sha256): one casing is
  // stored, every client gets its id, none gets an error.
  constexpr int kClients = 4;
  const auto bytes = RandomBytes(4000, 42);
  std::vector<Signature> sigs = {MakeSignature(SignatureKind::kBreechFace, 32, 32, 1)};
  std::vector<StatusOr<IngestResult>> results(kClients, Status(StatusCode::kUnknown, "not run"));
  std::vector<std::unique_ptr<Store>> stores;
  for (int i = 0; i < kClients; ++i) {
    auto s = Store::Connect(db_.url());
    ASSERT_TRUE(s.ok());
    stores.push_back(std::move(*s));
  }
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      ++ready;
      while (ready < kClients) std::this_thread::yield();
      results[static_cast<std::size_t>(i)] = stores[static_cast<std::size_t>(i)]->IngestCasing(
          Meta("E1"), MakeScan(8, 8), bytes, sigs);
    });
  }
  for (auto& t : threads) t.join();
  int fresh = 0;
  for (const auto& r : results) {
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->casing_id, results[0]->casing_id);
    fresh += r->already_existed ? 0 : 1;
  }
  EXPECT_EQ(fresh, 1);
  const StoreCounts c = CountsOrDie();
  EXPECT_EQ(c.casings, 1);
  EXPECT_EQ(c.signatures, 1);
}

TEST_F(StoreTest, ConstraintViolationInTheMiddleLeavesNothing) {
  // Two BF signatures of one pipeline version violate UNIQUE (casing_id, kind,
  // pipeline_version) at the second signature insert: agency, case, casing, scan,
  // bytes and the first signature were already inserted in that transaction.
  std::vector<Signature> sigs = {MakeSignature(SignatureKind::kBreechFace, 8, 8, 1),
                                 MakeSignature(SignatureKind::kBreechFace, 8, 8, 2)};
  auto r = store_->IngestCasing(Meta("E1"), MakeScan(8, 8), RandomBytes(100, 4), sigs);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kAlreadyExists);
  EXPECT_NE(r.status().message().find("SQLSTATE 23505"), std::string::npos) << r.status().ToString();
  ExpectEmpty();
}

TEST_F(StoreTest, CheckConstraintInTheMiddleLeavesNothing) {
  // A signature with a non-positive pixel size passes the store's own checks and
  // is rejected by the CHECK constraint after the casing and scan rows went in.
  std::vector<Signature> sigs = {MakeSignature(SignatureKind::kBreechFace, 8, 8, 1),
                                 MakeSignature(SignatureKind::kFiringPin, 8, 8, 2)};
  sigs[1].pixel_um = -1.0;
  auto r = store_->IngestCasing(Meta("E1"), MakeScan(8, 8), RandomBytes(100, 5), sigs);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("signatures_pixel_um_check"), std::string::npos) << r.status().ToString();
  ExpectEmpty();
  // The connection is usable afterwards (the transaction was rolled back).
  sigs[1].pixel_um = 6.25;
  EXPECT_TRUE(store_->IngestCasing(Meta("E1"), MakeScan(8, 8), RandomBytes(100, 5), sigs).ok());
}

TEST_F(StoreTest, SameExhibitWithOtherBytesIsRefused) {
  std::vector<Signature> sigs = {MakeSignature(SignatureKind::kBreechFace, 8, 8, 1)};
  ASSERT_TRUE(store_->IngestCasing(Meta("E1"), MakeScan(8, 8), RandomBytes(100, 6), sigs).ok());
  auto r = store_->IngestCasing(Meta("E1"), MakeScan(8, 8), RandomBytes(100, 7), sigs);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kAlreadyExists);
  EXPECT_NE(r.status().message().find("exhibit 'E1'"), std::string::npos) << r.status().ToString();
  EXPECT_EQ(CountsOrDie().scans, 1);
}

TEST_F(StoreTest, BadInputIsRejectedBeforeWriting) {
  std::vector<Signature> sigs = {MakeSignature(SignatureKind::kBreechFace, 8, 8, 1)};
  Scan scan = MakeScan(8, 8);
  scan.sha256_hex = std::string(64, 'a');  // not the hash of the bytes
  auto r = store_->IngestCasing(Meta("E1"), scan, RandomBytes(100, 8), sigs);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  Scan nan_pixel = MakeScan(8, 8);
  nan_pixel.pixel_um_x = std::numeric_limits<double>::quiet_NaN();
  r = store_->IngestCasing(Meta("E1"), nan_pixel, RandomBytes(100, 9), sigs);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().ToString();
  CasingMetadata no_agency = Meta("E1");
  no_agency.agency = " ";
  r = store_->IngestCasing(no_agency, MakeScan(8, 8), RandomBytes(100, 10), sigs);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().ToString();
  CasingMetadata bad_time = Meta("E1");
  bad_time.captured_at = "yesterday-ish";
  r = store_->IngestCasing(bad_time, MakeScan(8, 8), RandomBytes(100, 11), sigs);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().ToString();
  ExpectEmpty();
}

TEST_F(StoreTest, ListCasingsFiltersAndPages) {
  std::vector<Signature> sigs = {MakeSignature(SignatureKind::kBreechFace, 8, 8, 1)};
  for (int i = 0; i < 5; ++i) {
    CasingMetadata md = Meta("E" + std::to_string(i));
    if (i >= 3) md.agency = "Other PD";
    ASSERT_TRUE(store_->IngestCasing(md, MakeScan(8, 8), RandomBytes(64, 100 + i), sigs).ok());
  }
  auto all = store_->ListCasings();
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  ASSERT_EQ(all->size(), 5u);
  EXPECT_EQ((*all)[0].signatures.size(), 1u);
  ListCasingsOptions other;
  other.agency = "Other PD";
  EXPECT_EQ(store_->ListCasings(other)->size(), 2u);
  ListCasingsOptions page;
  page.limit = 2;
  page.after_id = (*all)[1].id;
  auto p = store_->ListCasings(page);
  ASSERT_EQ(p->size(), 2u);
  EXPECT_EQ((*p)[0].id, (*all)[2].id);
  const StoreCounts c = CountsOrDie();
  EXPECT_EQ(c.agencies, 2);
  EXPECT_EQ(c.cases, 2);
  EXPECT_EQ(c.casings, 5);
}

TEST_F(StoreTest, LoadSignaturesReadsEveryShardBitExact) {
  constexpr int kCasings = 40;
  std::map<std::int64_t, Signature> by_id;
  for (int i = 0; i < kCasings; ++i) {
    std::vector<Signature> sigs = {MakeSignature(SignatureKind::kBreechFace, 9 + i % 3, 7, 100 + i),
                                   MakeSignature(SignatureKind::kFiringPin, 5, 5, 200 + i)};
    auto r = store_->IngestCasing(Meta("E" + std::to_string(i)), MakeScan(8, 8), RandomBytes(64, 300 + i), sigs);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    by_id[r->signature_ids[0]] = sigs[0];
    by_id[r->signature_ids[1]] = sigs[1];
  }
  const StoreCounts counts = CountsOrDie();
  std::vector<int> shards(kSignatureShards);
  for (int i = 0; i < kSignatureShards; ++i) shards[static_cast<std::size_t>(i)] = i;
  std::array<std::int64_t, kSignatureShards> seen{};
  std::int64_t total = 0;
  Status st = store_->LoadSignatures(
      shards,
      [&](StoredSignature&& s) {
        ++seen[static_cast<std::size_t>(s.shard)];
        ++total;
        auto it = by_id.find(s.id);
        if (it == by_id.end()) return Internal("unexpected id " + std::to_string(s.id));
        EXPECT_TRUE(SameBytes(s.signature.values, it->second.values)) << s.id;
        return Status::Ok();
      },
      /*batch_rows=*/7);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(total, 2 * kCasings);
  EXPECT_EQ(seen, counts.signatures_per_shard);
  // 40 casings over 16 hash partitions: more than one shard is used.
  EXPECT_GT(std::count_if(seen.begin(), seen.end(), [](std::int64_t n) { return n > 0; }), 1);

  const int bad[] = {16};
  EXPECT_EQ(store_->LoadSignatures(bad, [](StoredSignature&&) { return Status::Ok(); }).code(),
            StatusCode::kInvalidArgument);
  // The sink's error stops the load and comes back.
  const int one[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  EXPECT_EQ(store_->LoadSignatures(one, [](StoredSignature&&) { return Cancelled("enough"); }).code(),
            StatusCode::kCancelled);
}

TEST_F(StoreTest, InsertNotifiesListeners) {
  auto listener = Store::Connect(db_.url());
  ASSERT_TRUE(listener.ok());
  ASSERT_TRUE((*listener)->ListenSignatures().ok());
  std::vector<Signature> sigs = {MakeSignature(SignatureKind::kBreechFace, 8, 8, 1)};
  auto r = store_->IngestCasing(Meta("E1"), MakeScan(8, 8), RandomBytes(64, 1), sigs);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto n = (*listener)->WaitForNotifications(5000);
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  ASSERT_EQ(n->size(), 1u);
  EXPECT_NE((*n)[0].find("\"id\" : " + std::to_string(r->signature_ids[0])), std::string::npos) << (*n)[0];
  EXPECT_NE((*n)[0].find("signatures_p"), std::string::npos) << (*n)[0];
  // A rolled-back ingest notifies nobody.
  std::vector<Signature> dup = {sigs[0], sigs[0]};
  ASSERT_FALSE(store_->IngestCasing(Meta("E2"), MakeScan(8, 8), RandomBytes(64, 2), dup).ok());
  auto none = (*listener)->WaitForNotifications(300);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

}  // namespace
}  // namespace ballistics::store
