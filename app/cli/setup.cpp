#include "setup.h"

#include <csignal>
#include <nlohmann/json.hpp>

#include "io/bounded_read.h"
#include "tensor/rng.h"

namespace bl::cli {

std::set<std::string> run_value_options() {
  return {"preset",     "config",  "data",    "tokenizer",     "steps",  "seed",      "lr",
          "batch-size", "seq-len", "threads", "eval-interval", "warmup", "optimizer", "schedule"};
}

std::string default_data_path() {
  return resource_dir() + "/data/tinyshakespeare.txt";
}

void apply_train_overrides(const Args& args, TrainConfig& t) {
  if (auto v = args.get_int("steps", 1)) t.max_steps = *v;
  if (auto v = args.get_int("seed", 0)) t.seed = *v;
  if (auto v = args.get_double("lr")) t.learning_rate = *v;
  if (auto v = args.get_int("batch-size", 1)) t.batch_size = *v;
  if (auto v = args.get_int("seq-len", 1)) t.seq_len = *v;
  if (auto v = args.get_int("threads", 1)) t.threads = *v;
  if (auto v = args.get_int("eval-interval", 0)) t.eval_interval = *v;
  if (auto v = args.get_int("warmup", 0)) t.warmup_steps = *v;
  if (auto v = args.get("optimizer")) t.optimizer = *v;
  if (auto v = args.get("schedule")) t.lr_schedule = *v;
}

Preset apply_set_overrides(const Preset& base, const std::vector<std::string>& assignments) {
  if (assignments.empty()) return base;
  nlohmann::json root = {{"model", model_config_to_json(base.model)},
                         {"train", train_config_to_json(base.train)}};
  for (const std::string& a : assignments) {
    const size_t eq = a.find('=');
    if (eq == std::string::npos || eq == 0)
      throw UsageError("--set expects field=value (e.g. train.learning_rate=3e-4), got '" + a +
                       "'");
    const std::string path = a.substr(0, eq), text = a.substr(eq + 1);
    std::vector<std::string> parts;
    for (size_t b = 0;;) {
      const size_t e = path.find('.', b);
      parts.push_back(path.substr(b, e == std::string::npos ? std::string::npos : e - b));
      if (e == std::string::npos) break;
      b = e + 1;
    }
    if (parts.size() < 2 || (parts[0] != "model" && parts[0] != "train"))
      throw UsageError("--set " + a +
                       ": the field path must start with 'model.' or 'train.' (e.g. "
                       "model.block.n_heads=4)");
    nlohmann::json* node = &root;
    std::string where = parts[0];
    node = &(*node)[parts[0]];
    for (size_t i = 1; i < parts.size(); ++i) {
      const std::string& p = parts[i];
      if (p.empty()) throw UsageError("--set " + a + ": empty field name in '" + path + "'");
      const bool last = i + 1 == parts.size();
      if (node->is_object()) {
        if (!last && !node->contains(p))
          throw ConfigError("--set " + a + ": '" + where + "' has no field '" + p + "'");
        node = &(*node)[p];
      } else if (node->is_array()) {
        size_t used = 0;
        size_t idx = 0;
        try {
          idx = std::stoul(p, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (used != p.size() || idx >= node->size())
          throw ConfigError("--set " + a + ": '" + where + "' is a list of " +
                            std::to_string(node->size()) + " entries; '" + p +
                            "' is not a valid index");
        node = &(*node)[idx];
      } else {
        throw ConfigError("--set " + a + ": '" + where + "' is a value, not a group of fields");
      }
      where += "." + p;
    }
    if (json_nesting_depth(text, kMaxJsonDepth) > kMaxJsonDepth)
      throw ConfigError("--set " + a + ": the value nests JSON deeper than " +
                        std::to_string(kMaxJsonDepth) + " levels");
    nlohmann::json value = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (value.is_discarded()) value = text;  // bare words are strings: train.optimizer=lion
    *node = value;
  }
  Preset p = preset_from_json(root);  // unknown keys / wrong types, with field paths
  p.description = base.description;
  std::vector<std::string> errors = validation_errors(p);
  if (!errors.empty()) throw ConfigError(errors);
  return p;
}

void build_data_and_model(RunSetup& s, const std::string& text, bool init) {
  const TrainConfig& t = s.preset.train;
  s.preset.model.vocab_size = s.tokenizer->vocab_size();
  s.data = std::make_unique<TextDataset>(text, *s.tokenizer, t.val_fraction);
  s.model = std::make_unique<LanguageModel>(s.preset.model);
  if (init) {
    Rng rng(uint64_t(t.seed));
    s.model->init_weights(rng);
  }
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

RunSetup make_run_setup(const Args& args) {
  RunSetup s;
  auto preset = args.get("preset");
  auto config = args.get("config");
  if (preset && config) throw UsageError("give --preset or --config, not both");
  if (config) {
    s.preset = load_preset_file(*config);
  } else {
    s.preset_name = preset.value_or("gpt-tiny");
    s.preset = load_preset(s.preset_name);
  }
  s.preset = apply_set_overrides(s.preset, args.all("set"));
  apply_train_overrides(args, s.preset.train);
  validate(s.preset.train);

  s.data_path = args.get("data").value_or(default_data_path());
  std::string text = read_text_file(s.data_path);
  s.tokenizer = make_tokenizer(args.get("tokenizer").value_or("char"), text);
  build_data_and_model(s, text, true);
  return s;
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

TrainSummary train_recorded(Trainer& trainer, StoreLogger& logger) {
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
  TrainSummary sum;
  {
    Handlers h(trainer);
    try {
      sum = trainer.train();
    } catch (const std::exception& e) {
      logger.fail(e.what());
      throw;
    }
  }
  if (!logger.finished()) logger.fail("training ended without a summary");
  return sum;
}

}  // namespace bl::cli
