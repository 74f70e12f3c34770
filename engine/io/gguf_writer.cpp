#include "io/gguf_writer.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "io/float16.h"

namespace bl {

namespace fs = std::filesystem;

namespace {
template <class T>
void put(std::vector<uint8_t>& b, T v) {
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  b.insert(b.end(), p, p + sizeof(T));
}
void put_str(std::vector<uint8_t>& b, const std::string& s) {
  put<uint64_t>(b, s.size());
  b.insert(b.end(), s.begin(), s.end());
}
void pad(std::vector<uint8_t>& b) {
  while (b.size() % kGgufAlignment) b.push_back(0);
}
}  // namespace

GgufWriter::GgufWriter() {
  // Written first, as llama.cpp's writer does; readers need it before any offset.
  add_u32("general.alignment", kGgufAlignment);
}

void GgufWriter::key(const std::string& k, GgufType t) {
  if (std::find(keys_.begin(), keys_.end(), k) != keys_.end())
    throw std::logic_error("GGUF key '" + k + "' added twice");
  keys_.push_back(k);
  put_str(kv_, k);
  put<uint32_t>(kv_, uint32_t(t));
  ++n_kv_;
}

void GgufWriter::add_string(const std::string& k, const std::string& v) {
  key(k, GgufType::kString);
  put_str(kv_, v);
}
void GgufWriter::add_u32(const std::string& k, uint32_t v) {
  key(k, GgufType::kU32);
  put(kv_, v);
}
void GgufWriter::add_i32(const std::string& k, int32_t v) {
  key(k, GgufType::kI32);
  put(kv_, v);
}
void GgufWriter::add_f32(const std::string& k, float v) {
  key(k, GgufType::kF32);
  put(kv_, v);
}
void GgufWriter::add_bool(const std::string& k, bool v) {
  key(k, GgufType::kBool);
  put<uint8_t>(kv_, v ? 1 : 0);
}
void GgufWriter::add_strings(const std::string& k, const std::vector<std::string>& v) {
  key(k, GgufType::kArray);
  put<uint32_t>(kv_, uint32_t(GgufType::kString));
  put<uint64_t>(kv_, v.size());
  for (const std::string& s : v) put_str(kv_, s);
}
void GgufWriter::add_i32s(const std::string& k, const std::vector<int32_t>& v) {
  key(k, GgufType::kArray);
  put<uint32_t>(kv_, uint32_t(GgufType::kI32));
  put<uint64_t>(kv_, v.size());
  for (int32_t x : v) put(kv_, x);
}
void GgufWriter::add_f32s(const std::string& k, const std::vector<float>& v) {
  key(k, GgufType::kArray);
  put<uint32_t>(kv_, uint32_t(GgufType::kF32));
  put<uint64_t>(kv_, v.size());
  for (float x : v) put(kv_, x);
}

void GgufWriter::add_tensor(const std::string& name, const std::vector<uint64_t>& ne,
                            const float* data, GgmlType type) {
  if (std::find(infos_.begin(), infos_.end(), name) != infos_.end())
    throw std::logic_error("GGUF tensor '" + name + "' added twice");
  if (ne.empty() || ne.size() > 4) throw std::logic_error("GGUF tensor '" + name + "': 1-4 dims");
  uint64_t n = 1;
  for (uint64_t d : ne) n *= d;
  infos_.push_back(name);
  put_str(infos_buf_, name);
  put<uint32_t>(infos_buf_, uint32_t(ne.size()));
  for (uint64_t d : ne) put<uint64_t>(infos_buf_, d);
  put<uint32_t>(infos_buf_, uint32_t(type));
  put<uint64_t>(infos_buf_, data_.size());  // offset within the data section
  if (type == GgmlType::kF32) {
    const auto* p = reinterpret_cast<const uint8_t*>(data);
    data_.insert(data_.end(), p, p + n * 4);
  } else {
    for (uint64_t i = 0; i < n; ++i) put<uint16_t>(data_, float_to_half(data[i]));
  }
  pad(data_);
}

void GgufWriter::write(const std::string& path) const {
  std::vector<uint8_t> head;
  put<uint32_t>(head, kGgufMagic);
  put<uint32_t>(head, 3);
  put<uint64_t>(head, infos_.size());
  put<uint64_t>(head, n_kv_);
  head.insert(head.end(), kv_.begin(), kv_.end());
  head.insert(head.end(), infos_buf_.begin(), infos_buf_.end());
  pad(head);
  if (fs::path(path).has_parent_path()) fs::create_directories(fs::path(path).parent_path());
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary);
    f.write(reinterpret_cast<const char*>(head.data()), std::streamsize(head.size()));
    f.write(reinterpret_cast<const char*>(data_.data()), std::streamsize(data_.size()));
    if (!f) {
      std::error_code ec;
      fs::remove(tmp, ec);
      throw std::runtime_error(path + ": cannot write");
    }
  }
  fs::rename(tmp, path);
}

}  // namespace bl
