#include "dist/flat_buffer.h"

#include <algorithm>
#include <cstring>

namespace bl {

FlatBuffer::FlatBuffer(const std::vector<Parameter*>& params, Field field) : field_(field) {
  int64_t total = 0;
  for (Parameter* p : params) {
    if (!p || std::find(params_.begin(), params_.end(), p) != params_.end()) continue;
    if (!field_of(p)) continue;  // frozen (no gradient) or a meta parameter
    params_.push_back(p);
    offsets_.push_back(total);
    total += p->numel();
  }
  flat_.resize(total);
}

float* FlatBuffer::field_of(Parameter* p) const {
  return field_ == Field::kGrad ? p->grad() : p->data();
}

void FlatBuffer::gather() {
  for (size_t i = 0; i < params_.size(); ++i)
    std::memcpy(flat_.data() + offsets_[i], field_of(params_[i]),
                sizeof(float) * size_t(params_[i]->numel()));
}

void FlatBuffer::scatter() {
  for (size_t i = 0; i < params_.size(); ++i)
    std::memcpy(field_of(params_[i]), flat_.data() + offsets_[i],
                sizeof(float) * size_t(params_[i]->numel()));
}

}  // namespace bl
