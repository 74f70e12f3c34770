#include "io/gguf_reader.h"

#include <algorithm>
#include <cstring>
#include <set>

#include "io/bounded_read.h"
#include "io/float16.h"

namespace bl {

namespace {
constexpr uint64_t kMaxAlignment = 1 << 16;

struct Cursor {
  const std::vector<uint8_t>& buf;
  const GgufFile& file;
  size_t pos = 0;
  [[noreturn]] void fail(const std::string& what) const {
    throw GgufError(file.path() + ": " + what + " (at byte " + std::to_string(pos) + ")");
  }
  template <class T>
  T get() {
    if (buf.size() - pos < sizeof(T)) fail("truncated");
    T v;
    std::memcpy(&v, buf.data() + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }
  std::string str() {
    const uint64_t n = get<uint64_t>();
    if (n > buf.size() - pos) fail("string longer than the file");
    std::string s(reinterpret_cast<const char*>(buf.data() + pos), size_t(n));
    pos += size_t(n);
    return s;
  }
  // A scalar as a number (exact for every 32-bit type), integers also in i64.
  void scalar(GgufType t, double& num, int64_t& i64) {
    switch (t) {
      case GgufType::kU8:
        i64 = get<uint8_t>();
        break;
      case GgufType::kI8:
        i64 = get<int8_t>();
        break;
      case GgufType::kU16:
        i64 = get<uint16_t>();
        break;
      case GgufType::kI16:
        i64 = get<int16_t>();
        break;
      case GgufType::kU32:
        i64 = get<uint32_t>();
        break;
      case GgufType::kI32:
        i64 = get<int32_t>();
        break;
      case GgufType::kBool:
        i64 = get<uint8_t>();
        break;
      case GgufType::kI64:
        i64 = get<int64_t>();
        break;
      case GgufType::kU64: {
        const uint64_t u = get<uint64_t>();
        if (u > uint64_t(INT64_MAX)) fail("u64 value " + std::to_string(u) + " is out of range");
        i64 = int64_t(u);
        break;
      }
      case GgufType::kF32:
        num = get<float>();
        return;
      case GgufType::kF64:
        num = get<double>();
        return;
      default:
        fail("unknown metadata type " + std::to_string(uint32_t(t)));
    }
    num = double(i64);
  }
  GgufValue value(uint32_t type, int depth = 0) {
    GgufValue v;
    if (type > uint32_t(GgufType::kF64)) fail("unknown metadata type " + std::to_string(type));
    v.type = GgufType(type);
    if (v.type == GgufType::kString) {
      v.str = str();
    } else if (v.type == GgufType::kArray) {
      if (depth > 2) fail("nested arrays too deep");
      const uint32_t et = get<uint32_t>();
      if (et > uint32_t(GgufType::kF64)) fail("unknown metadata type " + std::to_string(et));
      v.elem = GgufType(et);
      v.n = get<uint64_t>();
      if (v.n > buf.size() - pos) fail("array longer than the file");
      for (uint64_t i = 0; i < v.n; ++i) {
        if (v.elem == GgufType::kString) {
          v.strs.push_back(str());
        } else if (v.elem == GgufType::kArray) {
          value(et, depth + 1);  // checked, not kept
        } else {
          double d = 0;
          int64_t x = 0;
          scalar(v.elem, d, x);
          v.nums.push_back(d);
        }
      }
    } else {
      scalar(v.type, v.num, v.i64);
    }
    return v;
  }
};

size_t type_size(GgmlType t) {
  return t == GgmlType::kF32 ? 4 : 2;
}
}  // namespace

uint64_t GgufTensorInfo::numel() const {
  uint64_t n = 1;
  for (uint64_t d : ne) n *= d;
  return n;
}

void GgufFile::fail(const std::string& what) const {
  throw GgufError(path_ + ": " + what);
}

GgufFile GgufFile::read(const std::string& path, int64_t max_bytes) {
  GgufFile f;
  f.path_ = path;
  {
    std::string bytes;
    try {
      bytes = read_regular_file(path, max_bytes);
    } catch (const std::runtime_error& e) {
      throw GgufError(std::string("cannot read ") + e.what());
    }
    f.buf_.assign(bytes.begin(), bytes.end());
  }
  const std::vector<uint8_t>& buf = f.buf_;
  Cursor r{buf, f};
  if (r.get<uint32_t>() != kGgufMagic) r.fail("not a GGUF file (bad magic)");
  f.version = r.get<uint32_t>();
  if (f.version != 2 && f.version != 3)
    r.fail("unsupported GGUF version " + std::to_string(f.version));
  const uint64_t n_tensors = r.get<uint64_t>(), n_kv = r.get<uint64_t>();
  if (n_tensors > buf.size() / 8 || n_kv > buf.size() / 8) r.fail("counts exceed the file size");
  uint64_t alignment = kGgufAlignment;
  for (uint64_t i = 0; i < n_kv; ++i) {
    const std::string key = r.str();
    const uint32_t type = r.get<uint32_t>();
    if (key == "general.alignment") {
      // Every tensor offset and the data section's start depend on it: a wrong
      // or edited value would read tensors from the wrong bytes.
      if (type != uint32_t(GgufType::kU32)) r.fail("general.alignment must be a u32 (GGUF type 4)");
      if (f.kv.count(key)) r.fail("general.alignment given twice");
      alignment = r.get<uint32_t>();
      if (alignment < 8 || alignment > kMaxAlignment || (alignment & (alignment - 1)))
        r.fail("general.alignment " + std::to_string(alignment) + " is not a power of two in [8, " +
               std::to_string(kMaxAlignment) + "]");
      GgufValue v;
      v.type = GgufType::kU32;
      v.i64 = int64_t(alignment);
      v.num = double(alignment);
      f.kv[key] = v;
      continue;
    }
    if (f.kv.count(key)) r.fail("metadata key '" + key + "' appears twice");
    f.kv[key] = r.value(type);
  }
  std::set<std::string> names;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    t.name = r.str();
    if (!names.insert(t.name).second) r.fail("tensor '" + t.name + "' appears twice");
    const uint32_t nd = r.get<uint32_t>();
    if (nd < 1 || nd > 4)
      r.fail("tensor '" + t.name + "' has " + std::to_string(nd) + " dims (1 to 4 allowed)");
    uint64_t n = 1;
    for (uint32_t d = 0; d < nd; ++d) {
      const uint64_t x = r.get<uint64_t>();
      if (x == 0 || x > buf.size() || n * x > buf.size())
        r.fail("tensor '" + t.name + "' has impossible dims");
      n *= x;
      t.ne.push_back(x);
    }
    const uint32_t type = r.get<uint32_t>();
    if (type != uint32_t(GgmlType::kF32) && type != uint32_t(GgmlType::kF16))
      r.fail("tensor '" + t.name + "' has GGML type " + std::to_string(type) +
             " (only F32 and F16 are read)");
    t.type = GgmlType(type);
    t.bytes = n * type_size(t.type);
    t.offset = r.get<uint64_t>();
    if (t.offset % alignment)
      r.fail("tensor '" + t.name + "' offset " + std::to_string(t.offset) +
             " is not a multiple of general.alignment " + std::to_string(alignment));
    f.tensors.push_back(std::move(t));
  }
  const uint64_t data_start = (r.pos + alignment - 1) / alignment * alignment;
  const auto padded = [&](uint64_t n) { return (n + alignment - 1) / alignment * alignment; };
  // As in the safetensors reader: tensors tile the data section in offset
  // order, each at the next aligned offset, with no overlap, gap or stray tail.
  std::vector<const GgufTensorInfo*> order;
  for (const GgufTensorInfo& t : f.tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(),
            [](const GgufTensorInfo* a, const GgufTensorInfo* b) { return a->offset < b->offset; });
  uint64_t end = 0;
  const GgufTensorInfo* prev = nullptr;
  for (const GgufTensorInfo* t : order) {
    if (t->offset < end) r.fail("tensor '" + t->name + "' overlaps tensor '" + prev->name + "'");
    if (t->offset != padded(end))
      r.fail("gap of " + std::to_string(t->offset - end) + " bytes before tensor '" + t->name +
             "'");
    if (t->offset > buf.size() || t->bytes > buf.size() ||
        data_start + t->offset + t->bytes > buf.size())
      r.fail("tensor '" + t->name + "' lies outside the file");
    end = t->offset + t->bytes;
    prev = t;
  }
  if (!f.tensors.empty() &&
      (buf.size() < data_start + end || buf.size() > data_start + padded(end)))
    r.fail("the data section holds " + std::to_string(int64_t(buf.size()) - int64_t(data_start)) +
           " bytes but its tensors take " + std::to_string(end) +
           " (general.alignment changed or the file truncated?)");
  f.data_start_ = data_start;
  return f;
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = kv.find(key);
  return it == kv.end() ? nullptr : &it->second;
}

std::string GgufFile::get_string(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) fail("missing metadata key '" + key + "'");
  if (v->type != GgufType::kString) fail("metadata key '" + key + "' must be a string");
  return v->str;
}

int64_t GgufFile::get_int(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) fail("missing metadata key '" + key + "'");
  if (v->type != GgufType::kU32 && v->type != GgufType::kI32)
    fail("metadata key '" + key + "' must be a u32 or i32");
  return v->i64;
}

float GgufFile::get_f32(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) fail("missing metadata key '" + key + "'");
  if (v->type != GgufType::kF32) fail("metadata key '" + key + "' must be an f32");
  return float(v->num);
}

const GgufTensorInfo* GgufFile::tensor(const std::string& name) const {
  for (const GgufTensorInfo& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

std::vector<float> GgufFile::tensor_data(const GgufTensorInfo& t) const {
  std::vector<float> v(size_t(t.numel()));
  const uint8_t* p = buf_.data() + data_start_ + t.offset;
  if (t.type == GgmlType::kF32) {
    std::memcpy(v.data(), p, v.size() * 4);
  } else {
    for (size_t i = 0; i < v.size(); ++i) {
      uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      v[i] = half_to_float(h);
    }
  }
  return v;
}

}  // namespace bl
