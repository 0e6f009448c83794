// Digests through OpenSSL's EVP interface (SHA-256 for the chain of custody,
// MD5 because ISO 25178-72 X3P files carry MD5 checksums).
#include <openssl/evp.h>

#include <memory>

#include "io_internal.h"

namespace ballistics {
namespace {

std::string DigestHex(const EVP_MD* md, std::span<const std::uint8_t> bytes) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  // EVP calls fail only on allocation failure or a broken OpenSSL install.
  if (!ctx || EVP_DigestInit_ex(ctx.get(), md, nullptr) != 1 ||
      EVP_DigestUpdate(ctx.get(), bytes.data(), bytes.size()) != 1 ||
      EVP_DigestFinal_ex(ctx.get(), out, &len) != 1) {
    return {};
  }
  return io_internal::HexLower({out, len});
}

}  // namespace

std::string Sha256Hex(std::span<const std::uint8_t> bytes) { return DigestHex(EVP_sha256(), bytes); }
std::string Md5Hex(std::span<const std::uint8_t> bytes) { return DigestHex(EVP_md5(), bytes); }

namespace io_internal {

std::string HexLower(std::span<const unsigned char> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) {
    hex.push_back(kDigits[b >> 4]);
    hex.push_back(kDigits[b & 0xf]);
  }
  return hex;
}

}  // namespace io_internal
}  // namespace ballistics
