#include "training/training_session.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <stdexcept>

#include "generate/sampler.h"
#include "run/launcher.h"
#include "tensor/rng.h"
#include "train/callbacks.h"

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
    // The worker's own store connection (one connection per thread).
    if (spec.db_path.empty()) spec.db_path = db_path_;
    std::unique_ptr<PreparedRun> prepared = launch_run(spec);
    PreparedRun& run = *prepared;
    Forwarder fwd(*this);
    run.add_callback(fwd);  // after the savers and the store logger
    const int64_t run_id = run.begin();
    ModelRef ref{&run.model(), &run.tokenizer(), &run.store(), run_id,
                 Rng(uint64_t(run.preset().train.seed) ^ 0x5a3b1eULL)};
    {
      std::lock_guard<std::mutex> lk(mu_);
      model_ref_ = &ref;
      has_model_ = true;
      buffer_.run_id = run_id;
      buffer_.horizon = run.trainer().horizon();
      trainer_ = &run.trainer();
      if (stop_pending_) trainer_->request_stop("stopped from the GUI");
    }
    TrainSummary sum;
    try {
      sum = run.train();  // records a failure in the store before it propagates
    } catch (const std::exception&) {
      std::lock_guard<std::mutex> lk(mu_);
      trainer_ = nullptr;
      throw;
    }
    run.store().flush();
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
    r.top_k = req.top_k;
    r.top_p = req.top_p;
    ModelRef& m = *model_ref_;
    r.run_id = m.run_id;
    lk.unlock();  // generation takes a while: never hold the lock the UI drains with
    try {
      const std::vector<int32_t> ids = m.tok->encode(req.prompt);
      if (ids.empty()) throw std::invalid_argument("the prompt is empty");
      SamplingOptions opt;
      opt.temperature = float(req.temperature);
      opt.max_new_tokens = req.max_new_tokens;
      opt.top_k = req.top_k;
      opt.top_p = float(req.top_p);
      // Stream: the text so far is published after every token (decoded whole,
      // so a multi-byte character split across byte tokens shows once complete).
      std::vector<int32_t> so_far;
      const std::vector<int32_t> out = generate(*m.model, ids, opt, m.rng, [&](int32_t id) {
        so_far.push_back(id);
        SampleResult p = r;
        p.text = m.tok->decode(so_far);
        std::lock_guard<std::mutex> g(mu_);
        buffer_.partial = std::move(p);
        return !shutdown_;
      });
      r.text = m.tok->decode(out);
      m.store->log_sample(m.run_id, r.step, r.prompt, r.text, r.temperature);
    } catch (const std::exception& e) {
      r.ok = false;
      r.text = e.what();
    }
    lk.lock();
    buffer_.partial.reset();
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
