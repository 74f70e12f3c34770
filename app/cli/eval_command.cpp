// blocklab-cli eval: loss, perplexity and bits per byte of a stored run's
// newest checkpoint (or a checkpoint directory) on the run's validation split
// or another text file, every token scored once (eval/lm_eval.h). For a run
// id the results are recorded in the store's evals table at the
// checkpoint's step, named "<split>/<metric>".
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "args.h"
#include "commands.h"
#include "data/text_dataset.h"
#include "data/token_file.h"
#include "eval/equation_eval.h"
#include "eval/lm_eval.h"
#include "io/sha256.h"
#include "setup.h"
#include "tensor/gemm.h"
#include "train/checkpoint.h"
#include "train/store_logger.h"

namespace bl::cli {

namespace {

namespace fs = std::filesystem;

/// Whether a split's val part begins right after a newline (or at the start).
bool starts_a_line(const TextDataset& d, const Tokenizer& tok) {
  if (d.train_size() == 0) return true;
  const int32_t last = d.train().back();
  return tok.decode(std::span<const int32_t>(&last, 1)) == "\n";
}

std::vector<int64_t> parse_ks(const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream in(s);
  std::string part;
  while (std::getline(in, part, ',')) {
    try {
      size_t used = 0;
      out.push_back(std::stoll(part, &used));
      if (used != part.size()) throw std::invalid_argument(part);
    } catch (const std::exception&) {
      throw UsageError("--k takes k values like 1,5,10, got '" + s + "'");
    }
  }
  if (out.empty()) throw UsageError("--k takes k values like 1,5,10, got '" + s + "'");
  return out;
}

/// `eval --equations`: pass@k of the model's answers to the PROMPT=ANSWER
/// lines of the scored text (eval/equation_eval.h), recorded like the loss.
int eval_equations(const Args& args, LanguageModel& model, const Tokenizer& tok,
                   const std::vector<int32_t>& ids, bool at_line_start,
                   const std::optional<RunRecord>& run, std::optional<ExperimentStore>& store,
                   int64_t ck_step, const std::string& data_path, const std::string& split,
                   const std::string& dir) {
  std::string text = tok.decode(ids);
  if (!at_line_start)
    text.erase(0, text.find('\n') == std::string::npos ? text.size() : text.find('\n') + 1);
  EquationEvalOptions opt;
  opt.samples = args.get_int("samples", 1).value_or(1);
  opt.temperature = float(args.get_double("temperature").value_or(opt.samples > 1 ? 1.0 : 0.0));
  opt.ks = args.get("k") ? parse_ks(*args.get("k")) : std::vector<int64_t>{1};
  opt.limit = args.get_int("limit", 1).value_or(0);
  opt.seed = uint64_t(args.get_int("seed", 0).value_or(0));
  EquationEvalResult r;
  try {
    r = evaluate_equations(model, tok, parse_equations(text), opt);
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("--equations: ") + e.what());
  }
  std::printf("%s at step %lld on %s (%s): %lld problems, %lld samples each at temperature %g\n",
              run ? ("run " + std::to_string(run->id)).c_str() : dir.c_str(), (long long)ck_step,
              data_path.c_str(), split == "val" ? "validation split" : "whole file",
              (long long)r.problems, (long long)opt.samples, double(opt.temperature));
  nlohmann::json j = {{"run_id", run ? nlohmann::json(run->id) : nlohmann::json()},
                      {"checkpoint", dir},
                      {"step", ck_step},
                      {"data", data_path},
                      {"split", split},
                      {"problems", r.problems},
                      {"samples", opt.samples},
                      {"temperature", opt.temperature},
                      {"sample_accuracy", r.sample_accuracy}};
  std::printf("answers right: %.2f%% of samples", 100.0 * r.sample_accuracy);
  for (const auto& [k, v] : r.pass_at_k) {
    std::printf(", pass@%lld %.4f", (long long)k, v);
    j["pass@" + std::to_string(k)] = v;
  }
  std::printf("\n");
  if (run) {
    const int64_t step = std::max<int64_t>(0, ck_step - 1);  // evals rows are 0-based
    store->log_eval(run->id, step, split + "/answer_accuracy", r.sample_accuracy);
    for (const auto& [k, v] : r.pass_at_k)
      store->log_eval(run->id, step, split + "/pass@" + std::to_string(k), v);
    std::printf("recorded as evals of run %lld (%s/pass@k, %s/answer_accuracy) in %s\n",
                (long long)run->id, split.c_str(), split.c_str(), store->path().c_str());
  }
  if (args.flag("json")) std::printf("%s\n", j.dump().c_str());
  return 0;
}

}  // namespace

int eval_command(const std::vector<std::string>& argv) {
  Args args(argv,
            {"run", "data", "batches", "batch-size", "seq-len", "threads", "db", "samples", "k",
             "temperature", "limit", "seed"},
            {"json", "equations"});
  const bool equations = args.flag("equations");
  if (!equations)
    for (const char* o : {"samples", "k", "temperature", "limit", "seed"})
      if (args.get(o))
        throw UsageError("--" + std::string(o) +
                         " applies to --equations (pass@k on PROMPT=ANSWER lines)");
  if (!args.positional().empty())
    throw UsageError("unexpected argument '" + args.positional()[0] + "'");
  const auto what = args.get("run");
  if (!what)
    throw UsageError(
        "--run RUN|DIR is required (a run id from 'blocklab-cli runs list' or a "
        "checkpoint directory)");

  // Which checkpoint, and (for a run id) the run and its store.
  std::optional<ExperimentStore> store;
  std::optional<RunRecord> run;
  std::string dir;
  if (is_run_id(*what)) {
    const int64_t id = parse_run_id(*what, "--run");
    const std::string db = args.get("db").value_or(default_db_path());
    store.emplace(db);
    run = store->get_run(id);
    if (!run) throw std::runtime_error(db + ": no run with id " + std::to_string(id));
    const auto ck = latest_checkpoint(*store, id);
    if (!ck)
      throw std::runtime_error("run " + std::to_string(id) +
                               " has no checkpoint on disk to evaluate (checkpoints are written "
                               "every --checkpoint-interval steps and at the end)");
    verify_checkpoint(ck->path, ck->sha256);
    dir = ck->path;
  } else {
    dir = *what;
    if (args.get("db")) throw UsageError("--db applies to --run RUN (a run id), not a directory");
  }
  const CheckpointInfo info = read_checkpoint_info(dir);
  StoredModel stored = load_stored_model(dir);
  std::unique_ptr<Tokenizer>& tok = stored.tok;
  std::unique_ptr<LanguageModel>& model = stored.model;

  // What to score: another file as a whole, else the run's validation split.
  std::string data_path, split;
  std::vector<int32_t> ids;
  bool val_at_line_start = true;  // else the split's first line is a partial one
  if (auto d = args.get("data")) {
    data_path = *d;
    split = "data:" + fs::path(*d).filename().string();
    if (is_token_file(*d)) {
      const TextDataset all = TextDataset::from_token_file(*d, tok->vocab_size(), 0.0);
      ids.assign(all.tokens().begin(), all.tokens().end());
    } else {
      ids = tok->encode(read_text_file(*d));
    }
  } else {
    if (!run)
      throw UsageError(
          "--data FILE is required for a checkpoint directory (its run's dataset "
          "is only known for --run RUN)");
    data_path = run->dataset_path;
    split = "val";
    if (is_token_file(data_path)) {
      const TextDataset data =
          TextDataset::from_token_file(data_path, tok->vocab_size(), info.train.val_fraction);
      ids.assign(data.val().begin(), data.val().end());
      val_at_line_start = starts_a_line(data, *tok);
    } else {
      const std::string text = read_text_file(data_path);
      if (!run->dataset_sha256.empty() && sha256_hex(text) != run->dataset_sha256)
        std::fprintf(stderr, "warning: %s changed since run %lld was recorded (SHA-256 differs)\n",
                     data_path.c_str(), (long long)run->id);
      const TextDataset data(text, *tok, info.train.val_fraction);
      ids.assign(data.val().begin(), data.val().end());
      val_at_line_start = starts_a_line(data, *tok);
    }
  }

  const int64_t threads =
      args.get_int("threads", 1)
          .value_or(info.train.threads > 0
                        ? info.train.threads
                        : int64_t(std::max(1u, std::thread::hardware_concurrency())));
  set_num_threads(int(threads));
  if (equations)
    return eval_equations(args, *model, *tok, ids, val_at_line_start, run, store, info.step,
                          data_path, split, dir);
  const int64_t batch = args.get_int("batch-size", 1).value_or(info.train.batch_size);
  const int64_t seq_len = args.get_int("seq-len", 1).value_or(info.train.seq_len);
  if (seq_len > info.model.block.max_seq_len)
    throw UsageError("--seq-len " + std::to_string(seq_len) + " exceeds the model's max_seq_len " +
                     std::to_string(info.model.block.max_seq_len));
  const int64_t max_batches = args.get_int("batches", 1).value_or(0);
  const LmEvalResult r = evaluate_lm(*model, *tok, ids, batch, seq_len, max_batches);

  std::printf(
      "%s at step %lld on %s (%s): %lld tokens in %lld windows of %lld, %lld bytes, %.3f "
      "bytes/token\nloss %.4f nats/token, perplexity %.3f, %.4f bits/byte\n",
      run ? ("run " + std::to_string(run->id)).c_str() : dir.c_str(), (long long)info.step,
      data_path.c_str(), split == "val" ? "validation split" : "whole file", (long long)r.tokens,
      (long long)r.windows, (long long)r.seq_len, (long long)r.bytes, r.bytes_per_token, r.loss,
      r.perplexity, r.bits_per_byte);
  const nlohmann::json j = {{"run_id", run ? nlohmann::json(run->id) : nlohmann::json()},
                            {"checkpoint", dir},
                            {"step", info.step},
                            {"data", data_path},
                            {"split", split},
                            {"loss", r.loss},
                            {"perplexity", r.perplexity},
                            {"bits_per_byte", r.bits_per_byte},
                            {"bytes_per_token", r.bytes_per_token},
                            {"tokens", r.tokens},
                            {"bytes", r.bytes},
                            {"windows", r.windows},
                            {"seq_len", r.seq_len},
                            {"tokenizer", tok->name()}};
  if (run) {
    // evals rows hold 0-based step indices (runs show prints step + 1).
    const int64_t step = std::max<int64_t>(0, info.step - 1);
    for (const char* k : {"loss", "perplexity", "bits_per_byte", "bytes_per_token", "tokens"})
      store->log_eval(run->id, step, split + "/" + k, j[k].get<double>());
    std::printf("recorded as evals of run %lld (%s/...) in %s\n", (long long)run->id, split.c_str(),
                store->path().c_str());
  }
  if (args.flag("json")) std::printf("%s\n", j.dump().c_str());
  return 0;
}

}  // namespace bl::cli
