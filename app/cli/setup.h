// Turns command-line options into a ready-to-train model, data and config
// (shared by train, bench and sample).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "args.h"
#include "core/model.h"
#include "core/presets.h"
#include "data/text_dataset.h"
#include "data/tokenizer.h"
#include "train/store_logger.h"
#include "train/trainer.h"

namespace bl::cli {

/// Options every training-like command accepts.
std::set<std::string> run_value_options();

struct RunSetup {
  Preset preset;            // model + train config after overrides
  std::string preset_name;  // empty for --config
  std::string data_path;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<TextDataset> data;
  std::unique_ptr<LanguageModel> model;
};

/// --preset NAME | --config FILE, --data FILE, --tokenizer char|byte, --set
/// field=value (when the command accepts it) and overrides (--steps, --seed,
/// --lr, --batch-size, --seq-len, --threads, --eval-interval, --warmup,
/// --optimizer, --schedule). The model's vocab_size follows the tokenizer.
RunSetup make_run_setup(const Args& args);

/// Applies the --steps ... --schedule overrides present in args to t (no validation).
void apply_train_overrides(const Args& args, TrainConfig& t);

/// Applies "--set field=value" assignments with dotted paths into the preset's
/// JSON ("model.block.n_heads=4", "train.learning_rate=3e-4",
/// "model.block_configs.1.ffn=gated"); values are JSON (numbers, true, null,
/// "quoted") or else plain strings. Throws UsageError for malformed
/// assignments and ConfigError (with field paths) for unknown fields, wrong
/// types or broken rules.
Preset apply_set_overrides(const Preset& base, const std::vector<std::string>& assignments);

/// Sets s.model's vocabulary from s.tokenizer, encodes `text` into s.data and
/// builds s.model from s.preset (weights initialised from train.seed if init).
void build_data_and_model(RunSetup& s, const std::string& text, bool init);

/// Trains with Ctrl-C / SIGTERM stopping cleanly after the current step (a
/// second signal kills), and records a thrown error as the run's failure.
TrainSummary train_recorded(Trainer& trainer, StoreLogger& logger);

/// Path of the bundled default corpus.
std::string default_data_path();

/// Parses a run id ("12", or "#12" as printed); UsageError naming `option` otherwise.
int64_t parse_run_id(const std::string& text, const std::string& option);

}  // namespace bl::cli
