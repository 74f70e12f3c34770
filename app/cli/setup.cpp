#include "setup.h"

#include "tensor/rng.h"

namespace bl::cli {

std::set<std::string> run_value_options() {
  return {"preset", "config", "data", "tokenizer", "steps", "seed", "lr", "batch-size", "seq-len",
          "threads", "eval-interval", "warmup", "optimizer", "schedule"};
}

std::string default_data_path() { return resource_dir() + "/data/tinyshakespeare.txt"; }

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
  TrainConfig& t = s.preset.train;
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
  validate(t);

  s.data_path = args.get("data").value_or(default_data_path());
  std::string text = read_text_file(s.data_path);
  s.tokenizer = make_tokenizer(args.get("tokenizer").value_or("char"), text);
  s.preset.model.vocab_size = s.tokenizer->vocab_size();
  s.data = std::make_unique<TextDataset>(text, *s.tokenizer, t.val_fraction);
  s.model = std::make_unique<LanguageModel>(s.preset.model);
  Rng rng(uint64_t(t.seed));
  s.model->init_weights(rng);
  return s;
}

}  // namespace bl::cli
