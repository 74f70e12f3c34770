#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "io/bounded_read.h"
#include "io/float16.h"

namespace bl {
namespace {

using json = nlohmann::json;

[[noreturn]] void format_error(const std::string& file, const std::string& problem) {
  throw FormatError(file + ": " + problem);
}

[[noreturn]] void io_error(const std::string& what, const std::string& path) {
  throw std::runtime_error(what + " " + path + ": " + std::strerror(errno));
}

// Where the bytes come from: memory (tests, fuzzing) or a file (pread, so a
// large checkpoint is read straight into the output tensors).
class Source {
 public:
  virtual ~Source() = default;
  virtual uint64_t size() const = 0;
  virtual void read(uint64_t offset, void* dst, size_t n) = 0;
};

class MemorySource : public Source {
 public:
  MemorySource(const void* p, size_t n) : p_(static_cast<const unsigned char*>(p)), n_(n) {}
  uint64_t size() const override { return n_; }
  void read(uint64_t offset, void* dst, size_t n) override {
    if (n) std::memcpy(dst, p_ + offset, n);  // callers validated offset + n <= size
  }

 private:
  const unsigned char* p_;
  size_t n_;
};

class FileSource : public Source {
 public:
  explicit FileSource(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) io_error("cannot open", path);
    struct stat st {};
    if (fstat(fd_, &st) != 0) io_error("cannot stat", path);
    if (S_ISDIR(st.st_mode)) format_error(path, "is a directory, not a safetensors file");
    size_ = static_cast<uint64_t>(st.st_size);
  }
  ~FileSource() override {
    if (fd_ >= 0) ::close(fd_);
  }
  uint64_t size() const override { return size_; }
  void read(uint64_t offset, void* dst, size_t n) override {
    auto* out = static_cast<char*>(dst);
    while (n > 0) {
      const ssize_t got = ::pread(fd_, out, std::min<size_t>(n, 1u << 30), offset);
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) io_error("cannot read", path_);
      if (got == 0) format_error(path_, "file shrank while reading");
      out += got;
      offset += got;
      n -= got;
    }
  }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

struct DtypeInfo {
  const char* name;
  size_t bytes;
};
constexpr DtypeInfo kDtypes[] = {{"F32", 4}, {"F16", 2}, {"BF16", 2}, {"F64", 8}, {"U8", 1}};

float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0) {  // zero or subnormal: mant * 2^-24
    const float f = std::ldexp(static_cast<float>(mant), -24);
    return sign ? -f : f;
  }
  const uint32_t bits = exp == 31 ? sign | 0x7f800000u | (mant << 13)  // inf / NaN
                                  : sign | ((exp + 112) << 23) | (mant << 13);
  return std::bit_cast<float>(bits);
}

template <class T>
T from_le(T v) {
  if constexpr (std::endian::native == std::endian::big) {
    auto b = std::bit_cast<std::array<unsigned char, sizeof(T)>>(v);
    std::reverse(b.begin(), b.end());
    return std::bit_cast<T>(b);
  }
  return v;
}

// Parses the header, rejecting duplicate keys at any depth (nlohmann keeps
// the last one silently, which would make a corrupt file look valid).
json parse_header(const std::string& text, const std::string& file) {
  std::vector<std::set<std::string>> keys;  // one set per open object
  std::string duplicate;
  json::parser_callback_t cb = [&](int, json::parse_event_t ev, json& parsed) {
    switch (ev) {
      case json::parse_event_t::object_start:
        keys.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!keys.empty()) keys.pop_back();
        break;
      case json::parse_event_t::key:
        if (!keys.empty() && !keys.back().insert(parsed.get<std::string>()).second &&
            duplicate.empty())
          duplicate = parsed.get<std::string>();
        break;
      default:
        break;
    }
    return true;
  };
  try {
    check_json_depth(text, file);
  } catch (const std::runtime_error&) {
    format_error(file,
                 "header nests JSON deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  }
  json j;
  try {
    j = json::parse(text, cb);
  } catch (const json::exception& e) {
    format_error(file, std::string("header is not valid JSON: ") + e.what());
  }
  if (!duplicate.empty()) format_error(file, "header has duplicate key '" + duplicate + "'");
  if (!j.is_object()) format_error(file, "header is not a JSON object");
  return j;
}

struct Entry {
  std::string name;
  const DtypeInfo* dtype;
  std::vector<int64_t> shape;
  uint64_t numel, begin, end;
};

Entry parse_entry(const std::string& name, const json& v, uint64_t data_size,
                  const std::string& file, bool allow_u8) {
  const std::string where = "tensor '" + name + "'";
  if (!v.is_object()) format_error(file, where + ": entry is not an object");
  auto field = [&](const char* key) -> const json& {
    auto it = v.find(key);
    if (it == v.end()) format_error(file, where + ": missing \"" + key + "\"");
    return *it;
  };
  const json& dt = field("dtype");
  const json& shape = field("shape");
  const json& offsets = field("data_offsets");

  Entry e{name, nullptr, {}, 1, 0, 0};
  if (!dt.is_string()) format_error(file, where + ": \"dtype\" is not a string");
  const std::string dtype = dt.get<std::string>();
  for (const DtypeInfo& d : kDtypes)
    if (dtype == d.name && (allow_u8 || dtype != "U8")) e.dtype = &d;
  if (!e.dtype)
    format_error(file,
                 where + ": unsupported dtype '" + dtype + "' (supported: F32, F16, BF16, F64)");

  if (!shape.is_array()) format_error(file, where + ": \"shape\" is not an array");
  for (const json& d : shape) {
    if (!d.is_number_unsigned())
      format_error(file, where + ": shape " + shape.dump() +
                             " has a dimension that is not a "
                             "non-negative integer");
    const uint64_t n = d.get<uint64_t>();
    if (n > uint64_t(std::numeric_limits<int64_t>::max()) ||
        __builtin_mul_overflow(e.numel, n, &e.numel))
      format_error(file, where + ": shape " + shape.dump() + " is too large");
    e.shape.push_back(static_cast<int64_t>(n));
  }

  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
      !offsets[1].is_number_unsigned())
    format_error(file, where + ": \"data_offsets\" must be [begin, end] (non-negative integers)");
  e.begin = offsets[0].get<uint64_t>();
  e.end = offsets[1].get<uint64_t>();
  if (e.begin > e.end)
    format_error(file, where + ": data_offsets " + offsets.dump() + " has begin > end");
  if (e.end > data_size)
    format_error(file, where + ": data_offsets " + offsets.dump() +
                           " out of range (data section is " + std::to_string(data_size) +
                           " bytes)");
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(e.numel, uint64_t(e.dtype->bytes), &bytes) || bytes != e.end - e.begin)
    format_error(file, where + ": shape " + shape.dump() + " of " + dtype + " needs " +
                           (bytes / e.dtype->bytes == e.numel ? std::to_string(bytes)
                                                              : std::string("too many")) +
                           " bytes but data_offsets " + offsets.dump() + " cover " +
                           std::to_string(e.end - e.begin));
  return e;
}

void load_data(Source& src, uint64_t data_start, const Entry& e, LoadedTensor& out) {
  out.dtype = e.dtype->name;
  out.shape = e.shape;
  out.data.resize(e.numel);
  const uint64_t off = data_start + e.begin;
  const size_t bytes = e.end - e.begin;
  if (e.dtype->bytes == 4) {
    src.read(off, out.data.data(), bytes);
    if constexpr (std::endian::native == std::endian::big)
      for (float& f : out.data) f = from_le(f);
    return;
  }
  std::vector<unsigned char> raw(bytes);
  src.read(off, raw.data(), bytes);
  const std::string dt = e.dtype->name;
  for (uint64_t i = 0; i < e.numel; ++i) {
    const unsigned char* p = raw.data() + i * e.dtype->bytes;
    if (dt == "U8") {
      out.data[i] = float(p[0]);
    } else if (dt == "F64") {
      double d;
      std::memcpy(&d, p, 8);
      out.data[i] = static_cast<float>(from_le(d));
    } else {
      const uint16_t h = uint16_t(p[0] | (p[1] << 8));
      out.data[i] = dt == "BF16" ? std::bit_cast<float>(uint32_t(h) << 16) : half_to_float(h);
    }
  }
}

SafetensorsFile parse(Source& src, const std::string& file, bool allow_u8 = false) {
  const uint64_t size = src.size();
  if (size < 8)
    format_error(
        file, "file is " + std::to_string(size) + " bytes, too short for the 8-byte header length");
  unsigned char len_bytes[8];
  src.read(0, len_bytes, 8);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  if (header_len > kMaxSafetensorsHeader)
    format_error(file, "header length " + std::to_string(header_len) +
                           " exceeds the 100 MB limit (not a safetensors file?)");
  if (header_len > size - 8)
    format_error(file, "header length " + std::to_string(header_len) +
                           " runs past the end of the file (" + std::to_string(size) + " bytes)");
  std::string text(header_len, '\0');
  src.read(8, text.data(), header_len);
  if (text.empty() || text[0] != '{') format_error(file, "header does not start with '{'");
  const json header = parse_header(text, file);

  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = size - data_start;
  SafetensorsFile out;
  std::vector<Entry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it->is_object()) format_error(file, "\"__metadata__\" is not an object");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string())
          format_error(file, "\"__metadata__\" value of '" + m.key() + "' is not a string");
        out.metadata[m.key()] = m->get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(it.key(), *it, data_size, file, allow_u8));
  }

  // The data section must be covered exactly: no overlaps, holes or trailing bytes.
  std::vector<const Entry*> order;
  for (const Entry& e : entries) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t pos = 0;
  const Entry* prev = nullptr;
  for (const Entry* e : order) {
    if (e->begin < pos)
      format_error(file, "tensor '" + e->name + "' overlaps tensor '" + prev->name + "'");
    if (e->begin > pos)
      format_error(file, "gap of " + std::to_string(e->begin - pos) +
                             " bytes in the data section before tensor '" + e->name + "'");
    pos = e->end;
    prev = e;
  }
  if (pos != data_size)
    format_error(file, std::to_string(data_size - pos) +
                           " bytes at the end of the data section belong to no tensor");

  // Only now, with every size bounded by the file size, allocate and read.
  for (const Entry& e : entries) load_data(src, data_start, e, out.tensors[e.name]);
  return out;
}

// --- writing -----------------------------------------------------------------

void write_all(int fd, const void* data, size_t n, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, std::min<size_t>(n, 1u << 30));
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) io_error("cannot write", path);
    p += w;
    n -= w;
  }
}

std::string temp_path_for(const std::string& path) {
  static std::atomic<uint64_t> counter{0};
  return path + ".tmp-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
}

}  // namespace

SafetensorsFile parse_safetensors(const void* bytes, size_t size, const std::string& name) {
  MemorySource src(bytes, size);
  return parse(src, name);
}

void require_finite(const SafetensorsFile& file, const std::string& path) {
  for (const auto& [name, t] : file.tensors)
    for (size_t i = 0; i < t.data.size(); ++i)
      if (!std::isfinite(t.data[i]))
        throw FormatError(path + ": tensor '" + name + "' holds a non-finite value (" +
                          std::to_string(t.data[i]) + ") at element " + std::to_string(i));
}

SafetensorsFile read_safetensors(const std::string& path, bool allow_u8) {
  FileSource src(path);
  return parse(src, path, allow_u8);
}

void write_safetensors(const std::string& path, const std::vector<TensorView>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  std::vector<uint64_t> bytes(tensors.size());
  uint64_t offset = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorView& t = tensors[i];
    const std::string where = "[safetensors] tensor '" + t.name + "'";
    if (t.name.empty() || t.name == "__metadata__")
      throw std::invalid_argument("[safetensors] invalid tensor name '" + t.name + "'");
    if (header.contains(t.name)) throw std::invalid_argument(where + " appears twice");
    uint64_t numel = 1;
    for (int64_t d : t.shape)
      if (d < 0 || __builtin_mul_overflow(numel, uint64_t(d), &numel))
        throw std::invalid_argument(where + " has an invalid shape");
    if (numel > 0 && !t.data && !t.u8) throw std::invalid_argument(where + " has no data");
    if (!t.u8 && t.dtype != "F32" && t.dtype != "BF16" && t.dtype != "F16")
      throw std::invalid_argument(where + ": cannot write dtype '" + t.dtype +
                                  "' (F32, BF16, F16)");
    bytes[i] = numel * (t.u8 ? 1 : t.dtype == "F32" ? sizeof(float) : sizeof(uint16_t));
    header[t.name] = {{"dtype", t.u8 ? std::string("U8") : t.dtype},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + bytes[i]}}};
    offset += bytes[i];
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string text;
  try {
    text = header.dump();
  } catch (const json::type_error&) {
    throw std::invalid_argument("[safetensors] tensor names and metadata must be valid UTF-8");
  }
  // Pad with spaces so the data section starts 8-byte aligned.
  text.append((8 - (8 + text.size()) % 8) % 8, ' ');
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(uint64_t(text.size()) >> (8 * i));

  const std::string tmp = temp_path_for(path);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) io_error("cannot create", tmp);
  bool fd_open = true;
  try {
    write_all(fd, len, 8, tmp);
    write_all(fd, text.data(), text.size(), tmp);
    for (size_t i = 0; i < tensors.size(); ++i) {
      if (tensors[i].u8) {
        write_all(fd, tensors[i].u8, bytes[i], tmp);
      } else if (tensors[i].dtype != "F32") {
        const size_t n = bytes[i] / 2;
        const bool bf = tensors[i].dtype == "BF16";
        std::vector<unsigned char> le(bytes[i]);
        for (size_t k = 0; k < n; ++k) {
          const uint16_t h =
              bf ? float_to_bf16(tensors[i].data[k]) : float_to_half(tensors[i].data[k]);
          le[2 * k] = static_cast<unsigned char>(h & 0xff);
          le[2 * k + 1] = static_cast<unsigned char>(h >> 8);
        }
        write_all(fd, le.data(), le.size(), tmp);
      } else if constexpr (std::endian::native == std::endian::little) {
        write_all(fd, tensors[i].data, bytes[i], tmp);
      } else {
        std::vector<float> le(tensors[i].data, tensors[i].data + bytes[i] / sizeof(float));
        for (float& f : le) f = from_le(f);
        write_all(fd, le.data(), bytes[i], tmp);
      }
    }
    if (::fsync(fd) != 0) io_error("cannot fsync", tmp);
    fd_open = false;
    if (::close(fd) != 0) io_error("cannot close", tmp);
  } catch (...) {
    if (fd_open) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    errno = err;
    io_error("cannot rename " + tmp + " to", path);
  }
  // Make the rename itself durable.
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace bl
