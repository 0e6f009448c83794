// ISO 25178-72 X3P writer: main.xml + bindata/data.bin + md5checksum.hex in a
// zip archive, lengths in metres as the standard asks, heights as float64 'D'
// or float32 'F', little-endian, x fastest. NaN stays NaN (missing point); the
// reader treats +-Inf as missing too, so it is written as NaN.
#include <zip.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <memory>
#include <sstream>

#include <pugixml.hpp>

#include "io_internal.h"

namespace ballistics {
namespace {

std::string Exact(double v) {
  // %.17g round-trips every double.
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

template <typename T>
void AppendLittleEndian(std::vector<std::uint8_t>& out, T v) {
  std::array<std::uint8_t, sizeof(T)> b;
  std::memcpy(b.data(), &v, sizeof(T));
  if constexpr (std::endian::native == std::endian::big) std::reverse(b.begin(), b.end());
  out.insert(out.end(), b.begin(), b.end());
}

std::string MainXml(const Scan& scan, char data_type, const std::string& data_md5) {
  pugi::xml_document doc;
  auto decl = doc.append_child(pugi::node_declaration);
  decl.append_attribute("version") = "1.0";
  decl.append_attribute("encoding") = "UTF-8";
  auto root = doc.append_child("p:ISO5436_2");
  root.append_attribute("xmlns:p") = "http://www.opengps.eu/2008/ISO5436_2";
  root.append_attribute("xmlns:xsi") = "http://www.w3.org/2001/XMLSchema-instance";
  root.append_attribute("xsi:schemaLocation") =
      "http://www.opengps.eu/2008/ISO5436_2 http://www.opengps.eu/2008/ISO5436_2/ISO5436_2.xsd";
  auto text = [](pugi::xml_node parent, const char* name, const std::string& value) {
    parent.append_child(name).text().set(value.c_str());
  };
  auto r1 = root.append_child("Record1");
  text(r1, "Revision", "ISO5436 - 2000");
  text(r1, "FeatureType", "SUR");
  auto axes = r1.append_child("Axes");
  auto axis = [&](const char* name, const char* type, const std::string& dtype, const std::string& inc) {
    auto a = axes.append_child(name);
    text(a, "AxisType", type);
    text(a, "DataType", dtype);
    text(a, "Increment", inc);
    text(a, "Offset", "0");
  };
  axis("CX", "I", "D", Exact(scan.pixel_um_x * 1e-6));
  axis("CY", "I", "D", Exact(scan.pixel_um_y * 1e-6));
  axis("CZ", "A", std::string(1, data_type), "1");
  text(axes, "Origin", "NW");

  auto r2 = root.append_child("Record2");
  text(r2, "Date", scan.scanner.capture_date);
  text(r2, "Creator", scan.scanner.creator);
  auto inst = r2.append_child("Instrument");
  text(inst, "Manufacturer", scan.scanner.manufacturer);
  text(inst, "Model", scan.scanner.model);
  text(inst, "Serial", scan.scanner.serial);
  text(inst, "Version", scan.scanner.version);
  text(r2, "CalibrationDate", "");
  auto probe = r2.append_child("ProbingSystem");
  text(probe, "Type", "NonContacting");
  text(probe, "Identification", "");
  text(r2, "Comment", scan.scanner.comment);

  auto r3 = root.append_child("Record3");
  auto dim = r3.append_child("MatrixDimension");
  text(dim, "SizeX", std::to_string(scan.values.cols));
  text(dim, "SizeY", std::to_string(scan.values.rows));
  text(dim, "SizeZ", "1");
  auto link = r3.append_child("DataLink");
  text(link, "PointDataLink", "bindata/data.bin");
  text(link, "MD5ChecksumPointData", data_md5);

  auto r4 = root.append_child("Record4");
  text(r4, "ChecksumFile", "md5checksum.hex");

  std::ostringstream out;
  doc.save(out, "  ", pugi::format_default, pugi::encoding_utf8);
  return out.str();
}

// Builds a zip in memory with libzip; entries are (name, bytes).
StatusOr<std::vector<std::uint8_t>> ZipInMemory(
    const std::vector<std::pair<std::string, const std::vector<std::uint8_t>*>>& entries) {
  zip_error_t error;
  zip_error_init(&error);
  zip_source_t* buffer = zip_source_buffer_create(nullptr, 0, 0, &error);
  if (buffer == nullptr) return Internal(std::string("x3p writer: libzip: ") + zip_error_strerror(&error));
  zip_t* zip = zip_open_from_source(buffer, ZIP_TRUNCATE, &error);
  if (zip == nullptr) {
    zip_source_free(buffer);
    return Internal(std::string("x3p writer: libzip: ") + zip_error_strerror(&error));
  }
  zip_source_keep(buffer);  // keep the buffer alive after zip_close to read it back
  std::unique_ptr<zip_source_t, decltype(&zip_source_free)> keep(buffer, &zip_source_free);
  auto fail = [&](const std::string& what) {
    std::string msg = "x3p writer: " + what + ": " + zip_strerror(zip);
    zip_discard(zip);
    return Internal(msg);
  };
  if (zip_dir_add(zip, "bindata", ZIP_FL_ENC_UTF_8) < 0) return fail("adding bindata/");
  for (const auto& [name, data] : entries) {
    zip_source_t* src = zip_source_buffer(zip, data->data(), data->size(), 0);
    if (src == nullptr) return fail("wrapping " + name);
    if (zip_file_add(zip, name.c_str(), src, ZIP_FL_ENC_UTF_8) < 0) {
      zip_source_free(src);
      return fail("adding " + name);
    }
  }
  if (zip_close(zip) != 0) return fail("closing the archive");

  if (zip_source_open(buffer) != 0) return Internal("x3p writer: cannot reopen the zip buffer");
  zip_stat_t st;
  zip_stat_init(&st);
  if (zip_source_stat(buffer, &st) != 0 || (st.valid & ZIP_STAT_SIZE) == 0) {
    zip_source_close(buffer);
    return Internal("x3p writer: cannot stat the zip buffer");
  }
  std::vector<std::uint8_t> out(st.size);
  const zip_int64_t n = zip_source_read(buffer, out.data(), out.size());
  zip_source_close(buffer);
  if (n < 0 || static_cast<std::uint64_t>(n) != st.size) return Internal("x3p writer: short read of the zip");
  return out;
}

}  // namespace

StatusOr<std::vector<std::uint8_t>> WriteX3pBytes(const Scan& scan, char data_type) {
  if (data_type != 'D' && data_type != 'F') {
    return InvalidArgument(std::string("x3p writer: data type '") + data_type + "' is not supported (D or F)");
  }
  if (scan.modality != Modality::kTopography3d) {
    return InvalidArgument("x3p writer: only 3D topographies are written as X3P (got a 2D image)");
  }
  if (scan.values.empty()) return InvalidArgument("x3p writer: scan has no values");
  for (double p : {scan.pixel_um_x, scan.pixel_um_y}) {
    // The reader tells metres from micrometres by magnitude (x3p_reader.cc), which
    // holds for pixels of 0.01..1000 µm; refuse what could not be read back.
    if (!(std::isfinite(p) && p >= 0.01 && p < 1000.0)) {
      return InvalidArgument("x3p writer: pixel size " + Exact(p) + " um is outside 0.01..1000 um");
    }
  }
  try {
    std::vector<std::uint8_t> data;
    data.reserve(scan.values.total() * (data_type == 'D' ? 8 : 4));
    for (int y = 0; y < scan.values.rows; ++y) {
      const float* row = scan.values[y];
      for (int x = 0; x < scan.values.cols; ++x) {
        // µm -> m; division by the exactly representable 1e6 (not multiplication
        // by the inexact 1e-6) keeps 'D' round trips bit-exact after the reader's * 1e6.
        const double m = std::isfinite(row[x]) ? static_cast<double>(row[x]) / 1e6
                                               : std::numeric_limits<double>::quiet_NaN();
        if (data_type == 'D') {
          AppendLittleEndian<double>(data, m);
        } else {
          AppendLittleEndian<float>(data, static_cast<float>(m));
        }
      }
    }
    const std::string xml_text = MainXml(scan, data_type, Md5Hex(data));
    const std::vector<std::uint8_t> xml(xml_text.begin(), xml_text.end());
    const std::string sum_text = Md5Hex(xml) + " *main.xml\n";
    const std::vector<std::uint8_t> sum(sum_text.begin(), sum_text.end());
    return ZipInMemory({{"main.xml", &xml}, {"bindata/data.bin", &data}, {"md5checksum.hex", &sum}});
  } catch (const std::bad_alloc&) {
    return ResourceExhausted("x3p writer: out of memory for a " + std::to_string(scan.values.cols) + " x " +
                             std::to_string(scan.values.rows) + " scan");
  }
}

Status WriteX3pFile(const Scan& scan, const std::filesystem::path& path, char data_type) {
  auto bytes = WriteX3pBytes(scan, data_type);
  if (!bytes.ok()) return bytes.status();
  // Write to a temporary name and rename, so a reader never sees half a file.
  std::filesystem::path tmp = path;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return PermissionDenied("cannot create " + tmp.string());
    out.write(reinterpret_cast<const char*>(bytes->data()), static_cast<std::streamsize>(bytes->size()));
    if (!out) return ResourceExhausted("write to " + tmp.string() + " failed (disk full?)");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    return PermissionDenied("cannot rename " + tmp.string() + " to " + path.string());
  }
  return Status::Ok();
}

}  // namespace ballistics
