// Builders of X3P archives (valid and hostile) for the io tests.
#pragma once

#include <zip.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "ballistics/io.h"

namespace ballistics::testing {

struct ZipEntry {
  std::string name;
  std::vector<std::uint8_t> bytes;
  bool store = false;  // true: no compression
};

inline std::vector<std::uint8_t> Bytes(const std::string& s) { return {s.begin(), s.end()}; }

// A zip archive in memory written by libzip.
inline std::vector<std::uint8_t> MakeZip(const std::vector<ZipEntry>& entries) {
  zip_error_t error;
  zip_error_init(&error);
  zip_source_t* buffer = zip_source_buffer_create(nullptr, 0, 0, &error);
  zip_t* zip = zip_open_from_source(buffer, ZIP_TRUNCATE, &error);
  if (zip == nullptr) throw std::runtime_error("libzip open failed");
  zip_source_keep(buffer);
  for (const auto& e : entries) {
    zip_source_t* src = zip_source_buffer(zip, e.bytes.data(), e.bytes.size(), 0);
    const zip_int64_t idx = zip_file_add(zip, e.name.c_str(), src, ZIP_FL_ENC_UTF_8);
    if (idx < 0) throw std::runtime_error("libzip add failed");
    zip_set_file_compression(zip, idx, e.store ? ZIP_CM_STORE : ZIP_CM_DEFLATE, 9);
  }
  if (zip_close(zip) != 0) throw std::runtime_error("libzip close failed");
  zip_source_open(buffer);
  zip_stat_t st;
  zip_stat_init(&st);
  zip_source_stat(buffer, &st);
  std::vector<std::uint8_t> out(st.size);
  zip_source_read(buffer, out.data(), out.size());
  zip_source_close(buffer);
  zip_source_free(buffer);
  return out;
}

struct X3pSpec {
  std::string root = "p:ISO5436_2";
  std::string size_x = "3", size_y = "2";
  std::string inc_x = "2.5e-06", inc_y = "2.5e-06";
  std::string data_type = "D";
  std::string z_increment = "1", z_offset = "0";
  std::string record3_extra;             // e.g. a <Mask> element
  std::string md5_point_data = "auto";  // "auto": correct MD5, "": element left out
};

inline std::string MainXml(const X3pSpec& s, const std::vector<std::uint8_t>& data) {
  const std::string md5 = s.md5_point_data == "auto" ? Md5Hex(data) : s.md5_point_data;
  const bool prefixed = s.root.find(':') != std::string::npos;
  return std::string("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<") + s.root +
         (prefixed ? " xmlns:p=\"http://www.opengps.eu/2008/ISO5436_2\"" : "") +
         ">\n<Record1><Revision>ISO5436 - 2000</Revision><FeatureType>SUR</FeatureType><Axes>"
         "<CX><AxisType>I</AxisType><DataType>D</DataType><Increment>" + s.inc_x +
         "</Increment><Offset>0</Offset></CX>"
         "<CY><AxisType>I</AxisType><DataType>D</DataType><Increment>" + s.inc_y +
         "</Increment><Offset>0</Offset></CY>"
         "<CZ><AxisType>A</AxisType><DataType>" + s.data_type + "</DataType><Increment>" + s.z_increment +
         "</Increment><Offset>" + s.z_offset + "</Offset></CZ></Axes></Record1>\n"
         "<Record2><Date>2020-01-01T00:00:00</Date><Creator>test</Creator><Instrument><Manufacturer>Acme"
         "</Manufacturer><Model>M1</Model><Serial>42</Serial><Version>1.0</Version></Instrument>"
         "<Comment>synthetic</Comment></Record2>\n"
         "<Record3><MatrixDimension><SizeX>" + s.size_x + "</SizeX><SizeY>" + s.size_y +
         "</SizeY><SizeZ>1</SizeZ></MatrixDimension><DataLink><PointDataLink>bindata/data.bin</PointDataLink>" +
         (s.md5_point_data.empty() ? "" : "<MD5ChecksumPointData>" + md5 + "</MD5ChecksumPointData>") +
         "</DataLink>" + s.record3_extra + "</Record3>\n"
         "<Record4><ChecksumFile>md5checksum.hex</ChecksumFile></Record4>\n</" + s.root + ">\n";
}

template <typename T>
std::vector<std::uint8_t> LittleEndian(const std::vector<T>& values) {
  std::vector<std::uint8_t> out(values.size() * sizeof(T));
  std::memcpy(out.data(), values.data(), out.size());  // the test machines are little-endian
  return out;
}

// A complete X3P: main.xml, data.bin, md5checksum.hex (+ extra entries).
inline std::vector<std::uint8_t> MakeX3p(const X3pSpec& spec, const std::vector<std::uint8_t>& data,
                                         std::vector<ZipEntry> extra = {}) {
  const std::string xml = MainXml(spec, data);
  std::vector<ZipEntry> entries = {{"main.xml", Bytes(xml)},
                                   {"bindata/data.bin", data},
                                   {"md5checksum.hex", Bytes(Md5Hex(Bytes(xml)) + " *main.xml\n")}};
  for (auto& e : extra) entries.push_back(std::move(e));
  return MakeZip(entries);
}

}  // namespace ballistics::testing
