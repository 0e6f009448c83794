// X3P reader and writer on generated archives: units, data types, masks,
// round trips, and hostile inputs (each error checks the code and the message).
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>

#include "ballistics/io.h"
#include "x3p_test_util.h"

namespace ballistics {
namespace {

using testing::Bytes;
using testing::LittleEndian;
using testing::MakeX3p;
using testing::MakeZip;
using testing::X3pSpec;
using ::testing::HasSubstr;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

std::vector<std::uint8_t> SixDoubles() { return LittleEndian<double>({1e-6, -2e-6, 3.5e-6, 0, 1e-5, -4e-7}); }

void ExpectError(const StatusOr<Scan>& r, StatusCode code, const std::string& needle) {
  ASSERT_FALSE(r.ok()) << "expected an error containing '" << needle << "'";
  EXPECT_EQ(r.status().code(), code) << r.status().ToString();
  EXPECT_THAT(r.status().message(), HasSubstr(needle)) << r.status().ToString();
}

TEST(X3pReader, MetreHeaderConvertsLengthsAndHeightsToMicrometres) {
  auto r = ReadScanBytes(MakeX3p({}, SixDoubles()));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->format, ScanFormat::kX3p);
  EXPECT_EQ(r->header_length_unit, "m");
  EXPECT_DOUBLE_EQ(r->pixel_um_x, 2.5);
  EXPECT_EQ(r->width(), 3);
  EXPECT_EQ(r->height(), 2);
  // x fastest: row 0 = first SizeX values.
  EXPECT_FLOAT_EQ(r->values(0, 0), 1.0f);
  EXPECT_FLOAT_EQ(r->values(0, 1), -2.0f);
  EXPECT_FLOAT_EQ(r->values(0, 2), 3.5f);
  EXPECT_FLOAT_EQ(r->values(1, 0), 0.0f);
  EXPECT_FLOAT_EQ(r->values(1, 1), 10.0f);
  EXPECT_FLOAT_EQ(r->values(1, 2), -0.4f);
  EXPECT_EQ(r->scanner.manufacturer, "Acme");
  EXPECT_EQ(r->scanner.serial, "42");
  EXPECT_EQ(r->source_data_type, "D");
}

TEST(X3pReader, MicrometreHeaderKeepsValues) {
  X3pSpec spec;
  spec.inc_x = spec.inc_y = "7.37468";
  spec.data_type = "F";
  auto r = ReadScanBytes(MakeX3p(spec, LittleEndian<float>({1.5f, -2.f, 3.f, 4.f, 5.f, 6.f})));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->header_length_unit, "um");
  EXPECT_DOUBLE_EQ(r->pixel_um_x, 7.37468);
  EXPECT_EQ(r->values(0, 0), 1.5f);
  EXPECT_EQ(r->values(1, 2), 6.f);
}

TEST(X3pReader, RootWithoutNamespacePrefix) {
  X3pSpec spec;
  spec.root = "ISO5436";
  auto r = ReadScanBytes(MakeX3p(spec, SixDoubles()));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FLOAT_EQ(r->values(1, 1), 10.0f);
}

TEST(X3pReader, IntegerTypesApplyCzIncrementAndOffset) {
  X3pSpec spec;
  spec.data_type = "I";
  spec.z_increment = "1e-08";  // 10 nm steps
  spec.z_offset = "2e-06";
  auto r = ReadScanBytes(MakeX3p(spec, LittleEndian<std::int16_t>({-3, 0, 5, 32767, -32768, 100})));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->source_data_type, "I");
  EXPECT_FLOAT_EQ(r->values(0, 0), 2.0f - 0.03f);
  EXPECT_FLOAT_EQ(r->values(0, 1), 2.0f);
  EXPECT_FLOAT_EQ(r->values(1, 0), 2.0f + 327.67f);
  EXPECT_FLOAT_EQ(r->values(1, 1), 2.0f - 327.68f);

  spec.data_type = "L";
  spec.z_increment = "0.001";  // µm header: 1 nm steps
  spec.z_offset = "0";
  spec.inc_x = spec.inc_y = "3.5";
  r = ReadScanBytes(MakeX3p(spec, LittleEndian<std::int32_t>({1000, -2500, 0, 2000000000, 7, 8})));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->header_length_unit, "um");
  EXPECT_FLOAT_EQ(r->values(0, 0), 1.0f);
  EXPECT_FLOAT_EQ(r->values(0, 1), -2.5f);
  EXPECT_FLOAT_EQ(r->values(1, 0), 2e6f);
}

TEST(X3pReader, NanAndInfAreMissing) {
  const double inf = std::numeric_limits<double>::infinity();
  auto r = ReadScanBytes(MakeX3p({}, LittleEndian<double>({NAN, inf, -inf, 1e-6, 2e-6, 3e-6})));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(std::isnan(r->values(0, 0)));
  EXPECT_TRUE(std::isnan(r->values(0, 1)));
  EXPECT_TRUE(std::isnan(r->values(0, 2)));
  EXPECT_FLOAT_EQ(r->values(1, 0), 1.0f);
  EXPECT_NEAR(r->MissingFraction(), 0.5, 1e-12);
}

TEST(X3pReader, DeclaredBackgroundMaskRemovesAnnotatedPoints) {
  X3pSpec spec;
  spec.record3_extra = "<Mask><Background>#cd7f32</Background><Annotations/></Mask>";
  cv::Mat3b mask(2, 3, cv::Vec3b(0x32, 0x7f, 0xcd));  // BGR of #cd7f32
  mask(1, 2) = cv::Vec3b(0x6c, 0x37, 0x1f);             // #1f376c annotation
  std::vector<std::uint8_t> png;
  cv::imencode(".png", mask, png);
  auto r = ReadScanBytes(MakeX3p(spec, SixDoubles(), {{"bindata/mask.png", png}}));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->had_mask);
  EXPECT_TRUE(std::isnan(r->values(1, 2)));
  EXPECT_FLOAT_EQ(r->values(1, 1), 10.0f);
  EXPECT_NEAR(r->MissingFraction(), 1.0 / 6.0, 1e-12);
}

TEST(X3pReader, BlackWhiteMaskKeepsWhite) {
  cv::Mat3b mask(2, 3, cv::Vec3b(0, 0, 0));
  mask(0, 1) = mask(1, 1) = cv::Vec3b(255, 255, 255);
  std::vector<std::uint8_t> png;
  cv::imencode(".png", mask, png);
  auto r = ReadScanBytes(MakeX3p({}, SixDoubles(), {{"bindata/mask.png", png}}));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(std::isnan(r->values(0, 0)));
  EXPECT_FLOAT_EQ(r->values(0, 1), -2.0f);
  EXPECT_FLOAT_EQ(r->values(1, 1), 10.0f);
  EXPECT_NEAR(r->MissingFraction(), 4.0 / 6.0, 1e-12);
}

TEST(X3pReader, AmbiguousMaskWithoutBackgroundIsRejected) {
  cv::Mat3b mask(2, 3, cv::Vec3b(0, 0, 0));
  mask(0, 1) = cv::Vec3b(10, 200, 30);
  std::vector<std::uint8_t> png;
  cv::imencode(".png", mask, png);
  ExpectError(ReadScanBytes(MakeX3p({}, SixDoubles(), {{"bindata/mask.png", png}})),
              StatusCode::kInvalidArgument, "no Mask Background");
}

TEST(X3pReader, MaskOfWrongSizeIsRejected) {
  cv::Mat3b mask(3, 3, cv::Vec3b(255, 255, 255));
  std::vector<std::uint8_t> png;
  cv::imencode(".png", mask, png);
  ExpectError(ReadScanBytes(MakeX3p({}, SixDoubles(), {{"bindata/mask.png", png}})),
              StatusCode::kInvalidArgument, "mask.png is 3 x 3 but the data is SizeX x SizeY = 3 x 2");
}

// ---- hostile and broken inputs ----------------------------------------------

TEST(X3pHostile, EmptyAndUnknownInput) {
  ExpectError(ReadScanBytes({}), StatusCode::kInvalidArgument, "empty input");
  const auto text = Bytes("hello world");
  ExpectError(ReadScanBytes(text), StatusCode::kInvalidArgument, "unknown file format");
}

TEST(X3pHostile, TruncatedZip) {
  auto bytes = MakeX3p({}, SixDoubles());
  for (std::size_t keep : {bytes.size() / 2, bytes.size() - 10, std::size_t{30}}) {
    SCOPED_TRACE(keep);
    std::vector<std::uint8_t> cut(bytes.begin(), bytes.begin() + keep);
    ExpectError(ReadScanBytes(cut), StatusCode::kDataLoss, "not a readable zip archive");
  }
}

TEST(X3pHostile, WrongDataMd5) {
  X3pSpec spec;
  spec.md5_point_data = "0123456789abcdef0123456789abcdef";
  const auto bytes = MakeX3p(spec, SixDoubles());
  ExpectError(ReadScanBytes(bytes), StatusCode::kDataLoss,
              "but MD5ChecksumPointData says 0123456789abcdef0123456789abcdef");
  ReadOptions no_check;
  no_check.verify_md5 = false;
  EXPECT_TRUE(ReadScanBytes(bytes, no_check).ok());
}

TEST(X3pHostile, WrongMainXmlMd5) {
  const auto data = SixDoubles();
  const auto xml = Bytes(testing::MainXml({}, data));
  const auto bytes = MakeZip({{"main.xml", xml},
                              {"bindata/data.bin", data},
                              {"md5checksum.hex", Bytes("ffffffffffffffffffffffffffffffff *main.xml\n")}});
  ExpectError(ReadScanBytes(bytes), StatusCode::kDataLoss,
              "MD5 of main.xml is " + Md5Hex(xml) + " but md5checksum.hex says ffffffff");
  // Without md5checksum.hex the file is read (the checksum file is optional).
  EXPECT_TRUE(ReadScanBytes(MakeZip({{"main.xml", xml}, {"bindata/data.bin", data}})).ok());
}

TEST(X3pHostile, MalformedXml) {
  const auto data = SixDoubles();
  std::string xml = testing::MainXml({}, data);
  xml.resize(xml.size() / 2);  // unclosed elements
  ExpectError(ReadScanBytes(MakeZip({{"main.xml", Bytes(xml)}, {"bindata/data.bin", data}})),
              StatusCode::kInvalidArgument, "main.xml is not well-formed XML");
  ExpectError(ReadScanBytes(MakeZip({{"main.xml", Bytes("<html><body/></html>")}, {"bindata/data.bin", data}})),
              StatusCode::kInvalidArgument, "root element is 'html'");
  ExpectError(ReadScanBytes(MakeZip({{"bindata/data.bin", data}})), StatusCode::kInvalidArgument,
              "archive has no main.xml");
}

TEST(X3pHostile, AbsurdDimensions) {
  struct Case {
    std::string x, y;
    StatusCode code;
    std::string needle;
  };
  for (const Case& c : std::vector<Case>{
           {"0", "2", StatusCode::kInvalidArgument, "0 x 2 are not positive"},
           {"-5", "2", StatusCode::kInvalidArgument, "-5 x 2 are not positive"},
           {"100000", "2", StatusCode::kResourceExhausted, "100000 x 2 exceed max_dimension=20000"},
           {"20000", "20000", StatusCode::kResourceExhausted, "400000000 points exceed max_points=100000000"},
           {"abc", "2", StatusCode::kInvalidArgument, "SizeX='abc' is not an integer"},
           {"99999999999999999999", "2", StatusCode::kInvalidArgument, "is not an integer"},
       }) {
    SCOPED_TRACE(c.x + " x " + c.y);
    X3pSpec spec;
    spec.size_x = c.x;
    spec.size_y = c.y;
    ExpectError(ReadScanBytes(MakeX3p(spec, SixDoubles())), c.code, c.needle);
  }
}

TEST(X3pHostile, AbsurdIncrements) {
  for (const std::string inc : {"0", "-2.5e-06", "1e-12", "1e9", "nan", "inf", "0.005"}) {
    SCOPED_TRACE(inc);
    X3pSpec spec;
    spec.inc_x = inc;
    auto r = ReadScanBytes(MakeX3p(spec, SixDoubles()));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(r.status().message(), ::testing::ContainsRegex("CX.Increment")) << r.status().ToString();
  }
}

TEST(X3pHostile, UnsupportedDataType) {
  X3pSpec spec;
  spec.data_type = "Q";
  ExpectError(ReadScanBytes(MakeX3p(spec, SixDoubles())), StatusCode::kInvalidArgument,
              "CZ DataType 'Q' is not one of D, F, I, L");
}

TEST(X3pHostile, DataBinSizeMismatch) {
  auto data = SixDoubles();
  data.resize(data.size() - 8);
  X3pSpec spec;
  ExpectError(ReadScanBytes(MakeX3p(spec, data)), StatusCode::kDataLoss,
              "declares 40 bytes, expected SizeX*SizeY*8 = 3*2*8 = 48");
  spec.data_type = "F";  // 48 bytes of doubles read as floats: twice too many
  ExpectError(ReadScanBytes(MakeX3p(spec, SixDoubles())), StatusCode::kDataLoss,
              "declares 48 bytes, expected SizeX*SizeY*4 = 3*2*4 = 24");
}

TEST(X3pHostile, ZipBombRefusedBeforeInflating) {
  // 64 MiB of zeros deflate to ~64 KiB (ratio ~1000); the header matches the
  // size so that only the ratio guard can refuse it.
  X3pSpec spec;
  spec.size_x = "4096";
  spec.size_y = "2048";
  spec.md5_point_data = "";
  const std::vector<std::uint8_t> zeros(std::size_t{4096} * 2048 * 8, 0);
  const auto bomb = MakeX3p(spec, zeros);
  ASSERT_LT(bomb.size(), 1u << 20);
  ExpectError(ReadScanBytes(bomb), StatusCode::kResourceExhausted, "over max_entry_compression_ratio=200");
  // The same archive passes with a laxer ratio (the guard, not something else, refused it).
  ReadOptions lax;
  lax.limits.max_entry_compression_ratio = 10000;
  auto r = ReadScanBytes(bomb, lax);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->width(), 4096);
}

TEST(X3pHostile, UncompressedTotalLimit) {
  ReadOptions options;
  options.limits.max_uncompressed_bytes = 600;  // main.xml (~1 KB) alone exceeds it
  ExpectError(ReadScanBytes(MakeX3p({}, SixDoubles()), options), StatusCode::kResourceExhausted,
              "exceeds max_uncompressed_bytes=600");
}

TEST(X3pHostile, XmlAndFileSizeLimits) {
  const auto bytes = MakeX3p({}, SixDoubles());
  ReadOptions options;
  options.limits.max_xml_bytes = 100;
  ExpectError(ReadScanBytes(bytes, options), StatusCode::kResourceExhausted, "over max_xml_bytes=100");
  options = {};
  options.limits.max_file_bytes = 100;
  ExpectError(ReadScanBytes(bytes, options), StatusCode::kResourceExhausted, "exceeds max_file_bytes=100");
}

TEST(X3pHostile, MissingFileAndTooLargeFile) {
  auto r = ReadScanFile("/nonexistent/dir/scan.x3p");
  ExpectError(r, StatusCode::kNotFound, "no such file");
  const auto path = std::filesystem::temp_directory_path() / "ballistics_io_test_small.x3p";
  {
    const auto bytes = MakeX3p({}, SixDoubles());
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  }
  ReadOptions options;
  options.limits.max_file_bytes = 64;
  ExpectError(ReadScanFile(path, options), StatusCode::kResourceExhausted, "exceeds max_file_bytes=64");
  auto ok = ReadScanFile(path);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->original_size_bytes, std::filesystem::file_size(path));
  std::filesystem::remove(path);
}

TEST(X3pHostile, RandomCorruptionNeverCrashes) {
  // Flip random bytes of a valid archive (with a mask): every result must be a
  // value or an error Status, never a crash (run under ASan/UBSan to see more).
  X3pSpec spec;
  spec.size_x = "40";
  spec.size_y = "30";
  spec.record3_extra = "<Mask><Background>#cd7f32</Background></Mask>";
  std::vector<double> heights(40 * 30);
  for (std::size_t i = 0; i < heights.size(); ++i) heights[i] = 1e-6 * std::sin(0.1 * i);
  std::vector<std::uint8_t> png;
  cv::imencode(".png", cv::Mat3b(30, 40, cv::Vec3b(0x32, 0x7f, 0xcd)), png);
  for (const bool store : {false, true}) {
    const auto data = LittleEndian(heights);
    const std::string xml = testing::MainXml(spec, data);
    const auto valid = MakeZip({{"main.xml", Bytes(xml), store},
                                {"bindata/data.bin", data, store},
                                {"bindata/mask.png", png, store},
                                {"md5checksum.hex", Bytes(Md5Hex(Bytes(xml))), store}});
    ASSERT_TRUE(ReadScanBytes(valid).ok());
    std::mt19937 rng(store ? 7 : 11);
    std::size_t errors = 0;
    for (int trial = 0; trial < 400; ++trial) {
      auto bytes = valid;
      const int flips = 1 + trial % 4;
      for (int f = 0; f < flips; ++f) bytes[rng() % bytes.size()] ^= static_cast<std::uint8_t>(1 + rng() % 255);
      for (const bool verify : {true, false}) {
        ReadOptions options;
        options.verify_md5 = verify;
        auto r = ReadScanBytes(bytes, options);
        if (!r.ok()) {
          ++errors;
          EXPECT_NE(r.status().code(), StatusCode::kInternal) << r.status().ToString();
          EXPECT_FALSE(r.status().message().empty());
        }
      }
    }
    EXPECT_GT(errors, 100u);  // the corruption is mostly detected (CRC, MD5, XML)
  }
}

// ---- writer ------------------------------------------------------------------

Scan RandomScan(int w, int h, unsigned seed) {
  Scan s;
  s.values.create(h, w);
  std::mt19937 rng(seed);
  std::normal_distribution<float> height_um(0.f, 3.f);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) s.values(y, x) = height_um(rng);
  }
  s.values(0, 0) = kNaN;
  s.values(h - 1, w - 1) = kNaN;
  s.values(1, 0) = 1e-30f;   // tiny
  s.values(1, 1) = -4000.f;  // large
  s.pixel_um_x = 6.25;
  s.pixel_um_y = 3.125;
  s.scanner.manufacturer = "Synthetic & <Co>";  // needs XML escaping
  s.scanner.comment = "round trip";
  return s;
}

TEST(X3pWriter, RoundTripDoubleIsBitExact) {
  const Scan in = RandomScan(37, 23, 1);
  auto bytes = WriteX3pBytes(in, 'D');
  ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
  auto out = ReadScanBytes(*bytes);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  ASSERT_EQ(out->values.size(), in.values.size());
  for (int y = 0; y < in.height(); ++y) {
    for (int x = 0; x < in.width(); ++x) {
      const float a = in.values(y, x), b = out->values(y, x);
      if (std::isnan(a)) {
        EXPECT_TRUE(std::isnan(b));
      } else {
        EXPECT_EQ(std::memcmp(&a, &b, sizeof a), 0) << x << "," << y << ": " << a << " vs " << b;
      }
    }
  }
  EXPECT_NEAR(out->pixel_um_x, 6.25, 1e-12);
  EXPECT_NEAR(out->pixel_um_y, 3.125, 1e-12);
  EXPECT_EQ(out->header_length_unit, "m");
  EXPECT_EQ(out->source_data_type, "D");
  EXPECT_EQ(out->scanner.manufacturer, "Synthetic & <Co>");
}

TEST(X3pWriter, RoundTripFloatWithinOneUlp) {
  // float32 metres cannot represent every float32 µm value (see io.h); the
  // round trip is exact for most values and never off by more than one ulp.
  const Scan in = RandomScan(101, 57, 2);
  auto bytes = WriteX3pBytes(in, 'F');
  ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
  auto out = ReadScanBytes(*bytes);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(out->source_data_type, "F");
  std::size_t exact = 0, total = 0;
  for (int y = 0; y < in.height(); ++y) {
    for (int x = 0; x < in.width(); ++x) {
      const float a = in.values(y, x), b = out->values(y, x);
      if (std::isnan(a)) {
        EXPECT_TRUE(std::isnan(b));
        continue;
      }
      ++total;
      exact += a == b;
      EXPECT_TRUE(a == b || std::nextafter(a, b) == b) << a << " vs " << b;
    }
  }
  EXPECT_GT(static_cast<double>(exact) / total, 0.9);
}

TEST(X3pWriter, RejectsWhatItCannotWrite) {
  Scan s = RandomScan(4, 4, 3);
  EXPECT_EQ(WriteX3pBytes(s, 'I').status().code(), StatusCode::kInvalidArgument);
  Scan two_d = s;
  two_d.modality = Modality::kImage2d;
  EXPECT_THAT(WriteX3pBytes(two_d).status().message(), HasSubstr("only 3D"));
  Scan bad_pixel = s;
  bad_pixel.pixel_um_x = 0;
  EXPECT_THAT(WriteX3pBytes(bad_pixel).status().message(), HasSubstr("pixel size 0 um"));
  EXPECT_EQ(WriteX3pBytes(Scan{}).status().code(), StatusCode::kInvalidArgument);
}

TEST(X3pWriter, FileRoundTrip) {
  const Scan in = RandomScan(8, 5, 4);
  const auto path = std::filesystem::temp_directory_path() / "ballistics_io_writer_test.x3p";
  ASSERT_TRUE(WriteX3pFile(in, path, 'D').ok());
  auto out = ReadScanFile(path);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(out->width(), 8);
  EXPECT_EQ(out->values(2, 3), in.values(2, 3));
  std::filesystem::remove(path);
}

TEST(Hash, KnownDigests) {
  // FIPS 180-2 / RFC 1321 test vectors.
  const auto abc = Bytes("abc");
  EXPECT_EQ(Sha256Hex(abc), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Md5Hex(abc), "900150983cd24fb0d6963f7d28e17f72");
}

}  // namespace
}  // namespace ballistics
