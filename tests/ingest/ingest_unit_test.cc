// Ingest checks that need neither the database nor the reference scans.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "ballistics/ingest.h"

namespace ballistics::ingest {
namespace {

CasingMetadata Good() {
  CasingMetadata m;
  m.agency = "Test PD";
  m.case_number = "2024-001";
  m.exhibit_id = "E1";
  m.calibre = "9mm Luger";
  m.submitted_by = "tech1";
  return m;
}

TEST(ValidateMetadata, AcceptsAWellFormedRecord) {
  EXPECT_TRUE(ValidateMetadata(Good()).ok());
  CasingMetadata m = Good();
  for (const char* t : {"2024-05-01", "2024-05-01T10:00", "2024-05-01T10:00:00Z", "2024-05-01 10:00:00.25+02:00"}) {
    m.captured_at = t;
    EXPECT_TRUE(ValidateMetadata(m).ok()) << t;
  }
}

TEST(ValidateMetadata, CaptureDeviceIsOptionalButChecked) {
  CasingMetadata m = Good();
  m.capture_device = "";
  EXPECT_TRUE(ValidateMetadata(m).ok());
  m.capture_device = "Sensofar S neox, SN 1234";
  EXPECT_TRUE(ValidateMetadata(m).ok());
  m.capture_device = "scanner\n2";
  Status s = ValidateMetadata(m);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("capture device"), std::string::npos) << s.ToString();
  m.capture_device = std::string(kMaxMetadataChars + 1, 'x');
  EXPECT_EQ(ValidateMetadata(m).code(), StatusCode::kInvalidArgument);
}

TEST(ValidateMetadata, RejectsMissingFieldsNamingThem) {
  struct Case {
    std::string CasingMetadata::*field;
    const char* name;
  };
  for (const Case& c : {Case{&CasingMetadata::agency, "agency"}, Case{&CasingMetadata::case_number, "case number"},
                        Case{&CasingMetadata::exhibit_id, "exhibit id"}, Case{&CasingMetadata::calibre, "calibre"},
                        Case{&CasingMetadata::submitted_by, "submitted by"}}) {
    CasingMetadata m = Good();
    m.*c.field = "   ";
    Status s = ValidateMetadata(m);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << c.name;
    EXPECT_NE(s.message().find(c.name), std::string::npos) << s.ToString();
  }
}

TEST(ValidateMetadata, RejectsBadDatesControlCharsAndLongText) {
  CasingMetadata m = Good();
  for (const char* t : {"yesterday", "2024-13-01", "2024-05-01T25:00", "01/05/2024"}) {
    m.captured_at = t;
    Status s = ValidateMetadata(m);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << t;
    EXPECT_NE(s.message().find(t), std::string::npos) << s.ToString();
  }
  m = Good();
  m.exhibit_id = "E1\nDROP";
  EXPECT_EQ(ValidateMetadata(m).code(), StatusCode::kInvalidArgument);
  m = Good();
  m.calibre = std::string(kMaxMetadataChars + 1, 'x');
  EXPECT_EQ(ValidateMetadata(m).code(), StatusCode::kInvalidArgument);
  m = Good();
  m.firearm_id = 0;
  EXPECT_EQ(ValidateMetadata(m).code(), StatusCode::kInvalidArgument);
}

TEST(NormalizedMetadata, TrimsAndCollapsesCalibreSpaces) {
  CasingMetadata m = Good();
  m.agency = "  Test PD ";
  m.calibre = " 9mm   Luger\t";
  const CasingMetadata n = NormalizedMetadata(m);
  EXPECT_EQ(n.agency, "Test PD");
  EXPECT_EQ(n.calibre, "9mm Luger");
}

TEST(PrepareScan, RejectsNaNAndImplausiblePixelSize) {
  // 0.02: a pixel size given in mm where um was meant.
  for (double px : {std::numeric_limits<double>::quiet_NaN(), 0.0, -3.0, 0.001, 0.02, 5000.0}) {
    PrepareOptions o;
    o.read.pixel_um = px;
    auto r = PrepareScan(std::vector<std::uint8_t>{0x89, 'P', 'N', 'G'}, o);
    ASSERT_FALSE(r.ok()) << px;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().ToString();
    EXPECT_NE(r.status().message().find("pixel size"), std::string::npos) << r.status().ToString();
  }
}

TEST(PrepareScan, GarbageBytesAreAClearReadError) {
  std::vector<std::uint8_t> junk(1000, 0x42);
  auto r = PrepareScan(junk);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().code(), StatusCode::kInternal);
  EXPECT_EQ(r.status().message().rfind("read: ", 0), 0u) << r.status().ToString();
}

TEST(PrepareScan, ImplausibleHeaderPixelSizeIsRejected) {
  // A well-formed X3P whose increments say 0.5 mm per point: the io stage reads
  // it (a valid surface), but no cartridge-case scan is that coarse; the header
  // was most likely written in the wrong unit.
  Scan s;
  s.values = cv::Mat1f(64, 64, 1.0f);
  s.pixel_um_x = 500.0;
  s.pixel_um_y = 500.0;
  auto bytes = WriteX3pBytes(s, 'D');
  ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
  auto r = PrepareScan(*bytes);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().ToString();
  EXPECT_NE(r.status().message().find("plausible"), std::string::npos) << r.status().ToString();
}

}  // namespace
}  // namespace ballistics::ingest
