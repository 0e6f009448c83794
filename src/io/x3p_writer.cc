// ISO 25178-72 X3P writer. Work in progress.
#include "io_internal.h"

namespace ballistics {

StatusOr<std::vector<std::uint8_t>> WriteX3pBytes(const Scan&, char) {
  return Unimplemented("x3p writer not implemented yet");
}
Status WriteX3pFile(const Scan&, const std::filesystem::path&, char) {
  return Unimplemented("x3p writer not implemented yet");
}

}  // namespace ballistics
