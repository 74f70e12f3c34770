// Checkpoints: a directory holding everything needed to sample from a model or
// resume its training bit-for-bit (docs/checkpoint-format.md):
//   model.safetensors      weights, Hugging Face Llama tensor names where one exists
//   optimizer.safetensors  optimizer state "<tensor name>.<slot>" (same names), when saved
//   checkpoint.json        model + train config, tokenizer, step, RNG and data position
//   manifest.json          SHA-256 of each file above (io/file_manifest.h)
// A fine-tune checkpoint (LoRA / QLoRA) holds only the trainable parameters in
// model.safetensors; its checkpoint.json "finetune" block names the base
// checkpoint that holds the frozen rest (lora/finetune.h).
// The directory is written under a temporary name and renamed into place, so a
// crash never leaves a half-written checkpoint under the final name.
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/model.h"
#include "data/tokenizer.h"
#include "train/callbacks.h"
#include "train/train_config.h"

namespace bl {

class Trainer;

/// A checkpoint is missing, corrupt or does not fit. what() names the file and the problem.
class CheckpointError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// checkpoint.json "version" written by this build (1 = internal tensor names).
constexpr int kCheckpointVersion = 2;

struct CheckpointInfo {
  ModelConfig model;
  TrainConfig train;
  nlohmann::json tokenizer;
  int64_t step = 0;
  int version = 1;
  nlohmann::json trainer_state;  // sampler / dropout RNG, optimizer step count
  /// Null for a whole-model checkpoint. For a fine-tune checkpoint the spec that
  /// rebuilds the frozen base (Finetune::summary: base_checkpoint, rank, ...).
  nlohmann::json finetune;
  /// Null unless the model was saved quantized: {"spec": "nf4" | "affine4@32" | ...,
  /// "tensors": [internal weight names stored quantized]}.
  nlohmann::json quantization;
};

/// The model.safetensors name of an internal parameter name, e.g.
/// "layers.3.attention.q_proj.weight" -> "model.layers.3.self_attn.q_proj.weight".
/// Hugging Face Llama names where an equivalent exists, "model.<name>" otherwise.
std::string checkpoint_tensor_name(const std::string& internal_name);
/// Inverse of checkpoint_tensor_name; nullopt for names it never produces.
std::optional<std::string> internal_tensor_name(const std::string& checkpoint_name);

/// Writes model weights, configs and tokenizer (and, with a trainer, its optimizer
/// and data state) to `dir`, replacing an existing checkpoint there atomically.
/// A non-null `finetune` spec makes a fine-tune checkpoint: only the trainable
/// parameters are written (the base stays in its own checkpoint), and the spec
/// is stored as checkpoint.json "finetune".
/// Throws CheckpointError naming the path on I/O failure (e.g. a full disk).
void save_checkpoint(const std::string& dir, LanguageModel& model, const TrainConfig& train,
                     const Tokenizer& tok, Trainer* trainer = nullptr,
                     const nlohmann::json& finetune = nullptr);

/// Reads checkpoint.json. Throws CheckpointError naming the file on problems.
CheckpointInfo read_checkpoint_info(const std::string& dir);

/// Copies the weights in dir/model.safetensors into the model. Every parameter
/// must be present with the right shape and no unknown tensor may be present
/// (errors name the file, the tensor and both shapes); on error the model is
/// left unchanged. Reads both current and version-1 (internal) names. A
/// fine-tune checkpoint is rejected with a CheckpointError naming its base.
/// A quantized model's checkpoint (checkpoint.json "quantization") loads into
/// an unquantized model of the same config: the listed weights become the
/// stored quantized matrices, bit for bit.
void load_model_weights(const std::string& dir, LanguageModel& model);

/// Copies a fine-tune checkpoint's weights into the model's trainable
/// parameters (the model is the rebuilt fine-tune: base + adapters). Every
/// trainable parameter must be present with the right shape, no other tensor
/// may be; on error the model is unchanged.
void load_trainable_weights(const std::string& dir, LanguageModel& model);

/// Restores optimizer state, step and data/RNG positions saved with a trainer.
/// Throws CheckpointError naming the file; on error the trainer's optimizer is unchanged.
void load_trainer_state(const std::string& dir, Trainer& trainer);

/// What the experiment store records for a checkpoint directory: the SHA-256
/// of its manifest.json (which lists every file's SHA-256), or of
/// model.safetensors for a checkpoint saved before manifests existed.
std::string checkpoint_sha256(const std::string& dir);

/// Verifies a checkpoint against what was recorded (`recorded_sha256`, from
/// checkpoint_sha256; empty = nothing recorded): with a manifest, the manifest
/// itself and every file in the directory (none missing, none added); without
/// one (old format), model.safetensors. Throws CheckpointError naming the file.
void verify_checkpoint(const std::string& dir, const std::string& recorded_sha256);

/// When a CheckpointSaver writes checkpoints.
struct CheckpointPolicy {
  int64_t interval = 0;  // every `interval` steps (0 = only at the end)
  bool at_end = true;    // when training completes or is stopped (never after divergence)
  int keep_last = 2;     // keep the newest K directories written by this saver; 0 = all
};

/// Callback that checkpoints a training run: dir_of(step) names the directory
/// of the checkpoint after `step` optimizer steps; on_saved(step, dir) runs once
/// it is complete on disk (e.g. to register it in the experiment store).
class CheckpointSaver : public Callback {
 public:
  using DirFn = std::function<std::string(int64_t step)>;
  using SavedFn = std::function<void(int64_t step, const std::string& dir)>;
  CheckpointSaver(const Tokenizer& tok, CheckpointPolicy policy, DirFn dir_of,
                  SavedFn on_saved = {});
  /// Writes fine-tune checkpoints from now on: trainable parameters only, with
  /// this spec (save_checkpoint's `finetune`).
  void set_finetune(nlohmann::json spec) { finetune_ = std::move(spec); }

  void on_step_end(Trainer& t, const StepMetrics& m) override;
  void on_train_end(Trainer& t, const TrainSummary& s) override;
  /// Saves a checkpoint of the trainer's current state now; returns its directory.
  std::string save(Trainer& t);
  /// Directory of the newest checkpoint written (empty if none).
  const std::string& last_dir() const { return last_dir_; }
  std::optional<int64_t> last_step() const { return last_step_; }

 private:
  const Tokenizer& tok_;
  CheckpointPolicy policy_;
  DirFn dir_of_;
  SavedFn on_saved_;
  nlohmann::json finetune_;
  std::vector<std::string> kept_;  // directories written, oldest first
  std::string last_dir_;
  std::optional<int64_t> last_step_;
};

}  // namespace bl
