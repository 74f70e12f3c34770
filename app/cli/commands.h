// blocklab-cli subcommands. Each returns the process exit code.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "args.h"
#include "lora/finetune.h"
#include "run/launcher.h"

namespace bl::cli {

int train_command(const std::vector<std::string>& argv);
int bench_command(const std::vector<std::string>& argv);
int sample_command(const std::vector<std::string>& argv);
/// runs list | show | export | compare | tag | note | delete (the experiment store).
int runs_command(const std::vector<std::string>& argv);
/// models list | info NAME | count NAME [--detail] (registry, presets, architectures).
int models_command(const std::vector<std::string>& argv);

/// export hf RUN|CKPT --out DIR [--dtype f32|bf16|f16] (hf_command.cpp): the
/// arguments after "hf".
int export_hf_command(const std::vector<std::string>& argv);
/// models import hf DIR [--name NAME] [--out CKPT]: an HF folder as a checkpoint.
int models_import_command(const std::vector<std::string>& argv);
/// The checkpoint `train --init-from HF_DIR` fine-tunes: the folder imported
/// once into <database dir>/hf-imports/<name>-<hash of its files>.
std::string import_hf_for_finetune(const std::string& hf_dir, const std::optional<std::string>& db);

/// tokenizer train --data F --vocab-size N --out DIR | encode | decode (byte-level BPE).
int tokenizer_command(const std::vector<std::string>& argv);
/// data prepare --data TEXT --out TOKENS [--tokenizer char|byte|bpe:DIR] (data_command.cpp).
int data_command(const std::vector<std::string>& argv);
/// inspect RUN|CKPT --lens --prompt TEXT [--csv FILE] (inspect_command.cpp).
int inspect_command(const std::vector<std::string>& argv);
/// eval --run RUN|DIR [--data F] [--batches K]: loss, perplexity, bits per byte.
int eval_command(const std::vector<std::string>& argv);
/// sweep SPEC [--workers N | --slurm ...] (sweep_command.cpp), and its hidden
/// helpers: one local worker process, one Slurm array task.
int sweep_command(const std::vector<std::string>& argv);
int sweep_worker_command(const std::vector<std::string>& argv);
int sweep_task_command(const std::vector<std::string>& argv);

/// export gguf RUN|CKPT --out FILE.gguf [--dtype f32|f16] | export hf ...
/// (export_command.cpp).
int export_command(const std::vector<std::string>& argv);

/// lora merge | export | sample (app/cli/lora_command.cpp).
int lora_command(const std::vector<std::string>& argv);
/// train --init-from CKPT --lora rank=..,alpha=..,targets=.. [--quantize ...] (LoRA / QLoRA
/// fine-tuning).
int lora_train_command(const std::vector<std::string>& argv);

/// Trains a launched fine-tune (a new one or a resumed LoRA run) with its
/// progress lines and summary (lora_command.cpp).
int run_finetune(PreparedRun& run, const Args& args);

/// "rank=8,alpha=16,targets=q,v" (targets run to the end or the next key; default q, v).
using LoraSpec = bl::LoraSpec;
LoraSpec parse_lora_spec(const std::string& text);

}  // namespace bl::cli
