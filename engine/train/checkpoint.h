// Checkpoints: a directory holding everything needed to sample from a model or
// resume its training bit-for-bit:
//   model.safetensors      weights (names: docs/checkpoint-format.md)
//   optimizer.safetensors  optimizer state buffers ("<param>.<slot>"), when saved
//   checkpoint.json        model + train config, tokenizer, step, RNG and data position
// The directory is written under a temporary name and renamed into place, so a
// crash never leaves a half-written checkpoint under the final name.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "core/model.h"
#include "data/tokenizer.h"
#include "train/train_config.h"

namespace bl {

class Trainer;

struct CheckpointInfo {
  ModelConfig model;
  TrainConfig train;
  nlohmann::json tokenizer;
  int64_t step = 0;
  nlohmann::json trainer_state;  // sampler / dropout RNG, optimizer step count
};

/// Writes model weights, configs and tokenizer (and, with a trainer, its optimizer
/// and data state) to `dir`, replacing an existing checkpoint there atomically.
void save_checkpoint(const std::string& dir, LanguageModel& model, const TrainConfig& train,
                     const Tokenizer& tok, Trainer* trainer = nullptr);

/// Reads checkpoint.json. Throws std::runtime_error naming the file on problems.
CheckpointInfo read_checkpoint_info(const std::string& dir);

/// Copies the weights in dir/model.safetensors into the model; every tensor must
/// exist with the right shape (errors name the tensor, the file and both shapes).
void load_model_weights(const std::string& dir, LanguageModel& model);

/// Restores optimizer state, step and data/RNG positions saved with a trainer.
void load_trainer_state(const std::string& dir, Trainer& trainer);

}  // namespace bl
