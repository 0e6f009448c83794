// Regression tests for what the fuzz targets of tests/fuzz/ found in src/io/
// (docs/reliability.md, "Fuzzing"). Each test rebuilds the smallest input that
// reproduced the finding and checks the fixed behaviour, in the normal build.
#include <tiffio.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>

#include "ballistics/io.h"
#include "x3p_test_util.h"

namespace ballistics {
namespace {

using testing::LittleEndian;
using testing::MakeX3p;
using testing::X3pSpec;
using ::testing::HasSubstr;

std::uint32_t Crc32(const std::uint8_t* p, std::size_t n) {
  std::uint32_t c = 0xffffffffu;
  for (std::size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
  }
  return c ^ 0xffffffffu;
}

void PutBe32(std::uint8_t* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::uint8_t>(v >> (24 - 8 * i));
}

// A real PNG whose IHDR (and its CRC) is rewritten to declare another size/format.
std::vector<std::uint8_t> ForgedPng(std::uint32_t w, std::uint32_t h, std::uint8_t depth, std::uint8_t colour) {
  std::vector<std::uint8_t> png;
  EXPECT_TRUE(cv::imencode(".png", cv::Mat1b(32, 32, std::uint8_t{7}), png));
  PutBe32(png.data() + 16, w);
  PutBe32(png.data() + 20, h);
  png[24] = depth;
  png[25] = colour;
  PutBe32(png.data() + 29, Crc32(png.data() + 12, 17));
  return png;
}

ReadOptions WithPixel(double um) {
  ReadOptions o;
  o.pixel_um = um;
  return o;
}

// A TIFF written by libtiff: `rows_written` of `h` rows of zeros, one strip.
std::vector<std::uint8_t> ZeroTiff(std::uint32_t w, std::uint32_t h, int bits, int samples, int compression,
                                   std::uint32_t rows_written) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("io_fuzz_regression_" + std::to_string(::getpid()) + ".tif");
  TIFF* t = TIFFOpen(path.c_str(), "w");
  TIFFSetField(t, TIFFTAG_IMAGEWIDTH, w);
  TIFFSetField(t, TIFFTAG_IMAGELENGTH, h);
  TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, bits);
  TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, samples);
  TIFFSetField(t, TIFFTAG_PHOTOMETRIC, samples >= 3 ? PHOTOMETRIC_RGB : PHOTOMETRIC_MINISBLACK);
  if (samples == 4) {
    const std::uint16_t extra = EXTRASAMPLE_UNASSALPHA;
    TIFFSetField(t, TIFFTAG_EXTRASAMPLES, 1, &extra);
  }
  TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
  TIFFSetField(t, TIFFTAG_COMPRESSION, compression);
  TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, h);
  std::vector<std::uint8_t> row(static_cast<std::size_t>(w) * samples * bits / 8, 0);
  for (std::uint32_t y = 0; y < rows_written; ++y) TIFFWriteScanline(t, row.data(), y, 0);
  TIFFClose(t);
  std::ifstream in(path, std::ios::binary);
  std::vector<std::uint8_t> bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  std::filesystem::remove(path);
  return bytes;
}

// fuzz_x3p, seed float-heights: an 'F' height of 3.4e38 m is 3.4e44 µm, which
// no float holds; the reader turned it into +Inf (and the double -> float
// conversion of an out-of-range value is undefined behaviour). Such heights are
// now missing points, as +-Inf already were.
TEST(IoFuzzRegression, FloatHeightBeyondFloatRangeInMicrometresIsMissing) {
  X3pSpec spec;
  spec.data_type = "F";
  auto r = ReadScanBytes(MakeX3p(spec, LittleEndian<float>({1e-6f, 3.4e38f, -3.4e38f, 1e27f, -2e-6f, 0.f})));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_NEAR(r->values(0, 0), 1.0f, 1e-6f);
  EXPECT_TRUE(std::isnan(r->values(0, 1)));
  EXPECT_TRUE(std::isnan(r->values(0, 2)));
  EXPECT_FLOAT_EQ(r->values(1, 0), 1e33f);  // 1e27 m = 1e33 µm still fits a float: kept
  EXPECT_NEAR(r->values(1, 1), -2.0f, 1e-6f);
  for (int y = 0; y < r->height(); ++y) {
    for (int x = 0; x < r->width(); ++x) EXPECT_FALSE(std::isinf(r->values(y, x))) << x << "," << y;
  }
}

TEST(IoFuzzRegression, DoubleHeightOverflowingOnConversionIsMissing) {
  // 1e300 m is finite as a double but 1e306 µm is not a float; 1e308 m * 1e6
  // overflows even the double.
  auto r = ReadScanBytes(MakeX3p({}, LittleEndian<double>({1e300, 1e308, -1e308, 2e-6, 0, 1e-6})));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(std::isnan(r->values(0, 0)));
  EXPECT_TRUE(std::isnan(r->values(0, 1)));
  EXPECT_TRUE(std::isnan(r->values(0, 2)));
  EXPECT_NEAR(r->values(1, 0), 2.0f, 1e-6f);
}

// fuzz_image, seed ihdr-max-points: a 0.6 KB PNG whose IHDR declares
// 20000 x 5000 RGBA16 (within max_dimension and max_points) made the decoder
// allocate 800 MB and work for seconds before failing on the missing data.
// The IDAT bytes are now checked against deflate's 1032:1 limit first.
TEST(IoFuzzRegression, PngHeaderDeclaringMoreThanItsDataCanHoldIsRefusedBeforeDecoding) {
  auto r = ReadScanBytes(ForgedPng(20000, 5000, 16, 6), WithPixel(2.5));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << r.status().ToString();
  EXPECT_THAT(r.status().message(), HasSubstr("cannot hold the 20000 x 5000 image"));
  EXPECT_THAT(r.status().message(), HasSubstr("800005000 bytes of scanlines"));
}

TEST(IoFuzzRegression, HighlyCompressedButCompletePngStillReads) {
  // All-zero 4000 x 3000 grey: zlib level 9 gets close to the 1032:1 bound
  // without ever passing it.
  std::vector<std::uint8_t> png;
  ASSERT_TRUE(cv::imencode(".png", cv::Mat1b(3000, 4000, std::uint8_t{0}), png, {cv::IMWRITE_PNG_COMPRESSION, 9}));
  ASSERT_LT(png.size(), 3000u * 4001u / 500u) << "the test image should compress over 500:1";
  auto r = ReadScanBytes(png, WithPixel(2.5));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->width(), 4000);
  EXPECT_EQ(r->height(), 3000);
}

// fuzz_image, seed tiff-forged-size: a 332-byte TIFF declaring 20000 x 5000
// RGBA16 over one deflated row: same allocation, same fix for strips/tiles.
TEST(IoFuzzRegression, TiffHeaderDeclaringMoreThanItsStripsCanHoldIsRefusedBeforeDecoding) {
  auto r = ReadScanBytes(ZeroTiff(20000, 5000, 16, 4, COMPRESSION_ADOBE_DEFLATE, 1), WithPixel(2.5));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << r.status().ToString();
  EXPECT_THAT(r.status().message(), HasSubstr("cannot expand to the 20000 x 5000 image"));
  // Uncompressed with the strip cut short: nothing may expand at all.
  auto u = ReadScanBytes(ZeroTiff(300, 200, 8, 1, COMPRESSION_NONE, 100), WithPixel(2.5));
  ASSERT_FALSE(u.ok());
  EXPECT_EQ(u.status().code(), StatusCode::kDataLoss) << u.status().ToString();
}

// Rewrites the value of a one-value SHORT or LONG tag in the first IFD of a
// little-endian classic TIFF (what libtiff writes on this machine).
void PatchTiffTag(std::vector<std::uint8_t>& tiff, std::uint16_t tag, std::uint32_t value) {
  auto u16 = [&](std::size_t at) { return static_cast<std::uint16_t>(tiff[at] | (tiff[at + 1] << 8)); };
  const std::size_t ifd = tiff[4] | (tiff[5] << 8) | (tiff[6] << 16) | (std::size_t{tiff[7]} << 24);
  for (std::size_t i = 0, n = u16(ifd); i < n; ++i) {
    const std::size_t e = ifd + 2 + 12 * i;
    if (u16(e) != tag) continue;
    if (u16(e + 2) == 3) {
      tiff[e + 8] = value & 0xff;
      tiff[e + 9] = (value >> 8) & 0xff;
    } else {
      for (int k = 0; k < 4; ++k) tiff[e + 8 + k] = (value >> (8 * k)) & 0xff;
    }
    return;
  }
  ADD_FAILURE() << "tag " << tag << " not found";
}

// fuzz_image, 600 s run with -malloc_limit_mb=512: ImageLength 8 but
// RowsPerStrip 5000 on a 20000-pixel-wide RGBA16 image. OpenCV sizes its strip
// buffer by RowsPerStrip (800 MB for a 332-byte file); the reader now refuses
// strips or tiles larger than both the image and 1 Mpixel.
TEST(IoFuzzRegression, TiffStripLargerThanTheImageIsRefused) {
  auto tiff = ZeroTiff(20000, 8, 16, 4, COMPRESSION_ADOBE_DEFLATE, 8);
  PatchTiffTag(tiff, TIFFTAG_ROWSPERSTRIP, 5000);
  auto r = ReadScanBytes(tiff, WithPixel(2.5));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().ToString();
  EXPECT_THAT(r.status().message(), HasSubstr("strips of 20000 x 5000 pixels are larger than the 20000 x 8 image"));
  // A strip somewhat taller than a small image (legal, and common) still reads.
  auto small = ZeroTiff(300, 5, 8, 1, COMPRESSION_NONE, 5);
  PatchTiffTag(small, TIFFTAG_ROWSPERSTRIP, 8);
  auto ok = ReadScanBytes(small, WithPixel(2.5));
  EXPECT_TRUE(ok.ok()) << ok.status().ToString();
}

// fuzz_image, bounded CI run: a 332-byte TIFF (20000 x 5000, unknown
// compression 65528) whose strip table points 37 strips at the same bytes, so
// the bytes "present" were counted 37 times and passed the expansion check;
// OpenCV then allocated 600 MB. Overlapping strips now count once (at most the
// file size).
TEST(IoFuzzRegression, TiffStripsPointingAtTheSameBytesCountOnce) {
  const std::vector<std::uint8_t> tiff{
      0x49, 0x49, 0x2a, 0x00, 0xba, 0x00, 0x00, 0x00, 0x78, 0x9c, 0xed, 0xc1, 0x81, 0x00, 0x00, 0x00,
      0x00, 0xc3, 0xa0, 0xf9, 0x53, 0x5f, 0xe1, 0x00, 0x55, 0x01, 0x00, 0x4c, 0x01, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x68, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x7c, 0x06, 0x71, 0x1e, 0x00, 0x01, 0x0b, 0x00, 0x00, 0x01, 0x03, 0x00,
      0x01, 0x00, 0x00, 0x00, 0x20, 0x4e, 0x00, 0x00, 0x01, 0x01, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00,
      0x88, 0x13, 0x00, 0x00, 0x02, 0x01, 0x03, 0x00, 0x04, 0x00, 0x00, 0x00, 0x44, 0x01, 0x00, 0x00,
      0x03, 0x01, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0xf8, 0xff, 0xff, 0xf7, 0x06, 0x01, 0x03, 0x00,
      0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x11, 0x01, 0x04, 0x00, 0x01, 0x00, 0x00, 0x00,
      0x08, 0x00, 0x00, 0x49, 0x44, 0x41, 0x54, 0x00, 0x01, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00,
      0x16, 0x01, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x88, 0x00, 0x00, 0x13, 0x17, 0x01, 0x04, 0x00,
      0x01, 0x00, 0xf8, 0xff, 0xb1, 0x00, 0x00, 0x00, 0x1c, 0x01, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00,
      0x01, 0x00, 0x00, 0x00, 0x52, 0x01, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x10, 0x00, 0x10, 0x00, 0x10, 0x00,
  };
  auto r = ReadScanBytes(tiff, WithPixel(2.5));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << r.status().ToString();
  EXPECT_THAT(r.status().message(), HasSubstr("cannot expand to the 20000 x 5000 image"));
}

TEST(IoFuzzRegression, HighlyCompressedButCompleteTiffStillReads) {
  for (int compression : {COMPRESSION_ADOBE_DEFLATE, COMPRESSION_LZW, COMPRESSION_PACKBITS, COMPRESSION_NONE}) {
    auto r = ReadScanBytes(ZeroTiff(2000, 1500, 8, 1, compression, 1500), WithPixel(2.5));
    ASSERT_TRUE(r.ok()) << "compression " << compression << ": " << r.status().ToString();
    EXPECT_EQ(r->width(), 2000);
  }
}

// The same payload check guards the X3P mask, which is decoded the same way.
TEST(IoFuzzRegression, X3pMaskWithoutImageDataIsRefusedBeforeDecoding) {
  std::vector<std::uint8_t> png;
  ASSERT_TRUE(cv::imencode(".png", cv::Mat3b(2, 3, cv::Vec3b(255, 255, 255)), png));
  const auto idat = std::search(png.begin(), png.end(), std::begin("IDAT"), std::begin("IDAT") + 4) - 4;
  const std::uint32_t len = (std::uint32_t{idat[0]} << 24) | (std::uint32_t{idat[1]} << 16) |
                            (std::uint32_t{idat[2]} << 8) | idat[3];
  png.erase(idat, idat + 12 + len);
  auto r = ReadScanBytes(MakeX3p({}, LittleEndian<double>({1e-6, 2e-6, 3e-6, 4e-6, 5e-6, 6e-6}),
                                 {{"bindata/mask.png", png}}));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << r.status().ToString();
  EXPECT_THAT(r.status().message(), HasSubstr("bindata/mask.png"));
  EXPECT_THAT(r.status().message(), HasSubstr("0 bytes of IDAT data"));
}

}  // namespace
}  // namespace ballistics
