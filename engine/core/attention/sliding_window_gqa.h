// Sliding-window GQA (Mistral, Gemma 2/3 local layers): each token attends to
// the last window_size tokens, itself included. The decoding cache holds only
// the last window_size - 1 keys/values, so sequences of any length decode in
// constant memory.
#pragma once

#include "core/attention/local_gqa.h"

namespace bl {

class SlidingWindowGQA : public LocalGQA {
 public:
  explicit SlidingWindowGQA(const BlockConfig& c);
  int64_t first_key(int64_t pos) const override {
    return pos - window_ + 1 > 0 ? pos - window_ + 1 : 0;
  }
  int64_t cache_capacity() const override { return window_ - 1; }
  int64_t charged_keys(int64_t, int64_t seq_len) const override {
    return window_ < seq_len ? window_ : seq_len;
  }
  int64_t window() const { return window_; }

 protected:
  AttentionOptions options(PositionEncoding& pos) const override;

 private:
  int64_t window_;
};

}  // namespace bl
