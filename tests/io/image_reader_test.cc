// PNG and TIFF readers on generated images: bit depths, colour, pixel size
// from options / pHYs / TIFF resolution tags, and hostile headers.
#include <tiffio.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>

#include "ballistics/io.h"

namespace ballistics {
namespace {

using ::testing::HasSubstr;

void ExpectError(const StatusOr<Scan>& r, StatusCode code, const std::string& needle) {
  ASSERT_FALSE(r.ok()) << "expected an error containing '" << needle << "'";
  EXPECT_EQ(r.status().code(), code) << r.status().ToString();
  EXPECT_THAT(r.status().message(), HasSubstr(needle)) << r.status().ToString();
}

ReadOptions WithPixel(double um) {
  ReadOptions o;
  o.pixel_um = um;
  return o;
}

std::vector<std::uint8_t> EncodePng(const cv::Mat& img) {
  std::vector<std::uint8_t> out;
  EXPECT_TRUE(cv::imencode(".png", img, out));
  return out;
}

// --- a minimal PNG writer for headers OpenCV will not produce ---------------

std::uint32_t Crc32(const std::uint8_t* p, std::size_t n) {
  std::uint32_t c = 0xffffffffu;
  for (std::size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
  }
  return c ^ 0xffffffffu;
}

void Put32(std::vector<std::uint8_t>& out, std::uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<std::uint8_t>(v >> s));
}

void Chunk(std::vector<std::uint8_t>& png, const char* type, const std::vector<std::uint8_t>& data) {
  Put32(png, static_cast<std::uint32_t>(data.size()));
  const std::size_t start = png.size();
  png.insert(png.end(), type, type + 4);
  png.insert(png.end(), data.begin(), data.end());
  Put32(png, Crc32(png.data() + start, png.size() - start));
}

// zlib stream with one stored (uncompressed) deflate block (RFC 1950/1951).
std::vector<std::uint8_t> ZlibStored(const std::vector<std::uint8_t>& raw) {
  std::vector<std::uint8_t> z = {0x78, 0x01, 0x01};
  const auto n = static_cast<std::uint16_t>(raw.size());
  z.push_back(n & 0xff);
  z.push_back(n >> 8);
  z.push_back(~n & 0xff);
  z.push_back((~n >> 8) & 0xff);
  z.insert(z.end(), raw.begin(), raw.end());
  std::uint32_t a = 1, b = 0;
  for (std::uint8_t c : raw) {
    a = (a + c) % 65521;
    b = (b + a) % 65521;
  }
  Put32(z, (b << 16) | a);
  return z;
}

// Grey PNG of the given bit depth, all samples zero (rows with filter byte 0).
std::vector<std::uint8_t> HandPng(std::uint32_t w, std::uint32_t h, int bit_depth, int color_type,
                                  bool with_data = true) {
  std::vector<std::uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  std::vector<std::uint8_t> ihdr;
  Put32(ihdr, w);
  Put32(ihdr, h);
  ihdr.insert(ihdr.end(), {static_cast<std::uint8_t>(bit_depth), static_cast<std::uint8_t>(color_type), 0, 0, 0});
  Chunk(png, "IHDR", ihdr);
  if (with_data) {
    const std::size_t row = (w * bit_depth + 7) / 8 + 1;
    Chunk(png, "IDAT", ZlibStored(std::vector<std::uint8_t>(row * h, 0)));
  }
  Chunk(png, "IEND", {});
  return png;
}

// Inserts a pHYs chunk (pixels per metre) right after IHDR.
std::vector<std::uint8_t> WithPhys(const std::vector<std::uint8_t>& png, std::uint32_t ppm_x, std::uint32_t ppm_y,
                                   std::uint8_t unit = 1) {
  std::vector<std::uint8_t> out(png.begin(), png.begin() + 8 + 25);
  std::vector<std::uint8_t> data;
  Put32(data, ppm_x);
  Put32(data, ppm_y);
  data.push_back(unit);
  Chunk(out, "pHYs", data);
  out.insert(out.end(), png.begin() + 8 + 25, png.end());
  return out;
}

// --- PNG ------------------------------------------------------------------------

TEST(PngReader, EightBitGrey) {
  cv::Mat1b img(3, 4);
  for (int i = 0; i < 12; ++i) img(i / 4, i % 4) = static_cast<std::uint8_t>(i * 20);
  auto r = ReadScanBytes(EncodePng(img), WithPixel(2.5));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->format, ScanFormat::kPng);
  EXPECT_EQ(r->modality, Modality::kImage2d);
  EXPECT_EQ(r->source_bit_depth, 8);
  EXPECT_EQ(r->width(), 4);
  EXPECT_EQ(r->height(), 3);
  EXPECT_DOUBLE_EQ(r->pixel_um_x, 2.5);
  EXPECT_EQ(r->header_length_unit, "");
  EXPECT_FLOAT_EQ(r->values(2, 3), 220.f / 255.f);
  EXPECT_FLOAT_EQ(r->values(0, 0), 0.f);
}

TEST(PngReader, SixteenBitGrey) {
  cv::Mat_<std::uint16_t> img(2, 2);
  img << 0, 1, 40000, 65535;
  auto r = ReadScanBytes(EncodePng(img), WithPixel(1.0));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->source_bit_depth, 16);
  EXPECT_FLOAT_EQ(r->values(0, 1), 1.f / 65535.f);
  EXPECT_FLOAT_EQ(r->values(1, 0), 40000.f / 65535.f);
  EXPECT_FLOAT_EQ(r->values(1, 1), 1.f);
}

TEST(PngReader, ColourToBt601Luminance) {
  cv::Mat3b img(1, 3);
  img(0, 0) = cv::Vec3b(0, 0, 255);    // BGR: pure red
  img(0, 1) = cv::Vec3b(0, 255, 0);    // green
  img(0, 2) = cv::Vec3b(200, 100, 50); // B=200 G=100 R=50
  auto r = ReadScanBytes(EncodePng(img), WithPixel(1.0));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_NEAR(r->values(0, 0), 0.299, 1e-5);
  EXPECT_NEAR(r->values(0, 1), 0.587, 1e-5);
  EXPECT_NEAR(r->values(0, 2), (0.299 * 50 + 0.587 * 100 + 0.114 * 200) / 255.0, 1e-5);
  // RGBA: alpha is ignored.
  cv::Mat4b rgba(1, 1, cv::Vec4b(0, 0, 255, 7));
  r = ReadScanBytes(EncodePng(rgba), WithPixel(1.0));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_NEAR(r->values(0, 0), 0.299, 1e-5);
}

TEST(PngReader, PixelSizeFromPhysOrOptionOrError) {
  const auto png = EncodePng(cv::Mat1b(10, 20, std::uint8_t{128}));
  ExpectError(ReadScanBytes(png), StatusCode::kInvalidArgument, "pixel size unknown: pass --pixel-um");
  // 400000 px/m = 2.5 µm per pixel.
  auto r = ReadScanBytes(WithPhys(png, 400000, 200000));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_DOUBLE_EQ(r->pixel_um_x, 2.5);
  EXPECT_DOUBLE_EQ(r->pixel_um_y, 5.0);
  EXPECT_EQ(r->header_length_unit, "png-phys");
  // The caller's calibration wins over the file's.
  r = ReadScanBytes(WithPhys(png, 400000, 400000), WithPixel(3.0));
  ASSERT_TRUE(r.ok());
  EXPECT_DOUBLE_EQ(r->pixel_um_x, 3.0);
  // pHYs without unit (aspect ratio only) says nothing about size.
  ExpectError(ReadScanBytes(WithPhys(png, 1, 1, 0)), StatusCode::kInvalidArgument, "pass --pixel-um");
  // 72 dpi (2835 px/m) is a desktop default, not a microscope.
  ExpectError(ReadScanBytes(WithPhys(EncodePng(cv::Mat1b(200, 200, std::uint8_t{1})), 2835, 2835)),
              StatusCode::kInvalidArgument, "software default");
}

TEST(PngReader, RejectsOtherBitDepthsBeforeDecoding) {
  for (int bits : {1, 2, 4}) {
    SCOPED_TRACE(bits);
    ExpectError(ReadScanBytes(HandPng(16, 8, bits, 0), WithPixel(1.0)), StatusCode::kInvalidArgument,
                "png: bit depth " + std::to_string(bits) + " is not supported");
  }
  // Control: the hand-made PNG itself is valid at 8 bits.
  auto r = ReadScanBytes(HandPng(16, 8, 8, 0), WithPixel(1.0));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->width(), 16);
}

TEST(PngReader, HugeDimensionsRefusedFromTheHeader) {
  // A 100000 x 100000 IHDR without pixel data: refused on the header alone.
  ExpectError(ReadScanBytes(HandPng(100000, 100000, 8, 0, false), WithPixel(1.0)),
              StatusCode::kResourceExhausted, "100000 x 100000 exceed max_dimension=20000");
  ExpectError(ReadScanBytes(HandPng(15000, 15000, 8, 0, false), WithPixel(1.0)), StatusCode::kResourceExhausted,
              "225000000 points exceed max_points=100000000");
  ExpectError(ReadScanBytes(HandPng(0, 10, 8, 0, false), WithPixel(1.0)), StatusCode::kInvalidArgument,
              "not positive");
}

TEST(PngReader, TruncatedOrCorrupt) {
  auto png = EncodePng(cv::Mat1b(64, 64, std::uint8_t{9}));
  ExpectError(ReadScanBytes(std::span(png).first(20), WithPixel(1.0)), StatusCode::kDataLoss, "too short");
  std::vector<std::uint8_t> cut(png.begin(), png.begin() + 50);
  ExpectError(ReadScanBytes(cut, WithPixel(1.0)), StatusCode::kDataLoss, "cannot be decoded");
}

TEST(PngReader, RejectsAbsurdCallerPixel) {
  const auto png = EncodePng(cv::Mat1b(4, 4, std::uint8_t{1}));
  ExpectError(ReadScanBytes(png, WithPixel(-1.0)), StatusCode::kInvalidArgument, "pixel size -1 um");
  ExpectError(ReadScanBytes(png, WithPixel(1e9)), StatusCode::kInvalidArgument, "pixel size 1e+09 um");
}

// --- TIFF -----------------------------------------------------------------------

struct TiffSpec {
  int width = 6, height = 4;
  int bits = 16;
  int samples = 1;
  int sample_format = SAMPLEFORMAT_UINT;
  float xres = 0, yres = 0;  // 0: no tags
  int unit = RESUNIT_CENTIMETER;
};

std::vector<std::uint8_t> MakeTiff(const TiffSpec& s) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("ballistics_io_test_" + std::to_string(::getpid()) + ".tif");
  TIFF* tif = TIFFOpen(path.c_str(), "w");
  EXPECT_NE(tif, nullptr);
  TIFFSetField(tif, TIFFTAG_IMAGEWIDTH, s.width);
  TIFFSetField(tif, TIFFTAG_IMAGELENGTH, s.height);
  TIFFSetField(tif, TIFFTAG_BITSPERSAMPLE, s.bits);
  TIFFSetField(tif, TIFFTAG_SAMPLESPERPIXEL, s.samples);
  TIFFSetField(tif, TIFFTAG_SAMPLEFORMAT, s.sample_format);
  TIFFSetField(tif, TIFFTAG_PHOTOMETRIC, s.samples >= 3 ? PHOTOMETRIC_RGB : PHOTOMETRIC_MINISBLACK);
  TIFFSetField(tif, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
  TIFFSetField(tif, TIFFTAG_ROWSPERSTRIP, s.height);
  TIFFSetField(tif, TIFFTAG_MAKE, "Leica");
  TIFFSetField(tif, TIFFTAG_MODEL, "FS M");
  if (s.xres > 0) {
    TIFFSetField(tif, TIFFTAG_XRESOLUTION, s.xres);
    TIFFSetField(tif, TIFFTAG_YRESOLUTION, s.yres);
    TIFFSetField(tif, TIFFTAG_RESOLUTIONUNIT, s.unit);
  }
  std::vector<std::uint8_t> row((static_cast<std::size_t>(s.width) * s.samples * s.bits + 7) / 8);
  for (int y = 0; y < s.height; ++y) {
    for (int x = 0; x < s.width * s.samples; ++x) {
      if (s.bits == 16) {
        const std::uint16_t v = static_cast<std::uint16_t>(1000 * (y * s.width + x));
        std::memcpy(row.data() + 2 * x, &v, 2);
      } else if (s.bits == 8) {
        row[x] = static_cast<std::uint8_t>(10 * (y * s.width + x));
      } else if (s.bits == 32) {
        const float v = 0.5f;
        std::memcpy(row.data() + 4 * x, &v, 4);
      }
    }
    TIFFWriteScanline(tif, row.data(), y, 0);
  }
  TIFFClose(tif);
  std::ifstream in(path, std::ios::binary);
  std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::filesystem::remove(path);
  return bytes;
}

TEST(TiffReader, SixteenBitWithCentimetreResolution) {
  TiffSpec s;
  s.xres = 10000.f;  // pixels per cm -> 1 µm
  s.yres = 4000.f;   // -> 2.5 µm
  auto r = ReadScanBytes(MakeTiff(s));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->format, ScanFormat::kTiff);
  EXPECT_EQ(r->source_bit_depth, 16);
  EXPECT_NEAR(r->pixel_um_x, 1.0, 1e-9);
  EXPECT_NEAR(r->pixel_um_y, 2.5, 1e-9);
  EXPECT_EQ(r->header_length_unit, "tiff-resolution");
  EXPECT_EQ(r->scanner.manufacturer, "Leica");
  EXPECT_EQ(r->scanner.model, "FS M");
  EXPECT_FLOAT_EQ(r->values(1, 2), 8000.f / 65535.f);  // y=1, x=2: 1000*(6+2)
}

TEST(TiffReader, EightBitWithInchResolution) {
  TiffSpec s;
  s.bits = 8;
  s.xres = s.yres = 10160.f;  // dpi -> 2.5 µm
  s.unit = RESUNIT_INCH;
  auto r = ReadScanBytes(MakeTiff(s));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->source_bit_depth, 8);
  EXPECT_NEAR(r->pixel_um_x, 2.5, 1e-6);
  EXPECT_FLOAT_EQ(r->values(0, 3), 30.f / 255.f);
}

TEST(TiffReader, ColourTiff) {
  TiffSpec s;
  s.bits = 8;
  s.samples = 3;
  auto r = ReadScanBytes(MakeTiff(s), WithPixel(2.0));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  // Pixel (0,0) is R=0, G=10, B=20.
  EXPECT_NEAR(r->values(0, 0), (0.587 * 10 + 0.114 * 20) / 255.0, 1e-5);
}

TEST(TiffReader, PixelSizeUnknownOrDefault) {
  TiffSpec s;
  ExpectError(ReadScanBytes(MakeTiff(s)), StatusCode::kInvalidArgument,
              "no XResolution/YResolution tags: pixel size unknown: pass --pixel-um");
  auto r = ReadScanBytes(MakeTiff(s), WithPixel(4.0));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_DOUBLE_EQ(r->pixel_um_x, 4.0);
  s.width = s.height = 300;
  s.xres = s.yres = 72.f;
  s.unit = RESUNIT_INCH;
  ExpectError(ReadScanBytes(MakeTiff(s)), StatusCode::kInvalidArgument, "software default");
  s.unit = RESUNIT_NONE;
  ExpectError(ReadScanBytes(MakeTiff(s)), StatusCode::kInvalidArgument, "ResolutionUnit 1 has no physical unit");
}

TEST(TiffReader, RejectsFloatAndOddDepths) {
  TiffSpec s;
  s.bits = 32;
  s.sample_format = SAMPLEFORMAT_IEEEFP;
  ExpectError(ReadScanBytes(MakeTiff(s), WithPixel(1.0)), StatusCode::kInvalidArgument, "SampleFormat 3");
  s = {};
  s.bits = 4;
  ExpectError(ReadScanBytes(MakeTiff(s), WithPixel(1.0)), StatusCode::kInvalidArgument,
              "tiff: bit depth 4 is not supported");
}

TEST(TiffReader, TruncatedHeader) {
  const std::vector<std::uint8_t> bytes = {'I', 'I', 42, 0, 0xff, 0xff, 0, 0};
  auto r = ReadScanBytes(bytes, WithPixel(1.0));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss) << r.status().ToString();
  EXPECT_THAT(r.status().message(), HasSubstr("tiff: cannot read the header"));
}

TEST(ImageHostile, RandomCorruptionNeverCrashes) {
  // Flipped bytes in headers and pixel data: a value or an error Status, never a crash.
  cv::Mat1w img(40, 50);
  cv::randu(img, 0, 65535);
  TiffSpec t;
  t.xres = t.yres = 10000.f;
  const std::vector<std::pair<std::vector<std::uint8_t>, ReadOptions>> inputs = {
      {EncodePng(img), WithPixel(1.0)},
      {WithPhys(EncodePng(cv::Mat1b(40, 50, std::uint8_t{3})), 400000, 400000), {}},
      {MakeTiff(t), {}}};
  for (const auto& [valid, options] : inputs) {
    ASSERT_TRUE(ReadScanBytes(valid, options).ok());
    std::mt19937 rng(static_cast<unsigned>(valid.size()));
    for (int trial = 0; trial < 300; ++trial) {
      auto bytes = valid;
      for (int f = 0; f <= trial % 3; ++f) {
        // Half of the flips hit the first 64 bytes (signature, IHDR/IFD header).
        const std::size_t at = (rng() % 2 == 0) ? rng() % 64 : rng() % bytes.size();
        bytes[at] ^= static_cast<std::uint8_t>(1 + rng() % 255);
      }
      auto r = ReadScanBytes(bytes, options);
      if (r.ok()) {
        EXPECT_GT(r->values.total(), 0u);
      } else {
        EXPECT_NE(r.status().code(), StatusCode::kInternal) << r.status().ToString();
      }
    }
  }
}

}  // namespace
}  // namespace ballistics
