#include "quant/quantized_matrix.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

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

// Dequantizes one group of n codes packed from bit offset `first` of `row`.
// Groups are multiples of 32 codes, so they start on a byte boundary.
template <int kBits, bool kTable>
void dequant_group(const uint8_t* row, int64_t first, int64_t n, float s, float b,
                   const float* table, float* out) {
  constexpr int kPer = 8 / kBits;
  constexpr int kMask = (1 << kBits) - 1;
  const uint8_t* p = row + first / kPer;
#if defined(__AVX512F__) && defined(__AVX512BW__)
  // 16 codes per step: widen to int32, then one FMA (affine) or one 16-entry
  // table permute (NF4: the whole code book fits one register).
  if constexpr (kBits == 4) {
    const __m512 vs = _mm512_set1_ps(s), vb = _mm512_set1_ps(b);
    __m512 lut = _mm512_setzero_ps();
    if constexpr (kTable) lut = _mm512_mul_ps(_mm512_loadu_ps(table), vs);
    const __m128i mask = _mm_set1_epi8(0x0F);
    for (int64_t j = 0; j < n; j += 16) {
      const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + j / 2));
      const __m128i lo = _mm_and_si128(v, mask), hi = _mm_and_si128(_mm_srli_epi16(v, 4), mask);
      const __m512i q = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(lo, hi));
      const __m512 w =
          kTable ? _mm512_permutexvar_ps(q, lut) : _mm512_fmadd_ps(_mm512_cvtepi32_ps(q), vs, vb);
      _mm512_storeu_ps(out + j, w);
    }
    return;
  } else if constexpr (kBits == 8) {
    const __m512 vs = _mm512_set1_ps(s), vb = _mm512_set1_ps(b);
    for (int64_t j = 0; j < n; j += 16) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + j));
      _mm512_storeu_ps(out + j,
                       _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(v)), vs, vb));
    }
    return;
  }
#endif
  for (int64_t j = 0; j < n; j += kPer) {
    const uint8_t byte = *p++;
    for (int k = 0; k < kPer; ++k) {
      const int q = (byte >> (k * kBits)) & kMask;
      out[j + k] = kTable ? table[q] * s : float(q) * s + b;
    }
  }
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
      if (table)
        dequant_group<4, true>(row, c, gs, s, b, table, dst);
      else if (spec_.bits == 2)
        dequant_group<2, false>(row, c, gs, s, b, nullptr, dst);
      else if (spec_.bits == 4)
        dequant_group<4, false>(row, c, gs, s, b, nullptr, dst);
      else
        dequant_group<8, false>(row, c, gs, s, b, nullptr, dst);
    }
  }
}

void QuantizedMatrix::dot_row(int64_t r, const float* x, int64_t ldx, int64_t n, float* y,
                              int64_t ldy) const {
  const int64_t gs = spec_.group_size, G = groups_per_row();
  const uint8_t* row = packed_.data() + r * row_bytes_;
  const float* sc = scales_.data() + r * G;
  const float* bi = biases_.empty() ? nullptr : biases_.data() + r * G;
#if defined(__AVX512F__) && defined(__AVX512BW__)
  if (spec_.bits == 8 && n <= 4) {
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                     _mm512_setzero_ps()};
    for (int64_t g = 0; g < G; ++g) {
      const __m512 vs = _mm512_set1_ps(sc[g]), vb = _mm512_set1_ps(bi[g]);
      for (int64_t j = g * gs; j < (g + 1) * gs; j += 16) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + j));
        const __m512 w = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(v)), vs, vb);
        for (int64_t i = 0; i < n; ++i)
          acc[i] = _mm512_fmadd_ps(w, _mm512_loadu_ps(x + i * ldx + j), acc[i]);
      }
    }
    for (int64_t i = 0; i < n; ++i) y[i * ldy] = _mm512_reduce_add_ps(acc[i]);
    return;
  }
  if (spec_.bits == 4 && n <= 4) {
    const bool nf4 = spec_.mode == QuantMode::kNF4;
    const __m512 codes = _mm512_loadu_ps(kNF4Codes.data());
    const __m128i mask = _mm_set1_epi8(0x0F);
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                     _mm512_setzero_ps()};
    for (int64_t g = 0; g < G; ++g) {
      const __m512 vs = _mm512_set1_ps(sc[g]), vb = _mm512_set1_ps(bi ? bi[g] : 0.0f);
      const __m512 lut = _mm512_mul_ps(codes, vs);
      for (int64_t j = g * gs; j < (g + 1) * gs; j += 16) {
        const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + j / 2));
        const __m128i lo = _mm_and_si128(v, mask), hi = _mm_and_si128(_mm_srli_epi16(v, 4), mask);
        const __m512i q = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(lo, hi));
        const __m512 w =
            nf4 ? _mm512_permutexvar_ps(q, lut) : _mm512_fmadd_ps(_mm512_cvtepi32_ps(q), vs, vb);
        for (int64_t i = 0; i < n; ++i)
          acc[i] = _mm512_fmadd_ps(w, _mm512_loadu_ps(x + i * ldx + j), acc[i]);
      }
    }
    for (int64_t i = 0; i < n; ++i) y[i * ldy] = _mm512_reduce_add_ps(acc[i]);
    return;
  }
#endif
  // Portable path: one group at a time through a small stack buffer.
  float buf[128];
  float acc[4] = {0, 0, 0, 0};
  for (int64_t g = 0; g < G; ++g) {
    dequantize(r, r + 1, g * gs, (g + 1) * gs, buf, gs);
    for (int64_t i = 0; i < n && i < 4; ++i) {
      const float* xi = x + i * ldx + g * gs;
      float a = 0;
#pragma omp simd reduction(+ : a)
      for (int64_t j = 0; j < gs; ++j) a += xi[j] * buf[j];
      acc[i] += a;
    }
  }
  for (int64_t i = 0; i < n && i < 4; ++i) y[i * ldy] = acc[i];
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

int64_t QuantizedMatrix::bytes() const {
  return int64_t(packed_.size()) + int64_t(sizeof(float) * (scales_.size() + biases_.size()));
}

}  // namespace bl
