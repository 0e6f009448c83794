// Normalize() on the shared reference scans (label realdata: ../shared/data must exist).
#include <zip.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "ballistics/io.h"
#include "ballistics/preprocess.h"
#include "test_paths.h"

namespace ballistics {
namespace {

namespace fs = std::filesystem;

fs::path Data() { return testing::SharedDataDir(); }

std::vector<fs::path> FilesUnder(const fs::path& dir, const std::string& ext) {
  std::vector<fs::path> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ext) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

StatusOr<Scan> Read(const fs::path& p) {
  ReadOptions o;
  if (p.extension() == ".png") o.pixel_um = 2.53;  // NBIDE ring-light images (data README)
  return ReadScanFile(p, o);
}

// A copy of an X3P container without bindata/mask.png: the scan as it came
// off the scanner, before a person painted the breech-face region. Written
// with libzip into a temporary file; the io stage then reads it as usual.
fs::path WithoutMask(const fs::path& src) {
  const fs::path dst = fs::temp_directory_path() / ("nomask_" + std::to_string(::getpid()) + "_" +
                                                    src.filename().string());
  int err = 0;
  zip_t* in = zip_open(src.c_str(), ZIP_RDONLY, &err);
  EXPECT_NE(in, nullptr) << src;
  zip_t* out = zip_open(dst.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &err);
  EXPECT_NE(out, nullptr) << dst;
  if (in == nullptr || out == nullptr) return dst;
  std::vector<std::vector<char>> keep;  // buffers live until zip_close
  const zip_int64_t n = zip_get_num_entries(in, 0);
  keep.reserve(static_cast<std::size_t>(n));
  for (zip_int64_t i = 0; i < n; ++i) {
    const std::string name = zip_get_name(in, i, 0);
    if (name == "bindata/mask.png") continue;
    if (!name.empty() && name.back() == '/') {
      zip_dir_add(out, name.c_str(), ZIP_FL_ENC_UTF_8);
      continue;
    }
    zip_stat_t st;
    zip_stat_index(in, i, 0, &st);
    keep.emplace_back(st.size);
    zip_file_t* f = zip_fopen_index(in, i, 0);
    EXPECT_EQ(zip_fread(f, keep.back().data(), st.size), static_cast<zip_int64_t>(st.size));
    zip_fclose(f);
    zip_source_t* s = zip_source_buffer(out, keep.back().data(), keep.back().size(), 0);
    EXPECT_GE(zip_file_add(out, name.c_str(), s, ZIP_FL_ENC_UTF_8), 0);
  }
  EXPECT_EQ(zip_close(out), 0);
  zip_discard(in);
  return dst;
}

TEST(PreprocessRealData, EveryReferenceScanNormalizes) {
  std::vector<fs::path> files = FilesUnder(Data(), ".x3p");
  for (const fs::path& p : FilesUnder(Data(), ".png")) files.push_back(p);
  ASSERT_GE(files.size(), 55u) << "reference data missing under " << Data();
  for (const fs::path& p : files) {
    SCOPED_TRACE(p.string());
    const StatusOr<Scan> scan = Read(p);
    ASSERT_TRUE(scan.ok()) << scan.status().ToString();
    const StatusOr<NormalizedCasing> c = Normalize(*scan);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    const Signature& bf = c->breech_face;
    EXPECT_EQ(bf.pipeline_version, kPipelineVersion);
    EXPECT_DOUBLE_EQ(bf.pixel_um, 6.25);
    // Breech faces of 9 mm primers: a few mm^2 of marks on a ~3.4 mm square.
    EXPECT_GT(bf.quality.valid_area_mm2, 1.5);
    EXPECT_LT(bf.quality.valid_area_mm2, 8.0);
    EXPECT_GT(bf.width(), 400);
    EXPECT_LT(bf.width(), 700);
    EXPECT_GT(bf.quality.rms_height, 0.0);
  }
}

TEST(PreprocessRealData, FadulScansAreAlreadyCropped) {
  for (const fs::path& p : FilesUnder(Data() / "fadul", ".x3p")) {
    SCOPED_TRACE(p.string());
    const StatusOr<Scan> scan = Read(p);
    ASSERT_TRUE(scan.ok());
    const StatusOr<NormalizedCasing> c = Normalize(*scan);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    EXPECT_TRUE(c->segmentation.already_cropped);
    EXPECT_FALSE(c->firing_pin.has_value());
    // Same 6.25 µm grid: no resampling, the valid points are the file's
    // less a few spikes beyond the 20 µm select band (< 0.5 %).
    const double file_mm2 = (1.0 - scan->MissingFraction()) * scan->values.total() * 6.25 * 6.25 * 1e-6;
    EXPECT_LE(c->breech_face.quality.valid_area_mm2, file_mm2 + 1e-9);
    EXPECT_GT(c->breech_face.quality.valid_area_mm2, 0.995 * file_mm2);
    // The files are cropped to the annulus' outer circle (some are crescents
    // open at the top): its centre is near the grid centre, its radius half the width.
    const cv::Point2d grid_centre((scan->width() - 1) / 2.0, (scan->height() - 1) / 2.0);
    EXPECT_LT(cv::norm(c->segmentation.primer_center_px - grid_centre), 15) << c->segmentation.primer_center_px;
    EXPECT_NEAR(c->segmentation.primer_radius_px, scan->width() / 2.0, 15);
    EXPECT_GT(c->segmentation.firing_pin_radius_px, 100);
  }
}

TEST(PreprocessRealData, CroppedDfscScansAreDetected) {
  // With their masks applied (io stage), every DFSC file is a BF annulus.
  for (const fs::path& p : FilesUnder(Data() / "dfsc", ".x3p")) {
    SCOPED_TRACE(p.string());
    const StatusOr<Scan> scan = Read(p);
    ASSERT_TRUE(scan.ok());
    const StatusOr<NormalizedCasing> c = Normalize(*scan);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    EXPECT_TRUE(c->segmentation.already_cropped);
  }
}

// The two whole-primer Cadre scans without their masks: the raw path must
// find the BF plane and the firing-pin crater. The crater is the deepest bowl
// near the field centre (~0.5 mm radius, ~100 µm deep in the height profile);
// the expected centres are where the segmentation put them when we checked
// its overlay picture by eye (circle on the crater rim): K013sA1 ~(359, 391)
// px, K013sA2-2 ~(351, 320) px at 7.37 µm. 15 px = 110 µm of slack.
TEST(PreprocessRealData, RawDfscScansGetBreechFaceAndFiringPin) {
  struct Case {
    const char* file;
    cv::Point2d fp_center_px;
  };
  for (const Case& k : {Case{"K013sA1.x3p", {359, 391}}, Case{"K013sA2-2.x3p", {351, 320}}}) {
    SCOPED_TRACE(k.file);
    const fs::path raw = WithoutMask(Data() / "dfsc" / k.file);
    const StatusOr<Scan> scan = ReadScanFile(raw);
    fs::remove(raw);
    ASSERT_TRUE(scan.ok()) << scan.status().ToString();
    ASSERT_FALSE(scan->had_mask);
    EXPECT_LT(scan->MissingFraction(), 0.01);  // a full field, nothing cropped
    const StatusOr<NormalizedCasing> c = Normalize(*scan);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    const Segmentation& s = c->segmentation;
    EXPECT_FALSE(s.already_cropped);
    ASSERT_TRUE(s.firing_pin_found);
    ASSERT_TRUE(c->firing_pin.has_value());
    EXPECT_LT(cv::norm(s.firing_pin_center_px - k.fp_center_px), 15.0) << s.firing_pin_center_px;
    const double fp_r_um = s.firing_pin_radius_px * scan->pixel_um_x;
    EXPECT_GT(fp_r_um, 350);
    EXPECT_LT(fp_r_um, 800);
    // The BF contact region: radius 1.4-1.9 mm (the lab's mask: ~1.55 mm).
    const double primer_r_um = s.primer_radius_px * scan->pixel_um_x;
    EXPECT_GT(primer_r_um, 1400);
    EXPECT_LT(primer_r_um, 1900);
    EXPECT_GT(c->breech_face.quality.valid_area_mm2, 2.0);
  }
}

TEST(PreprocessRealData, NbidePrimerAndFiringPinFound) {
  for (const fs::path& p : FilesUnder(Data() / "nbide-2d", ".png")) {
    SCOPED_TRACE(p.string());
    const StatusOr<Scan> scan = Read(p);
    ASSERT_TRUE(scan.ok());
    const StatusOr<NormalizedCasing> c = Normalize(*scan);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    const Segmentation& s = c->segmentation;
    EXPECT_FALSE(s.already_cropped);
    // The bright primer face: ~1.85 mm radius, near the image centre (1296, 972).
    EXPECT_NEAR(s.primer_radius_px * 2.53, 1860, 120);
    EXPECT_LT(cv::norm(s.primer_center_px - cv::Point2d(1296, 972)), 60);
    // The FP crater (dark bowl, bright centre spot) lies below-left of the
    // primer centre in both images, radius ~0.77 mm.
    ASSERT_TRUE(s.firing_pin_found);
    EXPECT_NEAR(s.firing_pin_radius_px * 2.53, 770, 100);
    EXPECT_LT(cv::norm(s.firing_pin_center_px - s.primer_center_px), 0.35 * s.primer_radius_px);
    EXPECT_EQ(c->breech_face.modality, Modality::kImage2d);
  }
}

}  // namespace
}  // namespace ballistics
