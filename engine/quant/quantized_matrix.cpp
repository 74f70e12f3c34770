#include "quant/quantized_matrix.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "quant/dequant_kernels.h"
#include "tensor/parallel.h"

namespace bl {

// bitsandbytes' NF4 table (QLoRA appendix E): quantiles of N(0, 1) normalised
// to [-1, 1], asymmetric so that 0 is exactly representable.
const std::array<float, 16> kNF4Codes = {
    -1.0f,
    -0.6961928009986877f,
    -0.5250730514526367f,
    -0.39491748809814453f,
    -0.28444138169288635f,
    -0.18477343022823334f,
    -0.09105003625154495f,
    0.0f,
    0.07958029955625534f,
    0.16093020141124725f,
    0.24611230194568634f,
    0.33791524171829224f,
    0.44070982933044434f,
    0.5626170039176941f,
    0.7229568362236023f,
    1.0f,
};

float nf4_max_half_gap() {
  float m = 0;
  for (size_t i = 1; i < kNF4Codes.size(); ++i)
    m = std::max(m, 0.5f * (kNF4Codes[i] - kNF4Codes[i - 1]));
  return m;
}

std::string QuantSpec::str() const {
  std::string s = mode == QuantMode::kNF4 ? std::string("nf4") : std::string("affine");
  if (mode != QuantMode::kNF4) s.push_back(char('0' + bits));
  if (group_size != 64) s.append("@").append(std::to_string(group_size));
  return s;
}

QuantSpec QuantSpec::parse(const std::string& text) {
  QuantSpec q;
  std::string s = text;
  const size_t at = s.find('@');
  auto fail = [&] {
    throw std::invalid_argument("unknown quantization '" + text +
                                "': expected nf4, affine2, affine4 or affine8, optionally "
                                "followed by @32, @64 or @128 (group size)");
  };
  if (at != std::string::npos) {
    const std::string g = s.substr(at + 1);
    if (g != "32" && g != "64" && g != "128") fail();
    q.group_size = std::stoll(g);
    s = s.substr(0, at);
  }
  if (s == "nf4") {
    q.mode = QuantMode::kNF4;
    q.bits = 4;
  } else if (s == "affine2" || s == "affine4" || s == "affine8") {
    q.mode = QuantMode::kAffine;
    q.bits = s.back() - '0';
  } else {
    fail();
  }
  return q;
}

void QuantSpec::validate() const {
  if (group_size != 32 && group_size != 64 && group_size != 128)
    throw std::invalid_argument("quantization group_size must be 32, 64 or 128, got " +
                                std::to_string(group_size));
  if (mode == QuantMode::kAffine && bits != 2 && bits != 4 && bits != 8)
    throw std::invalid_argument("affine quantization bits must be 2, 4 or 8, got " +
                                std::to_string(bits));
  if (mode == QuantMode::kNF4 && bits != 4)
    throw std::invalid_argument("nf4 quantization has 4 bits, got " + std::to_string(bits));
}

namespace {
int nearest_nf4(float x) {
  // Codes are sorted: binary search for the first code >= x, then compare neighbours.
  auto it = std::lower_bound(kNF4Codes.begin(), kNF4Codes.end(), x);
  if (it == kNF4Codes.begin()) return 0;
  if (it == kNF4Codes.end()) return 15;
  const int hi = int(it - kNF4Codes.begin());
  return (x - kNF4Codes[size_t(hi - 1)] <= kNF4Codes[size_t(hi)] - x) ? hi - 1 : hi;
}

}  // namespace

QuantizedMatrix::QuantizedMatrix(const float* w, int64_t rows, int64_t cols, const QuantSpec& spec)
    : spec_(spec), rows_(rows), cols_(cols) {
  spec_.validate();
  const int64_t gs = spec_.group_size;
  if (cols <= 0 || rows <= 0 || cols % gs != 0)
    throw std::invalid_argument("cannot quantize a (" + std::to_string(rows) + ", " +
                                std::to_string(cols) + ") matrix with group size " +
                                std::to_string(gs) + ": columns must be a positive multiple of it");
  const int bits = spec_.bits;
  const int per = 8 / bits;
  row_bytes_ = (cols + per - 1) / per;
  packed_.assign(size_t(rows * row_bytes_), 0);
  const int64_t G = cols / gs;
  scales_.assign(size_t(rows * G), 0.0f);
  if (spec_.mode == QuantMode::kAffine) biases_.assign(size_t(rows * G), 0.0f);
  const int levels = (1 << bits) - 1;
  parallel_for(
      rows,
      [&](int64_t r) {
        const float* wr = w + r * cols;
        uint8_t* pr = packed_.data() + r * row_bytes_;
        for (int64_t g = 0; g < G; ++g) {
          const float* x = wr + g * gs;
          float lo = x[0], hi = x[0], amax = 0;
          for (int64_t j = 0; j < gs; ++j) {
            lo = std::min(lo, x[j]);
            hi = std::max(hi, x[j]);
            amax = std::max(amax, std::abs(x[j]));
          }
          const size_t gi = size_t(r * G + g);
          for (int64_t j = 0; j < gs; ++j) {
            int q;
            if (spec_.mode == QuantMode::kNF4) {
              q = amax > 0 ? nearest_nf4(x[j] / amax) : 7;  // code 7 is exactly 0
            } else {
              const float scale = (hi - lo) / float(levels);
              q = scale > 0 ? int(std::lround((x[j] - lo) / scale)) : 0;
              q = std::clamp(q, 0, levels);
            }
            const int64_t c = g * gs + j;
            pr[c / per] |= uint8_t(q << ((c % per) * bits));
          }
          if (spec_.mode == QuantMode::kNF4) {
            scales_[gi] = amax;
          } else {
            scales_[gi] = (hi - lo) / float(levels);
            biases_[gi] = lo;
          }
        }
      },
      8);
}

void QuantizedMatrix::dequantize(int64_t r0, int64_t r1, int64_t c0, int64_t c1, float* out,
                                 int64_t ld) const {
  const int64_t gs = spec_.group_size, G = groups_per_row();
  const float* table = spec_.mode == QuantMode::kNF4 ? kNF4Codes.data() : nullptr;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = packed_.data() + r * row_bytes_;
    float* o = out + (r - r0) * ld;
    for (int64_t c = c0; c < c1; c += gs) {
      const int64_t g = c / gs;
      const float s = scales_[size_t(r * G + g)];
      const float b = biases_.empty() ? 0.0f : biases_[size_t(r * G + g)];
      float* dst = o + (c - c0);
      dequant_group(spec_.bits, table, row, c, gs, s, b, dst);
    }
  }
}

void QuantizedMatrix::dot_row(int64_t r, const float* x, int64_t ldx, int64_t n, float* y,
                              int64_t ldy) const {
  const int64_t G = groups_per_row();
  dot_quantized_row(spec_.bits, spec_.mode == QuantMode::kNF4 ? kNF4Codes.data() : nullptr,
                    packed_.data() + r * row_bytes_, scales_.data() + r * G,
                    biases_.empty() ? nullptr : biases_.data() + r * G, G, spec_.group_size, x, ldx,
                    n, y, ldy);
}

std::vector<float> QuantizedMatrix::dequantize_all() const {
  std::vector<float> w(size_t(rows_ * cols_));
  parallel_chunks(rows_, 16, [&](int64_t r0, int64_t r1) {
    dequantize(r0, r1, 0, cols_, w.data() + r0 * cols_, cols_);
  });
  return w;
}

int QuantizedMatrix::code(int64_t r, int64_t c) const {
  const int per = 8 / spec_.bits;
  const uint8_t byte = packed_[size_t(r * row_bytes_ + c / per)];
  return (byte >> ((c % per) * spec_.bits)) & ((1 << spec_.bits) - 1);
}

QuantizedMatrix QuantizedMatrix::from_parts(const QuantSpec& spec, int64_t rows, int64_t cols,
                                            std::vector<uint8_t> packed, std::vector<float> scales,
                                            std::vector<float> biases) {
  spec.validate();
  const int64_t gs = spec.group_size;
  if (cols <= 0 || rows <= 0 || cols % gs != 0)
    throw std::invalid_argument("a (" + std::to_string(rows) + ", " + std::to_string(cols) +
                                ") matrix does not split into groups of " + std::to_string(gs));
  QuantizedMatrix q;
  q.spec_ = spec;
  q.rows_ = rows;
  q.cols_ = cols;
  const int per = 8 / spec.bits;
  q.row_bytes_ = (cols + per - 1) / per;
  const size_t groups = size_t(rows * (cols / gs));
  const auto need = [](const char* what, size_t have, size_t want) {
    if (have != want)
      throw std::invalid_argument(std::string(what) + " holds " + std::to_string(have) +
                                  " values, the matrix needs " + std::to_string(want));
  };
  need("codes", packed.size(), size_t(rows * q.row_bytes_));
  need("scales", scales.size(), groups);
  need("biases", biases.size(), spec.mode == QuantMode::kAffine ? groups : 0);
  for (float v : scales)
    if (!std::isfinite(v) || v < 0)
      throw std::invalid_argument("a group scale is " + std::to_string(v) +
                                  " (must be finite and >= 0)");
  for (float v : biases)
    if (!std::isfinite(v)) throw std::invalid_argument("a group bias is not finite");
  q.packed_ = std::move(packed);
  q.scales_ = std::move(scales);
  q.biases_ = std::move(biases);
  return q;
}

int64_t QuantizedMatrix::bytes() const {
  return int64_t(packed_.size()) + int64_t(sizeof(float) * (scales_.size() + biases_.size()));
}

}  // namespace bl
