// Turns command-line options into a ready-to-train model, data and config
// (shared by train, bench and sample).
#pragma once

#include <memory>
#include <string>

#include "args.h"
#include "core/model.h"
#include "core/presets.h"
#include "data/text_dataset.h"
#include "data/tokenizer.h"

namespace bl::cli {

/// Options every training-like command accepts.
std::set<std::string> run_value_options();

struct RunSetup {
  Preset preset;                 // model + train config after overrides
  std::string preset_name;       // empty for --config
  std::string data_path;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<TextDataset> data;
  std::unique_ptr<LanguageModel> model;
};

/// --preset NAME | --config FILE, --data FILE, --tokenizer char|byte, and overrides
/// (--steps, --seed, --lr, --batch-size, --seq-len, --threads, --eval-interval,
/// --warmup, --optimizer, --schedule). The model's vocab_size follows the tokenizer.
RunSetup make_run_setup(const Args& args);

/// Path of the bundled default corpus.
std::string default_data_path();

}  // namespace bl::cli
