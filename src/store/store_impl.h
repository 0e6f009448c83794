// Store internals shared by store.cc and migrate.cc.
#pragma once

#include <memory>
#include <span>
#include <string>

#include "ballistics/store.h"
#include "pg.h"

namespace ballistics::store {

class Store::Impl {
 public:
  explicit Impl(std::unique_ptr<pg::Connection> c) : conn(std::move(c)) {}
  std::unique_ptr<pg::Connection> conn;
  bool listening = false;
};

// Lower-case hex SHA-256 (OpenSSL).
std::string Sha256HexOf(std::span<const unsigned char> bytes);

}  // namespace ballistics::store
