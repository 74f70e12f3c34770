#include "lora/adapter_saver.h"

#include <filesystem>

#include "lora/adapter_io.h"
#include "train/metrics.h"
#include "train/trainer.h"

namespace bl {

namespace fs = std::filesystem;

AdapterSaver::AdapterSaver(std::function<std::string()> path_of, int64_t interval,
                           std::function<void(int64_t, const std::string&)> on_saved,
                           std::string base_model)
    : path_of_(std::move(path_of)),
      interval_(interval),
      on_saved_(std::move(on_saved)),
      base_model_(std::move(base_model)) {}

void AdapterSaver::on_step_end(Trainer& t, const StepMetrics& m) {
  if (interval_ > 0 && (m.step + 1) % interval_ == 0) save(t, m.step + 1);
}

void AdapterSaver::on_train_end(Trainer& t, const TrainSummary& s) {
  if (s.steps != last_step_) save(t, s.steps);
}

void AdapterSaver::save(Trainer& t, int64_t step) {
  const std::string path = path_of_();
  // Write next to the target, then swap: a kill mid-save never leaves a torn adapter.
  // (save_adapter picks the format by extension, so a GGUF temp keeps ".gguf".)
  const bool gguf = path.ends_with(".gguf");
  const std::string fresh = gguf ? path.substr(0, path.size() - 5) + ".new.gguf" : path + ".new";
  const std::string old = path + ".old";
  fs::remove_all(fresh);
  fs::remove_all(old);
  // A run begun when .gguf adapters were written in Blocklab's own layout (any
  // model) keeps that layout when resumed: its base may be one llama.cpp cannot run.
  if (gguf && !layout_)
    layout_ = fs::exists(path) && is_blocklab_layout_gguf(path) ? GgufLayout::kBlocklab
                                                                : GgufLayout::kLlamaCpp;
  save_adapter(fresh, t.model(), base_model_, layout_.value_or(GgufLayout::kLlamaCpp));
  if (fs::exists(path)) fs::rename(path, old);
  fs::rename(fresh, path);
  fs::remove_all(old);
  last_step_ = step;
  if (on_saved_) on_saved_(step, path);
}

}  // namespace bl
