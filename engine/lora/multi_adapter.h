// Many adapters on one base model at once (MAX's LoRA serving): adapters are
// loaded into per-Linear AdapterBanks; each sequence of a batch names the
// adapter it runs with (or none), so one forward pass serves several fine-tunes.
// Ranks may differ per adapter up to max_rank. Inference only.
//
//   MultiAdapter multi(model, /*max_rank=*/16);
//   int32_t chat = multi.load("chat", "adapters/chat");      // PEFT dir or .gguf
//   int32_t code = multi.load("code", "adapters/code.gguf");
//   multi.set_batch({chat, -1, code});                       // row 1: base model
//   generate_batch(model, prompts, opt, rngs);               // generate/sampler.h
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/model.h"
#include "lora/adapter_bank.h"
#include "lora/adapter_io.h"

namespace bl {

class MultiAdapter {
 public:
  MultiAdapter(LanguageModel& model, int64_t max_rank);
  /// Detaches every bank from the model.
  ~MultiAdapter();
  MultiAdapter(const MultiAdapter&) = delete;
  MultiAdapter& operator=(const MultiAdapter&) = delete;

  /// Adds an adapter under a new name; returns its id (0, 1, ...). Every layer is
  /// checked first (module exists, shapes, rank <= max_rank): AdapterError names
  /// the tensor, and nothing is added.
  int32_t add(const std::string& name, const Adapter& ad);
  /// read_adapter(path) + add.
  int32_t load(const std::string& name, const std::string& path);
  /// Adapter id per sequence of the following forward passes (-1 = base only);
  /// the batch size of those passes must equal ids.size(). Empty = base for all.
  void set_batch(std::vector<int32_t> ids);
  /// Id of a named adapter; AdapterError if unknown.
  int32_t id(const std::string& name) const;
  const std::vector<std::string>& names() const { return names_; }
  int64_t max_rank() const { return max_rank_; }

 private:
  LanguageModel& model_;
  int64_t max_rank_;
  std::shared_ptr<BatchRouting> routing_;
  std::map<std::string, std::unique_ptr<AdapterBank>> banks_;  // by module path
  std::vector<std::string> names_;
};

}  // namespace bl
