// Command-line options -> RunSpec (run/run_spec.h), shared by train, the
// fine-tune and bench; the run itself is assembled by run/launcher.h.
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>

#include "args.h"
#include "run/launcher.h"
#include "run/run_spec.h"

namespace bl::cli {

/// Options every training-like command accepts.
std::set<std::string> run_value_options();

/// --steps, --seed, --lr, --batch-size, --seq-len, --threads, --eval-interval,
/// --warmup, --optimizer, --schedule as present in args.
TrainOverrides train_overrides(const Args& args);

/// A fresh run: --preset NAME | --config FILE, --data FILE, --tokenizer
/// char|byte|bpe:DIR, --set field=value (when the command accepts it) and the train
/// overrides.
RunSpec fresh_run_spec(const Args& args);

/// --db, --flush-interval, --checkpoint-interval, --keep-checkpoints, --name
/// and --tag into `spec`.
void fill_store_options(const Args& args, RunSpec& spec);

/// Trains with Ctrl-C / SIGTERM stopping cleanly after the current step (a
/// second signal kills), and records a thrown error as the run's failure.
TrainSummary train_with_signals(PreparedRun& run);

/// Prints the launcher's notes and warnings to stderr unless quiet.
void print_notes(const PreparedRun& run, bool quiet);

/// Parses a run id ("12", or "#12" as printed); UsageError naming `option` otherwise.
int64_t parse_run_id(const std::string& text, const std::string& option);
/// "12" or "#12": a run id rather than a path.
bool is_run_id(const std::string& s);

/// A checkpoint directory's model and tokenizer, ready to run: a LoRA
/// fine-tune's checkpoint (adapter only) is rebuilt on its recorded base.
struct StoredModel {
  std::unique_ptr<Tokenizer> tok;
  std::unique_ptr<LanguageModel> model;
};
StoredModel load_stored_model(const std::string& dir);

/// What `export gguf|hf` reads: a run id's newest checkpoint (checked against
/// its recorded SHA-256; the store is --db or the default) or a checkpoint
/// directory. `cmd` names the command in errors.
std::string export_source_checkpoint(const Args& args, const std::string& what,
                                     const std::string& cmd);

}  // namespace bl::cli
