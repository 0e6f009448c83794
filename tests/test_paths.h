// Where tests find the shared reference scans and the source tree.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

namespace ballistics::testing {

inline std::filesystem::path SharedDataDir() {
  if (const char* env = std::getenv("BALLISTICS_SHARED_DATA_DIR")) return env;
  return BALLISTICS_SHARED_DATA_DIR;
}

inline std::filesystem::path SourceDir() { return BALLISTICS_SOURCE_DIR; }

// Connection string of the test PostgreSQL, or "" when none was started.
inline std::string TestDatabaseUrl() {
  const char* env = std::getenv("BALLISTICS_TEST_DATABASE_URL");
  return env ? env : "";
}

}  // namespace ballistics::testing
