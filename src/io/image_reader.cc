// 2D image readers (PNG, TIFF): reflected-light photographs of casings.
//
// Values become luminance in [0, 1]: 8-bit / 255, 16-bit / 65535, colour
// converted with ITU-R BT.601 weights (Y = 0.299 R + 0.587 G + 0.114 B, as
// cv::cvtColor). Alpha is ignored. Header facts (size, bit depth, resolution)
// are read and checked against the limits before any pixel is decoded.
//
// Pixel size, in order of precedence:
//   1. ReadOptions::pixel_um (the caller knows the microscope calibration),
//   2. PNG pHYs chunk with unit metre / TIFF XResolution+YResolution with
//      ResolutionUnit inch or centimetre,
//   3. otherwise INVALID_ARGUMENT "pixel size unknown: pass --pixel-um".
// Resolution tags that put the image's field of view above kMaxFieldOfViewUm
// are desktop-publishing defaults (72, 96, 300 dpi: 353, 265, 85 µm per pixel),
// not a calibration: no cartridge-case head is wider than ~25 mm, so such tags
// are rejected rather than trusted.
#include <tiffio.h>

#include <cmath>
#include <cstdarg>
#include <cstring>
#include <limits>
#include <memory>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "io_internal.h"

namespace ballistics::io_internal {
namespace {

constexpr double kMaxFieldOfViewUm = 50'000.0;
constexpr double kMinPixelUm = 0.01;
constexpr double kMaxPixelUm = 1000.0;

std::string Num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

Status CheckCallerPixel(std::string_view what, double pixel_um) {
  if (!(std::isfinite(pixel_um) && pixel_um >= kMinPixelUm && pixel_um <= kMaxPixelUm)) {
    return InvalidArgument(std::string(what) + ": pixel size " + Num(pixel_um) + " um is outside " +
                           Num(kMinPixelUm) + ".." + Num(kMaxPixelUm) + " um");
  }
  return Status::Ok();
}

// Pixel size from resolution metadata; `source` names it in messages.
StatusOr<std::pair<double, double>> CheckTagPixel(std::string_view what, std::string_view source, double px_um,
                                                  double py_um, int width, int height) {
  const std::string w(what);
  for (double p : {px_um, py_um}) {
    if (!(std::isfinite(p) && p > 0)) {
      return InvalidArgument(w + ": " + std::string(source) + " gives pixel size " + Num(p) +
                             " um: pixel size unknown: pass --pixel-um");
    }
  }
  const double fov_um = std::max(px_um * width, py_um * height);
  if (fov_um > kMaxFieldOfViewUm || px_um < kMinPixelUm || py_um < kMinPixelUm) {
    return InvalidArgument(w + ": " + std::string(source) + " gives " + Num(px_um) + " x " + Num(py_um) +
                           " um per pixel, a field of view of " + Num(fov_um / 1000.0) +
                           " mm: a software default, not a microscope calibration; pixel size unknown: "
                           "pass --pixel-um");
  }
  return std::make_pair(px_um, py_um);
}

// Decoded 8/16-bit image (1, 3 or 4 channels, BGR order) -> luminance in [0, 1].
cv::Mat1f ToLuminance(const cv::Mat& img) {
  const double scale = img.depth() == CV_16U ? 1.0 / 65535.0 : 1.0 / 255.0;
  cv::Mat as_float;
  img.convertTo(as_float, CV_MAKETYPE(CV_32F, img.channels()), scale);
  cv::Mat1f grey;
  switch (img.channels()) {
    case 1: grey = as_float; break;
    case 3: cv::cvtColor(as_float, grey, cv::COLOR_BGR2GRAY); break;
    case 4: cv::cvtColor(as_float, grey, cv::COLOR_BGRA2GRAY); break;
    default: break;
  }
  return grey;
}

StatusOr<cv::Mat> Decode(std::string_view what, std::span<const std::uint8_t> bytes, int expect_width,
                         int expect_height) {
  const cv::Mat raw(1, static_cast<int>(bytes.size()), CV_8U, const_cast<std::uint8_t*>(bytes.data()));
  cv::Mat img = cv::imdecode(raw, cv::IMREAD_UNCHANGED);
  if (img.empty()) return DataLoss(std::string(what) + ": image data cannot be decoded (truncated or corrupt?)");
  if (img.cols != expect_width || img.rows != expect_height) {
    return DataLoss(std::string(what) + ": decoded " + std::to_string(img.cols) + " x " + std::to_string(img.rows) +
                    " but the header says " + std::to_string(expect_width) + " x " + std::to_string(expect_height));
  }
  if (img.depth() != CV_8U && img.depth() != CV_16U) {
    return InvalidArgument(std::string(what) + ": decoder returned OpenCV depth " + std::to_string(img.depth()) +
                           ", expected 8 or 16 bit");
  }
  if (img.channels() == 2) {  // grey + alpha, when a decoder keeps it
    std::vector<cv::Mat> planes;
    cv::split(img, planes);
    img = planes[0];
  }
  if (img.channels() != 1 && img.channels() != 3 && img.channels() != 4) {
    return InvalidArgument(std::string(what) + ": " + std::to_string(img.channels()) +
                           " channels are not supported (grey, RGB, RGBA)");
  }
  return img;
}

// PNG pHYs chunk (ISO/IEC 15948 11.3.5.3): pixels per unit, unit 1 = metre.
// Returns the pixel size in µm, or nullopt when absent or unit-less.
std::optional<std::pair<double, double>> PngPhysPixelUm(std::span<const std::uint8_t> bytes) {
  auto be32 = [&](std::size_t at) {
    return (std::uint32_t{bytes[at]} << 24) | (std::uint32_t{bytes[at + 1]} << 16) |
           (std::uint32_t{bytes[at + 2]} << 8) | std::uint32_t{bytes[at + 3]};
  };
  std::size_t pos = 8;
  while (pos + 12 <= bytes.size()) {
    const std::uint32_t len = be32(pos);
    const char* type = reinterpret_cast<const char*>(bytes.data() + pos + 4);
    if (std::memcmp(type, "IDAT", 4) == 0 || std::memcmp(type, "IEND", 4) == 0) break;  // pHYs precedes IDAT
    if (len > bytes.size() - pos - 12) break;
    if (std::memcmp(type, "pHYs", 4) == 0 && len == 9) {
      const std::uint32_t ppu_x = be32(pos + 8), ppu_y = be32(pos + 12);
      if (bytes[pos + 16] != 1 || ppu_x == 0 || ppu_y == 0) return std::nullopt;
      return std::make_pair(1e6 / ppu_x, 1e6 / ppu_y);
    }
    pos += 12 + static_cast<std::size_t>(len);
  }
  return std::nullopt;
}

// Deflate cannot expand data more than 1032:1 (a 258-byte match costs at
// least 2 bits: zlib technical details, RFC 1951 3.2.5).
constexpr std::uint64_t kMaxDeflateRatio = 1032;

// The same guard as CheckPngPayload for TIFF (fuzz_image: a 332-byte TIFF declaring 20000 x 5000
// RGBA16 over one deflated row cost 800 MB and seconds). The strips or tiles
// actually present in the file must be able to expand to the declared image
// under the compression's largest ratio: none 1, PackBits 64 (2 bytes -> 128,
// TIFF 6.0 section 9), LZW 3641 (a 9-bit code stands for at most 4096 bytes,
// TIFF 6.0 section 13), Deflate 1032 (above). Other schemes (JPEG, LZMA, ZSTD,
// ...) get 32768, larger than any of their practical ratios.
std::uint64_t TiffMaxRatio(std::uint16_t compression) {
  switch (compression) {
    case COMPRESSION_NONE: return 1;
    case COMPRESSION_PACKBITS: return 64;
    case COMPRESSION_LZW: return 3641;
    case COMPRESSION_DEFLATE:
    case COMPRESSION_ADOBE_DEFLATE: return kMaxDeflateRatio;
    default: return 32768;
  }
}

// --- libtiff over a memory buffer -----------------------------------------

struct MemoryStream {
  std::span<const std::uint8_t> bytes;
  toff_t pos = 0;
};

tmsize_t StreamRead(thandle_t h, void* buf, tmsize_t size) {
  auto* s = static_cast<MemoryStream*>(h);
  if (size <= 0 || s->pos >= s->bytes.size()) return 0;
  const auto n = std::min<std::uint64_t>(static_cast<std::uint64_t>(size), s->bytes.size() - s->pos);
  std::memcpy(buf, s->bytes.data() + s->pos, n);
  s->pos += n;
  return static_cast<tmsize_t>(n);
}
tmsize_t StreamWrite(thandle_t, void*, tmsize_t) { return 0; }
toff_t StreamSeek(thandle_t h, toff_t off, int whence) {
  auto* s = static_cast<MemoryStream*>(h);
  std::uint64_t base = whence == SEEK_CUR ? s->pos : whence == SEEK_END ? s->bytes.size() : 0;
  s->pos = base + off;  // reads past the end return 0 bytes
  return s->pos;
}
int StreamClose(thandle_t) { return 0; }
toff_t StreamSize(thandle_t h) { return static_cast<MemoryStream*>(h)->bytes.size(); }
int StreamMap(thandle_t, void**, toff_t*) { return 0; }
void StreamUnmap(thandle_t, void*, toff_t) {}

int CollectTiffError(TIFF*, void* user_data, const char* module, const char* fmt, va_list ap) {
  auto* out = static_cast<std::string*>(user_data);
  if (out->empty()) {
    char buf[512];
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    *out = std::string(module != nullptr ? module : "tiff") + ": " + buf;
  }
  return 1;  // handled: keep libtiff from printing to stderr
}
int IgnoreTiffWarning(TIFF*, void*, const char*, const char*, va_list) { return 1; }

std::string TiffString(TIFF* tif, ttag_t tag) {
  char* value = nullptr;
  if (TIFFGetField(tif, tag, &value) == 1 && value != nullptr) return value;
  return {};
}

}  // namespace

// IDAT chunks holding fewer than raw/kMaxDeflateRatio bytes cannot decode to
// the image the IHDR declares. Checked before decoding because the decoder allocates the whole
// image first: found by fuzz_image, a 400-byte PNG declaring 20000 x 5000
// RGBA16 made OpenCV allocate 800 MB and spend seconds before failing.
Status CheckPngPayload(std::span<const std::uint8_t> bytes, const PngHeader& h) {
  auto be32 = [&](std::size_t at) {
    return (std::uint32_t{bytes[at]} << 24) | (std::uint32_t{bytes[at + 1]} << 16) |
           (std::uint32_t{bytes[at + 2]} << 8) | std::uint32_t{bytes[at + 3]};
  };
  std::uint64_t idat = 0;
  std::size_t pos = 8;
  while (pos + 8 <= bytes.size()) {
    const std::uint64_t len = be32(pos);
    const std::uint64_t available = std::min<std::uint64_t>(len, bytes.size() - pos - 8);
    if (std::memcmp(bytes.data() + pos + 4, "IDAT", 4) == 0) idat += available;
    if (std::memcmp(bytes.data() + pos + 4, "IEND", 4) == 0 || len > bytes.size() - pos - 8) break;
    pos += 12 + static_cast<std::size_t>(len);
  }
  static constexpr int kSamples[7] = {1, 0, 3, 1, 2, 0, 4};  // by colour type
  const int samples = h.color_type >= 0 && h.color_type <= 6 ? kSamples[h.color_type] : 1;
  // Filtered scanlines: one filter byte + the packed samples per row
  // (ISO/IEC 15948 7.2, 9.1); interlacing only adds bytes, so this is a lower bound.
  const std::uint64_t row_bytes = 1 + (std::uint64_t{h.width} * samples * h.bit_depth + 7) / 8;
  const std::uint64_t raw = row_bytes * h.height;
  if (idat * kMaxDeflateRatio < raw) {
    return DataLoss("png: " + std::to_string(idat) + " bytes of IDAT data cannot hold the " +
                    std::to_string(h.width) + " x " + std::to_string(h.height) + " image the header declares (" +
                    std::to_string(raw) + " bytes of scanlines; deflate expands at most " +
                    std::to_string(kMaxDeflateRatio) + ":1): truncated or forged header");
  }
  return Status::Ok();
}

StatusOr<Scan> ReadPng(std::span<const std::uint8_t> bytes, const ReadOptions& options) {
  BALLISTICS_ASSIGN_OR_RETURN(PngHeader h, ParsePngHeader(bytes));
  BALLISTICS_RETURN_IF_ERROR(CheckDimensions("png", h.width, h.height, options.limits));
  if (h.bit_depth != 8 && h.bit_depth != 16) {
    return InvalidArgument("png: bit depth " + std::to_string(h.bit_depth) +
                           " is not supported (8 or 16 bits per sample)");
  }
  if (h.color_type != 0 && h.color_type != 2 && h.color_type != 3 && h.color_type != 4 && h.color_type != 6) {
    return InvalidArgument("png: colour type " + std::to_string(h.color_type) + " is not valid");
  }
  Scan scan;
  scan.format = ScanFormat::kPng;
  scan.modality = Modality::kImage2d;
  scan.source_bit_depth = h.bit_depth;
  if (options.pixel_um) {
    BALLISTICS_RETURN_IF_ERROR(CheckCallerPixel("png", *options.pixel_um));
    scan.pixel_um_x = scan.pixel_um_y = *options.pixel_um;
  } else if (auto phys = PngPhysPixelUm(bytes)) {
    BALLISTICS_ASSIGN_OR_RETURN(auto p, CheckTagPixel("png", "pHYs chunk", phys->first, phys->second,
                                                      static_cast<int>(h.width), static_cast<int>(h.height)));
    scan.pixel_um_x = p.first;
    scan.pixel_um_y = p.second;
    scan.header_length_unit = "png-phys";
  } else {
    return InvalidArgument("png: no pHYs chunk in metres: pixel size unknown: pass --pixel-um");
  }
  BALLISTICS_RETURN_IF_ERROR(CheckPngPayload(bytes, h));
  BALLISTICS_ASSIGN_OR_RETURN(cv::Mat img,
                              Decode("png", bytes, static_cast<int>(h.width), static_cast<int>(h.height)));
  scan.values = ToLuminance(img);
  return scan;
}

StatusOr<Scan> ReadTiff(std::span<const std::uint8_t> bytes, const ReadOptions& options) {
  MemoryStream stream{bytes};
  std::string error;
  std::unique_ptr<TIFFOpenOptions, decltype(&TIFFOpenOptionsFree)> opts(TIFFOpenOptionsAlloc(),
                                                                       &TIFFOpenOptionsFree);
  TIFFOpenOptionsSetErrorHandlerExtR(opts.get(), &CollectTiffError, &error);
  TIFFOpenOptionsSetWarningHandlerExtR(opts.get(), &IgnoreTiffWarning, nullptr);
  // Caps libtiff's own allocations while reading the directory (tag arrays).
  TIFFOpenOptionsSetMaxSingleMemAlloc(opts.get(), static_cast<tmsize_t>(64 * kMiB));
  // "rm": read-only, never memory-map (we have no mapping).
  std::unique_ptr<TIFF, decltype(&TIFFClose)> tif(
      TIFFClientOpenExt("memory", "rm", &stream, &StreamRead, &StreamWrite, &StreamSeek, &StreamClose,
                        &StreamSize, &StreamMap, &StreamUnmap, opts.get()),
      &TIFFClose);
  if (!tif) return DataLoss("tiff: cannot read the header: " + (error.empty() ? "unknown error" : error));

  std::uint32_t width = 0, height = 0;
  std::uint16_t bits = 0, samples = 1, sample_format = SAMPLEFORMAT_UINT;
  if (TIFFGetField(tif.get(), TIFFTAG_IMAGEWIDTH, &width) != 1 ||
      TIFFGetField(tif.get(), TIFFTAG_IMAGELENGTH, &height) != 1) {
    return InvalidArgument("tiff: ImageWidth/ImageLength tags missing");
  }
  BALLISTICS_RETURN_IF_ERROR(CheckDimensions("tiff", width, height, options.limits));
  TIFFGetFieldDefaulted(tif.get(), TIFFTAG_BITSPERSAMPLE, &bits);
  TIFFGetFieldDefaulted(tif.get(), TIFFTAG_SAMPLESPERPIXEL, &samples);
  TIFFGetFieldDefaulted(tif.get(), TIFFTAG_SAMPLEFORMAT, &sample_format);
  if (sample_format != SAMPLEFORMAT_UINT) {
    // Float or signed samples carry no defined intensity scale to map onto [0, 1].
    return InvalidArgument("tiff: SampleFormat " + std::to_string(sample_format) +
                           " is not supported (unsigned integer samples only; float/signed images have no "
                           "defined intensity scale)");
  }
  if (bits != 8 && bits != 16) {
    return InvalidArgument("tiff: bit depth " + std::to_string(bits) +
                           " is not supported (8 or 16 bits per sample)");
  }
  if (samples != 1 && samples != 2 && samples != 3 && samples != 4) {
    return InvalidArgument("tiff: " + std::to_string(samples) + " samples per pixel are not supported");
  }

  {
    std::uint16_t compression = COMPRESSION_NONE;
    TIFFGetFieldDefaulted(tif.get(), TIFFTAG_COMPRESSION, &compression);
    const bool tiled = TIFFIsTiled(tif.get());
    const std::uint64_t n = tiled ? TIFFNumberOfTiles(tif.get()) : TIFFNumberOfStrips(tif.get());
    std::uint64_t present = 0;
    for (std::uint64_t i = 0; i < n; ++i) {
      const std::uint64_t offset = TIFFGetStrileOffset(tif.get(), static_cast<std::uint32_t>(i));
      const std::uint64_t count = TIFFGetStrileByteCount(tif.get(), static_cast<std::uint32_t>(i));
      if (offset < bytes.size()) present += std::min<std::uint64_t>(count, bytes.size() - offset);
    }
    // Strips that overlap (a forged table pointing many strips at the same
    // bytes; fuzz_image: 37 strips at offset 0 of a 332-byte file) hold no
    // more than the file itself.
    present = std::min<std::uint64_t>(present, bytes.size());
    // OpenCV's TIFF decoder allocates one strip or tile buffer of
    // RowsPerStrip x width (TileLength x TileWidth) pixels, taken from the
    // header without capping it at the image (fuzz_image: a 332-byte file
    // with ImageLength 8 and RowsPerStrip 5000 made it allocate 800 MB). A
    // strip or tile larger than both the image and 1 Mpixel is refused.
    std::uint32_t tile_w = width, tile_h = 0;
    if (tiled) {
      TIFFGetField(tif.get(), TIFFTAG_TILEWIDTH, &tile_w);
      TIFFGetField(tif.get(), TIFFTAG_TILELENGTH, &tile_h);
    } else {
      TIFFGetFieldDefaulted(tif.get(), TIFFTAG_ROWSPERSTRIP, &tile_h);
      if (tile_h == std::numeric_limits<std::uint32_t>::max()) tile_h = height;  // "one strip"
    }
    const std::uint64_t tile_px = std::uint64_t{tile_w} * tile_h;
    if (tile_px > std::max<std::uint64_t>(std::uint64_t{width} * height, 1u << 20)) {
      return InvalidArgument("tiff: " + std::string(tiled ? "tiles of " : "strips of ") + std::to_string(tile_w) +
                             " x " + std::to_string(tile_h) + " pixels are larger than the " +
                             std::to_string(width) + " x " + std::to_string(height) + " image");
    }
    const std::uint64_t raw = std::uint64_t{width} * height * samples * (bits / 8);
    const std::uint64_t ratio = TiffMaxRatio(compression);
    if (present * ratio < raw) {
      return DataLoss("tiff: the " + std::to_string(n) + (tiled ? " tiles" : " strips") + " in the file hold " +
                      std::to_string(present) + " bytes, which cannot expand to the " + std::to_string(width) +
                      " x " + std::to_string(height) + " image the header declares (" + std::to_string(raw) +
                      " bytes; compression " + std::to_string(compression) + " expands at most " +
                      std::to_string(ratio) + ":1): truncated or forged header");
    }
  }

  Scan scan;
  scan.format = ScanFormat::kTiff;
  scan.modality = Modality::kImage2d;
  scan.source_bit_depth = bits;
  scan.scanner.manufacturer = TiffString(tif.get(), TIFFTAG_MAKE);
  scan.scanner.model = TiffString(tif.get(), TIFFTAG_MODEL);
  scan.scanner.version = TiffString(tif.get(), TIFFTAG_SOFTWARE);
  scan.scanner.creator = TiffString(tif.get(), TIFFTAG_ARTIST);
  scan.scanner.capture_date = TiffString(tif.get(), TIFFTAG_DATETIME);
  scan.scanner.comment = TiffString(tif.get(), TIFFTAG_IMAGEDESCRIPTION);

  if (options.pixel_um) {
    BALLISTICS_RETURN_IF_ERROR(CheckCallerPixel("tiff", *options.pixel_um));
    scan.pixel_um_x = scan.pixel_um_y = *options.pixel_um;
  } else {
    float xres = 0, yres = 0;
    std::uint16_t unit = RESUNIT_INCH;  // TIFF 6.0 default
    const bool has_x = TIFFGetField(tif.get(), TIFFTAG_XRESOLUTION, &xres) == 1;
    const bool has_y = TIFFGetField(tif.get(), TIFFTAG_YRESOLUTION, &yres) == 1;
    TIFFGetFieldDefaulted(tif.get(), TIFFTAG_RESOLUTIONUNIT, &unit);
    if (!has_x || !has_y) {
      return InvalidArgument("tiff: no XResolution/YResolution tags: pixel size unknown: pass --pixel-um");
    }
    double um_per_unit = 0;
    if (unit == RESUNIT_INCH) {
      um_per_unit = 25'400.0;
    } else if (unit == RESUNIT_CENTIMETER) {
      um_per_unit = 10'000.0;
    } else {
      return InvalidArgument("tiff: ResolutionUnit " + std::to_string(unit) +
                             " has no physical unit: pixel size unknown: pass --pixel-um");
    }
    BALLISTICS_ASSIGN_OR_RETURN(
        auto p, CheckTagPixel("tiff", "XResolution/YResolution", um_per_unit / xres, um_per_unit / yres,
                              static_cast<int>(width), static_cast<int>(height)));
    scan.pixel_um_x = p.first;
    scan.pixel_um_y = p.second;
    scan.header_length_unit = "tiff-resolution";
  }
  tif.reset();
  BALLISTICS_ASSIGN_OR_RETURN(cv::Mat img, Decode("tiff", bytes, static_cast<int>(width),
                                                  static_cast<int>(height)));
  scan.values = ToLuminance(img);
  return scan;
}

}  // namespace ballistics::io_internal
