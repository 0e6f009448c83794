// ISO 25178-72 (formerly ISO 5436-2) X3P reader.
//
// An X3P file is a zip archive holding
//   main.xml          header: axes (Record1), instrument (Record2), matrix size and data link (Record3)
//   bindata/data.bin  the heights, x fastest (row = y, "NW" origin: row 0 is the top), little-endian
//   bindata/mask.png  optional colour mask, one pixel per point
//   md5checksum.hex   optional MD5 of main.xml
// The archive comes from anywhere, so every size is checked against ReadLimits
// before anything is inflated, and inflated sizes are checked again.
#include <zip.h>

#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>

#include <opencv2/imgcodecs.hpp>
#include <pugixml.hpp>

#include "io_internal.h"

namespace ballistics::io_internal {
namespace {

std::string ToStr(std::uint64_t v) { return std::to_string(v); }

// ---------------------------------------------------------------------------
// Zip access through libzip, from memory.

class ZipReader {
 public:
  ZipReader(const ZipReader&) = delete;
  ZipReader& operator=(const ZipReader&) = delete;
  ~ZipReader() {
    if (zip_ != nullptr) zip_discard(zip_);
  }

  static StatusOr<std::unique_ptr<ZipReader>> Open(std::span<const std::uint8_t> bytes,
                                                   const ReadLimits& limits) {
    zip_error_t error;
    zip_error_init(&error);
    zip_source_t* source = zip_source_buffer_create(bytes.data(), bytes.size(), 0, &error);
    if (source == nullptr) {
      std::string msg = zip_error_strerror(&error);
      zip_error_fini(&error);
      return Internal("x3p: cannot wrap the bytes for libzip: " + msg);
    }
    // ZIP_CHECKCONS: also compare the central directory with the local headers,
    // which catches truncated and spliced archives up front.
    zip_t* zip = zip_open_from_source(source, ZIP_RDONLY | ZIP_CHECKCONS, &error);
    if (zip == nullptr) {
      std::string msg = zip_error_strerror(&error);
      zip_error_fini(&error);
      zip_source_free(source);
      return DataLoss("x3p: not a readable zip archive (truncated or corrupt?): " + msg);
    }
    zip_error_fini(&error);
    return std::unique_ptr<ZipReader>(new ZipReader(zip, limits));
  }

  std::optional<zip_uint64_t> Find(const std::string& name) const {
    const zip_int64_t index = zip_name_locate(zip_, name.c_str(), 0);
    if (index < 0) return std::nullopt;
    return static_cast<zip_uint64_t>(index);
  }

  StatusOr<std::uint64_t> DeclaredSize(zip_uint64_t index) {
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(zip_, index, 0, &st) != 0 || (st.valid & ZIP_STAT_SIZE) == 0) {
      return DataLoss(std::string("x3p: cannot stat zip entry: ") + zip_strerror(zip_));
    }
    return static_cast<std::uint64_t>(st.size);
  }

  // Inflates one entry whose declared size must not exceed `max_entry_bytes`
  // (`limit_name` names that limit in the message). Declared sizes are checked
  // before inflating; the inflated size is checked against the declared one.
  StatusOr<std::vector<std::uint8_t>> Read(zip_uint64_t index, std::uint64_t max_entry_bytes,
                                           std::string_view limit_name) {
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(zip_, index, 0, &st) != 0) {
      return DataLoss(std::string("x3p: cannot stat zip entry: ") + zip_strerror(zip_));
    }
    const std::string name = st.name != nullptr ? st.name : "?";
    if ((st.valid & ZIP_STAT_SIZE) == 0 || (st.valid & ZIP_STAT_COMP_SIZE) == 0) {
      return DataLoss("x3p: zip entry '" + name + "' has no declared size");
    }
    if (st.size > max_entry_bytes) {
      return ResourceExhausted("x3p: zip entry '" + name + "' declares " + ToStr(st.size) +
                               " bytes, over " + std::string(limit_name) + "=" + ToStr(max_entry_bytes));
    }
    if (inflated_ + st.size > limits_.max_uncompressed_bytes) {
      return ResourceExhausted("x3p: zip entry '" + name + "' declares " + ToStr(st.size) +
                               " bytes; with the " + ToStr(inflated_) +
                               " bytes already inflated this exceeds max_uncompressed_bytes=" +
                               ToStr(limits_.max_uncompressed_bytes));
    }
    // Zip-bomb guard: real height maps compress at most ~10:1 (float noise);
    // only entries over 1 MiB are judged so that tiny, very regular entries pass.
    if (st.size > kMiB) {
      const std::uint64_t ratio = st.comp_size == 0 ? std::numeric_limits<std::uint64_t>::max()
                                                    : st.size / st.comp_size;
      if (ratio > limits_.max_entry_compression_ratio) {
        return ResourceExhausted("x3p: zip entry '" + name + "' inflates " + ToStr(st.comp_size) + " to " +
                                 ToStr(st.size) + " bytes, compression ratio " + ToStr(ratio) +
                                 " over max_entry_compression_ratio=" +
                                 ToStr(limits_.max_entry_compression_ratio));
      }
    }
    std::unique_ptr<zip_file_t, decltype(&zip_fclose)> file(zip_fopen_index(zip_, index, 0), &zip_fclose);
    if (!file) {
      return DataLoss("x3p: cannot open zip entry '" + name + "': " + zip_strerror(zip_));
    }
    std::vector<std::uint8_t> out(static_cast<std::size_t>(st.size));
    std::uint64_t got = 0;
    while (got < st.size) {
      const zip_int64_t n = zip_fread(file.get(), out.data() + got, st.size - got);
      if (n < 0) {
        return DataLoss("x3p: zip entry '" + name + "' is corrupt: " + zip_file_strerror(file.get()));
      }
      if (n == 0) break;
      got += static_cast<std::uint64_t>(n);
    }
    if (got != st.size) {
      return DataLoss("x3p: zip entry '" + name + "' inflated to " + ToStr(got) + " bytes, header declares " +
                      ToStr(st.size));
    }
    std::uint8_t extra;
    if (zip_fread(file.get(), &extra, 1) > 0) {
      return DataLoss("x3p: zip entry '" + name + "' inflates past its declared " + ToStr(st.size) + " bytes");
    }
    inflated_ += got;
    return out;
  }

 private:
  ZipReader(zip_t* zip, const ReadLimits& limits) : zip_(zip), limits_(limits) {}
  zip_t* zip_;
  ReadLimits limits_;
  std::uint64_t inflated_ = 0;
};

// ---------------------------------------------------------------------------
// main.xml helpers. Files in the wild use a namespace prefix ("p:ISO5436_2",
// the OpenGPS writer) or none ("ISO5436", x3ptools), so elements are matched
// by their local name.

std::string_view LocalName(const char* name) {
  std::string_view n(name);
  const auto colon = n.rfind(':');
  return colon == std::string_view::npos ? n : n.substr(colon + 1);
}

pugi::xml_node Child(pugi::xml_node node, std::string_view local_name) {
  if (!node) return {};
  for (pugi::xml_node c = node.first_child(); c; c = c.next_sibling()) {
    if (c.type() == pugi::node_element && LocalName(c.name()) == local_name) return c;
  }
  return {};
}

// Child(Child(...)) along a path of local names.
pugi::xml_node Path(pugi::xml_node node, std::initializer_list<std::string_view> names) {
  for (std::string_view n : names) node = Child(node, n);
  return node;
}

std::string Trimmed(pugi::xml_node node) {
  std::string_view s = node.child_value();
  const auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return {};
  const auto last = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(first, last - first + 1));
}

std::string PathName(std::initializer_list<std::string_view> names) {
  std::string s;
  for (std::string_view n : names) s += (s.empty() ? "" : "/") + std::string(n);
  return s;
}

StatusOr<double> ParseDouble(pugi::xml_node root, std::initializer_list<std::string_view> names) {
  pugi::xml_node node = Path(root, names);
  if (!node) return InvalidArgument("x3p: main.xml: missing " + PathName(names));
  const std::string text = Trimmed(node);
  double v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(v)) {
    return InvalidArgument("x3p: main.xml: " + PathName(names) + "='" + text + "' is not a finite number");
  }
  return v;
}

StatusOr<std::int64_t> ParseInt(pugi::xml_node root, std::initializer_list<std::string_view> names) {
  pugi::xml_node node = Path(root, names);
  if (!node) return InvalidArgument("x3p: main.xml: missing " + PathName(names));
  const std::string text = Trimmed(node);
  std::int64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size()) {
    return InvalidArgument("x3p: main.xml: " + PathName(names) + "='" + text + "' is not an integer");
  }
  return v;
}

// ---------------------------------------------------------------------------
// Units.
//
// ISO 25178-72 says metres, but widely shared forensic X3P files write
// micrometres (CSAFE's conversions of Cadre TopMatch scans, e.g.
// dfsc/K013sA1.x3p: CX Increment 7.37468) next to files in metres
// (dfsc/K013sA1_processed.x3p: 7.37364e-06). The header names no unit, so it
// is inferred from the lateral increment: pixel sizes of areal tool-mark scans
// lie between ~0.05 µm (high-NA confocal) and ~100 µm (overview scans), i.e.
// 5e-8..1e-4 in metres and 0.05..100 in micrometres, three decades apart. An
// increment below 1e-3 is therefore metres, anything else micrometres; the
// resulting pixel size must then fall in [kMinPixelUm, kMaxPixelUm].
//
// Heights use the same unit as the lateral axes. Checked on every file in
// shared/data: the µm-header files have heights of a few µm (K011sR1: -7.2..6.1,
// std 1.0) up to a few hundred µm for raw scans with form (K013sA1: -237..170),
// while the metre-header files have heights around 1e-5 (fadul-1-1:
// -8.9e-6..9.7e-6). No file mixes the two, so one factor serves both axes.
constexpr double kMetreThreshold = 1e-3;
constexpr double kMinPixelUm = 0.01;
constexpr double kMaxPixelUm = 1000.0;

struct AxisUnit {
  double to_um = 1.0;
  std::string name;  // "m" or "um"
};

AxisUnit UnitOfIncrement(double increment) {
  if (increment < kMetreThreshold) return {1e6, "m"};
  return {1.0, "um"};
}

struct Header {
  std::int64_t size_x = 0, size_y = 0;
  double increment_x = 0, increment_y = 0;
  char data_type = 0;
  double z_increment = 1.0, z_offset = 0.0;
  std::string data_link;
  std::string md5_point_data;
  std::optional<std::string> mask_background;  // "#rrggbb"
  std::string checksum_file = "md5checksum.hex";
  ScannerInfo scanner;
};

std::size_t BytesPerValue(char data_type) {
  switch (data_type) {
    case 'D': return 8;
    case 'F': return 4;
    case 'L': return 4;
    case 'I': return 2;
  }
  return 0;
}

StatusOr<Header> ParseHeader(std::span<const std::uint8_t> xml, const ReadLimits& limits) {
  pugi::xml_document doc;
  // Non-validating, no DTD/entity expansion beyond the XML built-ins (pugixml
  // never fetches external entities), so main.xml cannot reach the network or disk.
  const pugi::xml_parse_result parsed = doc.load_buffer(xml.data(), xml.size());
  if (!parsed) {
    return InvalidArgument(std::string("x3p: main.xml is not well-formed XML: ") + parsed.description() +
                           " at byte " + std::to_string(parsed.offset));
  }
  pugi::xml_node root = doc.document_element();
  // "ISO5436_2" per the standard; x3ptools writes "ISO5436".
  if (!root || LocalName(root.name()).substr(0, 7) != "ISO5436") {
    return InvalidArgument(std::string("x3p: main.xml root element is '") + (root ? root.name() : "") +
                           "', expected ISO5436_2");
  }
  Header h;
  const std::string feature = Trimmed(Path(root, {"Record1", "FeatureType"}));
  if (!feature.empty() && feature != "SUR") {
    return InvalidArgument("x3p: main.xml: FeatureType '" + feature + "' is not supported (only SUR surfaces)");
  }
  for (const char* axis : {"CX", "CY"}) {
    const std::string type = Trimmed(Path(root, {"Record1", "Axes", axis, "AxisType"}));
    if (!type.empty() && type != "I") {
      return InvalidArgument(std::string("x3p: main.xml: ") + axis + " AxisType '" + type +
                             "' is not supported (only incremental axes 'I', not point lists)");
    }
  }
  BALLISTICS_ASSIGN_OR_RETURN(h.increment_x, ParseDouble(root, {"Record1", "Axes", "CX", "Increment"}));
  BALLISTICS_ASSIGN_OR_RETURN(h.increment_y, ParseDouble(root, {"Record1", "Axes", "CY", "Increment"}));
  const std::string dtype = Trimmed(Path(root, {"Record1", "Axes", "CZ", "DataType"}));
  if (dtype.size() != 1 || BytesPerValue(dtype[0]) == 0) {
    return InvalidArgument("x3p: main.xml: CZ DataType '" + dtype + "' is not one of D, F, I, L");
  }
  h.data_type = dtype[0];
  if (h.data_type == 'I' || h.data_type == 'L') {
    // Integer heights are quantized: z = Offset + Increment * raw (ISO 5436-2, CZ axis).
    BALLISTICS_ASSIGN_OR_RETURN(h.z_increment, ParseDouble(root, {"Record1", "Axes", "CZ", "Increment"}));
    if (Path(root, {"Record1", "Axes", "CZ", "Offset"})) {
      BALLISTICS_ASSIGN_OR_RETURN(h.z_offset, ParseDouble(root, {"Record1", "Axes", "CZ", "Offset"}));
    }
    if (!(h.z_increment > 0)) {
      return InvalidArgument("x3p: main.xml: CZ Increment=" + std::to_string(h.z_increment) +
                             " is not positive");
    }
  }
  BALLISTICS_ASSIGN_OR_RETURN(h.size_x, ParseInt(root, {"Record3", "MatrixDimension", "SizeX"}));
  BALLISTICS_ASSIGN_OR_RETURN(h.size_y, ParseInt(root, {"Record3", "MatrixDimension", "SizeY"}));
  if (Path(root, {"Record3", "MatrixDimension", "SizeZ"})) {
    BALLISTICS_ASSIGN_OR_RETURN(std::int64_t size_z, ParseInt(root, {"Record3", "MatrixDimension", "SizeZ"}));
    if (size_z != 1) {
      return InvalidArgument("x3p: main.xml: SizeZ=" + std::to_string(size_z) +
                             " (only single-layer surfaces, SizeZ=1, are supported)");
    }
  }
  BALLISTICS_RETURN_IF_ERROR(CheckDimensions("x3p: main.xml: SizeX x SizeY", h.size_x, h.size_y, limits));

  pugi::xml_node link = Path(root, {"Record3", "DataLink"});
  if (!link) {
    return InvalidArgument("x3p: main.xml: Record3 has no DataLink (inline DataList is not supported)");
  }
  h.data_link = Trimmed(Child(link, "PointDataLink"));
  if (h.data_link.empty()) return InvalidArgument("x3p: main.xml: DataLink has no PointDataLink");
  h.md5_point_data = Trimmed(Child(link, "MD5ChecksumPointData"));
  if (pugi::xml_node bg = Path(root, {"Record3", "Mask", "Background"})) h.mask_background = Trimmed(bg);
  if (std::string f = Trimmed(Path(root, {"Record4", "ChecksumFile"})); !f.empty()) h.checksum_file = f;

  pugi::xml_node r2 = Child(root, "Record2");
  h.scanner.capture_date = Trimmed(Child(r2, "Date"));
  h.scanner.creator = Trimmed(Child(r2, "Creator"));
  h.scanner.comment = Trimmed(Child(r2, "Comment"));
  pugi::xml_node inst = Child(r2, "Instrument");
  h.scanner.manufacturer = Trimmed(Child(inst, "Manufacturer"));
  h.scanner.model = Trimmed(Child(inst, "Model"));
  h.scanner.serial = Trimmed(Child(inst, "Serial"));
  h.scanner.version = Trimmed(Child(inst, "Version"));
  return h;
}

bool IsHexDigest(std::string_view s) {
  if (s.size() != 32) return false;
  for (char c : s) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

template <typename T>
T LoadLittleEndian(const std::uint8_t* p) {
  std::array<std::uint8_t, sizeof(T)> b;
  std::memcpy(b.data(), p, sizeof(T));
  if constexpr (std::endian::native == std::endian::big) std::reverse(b.begin(), b.end());
  T v;
  std::memcpy(&v, b.data(), sizeof(T));
  return v;
}

// data.bin -> µm heights. +-Inf is treated as missing like NaN: no instrument
// measures an infinite height, so it can only be a writer's "no data" marker.
// The same holds for a finite value whose µm height does not fit a float
// (|h| > FLT_MAX µm = 3.4e32 m; found by fuzz_x3p: 3.4e38 m in an 'F' file
// became +Inf, and converting an out-of-range double to float is undefined
// behaviour, C++20 [conv.double]).
cv::Mat1f DecodeHeights(const Header& h, std::span<const std::uint8_t> data, double to_um) {
  cv::Mat1f values(static_cast<int>(h.size_y), static_cast<int>(h.size_x));
  const std::size_t bpv = BytesPerValue(h.data_type);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int y = 0; y < values.rows; ++y) {
    float* row = values[y];
    const std::uint8_t* src = data.data() + static_cast<std::size_t>(y) * values.cols * bpv;
    for (int x = 0; x < values.cols; ++x, src += bpv) {
      double v = 0;
      switch (h.data_type) {
        case 'D': v = LoadLittleEndian<double>(src); break;
        case 'F': v = LoadLittleEndian<float>(src); break;
        case 'L': v = h.z_offset + h.z_increment * LoadLittleEndian<std::int32_t>(src); break;
        case 'I': v = h.z_offset + h.z_increment * LoadLittleEndian<std::int16_t>(src); break;
      }
      const double um = v * to_um;
      row[x] = std::isfinite(um) && std::abs(um) <= std::numeric_limits<float>::max() ? static_cast<float>(um) : nan;
    }
  }
  return values;
}

StatusOr<std::array<std::uint8_t, 3>> ParseColour(const std::string& text) {
  // "#rrggbb" as x3ptools writes it.
  if (text.size() != 7 || text[0] != '#' || !std::all_of(text.begin() + 1, text.end(), [](char c) {
        return std::isxdigit(static_cast<unsigned char>(c));
      })) {
    return InvalidArgument("x3p: main.xml: Mask Background '" + text + "' is not a #rrggbb colour");
  }
  std::array<std::uint8_t, 3> rgb;
  for (int i = 0; i < 3; ++i) rgb[i] = static_cast<std::uint8_t>(std::stoi(text.substr(1 + 2 * i, 2), nullptr, 16));
  return rgb;
}

// Applies bindata/mask.png: points outside the kept region become NaN.
//
// What the colours mean was read off the shared files, not assumed:
// - With Record3/Mask/Background declared (x3ptools' convention, default
//   #cd7f32), the background colour is the un-annotated surface and every
//   other colour is an annotated region. In dfsc/K002eG2_original.x3p and
//   K227iG3_original.x3p the points painted #1f376c are exactly the points
//   that are NaN in the authors' own *_processed.x3p, while every background
//   point kept its value bit for bit. So: background = kept, annotated = removed.
// - Without a declared Background, a black/white mask is a plain
//   region-of-interest mask: in dfsc/K013sA1.x3p the white pixels form the
//   flat breech-face annulus (firing-pin crater and case head are black), and
//   its bounding box (443 x 440 px) matches the crop of K013sA1_processed.x3p
//   (416 x 423). So: white = kept, black = removed.
// - Any other mask without a declared Background is ambiguous and rejected.
Status ApplyMask(std::span<const std::uint8_t> png, const Header& h, const ReadLimits& limits,
                 cv::Mat1f& values) {
  BALLISTICS_ASSIGN_OR_RETURN(PngHeader ph, ParsePngHeader(png));
  BALLISTICS_RETURN_IF_ERROR(CheckDimensions("x3p: bindata/mask.png", ph.width, ph.height, limits));
  if (static_cast<std::int64_t>(ph.width) != h.size_x || static_cast<std::int64_t>(ph.height) != h.size_y) {
    return InvalidArgument("x3p: bindata/mask.png is " + std::to_string(ph.width) + " x " +
                           std::to_string(ph.height) + " but the data is SizeX x SizeY = " +
                           std::to_string(h.size_x) + " x " + std::to_string(h.size_y));
  }
  BALLISTICS_RETURN_IF_ERROR(CheckPngPayload(png, ph).WithContext("x3p: bindata/mask.png"));
  cv::Mat raw(1, static_cast<int>(png.size()), CV_8U, const_cast<std::uint8_t*>(png.data()));
  cv::Mat3b bgr = cv::imdecode(raw, cv::IMREAD_COLOR);
  if (bgr.empty()) return DataLoss("x3p: bindata/mask.png cannot be decoded");
  if (bgr.cols != values.cols || bgr.rows != values.rows) {
    return InvalidArgument("x3p: bindata/mask.png decodes to " + std::to_string(bgr.cols) + " x " +
                           std::to_string(bgr.rows) + ", data is " + std::to_string(values.cols) + " x " +
                           std::to_string(values.rows));
  }
  const float nan = std::numeric_limits<float>::quiet_NaN();
  if (h.mask_background) {
    BALLISTICS_ASSIGN_OR_RETURN(auto rgb, ParseColour(*h.mask_background));
    const cv::Vec3b keep(rgb[2], rgb[1], rgb[0]);
    for (int y = 0; y < values.rows; ++y) {
      for (int x = 0; x < values.cols; ++x) {
        if (bgr(y, x) != keep) values(y, x) = nan;
      }
    }
    return Status::Ok();
  }
  const cv::Vec3b white(255, 255, 255), black(0, 0, 0);
  for (int y = 0; y < values.rows; ++y) {
    for (int x = 0; x < values.cols; ++x) {
      const cv::Vec3b c = bgr(y, x);
      if (c != white && c != black) {
        return InvalidArgument("x3p: bindata/mask.png has colour (" + std::to_string(c[2]) + "," +
                               std::to_string(c[1]) + "," + std::to_string(c[0]) +
                               ") at x=" + std::to_string(x) + " y=" + std::to_string(y) +
                               " but main.xml declares no Mask Background: cannot tell kept from removed "
                               "regions (only black/white masks are read without one)");
      }
    }
  }
  for (int y = 0; y < values.rows; ++y) {
    for (int x = 0; x < values.cols; ++x) {
      if (bgr(y, x) != white) values(y, x) = nan;
    }
  }
  return Status::Ok();
}

}  // namespace

StatusOr<Scan> ReadX3p(std::span<const std::uint8_t> bytes, const ReadOptions& options) {
  const ReadLimits& limits = options.limits;
  BALLISTICS_ASSIGN_OR_RETURN(std::unique_ptr<ZipReader> zip, ZipReader::Open(bytes, limits));

  const auto xml_index = zip->Find("main.xml");
  if (!xml_index) return InvalidArgument("x3p: archive has no main.xml");
  BALLISTICS_ASSIGN_OR_RETURN(std::vector<std::uint8_t> xml,
                              zip->Read(*xml_index, limits.max_xml_bytes, "max_xml_bytes"));
  BALLISTICS_ASSIGN_OR_RETURN(Header h, ParseHeader(xml, limits));

  // md5checksum.hex: "<32 hex digits>" optionally followed by " *main.xml" and a newline.
  if (const auto sum_index = zip->Find(h.checksum_file); sum_index && options.verify_md5) {
    BALLISTICS_ASSIGN_OR_RETURN(std::vector<std::uint8_t> sum_file, zip->Read(*sum_index, 4096, "the 4096-byte checksum-file limit"));
    const std::string text(sum_file.begin(), sum_file.end());
    const std::string declared = Lower(text.substr(0, std::min<std::size_t>(32, text.size())));
    if (!IsHexDigest(declared)) {
      return DataLoss("x3p: " + h.checksum_file + " does not start with a 32-digit MD5: '" +
                      text.substr(0, 40) + "'");
    }
    const std::string actual = Md5Hex(xml);
    if (declared != actual) {
      return DataLoss("x3p: MD5 of main.xml is " + actual + " but " + h.checksum_file + " says " + declared);
    }
  }

  const auto unit_x = UnitOfIncrement(h.increment_x);
  const auto unit_y = UnitOfIncrement(h.increment_y);
  if (unit_x.name != unit_y.name) {
    return InvalidArgument("x3p: main.xml: CX Increment=" + std::to_string(h.increment_x) + " and CY Increment=" +
                           std::to_string(h.increment_y) + " imply different units (" + unit_x.name + " vs " +
                           unit_y.name + ")");
  }
  Scan scan;
  scan.format = ScanFormat::kX3p;
  scan.modality = Modality::kTopography3d;
  scan.pixel_um_x = h.increment_x * unit_x.to_um;
  scan.pixel_um_y = h.increment_y * unit_y.to_um;
  for (auto [name, inc, um] : {std::tuple{"CX", h.increment_x, scan.pixel_um_x},
                               std::tuple{"CY", h.increment_y, scan.pixel_um_y}}) {
    if (!(um >= kMinPixelUm && um <= kMaxPixelUm)) {
      return InvalidArgument(std::string("x3p: main.xml: ") + name + " Increment=" + std::to_string(inc) +
                             " gives a pixel of " + std::to_string(um) + " um, outside the plausible " +
                             std::to_string(kMinPixelUm) + ".." + std::to_string(kMaxPixelUm) + " um");
    }
  }
  scan.header_length_unit = unit_x.name;
  scan.source_data_type = std::string(1, h.data_type);
  scan.scanner = h.scanner;

  const auto data_index = zip->Find(h.data_link);
  if (!data_index) return InvalidArgument("x3p: PointDataLink '" + h.data_link + "' is not in the archive");
  const std::uint64_t expected =
      static_cast<std::uint64_t>(h.size_x) * static_cast<std::uint64_t>(h.size_y) * BytesPerValue(h.data_type);
  auto size_mismatch = [&](std::uint64_t size, const char* which) {
    const std::string bpv = std::to_string(BytesPerValue(h.data_type));
    return DataLoss("x3p: " + h.data_link + " " + which + " " + ToStr(size) + " bytes, expected SizeX*SizeY*" +
                    bpv + " = " + std::to_string(h.size_x) + "*" + std::to_string(h.size_y) + "*" + bpv +
                    " = " + ToStr(expected));
  };
  // The declared size is compared before inflating: a mismatch is corrupt data, not a limit.
  BALLISTICS_ASSIGN_OR_RETURN(std::uint64_t declared, zip->DeclaredSize(*data_index));
  if (declared != expected) return size_mismatch(declared, "declares");
  BALLISTICS_ASSIGN_OR_RETURN(std::vector<std::uint8_t> data,
                              zip->Read(*data_index, expected, "SizeX*SizeY*bytes per value"));
  if (data.size() != expected) return size_mismatch(data.size(), "has");
  if (options.verify_md5 && !h.md5_point_data.empty()) {
    const std::string actual = Md5Hex(data);
    if (Lower(h.md5_point_data) != actual) {
      return DataLoss("x3p: MD5 of " + h.data_link + " is " + actual + " but MD5ChecksumPointData says " +
                      h.md5_point_data);
    }
  }
  scan.values = DecodeHeights(h, data, unit_x.to_um);
  data = {};

  if (const auto mask_index = zip->Find("bindata/mask.png")) {
    BALLISTICS_ASSIGN_OR_RETURN(std::vector<std::uint8_t> png,
                                zip->Read(*mask_index, limits.max_file_bytes, "max_file_bytes"));
    BALLISTICS_RETURN_IF_ERROR(ApplyMask(png, h, limits, scan.values));
    scan.had_mask = true;
  }
  return scan;
}

}  // namespace ballistics::io_internal
