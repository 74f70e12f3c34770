#include "core/attention/chunked_gqa.h"

#include <stdexcept>

#include "core/config.h"

namespace bl {

namespace {
int64_t checked_chunk(const BlockConfig& c) {
  if (!c.attention_chunk_size || *c.attention_chunk_size < 1)
    throw std::invalid_argument("chunked_gqa needs attention_chunk_size >= 1");
  return *c.attention_chunk_size;
}
}  // namespace

ChunkedGQA::ChunkedGQA(const BlockConfig& c)
    : LocalGQA(c, c.effective_n_kv_heads()), chunk_(checked_chunk(c)) {}

AttentionOptions ChunkedGQA::options(PositionEncoding& pos) const {
  AttentionOptions o = GQA::options(pos);
  o.chunk = chunk_;
  return o;
}

}  // namespace bl
