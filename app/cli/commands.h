// blocklab-cli subcommands. Each returns the process exit code.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "args.h"
#include "lora/finetune.h"
#include "store/experiment_store.h"

namespace bl::cli {

int train_command(const std::vector<std::string>& argv);
int bench_command(const std::vector<std::string>& argv);
int sample_command(const std::vector<std::string>& argv);
/// runs list | show | export | compare | tag | note | delete (the experiment store).
int runs_command(const std::vector<std::string>& argv);
/// models list | info NAME | count NAME [--detail] (registry, presets, architectures).
int models_command(const std::vector<std::string>& argv);

/// lora merge | export | sample (app/cli/lora_command.cpp).
int lora_command(const std::vector<std::string>& argv);
/// train --init-from CKPT --lora rank=..,alpha=..,targets=.. [--quantize ...] (LoRA / QLoRA
/// fine-tuning).
int lora_train_command(const std::vector<std::string>& argv);

/// train --resume RUN for a LoRA / QLoRA run (is_finetune_run): rebuilds the
/// fine-tune from the spec recorded in the run and continues from its newest
/// fine-tune checkpoint. check_resume_options has been applied to args.
int lora_resume_command(ExperimentStore& store, const RunRecord& run, const Args& args);
/// A run recorded by a fine-tune with its spec (summary "lora" block).
bool is_finetune_run(const RunRecord& run);

// Shared by the full and the LoRA resume (train_command.cpp).
/// Rejects options a resume cannot change and runs that are still alive.
void check_resume_options(const RunRecord& run, const Args& args);
/// The run's newest checkpoint on disk, its model.safetensors checked against
/// the SHA-256 recorded in the store (CheckpointError if it differs).
CheckpointRecord checkpoint_to_resume(ExperimentStore& store, const RunRecord& run);
/// The run's dataset text (a warning on stderr unless quiet if it changed since).
std::string read_resume_dataset(const RunRecord& run, bool quiet);

/// "rank=8,alpha=16,targets=q,v" (targets run to the end or the next key; default q, v).
using LoraSpec = bl::LoraSpec;
LoraSpec parse_lora_spec(const std::string& text);

}  // namespace bl::cli
