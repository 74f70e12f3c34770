// One training run on a worker thread, Qt-free. The engine's callbacks append
// metric records to a mutex-protected buffer; the UI drains it on a timer, so
// the GUI thread never gets one event per training step.
//
// The run is assembled from a RunSpec by the engine's launcher
// (run/launcher.h), the one `blocklab-cli train` uses, on a store connection
// owned by the worker; it ends as completed / stopped / diverged / failed.
// The session adds only threading, pause / step, sampling and the buffer.
//
// Pause and sampling share one rule: the model is only touched by the worker
// thread. Pause is implemented by the session's own callback, which blocks the
// worker between two steps (after on_step_end) instead of inside the trainer;
// while blocked it serves sample requests. Generation therefore always runs on
// the worker, between optimizer steps, and can never race a training step.
// After the run ends the worker keeps the trained model and keeps serving
// sample requests until the next start() or join().
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "run/run_spec.h"
#include "train/metrics.h"

namespace bl {

class Trainer;

/// What to generate: prompt, temperature, length.
struct SampleRequest {
  std::string prompt = "\n";
  double temperature = 0.8;
  int64_t max_new_tokens = 200;
  int64_t top_k = 0;   // 0 = off
  double top_p = 1.0;  // 1 = off
};

/// One generated text.
struct SampleResult {
  int64_t run_id = 0;  // the run whose model wrote it (0 = not recorded)
  int64_t step = 0;    // optimizer steps taken when it was generated
  std::string prompt;
  std::string text;  // the continuation, or the reason it failed
  double temperature = 0;
  bool ok = true;
  int64_t top_k = 0;
  double top_p = 1.0;
};

class TrainingSession {
 public:
  /// Everything that happened since the last drain().
  struct Update {
    std::optional<int64_t> run_id;  // set once, when the run row exists
    /// With run_id: the step the run trains to (max_steps, or fewer under a FLOP budget).
    std::optional<int64_t> horizon;
    std::vector<StepMetrics> steps;
    std::vector<std::pair<int64_t, double>> evals;  // (step, eval loss)
    std::vector<SampleResult> samples;
    /// The sample being generated now, its text so far (streamed token by token).
    std::optional<SampleResult> partial;
    std::optional<TrainSummary> summary;  // set once, when the run ends
    std::string error;                    // setup/training failure, if any
  };

  /// Runs are recorded in `db_path` (empty: default_db_path(), i.e. $BLOCKLAB_DB or XDG).
  explicit TrainingSession(std::string db_path = "");
  ~TrainingSession();  // stops the run and joins the worker
  TrainingSession(const TrainingSession&) = delete;
  TrainingSession& operator=(const TrainingSession&) = delete;

  const std::string& db_path() const { return db_path_; }

  /// Starts a run (launch: checks, data loading, model init, then training, all
  /// on the worker; a spec without db_path is recorded in db_path()). A
  /// previous, finished run is released first; throws std::logic_error if one
  /// is running.
  void start(const RunSpec& spec);
  /// Thread-safe controls; callable at any time (also before the trainer exists).
  void pause();
  void resume();
  void step_once();  // while paused: one more step, then paused again
  void stop();
  /// Stops the run (if any), ends the worker and waits for it.
  void join();

  /// Queues a sample from the current model (served between steps, while
  /// paused, or after the run ended). False if there is no model to sample.
  bool request_sample(const SampleRequest& r);
  /// Automatic samples every `every_steps` steps (0 = off) with `r`.
  void set_auto_sample(int64_t every_steps, const SampleRequest& r);

  /// True from start() until training has finished.
  bool running() const { return running_.load(); }
  bool paused() const { return paused_.load(); }
  /// True while the worker holds a model that can be sampled.
  bool has_model() const { return has_model_.load(); }
  /// Takes the buffered records.
  Update drain();

 private:
  class Forwarder;
  void run(RunSpec spec);
  /// Worker only: blocks while paused (serving samples); returns at once otherwise.
  void hold_while_paused(std::unique_lock<std::mutex>& lk);
  void serve_samples(std::unique_lock<std::mutex>& lk);

  std::string db_path_;
  std::thread worker_;
  std::atomic<bool> running_{false};
  std::atomic<bool> paused_{false};
  std::atomic<bool> has_model_{false};
  std::mutex mu_;  // guards everything below
  std::condition_variable cv_;
  Trainer* trainer_ = nullptr;  // live only while the worker trains
  bool stop_pending_ = false;
  bool shutdown_ = false;  // the worker should release its model and end
  int64_t steps_allowed_ = 0;
  std::deque<SampleRequest> sample_queue_;
  int64_t auto_every_ = 0;
  SampleRequest auto_request_;
  int64_t steps_done_ = 0;
  Update buffer_;
  // Worker-only sampling state (set while the worker holds a model).
  struct ModelRef;
  ModelRef* model_ref_ = nullptr;
};

}  // namespace bl
