#include "setup.h"

#include <csignal>
#include <cstdio>

#include "train/checkpoint.h"
#include "train/store_logger.h"

namespace bl::cli {

std::set<std::string> run_value_options() {
  return {"preset",    "config",     "data",        "tokenizer",  "steps",         "seed",
          "lr",        "batch-size", "seq-len",     "threads",    "eval-interval", "warmup",
          "optimizer", "schedule",   "flop-budget", "time-budget"};
}

TrainOverrides train_overrides(const Args& args) {
  TrainOverrides o;
  o.max_steps = args.get_int("steps", 1);
  o.seed = args.get_int("seed", 0);
  o.learning_rate = args.get_double("lr");
  o.batch_size = args.get_int("batch-size", 1);
  o.seq_len = args.get_int("seq-len", 1);
  o.threads = args.get_int("threads", 1);
  o.eval_interval = args.get_int("eval-interval", 0);
  o.warmup_steps = args.get_int("warmup", 0);
  o.optimizer = args.get("optimizer");
  o.lr_schedule = args.get("schedule");
  o.flop_budget = args.get_double("flop-budget");
  o.time_budget_s = args.get_double("time-budget");
  return o;
}

RunSpec fresh_run_spec(const Args& args) {
  RunSpec s;
  const auto preset = args.get("preset"), config = args.get("config");
  if (preset && config) throw UsageError("give --preset or --config, not both");
  s.preset_name = preset.value_or("");
  s.config_path = config.value_or("");
  s.set = args.all("set");
  s.train = train_overrides(args);
  s.data_path = args.get("data").value_or("");
  s.tokenizer = args.get("tokenizer").value_or("");
  return s;
}

void fill_store_options(const Args& args, RunSpec& spec) {
  spec.db_path = args.get("db").value_or("");
  if (auto v = args.get_double("flush-interval")) {
    if (*v < 0) throw UsageError("--flush-interval must be >= 0 seconds");
    spec.store.flush_interval_s = *v;
  }
  spec.checkpoint_interval = args.get_int("checkpoint-interval", 0);
  if (auto k = args.get_int("keep-checkpoints", 0)) spec.keep_checkpoints = int(*k);
  spec.name = args.get("name").value_or("");
  spec.tags = args.all("tag");
}

void print_notes(const PreparedRun& run, bool quiet) {
  if (quiet) return;
  for (const std::string& n : run.plan().notes) std::fprintf(stderr, "%s\n", n.c_str());
}

std::string export_source_checkpoint(const Args& args, const std::string& what,
                                     const std::string& cmd) {
  if (!is_run_id(what)) {
    if (args.get("db")) throw UsageError("--db applies to a run id, not a directory");
    return what;
  }
  const int64_t id = parse_run_id(what, cmd);
  const std::string db = args.get("db").value_or(default_db_path());
  ExperimentStore store(db);
  if (!store.get_run(id)) throw std::runtime_error(db + ": no run with id " + std::to_string(id));
  const auto ck = latest_checkpoint(store, id);
  if (!ck) throw std::runtime_error("run " + std::to_string(id) + " has no checkpoint on disk");
  verify_checkpoint(ck->path, ck->sha256);
  return ck->path;
}

StoredModel load_stored_model(const std::string& dir) {
  const CheckpointInfo info = read_checkpoint_info(dir);
  StoredModel l;
  if (!info.finetune.is_null()) {
    Finetune ft = load_finetune_checkpoint(dir);  // base + adapter
    l.tok = std::move(ft.tokenizer);
    l.model = std::move(ft.model);
  } else {
    l.tok = tokenizer_from_json(info.tokenizer);
    l.model = std::make_unique<LanguageModel>(info.model);
    load_model_weights(dir, *l.model);
  }
  return l;
}

bool is_run_id(const std::string& s) {
  const size_t from = !s.empty() && s[0] == '#' ? 1 : 0;
  if (s.size() <= from) return false;
  for (size_t i = from; i < s.size(); ++i)
    if (s[i] < '0' || s[i] > '9') return false;
  return true;
}

int64_t parse_run_id(const std::string& text, const std::string& option) {
  std::string t = !text.empty() && text[0] == '#' ? text.substr(1) : text;
  size_t used = 0;
  long long id = 0;
  try {
    id = std::stoll(t, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (t.empty() || used != t.size() || id <= 0)
    throw UsageError(option +
                     " expects a run id (a positive integer, see 'blocklab-cli runs list'), got '" +
                     text + "'");
  return int64_t(id);
}

namespace {
Trainer* g_trainer = nullptr;
void on_stop_signal(int) {
  // First signal: finish the current step and stop cleanly; second: default action.
  if (g_trainer) g_trainer->request_stop("interrupted by signal");
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
}
}  // namespace

TrainSummary train_with_signals(PreparedRun& run) {
  struct Handlers {
    explicit Handlers(Trainer& t) {
      g_trainer = &t;
      std::signal(SIGINT, on_stop_signal);
      std::signal(SIGTERM, on_stop_signal);
    }
    ~Handlers() {
      g_trainer = nullptr;
      std::signal(SIGINT, SIG_DFL);
      std::signal(SIGTERM, SIG_DFL);
    }
  };
  Handlers h(run.trainer());
  return run.train();
}

}  // namespace bl::cli
