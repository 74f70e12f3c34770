#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "distributed.h"
#include "setup.h"
#include "store/process_status.h"

namespace bl::cli {

namespace {

/// One live status line (step, loss, tok/s, ETA), redrawn in place on a
/// terminal, printed every log_interval steps otherwise.
class ProgressPrinter : public Callback {
 public:
  ProgressPrinter(int64_t max_steps, int64_t log_interval, bool quiet)
      : max_steps_(max_steps),
        interval_(log_interval > 0 ? log_interval : 10),
        quiet_(quiet),
        tty_(isatty(fileno(stderr))) {}

  void on_step_end(Trainer& t, const StepMetrics& m) override {
    ema_tps_ = ema_tps_ == 0 ? m.tokens_per_sec : 0.9 * ema_tps_ + 0.1 * m.tokens_per_sec;
    if (quiet_) return;
    const int64_t done = m.step + 1;
    const double eta =
        ema_tps_ > 0 ? double(max_steps_ - done) * double(t.tokens_per_step()) / ema_tps_ : 0;
    char line[256];
    std::snprintf(line, sizeof line,
                  "step %lld/%lld | loss %.4f | lr %.2e | gnorm %.2f | %.0f tok/s | ETA %s",
                  (long long)done, (long long)max_steps_, m.loss, m.learning_rate, m.grad_norm,
                  ema_tps_, format_eta(eta).c_str());
    if (tty_) {
      std::fprintf(stderr, "\r\033[K%s", line);
      if (m.eval_loss) std::fprintf(stderr, "\r\033[K%s | eval_loss %.4f\n", line, *m.eval_loss);
    } else if (done % interval_ == 0 || done == max_steps_ || m.eval_loss) {
      std::fprintf(stderr, "%s", line);
      if (m.eval_loss) std::fprintf(stderr, " | eval_loss %.4f", *m.eval_loss);
      std::fprintf(stderr, "\n");
    }
    std::fflush(stderr);
  }
  void on_train_end(Trainer&, const TrainSummary&) override {
    if (tty_ && !quiet_) std::fprintf(stderr, "\n");
  }

 private:
  static std::string format_eta(double s) {
    char buf[32];
    if (s >= 3600)
      std::snprintf(buf, sizeof buf, "%dh%02dm", int(s / 3600), int(std::fmod(s, 3600) / 60));
    else if (s >= 60)
      std::snprintf(buf, sizeof buf, "%dm%02ds", int(s / 60), int(std::fmod(s, 60)));
    else
      std::snprintf(buf, sizeof buf, "%ds", int(s));
    return buf;
  }
  int64_t max_steps_, interval_;
  bool quiet_, tty_;
  double ema_tps_ = 0;
};

/// Options that would change what a resumed run computes.
const char* const kFixedOnResume[] = {
    "preset",  "config", "data",      "tokenizer", "seed", "lr",         "batch-size",
    "seq-len", "warmup", "optimizer", "schedule",  "set",  "flop-budget"};
/// Options that start a fine-tune (lora_command.cpp); a resumed one keeps its own.
const char* const kFinetuneOptions[] = {"init-from", "lora", "quantize", "adapter-out"};

/// Options that start a distillation; a resumed one keeps its teacher and mix.
const char* const kDistillOptions[] = {"distill-from", "distill-temperature", "distill-alpha"};

/// `--distill-from RUN|CKPT [--distill-temperature T] [--distill-alpha A]`
/// on a fresh run's spec: it becomes a distillation (RunKind::kDistill).
void fill_distill_options(const Args& args, RunSpec& spec) {
  const auto from = args.get("distill-from");
  if (!from) {
    for (const char* o : {"distill-temperature", "distill-alpha"})
      if (args.get(o))
        throw UsageError("--" + std::string(o) + " applies to a distillation: add --distill-from " +
                         "RUN|CKPT (the teacher)");
    return;
  }
  if (from->empty()) throw UsageError("--distill-from needs a run id or a checkpoint directory");
  spec.kind = RunKind::kDistill;
  if (from->find_first_not_of("#0123456789") == std::string::npos)
    spec.distill.teacher_run_id = parse_run_id(*from, "--distill-from");
  else
    spec.distill.teacher_checkpoint = *from;
  if (auto t = args.get_double("distill-temperature")) {
    if (!(*t > 0))
      throw UsageError("--distill-temperature must be > 0, got " +
                       *args.get("distill-temperature"));
    spec.distill.temperature = *t;
  }
  if (auto a = args.get_double("distill-alpha")) {
    if (!(*a >= 0 && *a <= 1))
      throw UsageError("--distill-alpha must be in [0, 1], got " + *args.get("distill-alpha"));
    spec.distill.alpha = *a;
  }
}

/// Options that start a DPO run; a resumed one keeps its reference and beta.
const char* const kPreferenceOptions[] = {"dpo-from", "dpo-beta"};

/// `--dpo-from RUN|CKPT [--dpo-beta B] --data PAIRS.jsonl` on a new run's spec:
/// it becomes a DPO run (RunKind::kPreference).
void fill_preference_options(const Args& args, RunSpec& spec) {
  const auto from = args.get("dpo-from");
  if (!from) {
    if (args.get("dpo-beta"))
      throw UsageError(
          "--dpo-beta applies to a DPO run: add --dpo-from RUN|CKPT (the model it "
          "starts from) and --data PAIRS.jsonl");
    return;
  }
  if (from->empty()) throw UsageError("--dpo-from needs a run id or a checkpoint directory");
  if (spec.kind == RunKind::kDistill)
    throw UsageError("give --dpo-from or --distill-from, not both");
  spec.kind = RunKind::kPreference;
  if (from->find_first_not_of("#0123456789") == std::string::npos)
    spec.preference.base_run_id = parse_run_id(*from, "--dpo-from");
  else
    spec.preference.base_checkpoint = *from;
  if (auto b = args.get_double("dpo-beta")) {
    if (!(*b > 0 && std::isfinite(*b)))
      throw UsageError("--dpo-beta must be > 0, got " + *args.get("dpo-beta"));
    spec.preference.beta = *b;
  }
}

/// Options that start a GRPO run; a resumed one keeps its reference and recipe.
const char* const kGrpoOptions[] = {"grpo-from", "reward",         "group-size",      "grpo-beta",
                                    "grpo-clip", "max-new-tokens", "grpo-temperature"};

/// `--grpo-from RUN|CKPT --reward SPEC --data PROMPTS.jsonl [--group-size G]
/// [--grpo-beta B] [--grpo-clip E] [--max-new-tokens N] [--grpo-temperature T]`.
void fill_grpo_options(const Args& args, RunSpec& spec) {
  const auto from = args.get("grpo-from");
  if (!from) {
    for (const char* o : kGrpoOptions)
      if (args.get(o))
        throw UsageError("--" + std::string(o) +
                         " applies to a GRPO run: add --grpo-from RUN|CKPT (the model it starts "
                         "from), --reward SPEC and --data PROMPTS.jsonl");
    return;
  }
  if (from->empty()) throw UsageError("--grpo-from needs a run id or a checkpoint directory");
  if (spec.kind != RunKind::kFresh)
    throw UsageError(
        "--grpo-from starts its own kind of run: not with --dpo-from or "
        "--distill-from");
  spec.kind = RunKind::kGrpo;
  if (from->find_first_not_of("#0123456789") == std::string::npos)
    spec.grpo.base_run_id = parse_run_id(*from, "--grpo-from");
  else
    spec.grpo.base_checkpoint = *from;
  const auto reward = args.get("reward");
  if (!reward)
    throw UsageError("a GRPO run needs --reward exact|regex:PATTERN|length:N|cmd:COMMAND");
  spec.grpo.reward = *reward;
  GrpoOptions& g = spec.grpo.grpo;
  if (auto v = args.get_int("group-size", 2)) g.group = *v;
  if (auto v = args.get_int("max-new-tokens", 1)) g.max_new_tokens = *v;
  if (auto v = args.get_double("grpo-beta")) g.beta = float(*v);
  if (auto v = args.get_double("grpo-clip")) g.eps = float(*v);
  if (auto v = args.get_double("grpo-temperature")) g.temperature = float(*v);
}

/// "distillation of teacher run 3 (DIR), T 2, alpha 0.5" for the header.
std::string distill_line(const DistillPlan& d) {
  char buf[96];
  std::snprintf(buf, sizeof buf, ", T %g, alpha %g", d.temperature, d.alpha);
  return "distillation of teacher " +
         (d.teacher_run_id
              ? "run " + std::to_string(*d.teacher_run_id) + " (" + d.teacher_checkpoint + ")"
              : d.teacher_checkpoint) +
         buf;
}

/// Says which option a resume cannot take, before the launcher is asked.
void check_resume_options(const Args& args) {
  for (const char* opt : kFixedOnResume)
    if (args.get(opt))
      throw UsageError("--" + std::string(opt) +
                       " cannot be used with --resume (a resumed run keeps its configuration); "
                       "use --fork " +
                       *args.get("resume") + " --set ... for a changed copy");
  for (const char* opt : kFinetuneOptions)
    if (args.get(opt))
      throw UsageError("--" + std::string(opt) +
                       " cannot be used with --resume (a resumed fine-tune keeps the base, LoRA "
                       "spec, quantization and adapter path it began with)");
  if (args.flag("fresh")) throw UsageError("--fresh applies to --fork, not --resume");
  for (const char* opt : kDistillOptions)
    if (args.get(opt))
      throw UsageError("--" + std::string(opt) +
                       " cannot be used with --resume (a resumed distillation keeps the teacher, "
                       "temperature and alpha it began with)");
  for (const char* opt : kPreferenceOptions)
    if (args.get(opt))
      throw UsageError("--" + std::string(opt) +
                       " cannot be used with --resume (a resumed DPO run keeps the reference and "
                       "beta it began with)");
  for (const char* opt : kGrpoOptions)
    if (args.get(opt))
      throw UsageError("--" + std::string(opt) +
                       " cannot be used with --resume (a resumed GRPO run keeps the reference, "
                       "reward and recipe it began with)");
}

void print_header(PreparedRun& run, int64_t run_id) {
  const RunPlan& plan = run.plan();
  const std::string& preset = plan.record.preset;
  // DPO and GRPO read a JSONL file: its pairs / prompts are counted below, not tokens.
  const std::string split = run.preference() || run.prompts()
                                ? std::string()
                                : " (" + std::to_string(run.data().train_size()) + " train / " +
                                      std::to_string(run.data().val_size()) + " val tokens)";
  std::fprintf(stderr,
               "blocklab: %s | %lld params | %s tokenizer (vocab %lld) | data %s%s | %lld steps x "
               "%lld tokens\n",
               preset.empty() ? "config" : preset.c_str(), (long long)run.model().num_parameters(),
               run.tokenizer().name().c_str(), (long long)run.tokenizer().vocab_size(),
               plan.data_path.c_str(), split.c_str(), (long long)run.trainer().horizon(),
               (long long)run.trainer().tokens_per_step());
  std::fprintf(stderr, "run %lld recorded in %s", (long long)run_id, run.store().path().c_str());
  if (plan.kind == RunKind::kResume)
    std::fprintf(stderr, " (resumes run %lld from step %lld)", (long long)plan.parent->id,
                 (long long)run.trainer().step());
  if (plan.kind == RunKind::kFork)
    std::fprintf(stderr, " (fork of run %lld%s)", (long long)plan.parent->id,
                 plan.weights_from.empty() ? ", fresh weights" : "");
  if (plan.distill) std::fprintf(stderr, " (%s)", distill_line(*plan.distill).c_str());
  if (const PreferenceData* pairs = run.preference()) {
    const PreferencePlan& d = *plan.preference;
    std::fprintf(stderr, " (DPO from %s, beta %g, %zu train / %zu val pairs)",
                 d.base_run_id ? ("run " + std::to_string(*d.base_run_id)).c_str()
                               : d.base_checkpoint.c_str(),
                 d.beta, pairs->train().size(), pairs->val().size());
  }
  if (const PromptSet* prompts = run.prompts()) {
    const GrpoPlan& d = *plan.grpo;
    std::fprintf(stderr,
                 " (GRPO from %s, reward %s, %lld completions of <= %lld tokens per prompt, "
                 "%zu train / %zu val prompts)",
                 d.base_run_id ? ("run " + std::to_string(*d.base_run_id)).c_str()
                               : d.base_checkpoint.c_str(),
                 d.reward.c_str(), (long long)d.options.group, (long long)d.options.max_new_tokens,
                 prompts->train().size(), prompts->val().size());
  }
  std::fprintf(stderr, "\n");
}

/// Trains a launched run and prints its outcome (rank 0 of a distributed run
/// only; the other ranks train silently).
int train_and_report(PreparedRun& prepared, const Args& args, Communicator* comm) {
  PreparedRun* run = &prepared;
  const bool rank0 = !comm || comm->rank() == 0;
  const bool quiet = args.flag("quiet") || !rank0;
  print_notes(*run, quiet);
  const TrainConfig& tc = run->preset().train;
  const int64_t run_id = run->begin();
  if (!quiet) print_header(*run, run_id);
  if (!quiet && comm)
    std::fprintf(stderr, "data-parallel over %d ranks (%s), %lld rows each per micro-batch\n",
                 comm->size(), comm->name().c_str(), (long long)(tc.batch_size / comm->size()));
  ProgressPrinter progress(run->trainer().horizon(), tc.log_interval, quiet);
  run->add_callback(progress);
  AllreduceTimes allreduce(tc.max_steps);
  if (comm) run->add_callback(allreduce);
  const TrainSummary sum = train_with_signals(*run);
  if (!rank0)
    return sum.status == RunStatus::kCompleted || sum.status == RunStatus::kStopped ? 0 : 3;

  ExperimentStore& store = run->store();
  StoreLogger& logger = run->logger();
  const CheckpointSaver& saver = run->checkpoints();
  std::printf("%s after %lld steps: train loss %.4f (mean of last 10)", to_string(sum.status),
              (long long)sum.steps, sum.final_train_loss);
  if (sum.val_loss) std::printf(", val loss %.4f", *sum.val_loss);
  std::printf(", %.0f tok/s, median step %.1f ms, %.1f s\n", sum.tokens_per_sec, sum.median_step_ms,
              sum.elapsed_s);
  if (!sum.message.empty()) std::printf("%s\n", sum.message.c_str());
  const FlopsReport& fl = run->flops().report();
  std::printf(
      "%.4g FLOPs/token, %.4g FLOPs in all, MFU %.1f%% (%.1f of %.1f GFLOP/s measured peak)\n",
      fl.flops_per_token, fl.total_flops, 100.0 * fl.mfu, fl.achieved_flops_per_sec / 1e9,
      fl.peak_flops_per_sec / 1e9);
  std::printf("run %lld recorded in %s", (long long)run_id, store.path().c_str());
  if (sum.status == RunStatus::kStopped && saver.last_step())
    std::printf(" (continue with: blocklab-cli train --resume %lld)", (long long)run_id);
  std::printf("\n");
  if (auto out = args.get("out")) {
    save_checkpoint(*out, run->model(), tc, run->tokenizer(), &run->trainer());
    std::printf("checkpoint saved to %s (sample with: blocklab-cli sample --run %s)\n",
                out->c_str(), out->c_str());
  }
  if (args.flag("json")) {
    const auto& parent = run->plan().parent;
    nlohmann::json j = {
        {"status", to_string(sum.status)},
        {"steps", sum.steps},
        {"message", sum.message},
        {"final_train_loss", sum.final_train_loss},
        {"val_loss", sum.val_loss ? nlohmann::json(*sum.val_loss) : nlohmann::json()},
        {"best_val_loss",
         sum.best_val_loss ? nlohmann::json(*sum.best_val_loss) : nlohmann::json()},
        {"tokens_per_sec", sum.tokens_per_sec},
        {"median_step_ms", sum.median_step_ms},
        {"elapsed_s", sum.elapsed_s},
        {"params", sum.params},
        {"flops_per_token", fl.flops_per_token},
        {"total_flops", fl.total_flops},
        {"mfu", fl.mfu},
        {"peak_flops_per_sec", fl.peak_flops_per_sec},
        {"preset", run->plan().record.preset},
        {"seed", tc.seed},
        {"threads", tc.threads},
        {"run_id", run_id},
        {"db", store.path()},
        {"parent_run_id", parent ? nlohmann::json(parent->id)
                          : run->plan().record.parent_run_id
                              ? nlohmann::json(*run->plan().record.parent_run_id)
                              : nlohmann::json()},
        {"distill", run->plan().distill ? run->plan().distill->to_json() : nlohmann::json()},
        {"dpo", run->plan().preference ? run->plan().preference->to_json() : nlohmann::json()},
        {"grpo", run->plan().grpo ? run->plan().grpo->to_json() : nlohmann::json()},
        {"checkpoint",
         saver.last_dir().empty() ? nlohmann::json() : nlohmann::json(saver.last_dir())},
        {"world_size", comm ? comm->size() : 1},
        {"allreduce_ms_median", allreduce.median_ms()},
        {"logging_overhead_pct",
         logger.step_time_ms() > 0 ? 100.0 * logger.overhead_ms() / logger.step_time_ms() : 0.0}};
    std::printf("%s\n", j.dump().c_str());
  }
  std::fflush(stdout);
  return sum.status == RunStatus::kCompleted || sum.status == RunStatus::kStopped ? 0 : 3;
}

/// `mpirun -np N blocklab-cli train ... --distributed`, on every rank.
int distributed_train(const RunSpec& spec, Communicator& comm, const Args& args) {
  std::unique_ptr<PreparedRun> run;
  try {
    run = launch_on_ranks(spec, comm);
  } catch (const RankExit& e) {
    return e.code;  // rank 0 says why
  } catch (const std::exception& e) {
    if (comm.rank() == 0) throw;  // before any rank waits on it: reported like any error
    std::fprintf(stderr, "blocklab-cli train: error on rank %d (%s): %s\n", comm.rank(),
                 host_name().c_str(), e.what());
    comm.abort(1);  // rank 0 is waiting in a collective
  }
  try {
    return train_and_report(*run, args, &comm);
  } catch (const std::exception& e) {
    // The other ranks would wait in the next all-reduce forever. Rank 0's run
    // recorded the failure before the error reached here.
    std::fprintf(stderr, "blocklab-cli train: error on rank %d (%s): %s\n", comm.rank(),
                 host_name().c_str(), e.what());
    comm.abort(comm.rank() == 0 && dynamic_cast<const UsageError*>(&e) ? 2 : 1);
  }
  return 1;  // not reached (abort ends the process): for the compiler
}

}  // namespace

int train_command(const std::vector<std::string>& argv) {
  // LoRA / QLoRA fine-tuning of a checkpoint: lora_command.cpp (a resume of
  // one is a resume like any other).
  const bool has_resume = std::find(argv.begin(), argv.end(), "--resume") != argv.end();
  const bool distributed = std::find(argv.begin(), argv.end(), "--distributed") != argv.end();
  for (const std::string& a : argv)
    for (const char* o : kFinetuneOptions)
      if (!has_resume && a == "--" + std::string(o)) {
        if (distributed)
          throw UsageError(
              "--distributed trains whole models; a LoRA fine-tune runs in one process");
        return lora_train_command(argv);
      }
  auto value_opts = run_value_options();
  for (const char* o : {"out", "db", "name", "tag", "resume", "fork", "set", "flush-interval",
                        "checkpoint-interval", "keep-checkpoints"})
    value_opts.insert(o);
  for (const char* o : kFinetuneOptions) value_opts.insert(o);  // rejected by check_resume_options
  for (const char* o : kDistillOptions) value_opts.insert(o);
  for (const char* o : kPreferenceOptions) value_opts.insert(o);
  for (const char* o : kGrpoOptions) value_opts.insert(o);
  Args args(argv, value_opts, {"json", "quiet", "fresh", "distributed"});
  if (!args.positional().empty())
    throw UsageError("unexpected argument '" + args.positional()[0] + "'");
  const auto resume = args.get("resume"), fork = args.get("fork");
  if (resume && fork) throw UsageError("give --resume or --fork, not both");
  if (args.flag("fresh") && !fork) throw UsageError("--fresh only applies to --fork");
  // Data-parallel over MPI ranks: every rank runs this same command line.
  std::unique_ptr<Communicator> comm;
  DistributedSpec ranks;
  if (distributed) {
    comm = make_mpi_communicator();
    ranks.world_size = comm->size();
    ranks.hosts = comm->hosts();
  }

  RunSpec spec;
  if (resume) {
    check_resume_options(args);
    spec.kind = RunKind::kResume;
    spec.parent_run_id = parse_run_id(*resume, "--resume");
    spec.train.max_steps = args.get_int("steps", 1);
    spec.train.threads = args.get_int("threads", 1);
    spec.train.eval_interval = args.get_int("eval-interval", 0);
    spec.train.time_budget_s = args.get_double("time-budget");
    fill_store_options(args, spec);
    // Killed after its final checkpoint: finish it from there instead of
    // training. Over ranks, rank 0 (the one that records) decides and tells
    // the others; an error there is left to the launch, which reports it once.
    nlohmann::json sum;
    if (!comm) {
      sum = finish_resume_if_done(spec);
    } else {
      std::string done = "null";
      if (comm->rank() == 0) {
        try {
          done = finish_resume_if_done(spec).dump();
        } catch (const std::exception&) {
        }
      }
      sum = nlohmann::json::parse(broadcast_string(*comm, done, 0));
      if (!sum.is_null() && comm->rank() != 0) return 0;
    }
    if (!sum.is_null()) {
      std::printf(
          "run %lld had reached its last step before its process ended; marked completed "
          "from its final checkpoint\n",
          (long long)*spec.parent_run_id);
      if (args.flag("json")) std::printf("%s\n", sum.dump().c_str());
      return 0;
    }
  } else if (fork) {
    if (args.get("preset") || args.get("config"))
      throw UsageError("--fork takes the configuration of run " + *fork +
                       "; change it with --set field=value instead of --preset/--config");
    for (const char* o : kDistillOptions)
      if (args.get(o))
        throw UsageError("--" + std::string(o) +
                         " cannot be used with --fork: a distillation trains a fresh student "
                         "(--preset/--config)");
    for (const char* o : kPreferenceOptions)
      if (args.get(o))
        throw UsageError("--" + std::string(o) +
                         " cannot be used with --fork: a DPO run starts from the run named by "
                         "--dpo-from");
    for (const char* o : kGrpoOptions)
      if (args.get(o))
        throw UsageError("--" + std::string(o) +
                         " cannot be used with --fork: a GRPO run starts from the run named by "
                         "--grpo-from");
    spec = fresh_run_spec(args);
    spec.kind = RunKind::kFork;
    spec.parent_run_id = parse_run_id(*fork, "--fork");
    spec.fresh_weights = args.flag("fresh");
  } else {
    spec = fresh_run_spec(args);
    fill_distill_options(args, spec);
    fill_preference_options(args, spec);
    fill_grpo_options(args, spec);
  }
  fill_store_options(args, spec);
  spec.distributed = ranks;
  if (comm) return distributed_train(spec, *comm, args);
  std::unique_ptr<PreparedRun> run = launch_run(spec);
  if (resume && run->finetune()) {
    if (args.get("out"))
      throw UsageError("--out does not apply to a LoRA run (its adapter goes to " +
                       run->adapter_path() + ")");
    return run_finetune(*run, args);
  }
  return train_and_report(*run, args, nullptr);
}

}  // namespace bl::cli
