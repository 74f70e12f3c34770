#include "lora/multi_adapter.h"

#include <algorithm>

#include "lora/lora.h"

namespace bl {

MultiAdapter::MultiAdapter(LanguageModel& model, int64_t max_rank)
    : model_(model), max_rank_(max_rank), routing_(std::make_shared<BatchRouting>()) {
  if (max_rank < 1) throw AdapterError("max_rank must be >= 1");
}

MultiAdapter::~MultiAdapter() {
  for (auto& [path, l] : named_linears(model_))
    if (banks_.count(path)) l->set_adapter_bank(nullptr);
}

int32_t MultiAdapter::add(const std::string& name, const Adapter& ad) {
  if (std::find(names_.begin(), names_.end(), name) != names_.end())
    throw AdapterError("an adapter named '" + name + "' is loaded already");
  std::map<std::string, Linear*> linears;
  for (auto& [path, l] : named_linears(model_)) linears[path] = l;
  for (auto& [path, x] : ad.layers) {
    const std::string ta = peft_tensor_name(path, "lora_A"), tb = peft_tensor_name(path, "lora_B");
    auto it = linears.find(path);
    if (it == linears.end())
      throw AdapterError("adapter '" + name + "': tensor '" + ta +
                         "' names no Linear layer of the model");
    if (x.in != it->second->in_features() || x.out != it->second->out_features())
      throw AdapterError("adapter '" + name + "': tensors '" + ta + "' / '" + tb + "' are (" +
                         std::to_string(x.rank) + ", " + std::to_string(x.in) + ") / (" +
                         std::to_string(x.out) + ", " + std::to_string(x.rank) + ") but layer '" +
                         path + "' is " + std::to_string(it->second->out_features()) + " x " +
                         std::to_string(it->second->in_features()));
    if (x.rank > max_rank_)
      throw AdapterError("adapter '" + name + "': tensor '" + ta + "' has rank " +
                         std::to_string(x.rank) + " above max_rank " + std::to_string(max_rank_));
  }
  const int32_t id = int32_t(names_.size());
  for (auto& [path, x] : ad.layers) {
    auto& bank = banks_[path];
    Linear* l = linears[path];
    if (!bank) {
      bank =
          std::make_unique<AdapterBank>(l->in_features(), l->out_features(), max_rank_, routing_);
      l->set_adapter_bank(bank.get());
    }
    bank->set(id, x.rank, x.scaling(), x.a.data(), x.b.data());
  }
  names_.push_back(name);
  return id;
}

int32_t MultiAdapter::load(const std::string& name, const std::string& path) {
  return add(name, read_adapter(path, &model_.config()));
}

void MultiAdapter::set_batch(std::vector<int32_t> ids) {
  for (int32_t i : ids)
    if (i < -1 || i >= int32_t(names_.size()))
      throw AdapterError("adapter id " + std::to_string(i) + " is not loaded (" +
                         std::to_string(names_.size()) + " adapters; -1 = base model)");
  routing_->adapter = std::move(ids);
}

int32_t MultiAdapter::id(const std::string& name) const {
  auto it = std::find(names_.begin(), names_.end(), name);
  if (it == names_.end()) throw AdapterError("no adapter named '" + name + "' is loaded");
  return int32_t(it - names_.begin());
}

}  // namespace bl
