// Schema migrations: idempotent, concurrent-safe, checksum-guarded, atomic.
#include <gtest/gtest.h>

#include <thread>

#include "ballistics/store.h"
#include "store/test_database.h"

namespace ballistics::store {
namespace {

using testing::TestDatabase;

class MigrateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(db_.url().empty());
    auto s = Store::Connect(db_.url());
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
  }
  TestDatabase db_;
  std::unique_ptr<Store> store_;
};

TEST(EmbeddedMigrations, AreOrderedAndNamed) {
  const auto& m = EmbeddedMigrations();
  ASSERT_FALSE(m.empty());
  EXPECT_EQ(m[0].version, 1);
  EXPECT_EQ(m[0].name, "initial");
  EXPECT_NE(m[0].sql.find("CREATE TABLE signatures"), std::string::npos);
  for (std::size_t i = 1; i < m.size(); ++i) EXPECT_GT(m[i].version, m[i - 1].version);
  EXPECT_EQ(MigrationChecksum(m[0]).size(), 64u);
}

TEST_F(MigrateTest, SecondRunIsNoOp) {
  auto first = store_->Migrate();
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(first->applied_now.size(), EmbeddedMigrations().size());
  EXPECT_EQ(first->schema_version, EmbeddedMigrations().back().version);
  auto second = store_->Migrate();
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_TRUE(second->applied_now.empty());
  EXPECT_EQ(second->schema_version, first->schema_version);
  EXPECT_EQ(db_.Count("schema_migrations"), static_cast<std::int64_t>(EmbeddedMigrations().size()));
  EXPECT_EQ(db_.Count("pg_inherits WHERE inhparent = 'signatures'::regclass"), kSignatureShards);
  EXPECT_TRUE(store_->CheckMigrations().ok());
}

TEST_F(MigrateTest, CheckBeforeMigrateFails) {
  Status s = store_->CheckMigrations();
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
}

TEST_F(MigrateTest, ConcurrentRunsApplyEachMigrationOnce) {
  constexpr int kThreads = 4;
  std::vector<StatusOr<MigrationReport>> reports(kThreads, Status(StatusCode::kUnknown, "not run"));
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      auto s = Store::Connect(db_.url());
      if (!s.ok()) {
        reports[static_cast<std::size_t>(i)] = s.status();
        return;
      }
      reports[static_cast<std::size_t>(i)] = (*s)->Migrate();
    });
  }
  for (auto& t : threads) t.join();
  std::size_t applied_total = 0;
  for (const auto& r : reports) {
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    applied_total += r->applied_now.size();
  }
  EXPECT_EQ(applied_total, EmbeddedMigrations().size());
  EXPECT_EQ(db_.Count("schema_migrations"), static_cast<std::int64_t>(EmbeddedMigrations().size()));
}

TEST_F(MigrateTest, ChangedChecksumIsRefused) {
  std::vector<Migration> v1 = {{1, "first", "CREATE TABLE t1 (x int);"}};
  ASSERT_TRUE(store_->Migrate(v1).ok());
  std::vector<Migration> edited = {{1, "first", "CREATE TABLE t1 (x bigint);"}};
  auto r = store_->Migrate(edited);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("changed after it was applied"), std::string::npos) << r.status().ToString();
  EXPECT_EQ(store_->CheckMigrations(edited).code(), StatusCode::kFailedPrecondition);
  // The unchanged list is still fine.
  EXPECT_TRUE(store_->CheckMigrations(v1).ok());
}

TEST_F(MigrateTest, DatabaseNewerThanBinaryIsRefused) {
  std::vector<Migration> newer = {{1, "first", "SELECT 1;"}, {2, "second", "SELECT 2;"}};
  ASSERT_TRUE(store_->Migrate(newer).ok());
  auto r = store_->Migrate({{1, "first", "SELECT 1;"}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("does not know"), std::string::npos) << r.status().ToString();
}

TEST_F(MigrateTest, FailingMigrationLeavesNothingOfItself) {
  std::vector<Migration> v = {{1, "good", "CREATE TABLE good (x int);"},
                              {2, "bad", "CREATE TABLE half (x int); SELECT no_such_column FROM good;"}};
  auto r = store_->Migrate(v);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("2_bad"), std::string::npos) << r.status().ToString();
  EXPECT_NE(r.status().message().find("SQLSTATE 42703"), std::string::npos) << r.status().ToString();
  EXPECT_EQ(db_.Count("schema_migrations"), 1);
  EXPECT_EQ(db_.Count("pg_class WHERE relname = 'half'"), 0);
  EXPECT_EQ(db_.Count("pg_class WHERE relname = 'good'"), 1);
}

TEST(StoreConnect, UnreachableServerIsUnavailable) {
  // Port 1 on loopback: nothing listens there.
  auto s = Store::Connect("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kUnavailable) << s.status().ToString();
}

TEST(StoreConnect, EmptyUrlIsInvalidArgument) {
  auto s = Store::Connect("");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ballistics::store
