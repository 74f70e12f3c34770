// LoRA / QLoRA from the command line:
//   train --init-from CKPT --lora rank=8,alpha=16,targets=q,v [--quantize nf4|affine4|affine8]
//         --adapter-out PATH [--data FILE] [--steps N] [--lr X] ... [--db FILE] [--json]
//   lora merge  --base CKPT --adapter PATH --out DIR   (a plain checkpoint with W + s·BA)
//   lora export --adapter PATH --out PATH [--base CKPT] [--gguf-layout llama|blocklab]
//               (PEFT directory <-> .gguf; llama.cpp's layout needs the base)
//   lora sample --base CKPT --adapter A --adapter B [--adapter base] [--prompt ...]
//               (one batch, one row per adapter: MultiAdapter + generate_batch)
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "args.h"
#include "commands.h"
#include "generate/sampler.h"
#include "interop/hf_folder.h"
#include "lora/adapter_io.h"
#include "lora/lora.h"
#include "lora/multi_adapter.h"
#include "quant/quantize.h"
#include "setup.h"
#include "store/experiment_store.h"
#include "train/checkpoint.h"

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

int run_finetune(PreparedRun& run, const Args& args) {
  const bool quiet = args.flag("quiet");
  print_notes(run, quiet);
  const Finetune& ft = *run.finetune();
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
  const RunPlan& plan = run.plan();
  const int64_t run_id = run.begin();
  if (!quiet && plan.kind == RunKind::kResume)
    std::fprintf(stderr, "run %lld recorded in %s (resumes run %lld from step %lld)\n",
                 (long long)run_id, run.store().path().c_str(), (long long)plan.parent->id,
                 (long long)run.trainer().step());
  const TrainSummary sum = train_with_signals(run);
  const std::string& adapter = run.adapter_path();
  std::printf("%s after %lld steps: train loss %.4f", to_string(sum.status), (long long)sum.steps,
              sum.final_train_loss);
  if (sum.val_loss) std::printf(", val loss %.4f", *sum.val_loss);
  std::printf(
      ", %.0f tok/s\nadapter saved to %s (merge with: blocklab-cli lora merge --base %s --adapter "
      "%s --out DIR)\n",
      sum.tokens_per_sec, adapter.c_str(), ft.base_checkpoint.c_str(), adapter.c_str());
  std::printf("run %lld recorded in %s", (long long)run_id, run.store().path().c_str());
  const CheckpointSaver& saver = run.checkpoints();
  if (saver.last_step() && *saver.last_step() < run.preset().train.max_steps)
    std::printf(" (continue with: blocklab-cli train --resume %lld)", (long long)run_id);
  std::printf("\n");
  if (args.flag("json")) {
    const auto& parent = plan.record.parent_run_id;
    nlohmann::json j = {
        {"status", to_string(sum.status)},
        {"steps", sum.steps},
        {"final_train_loss", sum.final_train_loss},
        {"val_loss", sum.val_loss ? nlohmann::json(*sum.val_loss) : nlohmann::json()},
        {"trainable_params", trainable},
        {"total_params", total_parameter_count(run.model())},
        {"weight_bytes", model_weight_bytes(run.model())},
        {"adapter", adapter},
        {"checkpoint",
         saver.last_dir().empty() ? nlohmann::json() : nlohmann::json(saver.last_dir())},
        {"run_id", run_id},
        {"parent_run_id", parent ? nlohmann::json(*parent) : nlohmann::json()}};
    std::printf("%s\n", j.dump().c_str());
  }
  std::fflush(stdout);
  return sum.status == RunStatus::kCompleted || sum.status == RunStatus::kStopped ? 0 : 3;
}

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
  RunSpec spec;
  spec.kind = RunKind::kFinetune;
  // The base: a run id (its newest checkpoint), a checkpoint directory or a
  // Hugging Face folder.
  const std::string& base = *init_from;
  if (!base.empty() && base.find_first_not_of("#0123456789") == std::string::npos)
    spec.finetune.base_run_id = parse_run_id(base, "--init-from");
  else if (is_hf_folder(base))  // config.json, no checkpoint.json: import it first
    spec.finetune.base_checkpoint = import_hf_for_finetune(base, args.get("db"));
  else
    spec.finetune.base_checkpoint = base;
  spec.finetune.lora = parse_lora_spec(args.get("lora").value_or(""));
  spec.finetune.quantize = args.get("quantize").value_or("");
  spec.finetune.adapter_out = *out;
  spec.train = train_overrides(args);
  spec.data_path = args.get("data").value_or("");
  fill_store_options(args, spec);
  std::unique_ptr<PreparedRun> run;
  try {
    run = launch_run(spec);
  } catch (const RunSpecError& e) {
    throw UsageError("--init-from " + base + ": " + e.what());
  }
  return run_finetune(*run, args);
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
    Args args(rest, {"adapter", "out", "base", "gguf-layout"}, {});
    if (!args.positional().empty())
      throw UsageError("unexpected argument '" + args.positional()[0] + "'");
    const auto adapter = args.get("adapter"), out = args.get("out"), base = args.get("base");
    if (!adapter || !out)
      throw UsageError(
          "lora export needs --adapter PATH --out PATH (a directory, or .gguf with --base CKPT)");
    const std::string layout = args.get("gguf-layout").value_or("llama");
    if (layout != "llama" && layout != "blocklab")
      throw UsageError("--gguf-layout must be llama (llama.cpp's --lora) or blocklab");
    const bool gguf = out->size() > 5 && out->substr(out->size() - 5) == ".gguf";
    // The base fixes what llama.cpp needs: its architecture and head counts.
    std::optional<ModelConfig> base_cfg;
    if (base) base_cfg = read_checkpoint_info(*base).model;
    if (gguf && layout == "llama" && !base_cfg)
      throw UsageError(
          "a llama.cpp GGUF adapter needs the base model: add --base CHECKPOINT (or write "
          "Blocklab's own layout with --gguf-layout blocklab)");
    const Adapter ad = read_adapter(*adapter, base_cfg ? &*base_cfg : nullptr);
    if (!gguf)
      write_peft_adapter(*out, ad);
    else if (layout == "blocklab")
      write_gguf_adapter_legacy(*out, ad);
    else
      write_gguf_adapter(*out, ad, *base_cfg);
    std::printf("exported %zu adapted layers (rank %lld, alpha %g) to %s%s\n", ad.layers.size(),
                (long long)ad.rank, double(ad.alpha), out->c_str(),
                gguf ? (layout == "llama" ? " (llama.cpp layout)" : " (Blocklab layout)") : "");
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
        loaded.push_back(read_adapter(a, &info.model));
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
