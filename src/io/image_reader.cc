// 2D image readers (PNG, TIFF). Work in progress: replaced by the real decoders in the next commit.
#include "io_internal.h"

namespace ballistics::io_internal {

StatusOr<Scan> ReadPng(std::span<const std::uint8_t>, const ReadOptions&) {
  return Unimplemented("png: 2D reader not implemented yet");
}
StatusOr<Scan> ReadTiff(std::span<const std::uint8_t>, const ReadOptions&) {
  return Unimplemented("tiff: 2D reader not implemented yet");
}

}  // namespace ballistics::io_internal
