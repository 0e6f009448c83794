// Writes the seed corpora of the fuzz targets (never committed: they are made
// at test time, partly from ../shared/data, into the build tree):
//   <out>/x3p/        X3P archives: miniatures of real shared scans + hostile ones
//   <out>/x3p_parts/  the same, as entry lists for fuzz_x3p_parts (fuzz_util.h)
//   <out>/image/      PNG and TIFF: a crop of a real NBIDE photo + hostile ones
//   <out>/requests/   UploadScanRequest / SearchRequest wire messages
// Usage: make_seeds <shared data dir> <out dir>
//
// Miniatures keep a real file's main.xml (namespace prefix, units, mask
// background, instrument record) and its mask, cropped to a small window, so
// that inputs stay small (fast executions) while starting from what real
// writers produce. The hostile inputs are the cases issue 8 lists: zip bomb,
// huge and negative dimensions, NaN/Inf/negative increments, wrong data types,
// truncation, size and checksum mismatches.
#include <tiffio.h>
#include <zip.h>

#include <array>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <pugixml.hpp>

#include "ballistics/io.h"
#include "ballistics/v1/ingest.pb.h"
#include "ballistics/v1/search.pb.h"
#include "fuzz_util.h"
#include "io/x3p_test_util.h"

namespace fs = std::filesystem;
using namespace ballistics;
using ballistics::fuzz::Part;
using ballistics::testing::Bytes;
using ballistics::testing::LittleEndian;
using ballistics::testing::MakeX3p;
using ballistics::testing::MakeZip;
using ballistics::testing::X3pSpec;
using ballistics::testing::ZipEntry;

namespace {

fs::path g_out;
int g_written = 0;

void Write(const std::string& dir, const std::string& name, const std::vector<std::uint8_t>& bytes) {
  fs::create_directories(g_out / dir);
  std::ofstream(g_out / dir / name, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  ++g_written;
}

// X3P written both as an archive and as an entry list.
void WriteX3p(const std::string& name, const std::vector<Part>& parts) {
  std::vector<ZipEntry> entries;
  for (const Part& p : parts) entries.push_back({p.name, p.bytes, false});
  Write("x3p", name + ".x3p", MakeZip(entries));
  Write("x3p_parts", name + ".parts", fuzz::EncodeParts(fuzz::kVerifyMd5 | fuzz::kDeflate, parts));
  Write("x3p_parts", name + "-nomd5.parts", fuzz::EncodeParts(0, parts));
}

std::vector<std::uint8_t> ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::map<std::string, std::vector<std::uint8_t>> Unzip(const std::vector<std::uint8_t>& bytes) {
  std::map<std::string, std::vector<std::uint8_t>> out;
  zip_source_t* src = zip_source_buffer_create(bytes.data(), bytes.size(), 0, nullptr);
  zip_t* z = zip_open_from_source(src, ZIP_RDONLY, nullptr);
  if (z == nullptr) {
    zip_source_free(src);
    return out;
  }
  for (zip_int64_t i = 0; i < zip_get_num_entries(z, 0); ++i) {
    zip_stat_t st;
    if (zip_stat_index(z, i, 0, &st) != 0 || st.size == 0) continue;
    std::vector<std::uint8_t> data(st.size);
    zip_file_t* f = zip_fopen_index(z, i, 0);
    if (f == nullptr) continue;
    zip_fread(f, data.data(), data.size());
    zip_fclose(f);
    out[st.name] = std::move(data);
  }
  zip_discard(z);
  return out;
}

pugi::xml_node FindLocal(pugi::xml_node root, const std::string& local) {
  return root.find_node([&](pugi::xml_node n) {
    std::string name = n.name();
    const auto colon = name.rfind(':');
    return (colon == std::string::npos ? name : name.substr(colon + 1)) == local;
  });
}

// A real X3P cut down to n x n points with fresh checksums: either a window
// (step 0: full resolution, a piece of the breech face) or the whole casing
// decimated to every step-th point with the increments scaled to match (so
// that the preprocessing still finds the primer and runs to the end).
bool Miniature(const fs::path& file, int n, int step, std::vector<Part>& parts) {
  auto entries = Unzip(ReadFile(file));
  if (!entries.count("main.xml")) return false;
  pugi::xml_document doc;
  if (!doc.load_buffer(entries["main.xml"].data(), entries["main.xml"].size())) return false;
  pugi::xml_node sx = FindLocal(doc, "SizeX"), sy = FindLocal(doc, "SizeY");
  pugi::xml_node link = FindLocal(doc, "PointDataLink");
  pugi::xml_node cz = FindLocal(doc, "CZ");
  const int w = sx.text().as_int(), h = sy.text().as_int();
  const std::string dtype = FindLocal(cz, "DataType").child_value();
  const int bpv = dtype == "D" ? 8 : dtype == "F" || dtype == "L" ? 4 : 2;
  const std::string data_name = link.child_value();
  if (w < n || h < n || !entries.count(data_name)) return false;
  const auto& data = entries[data_name];
  if (data.size() != static_cast<std::size_t>(w) * h * bpv) return false;
  // A window on the breech-face annulus, left of the centre (the centre is
  // the firing-pin hole: NaN in the processed scans).
  const int stride = step > 0 ? step : 1;
  if (step > 0) n = std::min(w, h) / step;
  const int x0 = step > 0 ? 0 : std::max(0, w / 4 - n / 2), y0 = step > 0 ? 0 : h / 2 - n / 2;
  std::vector<std::uint8_t> cut;
  for (int y = y0; y < y0 + n * stride; y += stride) {
    for (int x = x0; x < x0 + n * stride; x += stride) {
      const auto* p = data.data() + (static_cast<std::size_t>(y) * w + x) * bpv;
      cut.insert(cut.end(), p, p + bpv);
    }
  }
  sx.text().set(n);
  sy.text().set(n);
  if (step > 0) {
    for (const char* axis : {"CX", "CY"}) {
      pugi::xml_node inc = FindLocal(FindLocal(doc, axis), "Increment");
      inc.text().set(inc.text().as_double() * step);
    }
  }
  if (pugi::xml_node md5 = FindLocal(doc, "MD5ChecksumPointData")) md5.text().set(Md5Hex(cut).c_str());
  std::ostringstream xml;
  doc.save(xml, "", pugi::format_raw);
  const std::string xml_text = xml.str();
  parts = {{"main.xml", Bytes(xml_text)}, {data_name, cut}};
  if (entries.count("md5checksum.hex")) parts.push_back({"md5checksum.hex", Bytes(Md5Hex(Bytes(xml_text)) + " *main.xml\n")});
  if (entries.count("bindata/mask.png")) {
    const auto& png = entries["bindata/mask.png"];
    cv::Mat mask = cv::imdecode(cv::Mat(1, static_cast<int>(png.size()), CV_8U, const_cast<std::uint8_t*>(png.data())),
                                cv::IMREAD_UNCHANGED);
    if (mask.cols == w && mask.rows == h) {
      std::vector<std::uint8_t> out;
      cv::Mat cut_mask(n, n, mask.type());
      for (int y = 0; y < n; ++y) {
        for (int x = 0; x < n; ++x) {
          std::memcpy(cut_mask.ptr(y, x), mask.ptr(y0 + y * stride, x0 + x * stride), mask.elemSize());
        }
      }
      cv::imencode(".png", cut_mask, out);
      parts.push_back({"bindata/mask.png", out});
    }
  }
  return true;
}

std::vector<Part> SyntheticParts(const X3pSpec& spec, const std::vector<std::uint8_t>& data,
                                 std::vector<Part> extra = {}) {
  const std::string xml = testing::MainXml(spec, data);
  std::vector<Part> parts = {{"main.xml", Bytes(xml)},
                             {"bindata/data.bin", data},
                             {"md5checksum.hex", Bytes(Md5Hex(Bytes(xml)) + " *main.xml\n")}};
  for (auto& e : extra) parts.push_back(std::move(e));
  return parts;
}

std::vector<std::uint8_t> Doubles(int n, double v) { return LittleEndian(std::vector<double>(n, v)); }

void HostileX3p() {
  const auto d6 = LittleEndian(std::vector<double>{1e-6, 2e-6, -1e-6, 0.5e-6, 0, 3e-6});
  WriteX3p("valid-3x2-D", SyntheticParts({}, d6));
  // Dimensions.
  for (auto [name, sx, sy] : {std::tuple{"huge-dims", "2147483647", "2147483647"}, {"over-max-dim", "20001", "1"},
                              {"over-max-points", "20000", "20000"}, {"zero-dims", "0", "0"},
                              {"negative-dims", "-3", "-2"}, {"int64-overflow", "9223372036854775807", "3"},
                              {"not-a-number-dims", "3.0", "2e0"}, {"empty-dims", "", ""}}) {
    X3pSpec s;
    s.size_x = sx;
    s.size_y = sy;
    WriteX3p(name, SyntheticParts(s, d6));
  }
  // Increments.
  for (auto [name, inc] : {std::tuple{"nan-increment", "NaN"}, {"inf-increment", "inf"}, {"neg-increment", "-2.5e-06"},
                           {"zero-increment", "0"}, {"tiny-increment", "1e-300"}, {"huge-increment", "1e308"},
                           {"um-increment", "2.5"}, {"hex-increment", "0x1p-18"}}) {
    X3pSpec s;
    s.inc_x = inc;
    WriteX3p(name, SyntheticParts(s, d6));
  }
  {
    X3pSpec s;
    s.inc_x = "2.5e-06";
    s.inc_y = "2.5";
    WriteX3p("mixed-units", SyntheticParts(s, d6));
  }
  // Heights: NaN, +-Inf, huge, subnormal, per data type.
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  WriteX3p("nan-inf-heights",
           SyntheticParts({}, LittleEndian(std::vector<double>{nan, inf, -inf, 1e308, -1e308, 4.9e-324})));
  {
    X3pSpec s;
    s.data_type = "F";
    WriteX3p("float-heights",
             SyntheticParts(s, LittleEndian(std::vector<float>{1e-6f, NAN, INFINITY, 3.4e38f, -1e-6f, 0})));
  }
  for (auto [type, zinc] : {std::pair{"I", "1e-9"}, {"L", "1e-9"}, {"I", "0"}, {"L", "-1"}, {"I", "NaN"}}) {
    X3pSpec s;
    s.data_type = type;
    s.z_increment = zinc;
    const bool i16 = std::string(type) == "I";
    WriteX3p(std::string("int-") + type + "-zinc-" + zinc,
             SyntheticParts(s, i16 ? LittleEndian(std::vector<std::int16_t>{1, -1, 32767, -32768, 0, 5})
                                   : LittleEndian(std::vector<std::int32_t>{1, -1, 2147483647, -2147483647 - 1, 0, 5})));
  }
  for (const char* type : {"X", "DD", "", "d"}) {
    X3pSpec s;
    s.data_type = type;
    WriteX3p(std::string("dtype-") + (*type ? type : "empty"), SyntheticParts(s, d6));
  }
  {  // Declared F (4 bytes) but 8-byte data; and short/long data.bin.
    X3pSpec s;
    s.data_type = "F";
    WriteX3p("dtype-size-mismatch", SyntheticParts(s, d6));
    WriteX3p("data-short", SyntheticParts({}, Doubles(5, 1e-6)));
    WriteX3p("data-long", SyntheticParts({}, Doubles(7, 1e-6)));
    WriteX3p("data-empty", SyntheticParts({}, {}));
  }
  {  // Checksums.
    X3pSpec s;
    s.md5_point_data = "00000000000000000000000000000000";
    WriteX3p("bad-data-md5", SyntheticParts(s, d6));
    auto parts = SyntheticParts({}, d6);
    parts[2].bytes = Bytes("zz not a digest");
    WriteX3p("bad-md5-file", parts);
  }
  {  // Missing pieces.
    auto parts = SyntheticParts({}, d6);
    WriteX3p("no-data-bin", {parts[0], parts[2]});
    WriteX3p("no-main-xml", {parts[1], parts[2]});
    X3pSpec s;
    s.root = "ISO5436";
    WriteX3p("unprefixed-root", SyntheticParts(s, d6));
    s.root = "html";
    WriteX3p("wrong-root", SyntheticParts(s, d6));
  }
  {  // Masks: wrong size, odd colours, bad background, not a PNG.
    cv::Mat3b ok(2, 3, cv::Vec3b(255, 255, 255)), big(4, 4, cv::Vec3b(255, 255, 255)), odd(2, 3, cv::Vec3b(1, 2, 3));
    ok(0, 0) = cv::Vec3b(0, 0, 0);
    std::vector<std::uint8_t> ok_png, big_png, odd_png;
    cv::imencode(".png", ok, ok_png);
    cv::imencode(".png", big, big_png);
    cv::imencode(".png", odd, odd_png);
    WriteX3p("mask-bw", SyntheticParts({}, d6, {{"bindata/mask.png", ok_png}}));
    WriteX3p("mask-wrong-size", SyntheticParts({}, d6, {{"bindata/mask.png", big_png}}));
    WriteX3p("mask-odd-colour", SyntheticParts({}, d6, {{"bindata/mask.png", odd_png}}));
    X3pSpec s;
    s.record3_extra = "<Mask><Background>#cd7f32</Background></Mask>";
    WriteX3p("mask-background", SyntheticParts(s, d6, {{"bindata/mask.png", odd_png}}));
    s.record3_extra = "<Mask><Background>cd7f32zz</Background></Mask>";
    WriteX3p("mask-bad-background", SyntheticParts(s, d6, {{"bindata/mask.png", odd_png}}));
    WriteX3p("mask-not-png", SyntheticParts({}, d6, {{"bindata/mask.png", Bytes("\x89PNG\r\n\x1a\nnope")}}));
  }
  {  // XML oddities: entity expansion, deep nesting, not XML at all.
    std::string laughs = "<?xml version=\"1.0\"?><!DOCTYPE l [<!ENTITY a \"aaaaaaaaaa\">"
                         "<!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\"><!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\">]>"
                         "<ISO5436_2>&c;</ISO5436_2>";
    WriteX3p("billion-laughs", {{"main.xml", Bytes(laughs)}, {"bindata/data.bin", d6}});
    std::string deep;
    for (int i = 0; i < 5000; ++i) deep += "<a>";
    WriteX3p("deep-xml", {{"main.xml", Bytes("<ISO5436_2>" + deep)}, {"bindata/data.bin", d6}});
    WriteX3p("not-xml", {{"main.xml", Bytes("\xff\xfe\x00<")}, {"bindata/data.bin", d6}});
  }
  {  // Zip bomb: a data.bin of 2 MiB of zeros (deflates ~1000:1), dimensions consistent with it.
    X3pSpec s;
    s.size_x = "512";
    s.size_y = "512";
    const auto zeros = Doubles(512 * 512, 0.0);
    const std::string xml = testing::MainXml(s, zeros);
    Write("x3p", "zip-bomb.x3p", MakeZip({{"main.xml", Bytes(xml)}, {"bindata/data.bin", zeros}}));
  }
  {  // Truncations of a valid archive, and a non-zip with the zip magic.
    const auto full = MakeX3p({}, d6);
    for (std::size_t cut : {std::size_t{4}, std::size_t{30}, full.size() / 2, full.size() - 1}) {
      Write("x3p", "truncated-" + std::to_string(cut) + ".x3p",
            std::vector<std::uint8_t>(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(cut)));
    }
  }
}

// --- images -------------------------------------------------------------

std::uint32_t Crc32(const std::uint8_t* p, std::size_t n) {
  std::uint32_t c = 0xffffffffu;
  for (std::size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
  }
  return c ^ 0xffffffffu;
}

void Be32(std::vector<std::uint8_t>& v, std::uint32_t x) {
  for (int i = 3; i >= 0; --i) v.push_back(static_cast<std::uint8_t>(x >> (8 * i)));
}

std::vector<std::uint8_t> Chunk(const std::string& type, const std::vector<std::uint8_t>& data) {
  std::vector<std::uint8_t> c;
  Be32(c, static_cast<std::uint32_t>(data.size()));
  c.insert(c.end(), type.begin(), type.end());
  c.insert(c.end(), data.begin(), data.end());
  Be32(c, Crc32(c.data() + 4, c.size() - 4));
  return c;
}

// Inserts a chunk right after IHDR (8 + 25 bytes).
std::vector<std::uint8_t> WithChunk(std::vector<std::uint8_t> png, const std::vector<std::uint8_t>& chunk) {
  png.insert(png.begin() + 33, chunk.begin(), chunk.end());
  return png;
}

std::vector<std::uint8_t> Phys(std::uint32_t ppu_x, std::uint32_t ppu_y, std::uint8_t unit) {
  std::vector<std::uint8_t> d;
  Be32(d, ppu_x);
  Be32(d, ppu_y);
  d.push_back(unit);
  return Chunk("pHYs", d);
}

std::vector<std::uint8_t> Encode(const cv::Mat& m, const std::string& ext, std::vector<int> params = {}) {
  std::vector<std::uint8_t> out;
  cv::imencode(ext, m, out, params);
  return out;
}

// A TIFF written by libtiff through a temporary file.
std::vector<std::uint8_t> Tiff(const cv::Mat& m, int bits, int sample_format, int compression,
                               std::optional<std::pair<float, int>> resolution) {
  const fs::path tmp = g_out / "tmp.tif";
  TIFF* t = TIFFOpen(tmp.c_str(), "w");
  const int channels = m.channels();
  TIFFSetField(t, TIFFTAG_IMAGEWIDTH, m.cols);
  TIFFSetField(t, TIFFTAG_IMAGELENGTH, m.rows);
  TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, bits);
  TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, channels);
  TIFFSetField(t, TIFFTAG_SAMPLEFORMAT, sample_format);
  TIFFSetField(t, TIFFTAG_PHOTOMETRIC, channels >= 3 ? PHOTOMETRIC_RGB : PHOTOMETRIC_MINISBLACK);
  TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
  TIFFSetField(t, TIFFTAG_COMPRESSION, compression);
  TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, 4);
  TIFFSetField(t, TIFFTAG_MAKE, "Acme");
  if (resolution) {
    TIFFSetField(t, TIFFTAG_XRESOLUTION, resolution->first);
    TIFFSetField(t, TIFFTAG_YRESOLUTION, resolution->first);
    TIFFSetField(t, TIFFTAG_RESOLUTIONUNIT, resolution->second);
  }
  cv::Mat conv;
  m.convertTo(conv, CV_MAKETYPE(bits == 8 ? CV_8U : bits == 16 ? CV_16U : CV_32F, channels));
  for (int y = 0; y < conv.rows; ++y) TIFFWriteScanline(t, conv.ptr(y), y, 0);
  TIFFClose(t);
  auto bytes = ReadFile(tmp);
  fs::remove(tmp);
  return bytes;
}

void Images(const fs::path& data) {
  cv::Mat grey;
  const fs::path photo = data / "nbide-2d" / "nbide-r-bf-118.png";
  if (fs::exists(photo)) {
    cv::Mat full = cv::imread(photo.string(), cv::IMREAD_UNCHANGED);
    if (!full.empty()) grey = full(cv::Rect(full.cols / 2 - 16, full.rows / 2 - 16, 32, 32)).clone();
  }
  if (grey.empty()) {
    grey = cv::Mat1b(32, 32);
    cv::randu(grey, 0, 255);
  }
  cv::Mat rgb, rgba, grey16;
  cv::cvtColor(grey, rgb, cv::COLOR_GRAY2BGR);
  cv::cvtColor(grey, rgba, cv::COLOR_GRAY2BGRA);
  grey.convertTo(grey16, CV_16U, 257);
  const auto png = Encode(grey, ".png");
  Write("image", "nbide-crop.png", png);
  Write("image", "nbide-crop-phys.png", WithChunk(png, Phys(395257, 395257, 1)));  // 2.53 um
  Write("image", "phys-zero.png", WithChunk(png, Phys(0, 0, 1)));
  Write("image", "phys-unitless.png", WithChunk(png, Phys(1000, 1000, 0)));
  Write("image", "phys-72dpi.png", WithChunk(png, Phys(2835, 2835, 1)));
  Write("image", "rgb.png", Encode(rgb, ".png"));
  Write("image", "rgba.png", Encode(rgba, ".png"));
  Write("image", "grey16.png", Encode(grey16, ".png"));
  Write("image", "bilevel.png", Encode(grey, ".png", {cv::IMWRITE_PNG_BILEVEL, 1}));
  {  // IHDR edits: huge / zero dimensions, bad depth and colour type (CRC fixed).
    auto ihdr = [&](std::uint32_t w, std::uint32_t h, std::uint8_t depth, std::uint8_t colour) {
      std::vector<std::uint8_t> d;
      Be32(d, w);
      Be32(d, h);
      d.insert(d.end(), {depth, colour, 0, 0, 0});
      auto out = png;
      const auto c = Chunk("IHDR", d);
      std::copy(c.begin(), c.end(), out.begin() + 8);
      return out;
    };
    Write("image", "ihdr-huge.png", ihdr(0x7fffffff, 0x7fffffff, 8, 0));
    Write("image", "ihdr-max-points.png", ihdr(20000, 5000, 16, 6));
    Write("image", "ihdr-zero.png", ihdr(0, 32, 8, 0));
    Write("image", "ihdr-depth1.png", ihdr(32, 32, 1, 0));
    Write("image", "ihdr-colour7.png", ihdr(32, 32, 8, 7));
    Write("image", "ihdr-mismatch.png", ihdr(64, 64, 8, 0));
  }
  Write("image", "truncated.png", std::vector<std::uint8_t>(png.begin(), png.begin() + 40));
  Write("image", "tiff-grey8-cm.tif", Tiff(grey, 8, SAMPLEFORMAT_UINT, COMPRESSION_NONE, std::pair{4000.f, RESUNIT_CENTIMETER}));
  Write("image", "tiff-grey16-inch-lzw.tif", Tiff(grey, 16, SAMPLEFORMAT_UINT, COMPRESSION_LZW, std::pair{10000.f, RESUNIT_INCH}));
  Write("image", "tiff-rgb-deflate.tif", Tiff(rgb, 8, SAMPLEFORMAT_UINT, COMPRESSION_ADOBE_DEFLATE, std::nullopt));
  Write("image", "tiff-rgba-packbits.tif", Tiff(rgba, 8, SAMPLEFORMAT_UINT, COMPRESSION_PACKBITS, std::pair{72.f, RESUNIT_INCH}));
  Write("image", "tiff-float.tif", Tiff(grey, 32, SAMPLEFORMAT_IEEEFP, COMPRESSION_NONE, std::nullopt));
  Write("image", "tiff-res-none.tif", Tiff(grey, 8, SAMPLEFORMAT_UINT, COMPRESSION_NONE, std::pair{100.f, RESUNIT_NONE}));
  {  // Forged size: a 20000 x 5000 RGBA16 header over one deflated row.
    const fs::path tmp = g_out / "tmp.tif";
    TIFF* tif = TIFFOpen(tmp.c_str(), "w");
    TIFFSetField(tif, TIFFTAG_IMAGEWIDTH, 20000);
    TIFFSetField(tif, TIFFTAG_IMAGELENGTH, 5000);
    TIFFSetField(tif, TIFFTAG_BITSPERSAMPLE, 16);
    TIFFSetField(tif, TIFFTAG_SAMPLESPERPIXEL, 4);
    TIFFSetField(tif, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_RGB);
    const std::uint16_t extra = EXTRASAMPLE_UNASSALPHA;
    TIFFSetField(tif, TIFFTAG_EXTRASAMPLES, 1, &extra);
    TIFFSetField(tif, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
    TIFFSetField(tif, TIFFTAG_COMPRESSION, COMPRESSION_ADOBE_DEFLATE);
    TIFFSetField(tif, TIFFTAG_ROWSPERSTRIP, 5000);
    std::vector<std::uint16_t> row(20000 * 4, 0);
    TIFFWriteScanline(tif, row.data(), 0, 0);
    TIFFClose(tif);
    Write("image", "tiff-forged-size.tif", ReadFile(tmp));
    fs::remove(tmp);
  }
  const auto t = Tiff(grey, 8, SAMPLEFORMAT_UINT, COMPRESSION_NONE, std::pair{4000.f, RESUNIT_CENTIMETER});
  Write("image", "tiff-truncated.tif", std::vector<std::uint8_t>(t.begin(), t.begin() + static_cast<std::ptrdiff_t>(t.size() / 2)));
}

// --- requests -----------------------------------------------------------

void Request(const std::string& name, std::uint8_t which, const google::protobuf::Message& m) {
  std::vector<std::uint8_t> out{which};
  const std::string wire = m.SerializeAsString();
  out.insert(out.end(), wire.begin(), wire.end());
  Write("requests", name, out);
}

void Requests() {
  v1::UploadScanRequest up;
  auto* md = up.mutable_header()->mutable_metadata();
  md->set_agency("agency-a");
  md->set_case_number("2024-0001");
  md->set_exhibit_id("E1");
  md->set_calibre("9mm  Luger ");
  md->set_source(v1::CRIME_SCENE);
  md->mutable_captured_at()->set_seconds(1714557600);
  md->set_pixel_um(2.5);
  up.mutable_header()->set_client_request_id("req-1");
  up.mutable_header()->set_total_bytes(1234);
  Request("upload-valid", 0, up);
  md->set_case_number(std::string(201, 'x'));
  Request("upload-long-case", 0, up);
  md->set_case_number("a\x01" "b");
  Request("upload-control-char", 0, up);
  md->set_case_number("   ");
  Request("upload-blank", 0, up);
  md->set_case_number("2024-0001");
  md->mutable_captured_at()->set_seconds(std::numeric_limits<std::int64_t>::max());
  Request("upload-time-max", 0, up);
  md->mutable_captured_at()->set_seconds(-62135596800 - 86400);
  Request("upload-time-year0", 0, up);
  md->mutable_captured_at()->set_seconds(0);
  md->set_pixel_um(std::numeric_limits<double>::quiet_NaN());
  Request("upload-pixel-nan", 0, up);
  md->set_pixel_um(-1);
  Request("upload-pixel-negative", 0, up);
  md->set_pixel_um(1e300);
  Request("upload-pixel-huge", 0, up);
  md->set_source(static_cast<v1::CasingSource>(99));
  Request("upload-source-unknown", 0, up);

  v1::SearchRequest s;
  s.set_casing_id(42);
  s.set_top_n(10);
  s.set_rerank_k(50);
  s.mutable_filter()->add_kinds(v1::BREECH_FACE);
  s.mutable_filter()->add_calibres("9mm Luger");
  s.mutable_filter()->add_agencies("agency-a");
  s.mutable_filter()->add_sources(v1::TEST_FIRE);
  s.mutable_filter()->mutable_captured_after()->set_seconds(0);
  s.mutable_filter()->mutable_captured_before()->set_seconds(-1);
  Request("search-valid", 1, s);
  s.set_top_n(-1);
  Request("search-top-negative", 1, s);
  s.set_top_n(201);
  Request("search-top-over", 1, s);
  s.set_top_n(0);
  s.set_rerank_k(std::numeric_limits<std::int32_t>::max());
  Request("search-rerank-max", 1, s);
  s.set_rerank_k(0);
  s.mutable_filter()->add_kinds(static_cast<v1::SignatureKind>(7));
  Request("search-kind-unknown", 1, s);
  Write("requests", "garbage", {1, 0xff, 0xff, 0xff, 0xff, 0x0f});
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: make_seeds <shared data dir> <out dir>\n";
    return 2;
  }
  const fs::path data = argv[1];
  g_out = argv[2];
  fs::create_directories(g_out);
  TIFFSetWarningHandler(nullptr);
  // Real scans: every distinct writer/unit/mask convention in shared/data.
  int real = 0;
  for (const char* f : {"fadul/fadul-1-1.x3p", "dfsc/K013sA1.x3p", "dfsc/K013sA1_processed.x3p",
                        "dfsc/K002eG2_original.x3p", "dfsc/K011sR1.x3p", "dfsc/K013pC1.x3p"}) {
    std::vector<Part> window, whole;
    if (fs::exists(data / f) && Miniature(data / f, 24, 0, window)) {
      WriteX3p("real-" + fs::path(f).stem().string(), window);
      ++real;
      // The whole casing at the smallest step whose heights fit 16 KiB
      // (about 40 x 40 doubles or 60 x 60 floats).
      for (int step : {10, 14, 20, 28, 40, 56}) {
        if (Miniature(data / f, 0, step, whole) && whole[1].bytes.size() <= 16384) {
          WriteX3p("real-" + fs::path(f).stem().string() + "-whole", whole);
          break;
        }
      }
    } else {
      std::cerr << "make_seeds: cannot use " << (data / f) << "\n";
    }
  }
  if (real == 0) {
    std::cerr << "make_seeds: no real scan under " << data << " (tests need ../shared/data)\n";
    return 1;
  }
  HostileX3p();
  Images(data);
  Requests();
  std::cout << "make_seeds: wrote " << g_written << " seeds (" << real << " from real scans) to " << g_out << "\n";
  return 0;
}
