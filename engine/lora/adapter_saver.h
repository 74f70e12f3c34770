// Saves a fine-tune's adapters while it trains: every `interval` optimizer
// steps (0 = only at the end) and when training ends (completed, stopped or
// diverged), so a killed LoRA run keeps the adapter of its last interval.
// A save replaces the previous one atomically enough that a kill during it
// leaves either the old or the new adapter complete on disk.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "lora/adapter_io.h"
#include "train/callbacks.h"

namespace bl {

class AdapterSaver : public Callback {
 public:
  /// path_of() gives the adapter path (a PEFT directory, or a *.gguf file);
  /// on_saved(step, path) runs after each save (e.g. to record it in the store).
  /// base_model names the base in PEFT's adapter_config.json.
  AdapterSaver(std::function<std::string()> path_of, int64_t interval,
               std::function<void(int64_t step, const std::string& path)> on_saved = {},
               std::string base_model = "");
  void on_step_end(Trainer& t, const StepMetrics& m) override;
  void on_train_end(Trainer& t, const TrainSummary& s) override;
  /// Step of the newest save, -1 before the first.
  int64_t last_step() const { return last_step_; }

 private:
  void save(Trainer& t, int64_t step);
  std::function<std::string()> path_of_;
  int64_t interval_;
  std::function<void(int64_t, const std::string&)> on_saved_;
  int64_t last_step_ = -1;
  std::string base_model_;
  std::optional<GgufLayout> layout_;  // a .gguf adapter's, fixed at the first save
};

}  // namespace bl
