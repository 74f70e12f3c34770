// One source for every vector ISA (simd/targets.h), dispatched at run time.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "quant/dequant_kernels.cpp"
#include "simd/targets.h"
// clang-format off: foreach_target.h must come before highway.h.
#include <hwy/foreach_target.h>
#include <hwy/highway.h>
// clang-format on

#include "quant/dequant_kernels.h"
#include "simd/isa.h"
#include "simd/rows-inl.h"

HWY_BEFORE_NAMESPACE();
namespace bl::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

namespace {

using D = hn::ScalableTag<float>;
using V = hn::Vec<D>;
constexpr int64_t kN = HWY_LANES(float);
constexpr int64_t kMaxGroup = 128;  // QuantSpec allows 32, 64, 128

// kN codes (one per byte) as floats.
HWY_INLINE V codes_to_float(const uint8_t* q) {
  const D d;
  const hn::Rebind<uint8_t, D> d8;
  const hn::Rebind<int32_t, D> di;
  return hn::ConvertTo(d, hn::PromoteTo(di, hn::LoadU(d8, q)));
}

// table[q] for kN codes: one permute of the 16-entry table with AVX-512, two
// and a select with 8-lane vectors, a scalar lookup otherwise.
HWY_INLINE V lookup(const uint8_t* q, const float* table) {
  const D d;
  if constexpr (kN == 16) {
    const hn::Rebind<uint8_t, D> d8;
    const hn::Rebind<int32_t, D> di;
    return hn::TableLookupLanes(hn::LoadU(d, table),
                                hn::IndicesFromVec(d, hn::PromoteTo(di, hn::LoadU(d8, q))));
  } else if constexpr (kN == 8) {
    const hn::Rebind<uint8_t, D> d8;
    const hn::Rebind<int32_t, D> di;
    const auto qi = hn::PromoteTo(di, hn::LoadU(d8, q));
    const auto low = hn::IndicesFromVec(d, hn::And(qi, hn::Set(di, 7)));
    const V lo = hn::TableLookupLanes(hn::LoadU(d, table), low);
    const V hi = hn::TableLookupLanes(hn::LoadU(d, table + 8), low);
    return hn::IfThenElse(hn::RebindMask(d, hn::Lt(hn::Set(di, 7), qi)), hi, lo);
  } else {
    float v[kN];
    for (int64_t l = 0; l < kN; ++l) v[l] = table[q[l]];
    return hn::LoadU(d, v);
  }
}

}  // namespace

void DequantGroup(int bits, const float* table, const uint8_t* row, int64_t first, int64_t n,
                  float s, float b, float* out) {
  const D d;
  const V vs = hn::Set(d, s), vb = hn::Set(d, b);
  const int per = 8 / bits, mask = (1 << bits) - 1;
  const uint8_t* p = row + first / per;
  if (bits == 2) {  // rare: scalar
    for (int64_t j = 0; j < n; j += per) {
      const uint8_t byte = *p++;
      for (int k = 0; k < per; ++k) out[j + k] = float((byte >> (k * bits)) & mask) * s + b;
    }
    return;
  }
  // One code per byte: 8-bit codes as they are, 4-bit ones unpacked (low
  // nibble first), then kN at a time to floats.
  uint8_t unpacked[kMaxGroup];
  const uint8_t* q = p;
  if (bits == 4) {
    for (int64_t k = 0; k < n / 2; ++k) {
      unpacked[2 * k] = p[k] & 0x0F;
      unpacked[2 * k + 1] = p[k] >> 4;
    }
    q = unpacked;
  }
  for (int64_t j = 0; j < n; j += kN) {
    // q * s then + b, rounded separately (no fused multiply-add): the same bits
    // on every ISA as the scalar formula.
    const V w =
        table ? hn::Mul(lookup(q + j, table), vs) : hn::Add(hn::Mul(codes_to_float(q + j), vs), vb);
    hn::StoreU(w, d, out + j);
  }
}

void DotQuantizedRow(int bits, const float* table, const uint8_t* row, const float* sc,
                     const float* bi, int64_t groups, int64_t gs, const float* x, int64_t ldx,
                     int64_t n, float* y, int64_t ldy) {
  // A group dequantized into an L1 buffer, then dotted with each input row.
  float buf[kMaxGroup];
  float acc[4] = {0, 0, 0, 0};
  for (int64_t g = 0; g < groups; ++g) {
    DequantGroup(bits, table, row, g * gs, gs, sc[g], bi ? bi[g] : 0.0f, buf);
    for (int64_t i = 0; i < n && i < 4; ++i) acc[i] += RowDot(x + i * ldx + g * gs, buf, gs);
  }
  for (int64_t i = 0; i < n && i < 4; ++i) y[i * ldy] = acc[i];
}

}  // namespace bl::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace bl {

HWY_EXPORT(DequantGroup);
HWY_EXPORT(DotQuantizedRow);

void dequant_group(int bits, const float* table, const uint8_t* row, int64_t first, int64_t n,
                   float s, float b, float* out) {
  BL_DISPATCH(DequantGroup)(bits, table, row, first, n, s, b, out);
}

void dot_quantized_row(int bits, const float* table, const uint8_t* row, const float* sc,
                       const float* bi, int64_t groups, int64_t gs, const float* x, int64_t ldx,
                       int64_t n, float* y, int64_t ldy) {
  BL_DISPATCH(DotQuantizedRow)(bits, table, row, sc, bi, groups, gs, x, ldx, n, y, ldy);
}

}  // namespace bl
#endif  // HWY_ONCE
