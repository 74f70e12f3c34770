// LoRA / QLoRA from the command line:
//   train --init-from CKPT --lora rank=8,alpha=16,targets=q,v [--quantize nf4|affine4|affine8]
//         --adapter-out PATH [--data FILE] [--steps N] [--lr X] ... [--db FILE] [--json]
//   lora merge  --base CKPT --adapter PATH --out DIR   (a plain checkpoint with W + s·BA)
//   lora export --adapter PATH --out PATH              (PEFT directory <-> .gguf)
//   lora sample --base CKPT --adapter A --adapter B [--adapter base] [--prompt ...]
//               (one batch, one row per adapter: MultiAdapter + generate_batch)
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "args.h"
#include "commands.h"
#include "generate/sampler.h"
#include "lora/adapter_io.h"
#include "lora/adapter_saver.h"
#include "lora/lora.h"
#include "lora/multi_adapter.h"
#include "quant/quantize.h"
#include "setup.h"
#include "store/experiment_store.h"
#include "train/checkpoint.h"
#include "train/store_logger.h"
#include "train/trainer.h"

namespace bl::cli {

LoraSpec parse_lora_spec(const std::string& text) {
  LoraSpec s;
  s.targets.clear();
  std::string key;
  std::stringstream ss(text);
  std::string tok;
  bool targets_given = false;
  while (std::getline(ss, tok, ',')) {
    const size_t eq = tok.find('=');
    std::string value = tok;
    if (eq != std::string::npos) {
      key = tok.substr(0, eq);
      value = tok.substr(eq + 1);
    } else if (key != "targets") {
      throw UsageError("--lora: '" + tok + "' is not key=value (keys: rank, alpha, targets)");
    }
    try {
      if (key == "rank" || key == "r") {
        s.rank = std::stoll(value);
        if (s.rank < 1) throw UsageError("--lora: rank must be >= 1");
      } else if (key == "alpha") {
        s.alpha = std::stof(value);
      } else if (key == "targets") {
        if (!value.empty()) s.targets.push_back(value);
        targets_given = true;
      } else {
        throw UsageError("--lora: unknown key '" + key + "' (keys: rank, alpha, targets)");
      }
    } catch (const std::logic_error& e) {
      if (dynamic_cast<const UsageError*>(&e)) throw;
      throw UsageError("--lora: bad value '" + value + "' for " + key);
    }
  }
  if (!targets_given || s.targets.empty()) s.targets = {"q", "v"};
  return s;
}

namespace {

namespace fs = std::filesystem;

// Absolute and normalised, without a trailing separator ("ad/" -> "/cwd/ad"):
// recorded paths must still work when a resume runs from another directory.
std::string absolute_path(const std::string& p) {
  fs::path a = fs::absolute(p).lexically_normal();
  if (a.filename().empty() && a.has_parent_path()) a = a.parent_path();
  return a.string();
}

/// A fine-tune about to train: begun with --init-from ... --lora ..., or a
/// LoRA run to resume.
struct FinetuneRun {
  Finetune ft;
  TrainConfig train;
  std::string adapter;  // where the adapter is saved (absolute)
  std::string data_path;
  std::string data_text;
  RunRecord rec;                     // name, tags, parent
  std::optional<RunRecord> resumed;  // the interrupted run
  std::string resume_dir;            // its fine-tune checkpoint ("" = from step 0)
};

/// Trains the fine-tune, recording it in the store: the spec when the run
/// begins, fine-tune checkpoints (adapter weights + trainer state) and the
/// adapter every checkpoint interval and at the end.
int run_finetune(ExperimentStore& store, FinetuneRun& r, const Args& args) {
  const bool quiet = args.flag("quiet");
  if (auto v = args.get_int("checkpoint-interval", 0)) r.train.checkpoint_interval = *v;
  const auto keep = args.get_int("keep-checkpoints", 0);
  Finetune& ft = r.ft;
  LanguageModel& model = *ft.model;
  TextDataset data(r.data_text, *ft.tokenizer, r.train.val_fraction);
  const QuantizeReport& qr = ft.quant;
  if (!quiet && !ft.quant_name.empty())
    std::fprintf(stderr, "quantized %lld tensors to %s: weights %.2f MB -> %.2f MB%s\n",
                 (long long)qr.quantized, ft.quant_name.c_str(), qr.bytes_before / 1e6,
                 qr.bytes_after / 1e6,
                 qr.skipped.empty()
                     ? ""
                     : (" (" + std::to_string(qr.skipped.size()) + " layers kept float)").c_str());
  const int64_t trainable = ft.counts.trainable;
  if (!quiet)
    std::fprintf(
        stderr,
        "LoRA rank %lld alpha %g on %zu layers: %lld trainable of %lld parameters (%.3f%%)\n",
        (long long)ft.lora.rank, double(ft.lora.alpha), ft.lora_paths.size(), (long long)trainable,
        (long long)ft.counts.total, 100.0 * double(trainable) / double(ft.counts.base));

  RunRecord& rec = r.rec;
  const DatasetFingerprint fp = fingerprint_dataset(r.data_path);
  rec.dataset_path = fp.path;
  rec.dataset_size = fp.size;
  rec.dataset_sha256 = fp.sha256;
  rec.tokenizer = ft.tokenizer->to_json();
  // The spec goes into the run row when it is created (not only into the final
  // summary): a killed fine-tune can be resumed from it.
  const nlohmann::json spec = ft.summary(r.adapter);
  rec.summary = {{"lora", spec}};
  Trainer trainer(model, r.train, data);
  if (!r.resume_dir.empty()) load_trainer_state(r.resume_dir, trainer);
  StoreLogger logger(store, rec);
  logger.summary_extra()["lora"] = spec;
  if (r.resumed)
    logger.summary_extra()["resumed_from"] = {
        {"run", r.resumed->id}, {"step", trainer.step()}, {"checkpoint", r.resume_dir}};
  // Every --checkpoint-interval steps and at the end (before the run closes):
  // a fine-tune checkpoint (adapter weights + trainer state, the base stays in
  // its checkpoint) to resume from, and the adapter at its path.
  CheckpointPolicy policy;
  policy.interval = r.train.checkpoint_interval;
  policy.keep_last = int(keep.value_or(2));
  CheckpointSaver saver(
      *ft.tokenizer, policy,
      [&](int64_t step) { return run_checkpoint_dir(store.path(), logger.run_id(), step); },
      [&](int64_t step, const std::string& dir) { logger.add_checkpoint(step, dir); });
  saver.set_finetune(spec);
  AdapterSaver adapter_saver([&] { return r.adapter; }, r.train.checkpoint_interval);
  trainer.add_callback(&saver);
  trainer.add_callback(&adapter_saver);
  trainer.add_callback(&logger);
  const int64_t run_id = logger.begin(trainer);
  if (!quiet && r.resumed)
    std::fprintf(stderr, "run %lld recorded in %s (resumes run %lld from step %lld)\n",
                 (long long)run_id, store.path().c_str(), (long long)r.resumed->id,
                 (long long)trainer.step());
  const TrainSummary sum = train_recorded(trainer, logger);
  std::printf("%s after %lld steps: train loss %.4f", to_string(sum.status), (long long)sum.steps,
              sum.final_train_loss);
  if (sum.val_loss) std::printf(", val loss %.4f", *sum.val_loss);
  std::printf(
      ", %.0f tok/s\nadapter saved to %s (merge with: blocklab-cli lora merge --base %s --adapter "
      "%s --out DIR)\n",
      sum.tokens_per_sec, r.adapter.c_str(), ft.base_checkpoint.c_str(), r.adapter.c_str());
  std::printf("run %lld recorded in %s", (long long)run_id, store.path().c_str());
  if (saver.last_step() && *saver.last_step() < r.train.max_steps)
    std::printf(" (continue with: blocklab-cli train --resume %lld)", (long long)run_id);
  std::printf("\n");
  if (args.flag("json")) {
    nlohmann::json j = {
        {"status", to_string(sum.status)},
        {"steps", sum.steps},
        {"final_train_loss", sum.final_train_loss},
        {"val_loss", sum.val_loss ? nlohmann::json(*sum.val_loss) : nlohmann::json()},
        {"trainable_params", trainable},
        {"total_params", total_parameter_count(model)},
        {"weight_bytes", model_weight_bytes(model)},
        {"adapter", r.adapter},
        {"checkpoint",
         saver.last_dir().empty() ? nlohmann::json() : nlohmann::json(saver.last_dir())},
        {"run_id", run_id},
        {"parent_run_id",
         rec.parent_run_id ? nlohmann::json(*rec.parent_run_id) : nlohmann::json()}};
    std::printf("%s\n", j.dump().c_str());
  }
  std::fflush(stdout);
  return sum.status == RunStatus::kCompleted || sum.status == RunStatus::kStopped ? 0 : 3;
}

}  // namespace

int lora_train_command(const std::vector<std::string>& argv) {
  auto value_opts = run_value_options();
  for (const char* o : {"init-from", "lora", "quantize", "adapter-out", "db", "name", "tag",
                        "checkpoint-interval", "keep-checkpoints", "flush-interval"})
    value_opts.insert(o);
  Args args(argv, value_opts, {"json", "quiet"});
  if (!args.positional().empty())
    throw UsageError("unexpected argument '" + args.positional()[0] + "'");
  const auto init_from = args.get("init-from");
  if (!init_from)
    throw UsageError(
        "--lora, --quantize and --adapter-out start a fine-tune: it needs --init-from "
        "RUN|CHECKPOINT (the base model)");
  for (const char* o : {"preset", "config", "tokenizer"})
    if (args.get(o))
      throw UsageError("--" + std::string(o) +
                       " cannot be used with --init-from (the base checkpoint fixes the model)");
  // --init-from alone is a natural first try: say everything it needs at once.
  if (!args.get("lora"))
    throw UsageError("--init-from " + *init_from +
                     " starts a LoRA fine-tune of that base: it needs --lora "
                     "rank=R,alpha=A,targets=q,v and --adapter-out PATH (a PEFT directory or a "
                     ".gguf file); to train all weights further, use --fork RUN");
  const auto out = args.get("adapter-out");
  if (!out)
    throw UsageError(
        "--adapter-out PATH (a PEFT directory or a .gguf file) is required with --lora");
  const LoraSpec spec = parse_lora_spec(args.get("lora").value_or(""));
  StoreOptions store_opt;
  if (auto v = args.get_double("flush-interval")) {
    if (*v < 0) throw UsageError("--flush-interval must be >= 0 seconds");
    store_opt.flush_interval_s = *v;
  }

  // The base: a run id (its newest checkpoint) or a checkpoint directory; either
  // way the run that wrote it becomes the parent of the fine-tune in the store.
  ExperimentStore store(args.get("db").value_or(default_db_path()), store_opt);
  std::optional<int64_t> parent;
  std::string base = *init_from;
  if (!base.empty() && base.find_first_not_of("#0123456789") == std::string::npos) {
    parent = parse_run_id(base, "--init-from");
    auto ck = latest_checkpoint(store, *parent);
    if (!ck)
      throw std::runtime_error("run " + std::to_string(*parent) +
                               " has no checkpoint to fine-tune");
    base = ck->path;
  } else {
    std::error_code ec;
    for (const RunRecord& r : store.list_runs())
      for (const CheckpointRecord& c : store.checkpoints(r.id))
        if (!parent && std::filesystem::equivalent(c.path, base, ec)) parent = r.id;
  }
  base = absolute_path(base);
  // The model, tokenizer, quantization and adapters: engine/lora/finetune.h,
  // shared with the GUI. Train overrides apply to the base's train config.
  const CheckpointInfo base_info = read_checkpoint_info(base);
  if (!base_info.finetune.is_null())
    throw UsageError("--init-from " + *init_from + ": " + base +
                     " is a fine-tune checkpoint (adapter weights only); fine-tune its base " +
                     base_info.finetune.value("base_checkpoint", std::string("(unknown)")) +
                     " instead, or merge the adapter into it first (lora merge)");
  FinetuneRun r;
  r.train = base_info.train;
  apply_train_overrides(args, r.train);
  validate(r.train);
  FinetuneSpec fspec;
  fspec.base_checkpoint = base;
  fspec.lora = spec;
  fspec.quantize = args.get("quantize").value_or("");
  fspec.seed = uint64_t(r.train.seed);
  r.ft = build_finetune(fspec);
  r.adapter = absolute_path(*out);
  r.data_path = args.get("data").value_or(default_data_path());
  r.data_text = read_text_file(r.data_path);
  r.rec.parent_run_id = parent;
  r.rec.name = args.get("name").value_or(
      r.ft.info.model.name.empty() ? "lora" : r.ft.info.model.name + " lora");
  r.rec.tags = args.all("tag");
  r.rec.tags.push_back("lora");
  return run_finetune(store, r, args);
}

bool is_finetune_run(const RunRecord& run) {
  return run.summary.is_object() && run.summary.contains("lora") &&
         run.summary["lora"].is_object() && run.summary["lora"].contains("base_checkpoint");
}

int lora_resume_command(ExperimentStore& store, const RunRecord& run, const Args& args) {
  const std::string id = std::to_string(run.id);
  const nlohmann::json& block = run.summary["lora"];
  FinetuneRun r;
  FinetuneSpec fspec;
  try {
    fspec = finetune_spec_from_json(block);
    if (!block.contains("adapter") || !block["adapter"].is_string() ||
        block["adapter"].get<std::string>().empty())
      throw std::invalid_argument("fine-tune spec: missing \"adapter\" path");
    r.adapter = block["adapter"];
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error("LoRA run " + id + " cannot be resumed: its recorded " + e.what());
  }
  if (args.get("out"))
    throw UsageError("--out does not apply to a LoRA run (its adapter goes to " + r.adapter + ")");
  if (store.checkpoints(run.id).empty())
    throw std::runtime_error(
        "LoRA run " + id +
        " has no fine-tune checkpoint to resume from (it stopped before its first "
        "--checkpoint-interval, or it was recorded by a Blocklab version or the GUI, which do "
        "not write fine-tune checkpoints)");
  const CheckpointRecord ck = checkpoint_to_resume(store, run);
  const CheckpointInfo info = read_checkpoint_info(ck.path);
  if (info.finetune.is_null())
    throw CheckpointError(ck.path + ": LoRA run " + id +
                          " registered a whole-model checkpoint instead of a fine-tune checkpoint");
  r.train = info.train;
  apply_train_overrides(args, r.train);  // only --steps, --threads, --eval-interval remain
  validate(r.train);
  if (info.step >= r.train.max_steps)
    throw UsageError("run " + id + " already reached step " + std::to_string(info.step) + " of " +
                     std::to_string(r.train.max_steps) + "; pass --steps N (N > " +
                     std::to_string(info.step) + ") to train it further");
  // The base must be the one the adapter was trained on: same path, same bytes.
  std::error_code ec;
  if (!fs::is_directory(fspec.base_checkpoint, ec))
    throw std::runtime_error("the base checkpoint of LoRA run " + id + ", " +
                             fspec.base_checkpoint +
                             ", no longer exists (a fine-tune resumes only on the base it began "
                             "with)");
  try {
    r.ft = build_finetune(fspec);
  } catch (const CheckpointError& e) {
    throw CheckpointError("base checkpoint of LoRA run " + id + ": " + e.what());
  }
  load_trainable_weights(ck.path, *r.ft.model);
  r.data_path = run.dataset_path;
  r.data_text = read_resume_dataset(run, args.flag("quiet"));
  r.rec.name = args.get("name").value_or(run.name);
  r.rec.tags = run.tags;
  for (const std::string& t : args.all("tag")) r.rec.tags.push_back(t);
  r.rec.parent_run_id = run.id;
  r.resumed = run;
  r.resume_dir = ck.path;
  return run_finetune(store, r, args);
}

int lora_command(const std::vector<std::string>& argv) {
  if (argv.empty()) throw UsageError("lora merge | export");
  const std::string sub = argv[0];
  const std::vector<std::string> rest(argv.begin() + 1, argv.end());
  if (sub == "merge") {
    Args args(rest, {"base", "adapter", "out"}, {});
    if (!args.positional().empty())
      throw UsageError("unexpected argument '" + args.positional()[0] + "'");
    const auto base = args.get("base"), adapter = args.get("adapter"), out = args.get("out");
    if (!base || !adapter || !out)
      throw UsageError("lora merge needs --base CHECKPOINT --adapter PATH --out DIR");
    CheckpointInfo info = read_checkpoint_info(*base);
    std::unique_ptr<Tokenizer> tok = tokenizer_from_json(info.tokenizer);
    LanguageModel model(info.model);
    load_model_weights(*base, model);
    load_adapter(*adapter, model);
    const size_t n = lora_parameters(model).size() / 2;
    merge_lora(model);
    save_checkpoint(*out, model, info.train, *tok);
    std::printf(
        "merged %zu adapted layers of %s into %s (sample with: blocklab-cli sample --run %s)\n", n,
        adapter->c_str(), out->c_str(), out->c_str());
    return 0;
  }
  if (sub == "export") {
    Args args(rest, {"adapter", "out"}, {});
    if (!args.positional().empty())
      throw UsageError("unexpected argument '" + args.positional()[0] + "'");
    const auto adapter = args.get("adapter"), out = args.get("out");
    if (!adapter || !out)
      throw UsageError("lora export needs --adapter PATH --out PATH (.gguf or a directory)");
    const Adapter ad = read_adapter(*adapter);
    if (out->size() > 5 && out->substr(out->size() - 5) == ".gguf")
      write_gguf_adapter(*out, ad);
    else
      write_peft_adapter(*out, ad);
    std::printf("exported %zu adapted layers (rank %lld, alpha %g) to %s\n", ad.layers.size(),
                (long long)ad.rank, double(ad.alpha), out->c_str());
    return 0;
  }
  if (sub == "sample") {
    // One batch, one row per adapter (MultiAdapter): every row continues the same
    // prompt with its own adapter; "base" names the model without adapter.
    Args args(rest,
              {"base", "adapter", "prompt", "tokens", "temperature", "top-k", "top-p", "seed"}, {});
    if (!args.positional().empty())
      throw UsageError("unexpected argument '" + args.positional()[0] + "'");
    const auto base = args.get("base");
    const std::vector<std::string> adapters = args.all("adapter");
    if (!base || adapters.empty())
      throw UsageError("lora sample needs --base CHECKPOINT and one --adapter PATH|base per row");
    CheckpointInfo info = read_checkpoint_info(*base);
    std::unique_ptr<Tokenizer> tok = tokenizer_from_json(info.tokenizer);
    LanguageModel model(info.model);
    load_model_weights(*base, model);
    std::vector<Adapter> loaded;
    int64_t max_rank = 1;
    for (const std::string& a : adapters)
      if (a != "base") {
        loaded.push_back(read_adapter(a));
        for (auto& [path, l] : loaded.back().layers) max_rank = std::max(max_rank, l.rank);
      }
    MultiAdapter multi(model, max_rank);
    std::vector<int32_t> rows;
    size_t next = 0;
    for (const std::string& a : adapters)
      rows.push_back(a == "base" ? -1 : multi.add(a, loaded[next++]));
    multi.set_batch(rows);
    SamplingOptions opt;
    opt.max_new_tokens = args.get_int("tokens", 1).value_or(100);
    opt.temperature = float(args.get_double("temperature").value_or(0.8));
    opt.top_k = args.get_int("top-k", 0).value_or(0);
    opt.top_p = float(args.get_double("top-p").value_or(1.0));
    if (opt.temperature < 0) throw UsageError("--temperature must be >= 0");
    if (opt.top_p <= 0 || opt.top_p > 1) throw UsageError("--top-p must be in (0, 1]");
    const std::string prompt = args.get("prompt").value_or("\n");
    const std::vector<int32_t> ids = tok->encode(prompt);
    if (ids.empty()) throw UsageError("--prompt must not be empty");
    const uint64_t seed = uint64_t(args.get_int("seed", 0).value_or(0));
    std::vector<Rng> rngs;
    for (size_t i = 0; i < adapters.size(); ++i) rngs.emplace_back(seed + i);
    const auto out =
        generate_batch(model, std::vector<std::vector<int32_t>>(adapters.size(), ids), opt, rngs);
    for (size_t i = 0; i < adapters.size(); ++i)
      std::printf("--- %s\n%s%s\n", adapters[i].c_str(), prompt.c_str(),
                  tok->decode(out[i]).c_str());
    return 0;
  }
  throw UsageError("unknown lora subcommand '" + sub + "' (merge | export | sample)");
}

}  // namespace bl::cli
