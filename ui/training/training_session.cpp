#include "training/training_session.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <stdexcept>

#include "core/model.h"
#include "data/text_dataset.h"
#include "data/tokenizer.h"
#include "generate/sampler.h"
#include "lora/adapter_io.h"
#include "lora/adapter_saver.h"
#include "store/experiment_store.h"
#include "tensor/rng.h"
#include "train/callbacks.h"
#include "train/checkpoint.h"
#include "train/store_logger.h"
#include "train/trainer.h"

namespace bl {

/// What the worker needs to sample: lives on the worker's stack.
struct TrainingSession::ModelRef {
  LanguageModel* model;
  const Tokenizer* tok;
  ExperimentStore* store;
  int64_t run_id;
  Rng rng;  // separate from training's generators: sampling never changes a run
};

/// Copies the engine's reports into the session buffer and holds the worker
/// between steps while paused. Added last, so the store already has the step.
class TrainingSession::Forwarder : public Callback {
 public:
  explicit Forwarder(TrainingSession& s) : s_(s) {}
  void on_train_begin(Trainer&) override {
    std::unique_lock<std::mutex> lk(s_.mu_);
    s_.hold_while_paused(lk);  // a pause pressed during setup holds before step 1
  }
  void on_step_end(Trainer&, const StepMetrics& m) override {
    std::unique_lock<std::mutex> lk(s_.mu_);
    s_.buffer_.steps.push_back(m);
    if (m.eval_loss) {
      // Published here (not in on_eval_end) so a pause after this step shows it.
      s_.buffer_.evals.emplace_back(m.step, *m.eval_loss);
      last_eval_step_ = m.step;
    }
    s_.steps_done_ = m.step + 1;
    if (s_.auto_every_ > 0 && s_.steps_done_ % s_.auto_every_ == 0)
      s_.sample_queue_.push_back(s_.auto_request_);
    s_.serve_samples(lk);
    s_.hold_while_paused(lk);
  }
  void on_eval_end(Trainer&, int64_t step, double eval_loss) override {
    if (step == last_eval_step_) return;  // already published with its step
    std::lock_guard<std::mutex> lk(s_.mu_);
    s_.buffer_.evals.emplace_back(step, eval_loss);  // the final evaluation
  }

 private:
  TrainingSession& s_;
  int64_t last_eval_step_ = -1;
};

std::string run_adapter_dir(const std::string& db_path, int64_t run_id) {
  return run_files_dir(db_path, run_id) + "/adapter";
}

TrainingSession::TrainingSession(std::string db_path)
    : db_path_(db_path.empty() ? default_db_path() : std::move(db_path)) {}

TrainingSession::~TrainingSession() {
  join();
}

void TrainingSession::start(const RunSpec& spec) {
  if (running_) throw std::logic_error("a training run is already in progress");
  join();  // releases the previous run's model
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_pending_ = false;
    shutdown_ = false;
    steps_allowed_ = 0;
    steps_done_ = 0;
    sample_queue_.clear();
    buffer_ = Update{};
  }
  paused_ = false;
  running_ = true;
  worker_ = std::thread([this, spec] { run(spec); });
}

void TrainingSession::run(RunSpec spec) {
  // The UI thread wins CPU contention against training (Linux nice is per
  // thread): on a busy machine a frame is never queued behind a step.
  setpriority(PRIO_PROCESS, pid_t(syscall(SYS_gettid)), 4);
  try {
    // The worker's own read-write connection (one connection per thread).
    ExperimentStore store(db_path_);
    const std::string text = read_text_file(spec.data_path);
    Preset& p = spec.preset;
    std::unique_ptr<Tokenizer> tok;
    std::unique_ptr<LanguageModel> model_ptr;
    Finetune ft;
    if (spec.finetune) {
      // Built exactly as `blocklab-cli train --init-from RUN --lora ...` builds it.
      const int64_t base = spec.finetune->base_run_id;
      const auto ck = latest_checkpoint(store, base);
      if (!ck)
        throw std::runtime_error("run #" + std::to_string(base) +
                                 " has no checkpoint to fine-tune");
      FinetuneSpec fs;
      fs.base_checkpoint = ck->path;
      fs.lora = spec.finetune->lora;
      fs.quantize = spec.finetune->quantize;
      fs.seed = uint64_t(p.train.seed);
      ft = build_finetune(fs);
      tok = std::move(ft.tokenizer);
      model_ptr = std::move(ft.model);
      p.model = model_ptr->config();
      spec.parent_run_id = base;
    } else {
      tok = make_tokenizer("char", text);
      p.model.vocab_size = tok->vocab_size();
      model_ptr = std::make_unique<LanguageModel>(p.model);
      Rng init(uint64_t(p.train.seed));
      model_ptr->init_weights(init);
    }
    LanguageModel& model = *model_ptr;
    TextDataset data(text, *tok, p.train.val_fraction);
    Trainer trainer(model, p.train, data);

    // Same records as `blocklab-cli train` (with --lora for a fine-tune).
    RunRecord rec;
    rec.name = !spec.name.empty() ? spec.name
               : spec.finetune    ? (p.model.name.empty() ? "lora" : p.model.name + " lora")
               : !spec.preset_name.empty() ? spec.preset_name
                                           : p.model.name;
    rec.tags = spec.tags;
    if (spec.finetune && std::find(rec.tags.begin(), rec.tags.end(), "lora") == rec.tags.end())
      rec.tags.push_back("lora");
    rec.preset = spec.finetune ? "" : spec.preset_name;
    const DatasetFingerprint fp = fingerprint_dataset(spec.data_path);
    rec.dataset_path = fp.path;
    rec.dataset_size = fp.size;
    rec.dataset_sha256 = fp.sha256;
    rec.tokenizer = tok->to_json();
    rec.parent_run_id = spec.parent_run_id;
    StoreLogger logger(store, rec);
    // Fine-tunes write fine-tune checkpoints (adapter tensors + trainer state;
    // the base stays in its own checkpoint) and their adapter.
    CheckpointPolicy policy;
    policy.interval = p.train.checkpoint_interval;
    CheckpointSaver saver(
        *tok, policy,
        [&](int64_t step) { return run_checkpoint_dir(store.path(), logger.run_id(), step); },
        [&](int64_t step, const std::string& dir) { logger.add_checkpoint(step, dir); });
    // Every checkpoint interval and at the end: a killed fine-tune keeps its last adapter.
    AdapterSaver adapter_saver([&] { return run_adapter_dir(store.path(), logger.run_id()); },
                               p.train.checkpoint_interval);
    Forwarder fwd(*this);
    // The final checkpoint / adapter is on disk before the run ends.
    trainer.add_callback(&saver);
    if (spec.finetune) trainer.add_callback(&adapter_saver);
    trainer.add_callback(&logger);
    trainer.add_callback(&fwd);
    const int64_t run_id = logger.begin(trainer);
    if (spec.finetune) {
      // In the run row from the start, as the CLI records it: `blocklab-cli
      // train --resume RUN` rebuilds a stopped or killed fine-tune from it.
      const nlohmann::json lora = ft.summary(run_adapter_dir(store.path(), run_id));
      logger.summary_extra()["lora"] = lora;
      store.set_summary(run_id, {{"lora", lora}});
      saver.set_finetune(lora);
    }
    ModelRef ref{&model, tok.get(), &store, run_id, Rng(uint64_t(p.train.seed) ^ 0x5a3b1eULL)};
    {
      std::lock_guard<std::mutex> lk(mu_);
      model_ref_ = &ref;
      has_model_ = true;
      buffer_.run_id = run_id;
      trainer_ = &trainer;
      if (stop_pending_) trainer.request_stop("stopped from the GUI");
    }
    TrainSummary sum;
    try {
      sum = trainer.train();
    } catch (const std::exception& e) {
      {
        std::lock_guard<std::mutex> lk(mu_);
        trainer_ = nullptr;
      }
      logger.fail(e.what());
      throw;
    }
    if (!logger.finished()) logger.fail("training ended without a summary");
    store.flush();
    std::unique_lock<std::mutex> lk(mu_);
    trainer_ = nullptr;
    buffer_.summary = sum;
    running_ = false;
    paused_ = false;
    // Keep the trained model for on-demand samples until released.
    while (!shutdown_) {
      serve_samples(lk);
      cv_.wait(lk, [&] { return shutdown_ || !sample_queue_.empty(); });
    }
    model_ref_ = nullptr;
    has_model_ = false;
  } catch (const std::exception& e) {
    std::lock_guard<std::mutex> lk(mu_);
    trainer_ = nullptr;
    model_ref_ = nullptr;
    has_model_ = false;
    buffer_.error = e.what();
  }
  running_ = false;
}

void TrainingSession::hold_while_paused(std::unique_lock<std::mutex>& lk) {
  auto released = [&] { return !paused_ || steps_allowed_ > 0 || stop_pending_ || shutdown_; };
  while (!released()) {
    serve_samples(lk);
    cv_.wait(lk, [&] { return released() || !sample_queue_.empty(); });
  }
  if (paused_ && steps_allowed_ > 0) --steps_allowed_;
}

void TrainingSession::serve_samples(std::unique_lock<std::mutex>& lk) {
  while (!sample_queue_.empty() && model_ref_) {
    const SampleRequest req = sample_queue_.front();
    sample_queue_.pop_front();
    SampleResult r;
    r.step = steps_done_;
    r.prompt = req.prompt;
    r.temperature = req.temperature;
    ModelRef& m = *model_ref_;
    lk.unlock();  // generation takes a while: never hold the lock the UI drains with
    try {
      const std::vector<int32_t> ids = m.tok->encode(req.prompt);
      if (ids.empty()) throw std::invalid_argument("the prompt is empty");
      SamplingOptions opt;
      opt.temperature = float(req.temperature);
      opt.max_new_tokens = req.max_new_tokens;
      const std::vector<int32_t> out = generate(*m.model, ids, opt, m.rng);
      r.text = m.tok->decode(out);
      m.store->log_sample(m.run_id, r.step, r.prompt, r.text, r.temperature);
    } catch (const std::exception& e) {
      r.ok = false;
      r.text = e.what();
    }
    lk.lock();
    buffer_.samples.push_back(std::move(r));
  }
}

void TrainingSession::pause() {
  std::lock_guard<std::mutex> lk(mu_);
  if (!running_) return;
  paused_ = true;
  steps_allowed_ = 0;
}

void TrainingSession::resume() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    paused_ = false;
    steps_allowed_ = 0;
  }
  cv_.notify_all();
}

void TrainingSession::step_once() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (!paused_) return;
    ++steps_allowed_;
  }
  cv_.notify_all();
}

void TrainingSession::stop() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_pending_ = true;
    if (trainer_) trainer_->request_stop("stopped from the GUI");
  }
  cv_.notify_all();
}

void TrainingSession::join() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_pending_ = true;
    shutdown_ = true;
    if (trainer_) trainer_->request_stop("stopped from the GUI");
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

bool TrainingSession::request_sample(const SampleRequest& r) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (!running_ && !has_model_) return false;
    sample_queue_.push_back(r);
  }
  cv_.notify_all();
  return true;
}

void TrainingSession::set_auto_sample(int64_t every_steps, const SampleRequest& r) {
  std::lock_guard<std::mutex> lk(mu_);
  auto_every_ = every_steps;
  auto_request_ = r;
}

TrainingSession::Update TrainingSession::drain() {
  std::lock_guard<std::mutex> lk(mu_);
  Update out = std::move(buffer_);
  buffer_ = Update{};
  return out;
}

}  // namespace bl
