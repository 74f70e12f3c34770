// Block-quantized weight matrices (frozen; inference and LoRA bases).
//
// Each row of a (rows, cols) matrix is split into groups of `group_size`
// consecutive columns; every group stores its own constants:
//  - affine (MLX's scheme), bits 2, 4 or 8: scale = (max - min) / (2^bits - 1),
//    bias = min, q = round((w - bias) / scale) in [0, 2^bits - 1],
//    w' = q * scale + bias. Round-to-nearest gives |w - w'| <= scale / 2.
//  - nf4 (QLoRA, Dettmers et al. 2023): absmax = max |w| of the group (block),
//    q = index of the NormalFloat-4 code nearest to w / absmax,
//    w' = code[q] * absmax. |w - w'| <= absmax * (half the widest code gap
//    around w / absmax) <= absmax * kNF4MaxHalfGap.
// Codes are packed little-end first into bytes (8 / bits codes per byte), each
// row padded to whole bytes. Constants are float32 (MLX stores them in the
// weight dtype; we keep the engine's single float type).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace bl {

enum class QuantMode { kAffine, kNF4 };

struct QuantSpec {
  QuantMode mode = QuantMode::kAffine;
  int bits = 4;             // affine: 2, 4 or 8; nf4: always 4
  int64_t group_size = 64;  // 32, 64 or 128 (nf4: the absmax block size)

  /// "affine4" / "affine8" / "affine2" / "nf4" (+ "@<group>" when not 64).
  std::string str() const;
  /// Parses "affine4", "affine8", "affine2", "nf4", optionally "...@32|64|128".
  /// Throws std::invalid_argument naming the accepted forms.
  static QuantSpec parse(const std::string& s);
  /// Throws std::invalid_argument if bits / group size / mode do not combine.
  void validate() const;
};

/// The 16 NormalFloat-4 levels of QLoRA (bitsandbytes' table), ascending.
extern const std::array<float, 16> kNF4Codes;
/// Largest half gap between adjacent NF4 codes (the worst rounding, in units of absmax).
float nf4_max_half_gap();

class QuantizedMatrix {
 public:
  QuantizedMatrix() = default;
  /// Quantizes w (rows, cols), row-major. cols must be a multiple of the group size.
  QuantizedMatrix(const float* w, int64_t rows, int64_t cols, const QuantSpec& spec);

  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  const QuantSpec& spec() const { return spec_; }
  int64_t groups_per_row() const { return cols_ / spec_.group_size; }
  int64_t row_bytes() const { return row_bytes_; }

  /// Writes rows [r0, r1), columns [c0, c1) dequantized into out with leading
  /// dimension ld. c0 and c1 must be group aligned (c1 may equal cols).
  void dequantize(int64_t r0, int64_t r1, int64_t c0, int64_t c1, float* out, int64_t ld) const;
  /// y[i * ldy] = sum_c W[r, c] * x[i * ldx + c] for i < n <= 4: row r against a
  /// few input rows (decoding), a group at a time through an L1 buffer.
  void dot_row(int64_t r, const float* x, int64_t ldx, int64_t n, float* y, int64_t ldy) const;
  /// Dequantizes all rows (tests, dequantize_model).
  std::vector<float> dequantize_all() const;
  /// The packed code of element (r, c).
  int code(int64_t r, int64_t c) const;
  /// Per-group constants: affine scale / nf4 absmax, and affine bias (0 for nf4).
  float group_scale(int64_t r, int64_t g) const {
    return scales_[size_t(r * groups_per_row() + g)];
  }
  float group_bias(int64_t r, int64_t g) const {
    return biases_.empty() ? 0.0f : biases_[size_t(r * groups_per_row() + g)];
  }
  /// Bytes held: packed codes + per-group constants.
  int64_t bytes() const;

  /// The stored form, for checkpoints: packed codes (rows, row_bytes), per-group
  /// scales (rows, groups) and affine biases (rows, groups; empty for nf4).
  const std::vector<uint8_t>& packed() const { return packed_; }
  const std::vector<float>& scales() const { return scales_; }
  const std::vector<float>& biases() const { return biases_; }
  /// Rebuilds a matrix from its stored form. Throws std::invalid_argument naming
  /// the part whose size does not fit, or a non-finite constant or negative
  /// nf4 absmax / affine scale. (Columns are whole groups, so rows have no
  /// padding bits; every code value is a valid level.)
  static QuantizedMatrix from_parts(const QuantSpec& spec, int64_t rows, int64_t cols,
                                    std::vector<uint8_t> packed, std::vector<float> scales,
                                    std::vector<float> biases);

 private:
  QuantSpec spec_;
  int64_t rows_ = 0, cols_ = 0, row_bytes_ = 0;
  std::vector<uint8_t> packed_;
  std::vector<float> scales_, biases_;  // biases_ empty for nf4
};

}  // namespace bl
