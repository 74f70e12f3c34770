// Learned absolute position embedding (GPT-2's wpe), added to the embeddings.
#pragma once

#include "core/components.h"

namespace bl {

class LearnedPosition : public PositionEncoding {
 public:
  explicit LearnedPosition(const BlockConfig& c);
  Tensor embed(const Tensor& x, int64_t offset) override;
  bool is_absolute() const override { return true; }

 private:
  int64_t max_len_, dim_;
  Parameter* weight_;  // (max_seq_len, d_model)
};

}  // namespace bl
