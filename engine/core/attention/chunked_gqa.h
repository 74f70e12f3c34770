// Chunked local GQA (Llama 4's local layers, "iRoPE" when paired with NoPE
// global layers): the sequence is cut into fixed chunks of
// attention_chunk_size tokens and each token attends causally within its own
// chunk, floor(pos / chunk). The decoding cache holds only the current chunk.
#pragma once

#include "core/attention/local_gqa.h"

namespace bl {

class ChunkedGQA : public LocalGQA {
 public:
  explicit ChunkedGQA(const BlockConfig& c);
  int64_t first_key(int64_t pos) const override { return pos / chunk_ * chunk_; }
  int64_t cache_capacity() const override { return chunk_ - 1; }
  int64_t charged_keys(int64_t pos, int64_t seq_len) const override {
    const int64_t start = pos / chunk_ * chunk_;  // the whole chunk, cut at the sequence end
    return (start + chunk_ < seq_len ? start + chunk_ : seq_len) - start;
  }
  int64_t chunk() const { return chunk_; }

 protected:
  AttentionOptions options(PositionEncoding& pos) const override;

 private:
  int64_t chunk_;
};

}  // namespace bl
