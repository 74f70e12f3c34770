#include "train/trainer.h"

#include <omp.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <thread>

#include "core/aux_outputs.h"
#include "data/epoch_order.h"
#include "simd/span_ops.h"
#include "tensor/gemm.h"
#include "tensor/graph.h"
#include "tensor/parallel.h"
#include "train/grad_clip.h"

namespace bl {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::vector<Parameter*> trainable(LanguageModel& m) {
  std::vector<Parameter*> out;
  for (Parameter* p : m.parameters())
    if (p->trainable() && std::find(out.begin(), out.end(), p) == out.end()) out.push_back(p);
  return out;
}

ScheduleOptions schedule_options(const TrainConfig& c, int64_t horizon) {
  ScheduleOptions s;
  s.lr = float(c.learning_rate);
  s.warmup_steps = c.warmup_steps;
  s.total_steps = horizon;
  s.min_lr_ratio = float(c.min_lr_ratio);
  return s;
}

const TrainConfig& checked(const LanguageModel& model, const TrainConfig& cfg) {
  std::vector<std::string> errors = validation_errors(cfg);
  for (auto& e : compatibility_errors(model.config(), cfg)) errors.push_back(e);
  if (!errors.empty()) throw ConfigError(errors);
  return cfg;
}

std::string sci(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.3g", v);
  return buf;
}

// max_steps, or the last step whose FLOPs still fit the budget (a step runs
// rows_per_sample rows per batch entry: 2 for DPO's pairs).
int64_t step_horizon(LanguageModel& model, const TrainConfig& c, int64_t rows_per_sample = 1) {
  if (c.flop_budget <= 0) return c.max_steps;
  const double per_step = model.flops_per_token(c.seq_len) * double(c.batch_size) *
                          double(rows_per_sample) * double(c.seq_len) *
                          double(c.grad_accumulation_steps);
  const double steps = std::floor(c.flop_budget / per_step);
  if (steps < double(std::max<int64_t>(1, c.warmup_steps)))
    throw ConfigError(
        {"train.flop_budget (" + sci(c.flop_budget) + ") allows " + sci(steps) + " steps of " +
         sci(per_step) + " FLOPs, fewer than " +
         (c.warmup_steps > 1 ? "train.warmup_steps (" + std::to_string(c.warmup_steps) + ")"
                             : std::string("one step")) +
         ": raise the budget or shrink the model or batch"});
  return steps < double(c.max_steps) ? int64_t(steps) : c.max_steps;
}
}  // namespace

OptimizerOptions optimizer_options(const TrainConfig& cfg) {
  OptimizerOptions o;
  o.weight_decay = float(cfg.weight_decay);
  // TrainConfig's betas (0.9/0.95) are AdamW's recipe; Lion keeps its own
  // defaults (0.9/0.99) and Adafactor runs without a first moment.
  if (cfg.optimizer == "adamw") {
    o.beta1 = float(cfg.beta1);
    o.beta2 = float(cfg.beta2);
  }
  o.eps = float(cfg.eps);
  o.momentum = float(cfg.momentum);
  return o;
}

Trainer::Trainer(LanguageModel& model, const TrainConfig& cfg, const TextDataset& data)
    : model_(model),
      cfg_(checked(model, cfg)),
      horizon_(step_horizon(model, cfg_)),
      params_(trainable(model)),
      optimizer_(make_optimizer(cfg_.optimizer, params_, optimizer_options(cfg_))),
      clipper_(params_),
      schedule_(make_schedule(cfg_.lr_schedule, schedule_options(cfg_, horizon_))),
      sampler_(data.train(), cfg_.batch_size, cfg_.seq_len, uint64_t(cfg_.seed), "train"),
      eval_(make_eval_batches(data.val(), cfg_.batch_size, cfg_.seq_len, cfg_.eval_batches)),
      x_(size_t(cfg_.batch_size * cfg_.seq_len)),
      y_(size_t(cfg_.batch_size * cfg_.seq_len)) {
  model_.dropout_rng().seed_with(uint64_t(cfg_.seed) ^ 0x5eedd509ULL);
}

void Trainer::set_communicator(Communicator* comm) {
  if (comm && teacher_)
    throw std::invalid_argument(
        "a distillation run trains in one process (the teacher's forward is not distributed)");
  if (comm && (pref_ || grpo_))
    throw std::invalid_argument("a DPO or GRPO run trains in one process");
  comm_ = comm;
  flat_grads_.reset();
  eval_losses_.clear();
  if (!comm_) return;
  const int n = comm_->size();
  if (cfg_.batch_size % n != 0)
    throw std::invalid_argument("train.batch_size (" + std::to_string(cfg_.batch_size) +
                                ") must be divisible by the number of ranks (" + std::to_string(n) +
                                "): each rank trains on an equal share of every batch");
  // The same condition as thread replicas: a rank's forward must not depend on
  // the other ranks' rows (MoE load statistics, dropout masks drawn in batch
  // order, auxiliary losses over the whole batch).
  if (n > 1 && !model_.data_parallel_safe())
    throw std::invalid_argument(
        "model '" + model_.config().name +
        "' cannot be trained data-parallel over ranks (dropout, MoE routing or MTP heads make "
        "a rank's share of the batch depend on the others); train it in one process");
  flat_grads_ = std::make_unique<FlatBuffer>(params_, FlatBuffer::Field::kGrad);
  eval_losses_.assign(size_t(eval_.n_batches), 0.0);
}

void Trainer::set_teacher(LanguageModel* teacher, float temperature, float alpha) {
  if (teacher) {
    if (comm_)
      throw std::invalid_argument(
          "a distillation run trains in one process (the teacher's forward is not distributed)");
    const int64_t tv = teacher->config().vocab_size, sv = model_.config().vocab_size;
    if (tv != sv)
      throw std::invalid_argument("the teacher's vocabulary (" + std::to_string(tv) +
                                  " tokens) differs from the student's (" + std::to_string(sv) +
                                  "): distillation compares their distributions token by token");
    if (!(std::isfinite(temperature) && temperature > 0.0f))
      throw std::invalid_argument("distillation temperature must be > 0, got " +
                                  std::to_string(temperature));
    if (!(alpha >= 0.0f && alpha <= 1.0f))
      throw std::invalid_argument("distillation alpha must be in [0, 1], got " +
                                  std::to_string(alpha));
  }
  teacher_ = teacher;
  temperature_ = temperature;
  alpha_ = alpha;
}

void Trainer::set_preference(const PreferenceData* data, std::vector<float> ref_train,
                             std::vector<float> ref_val, float beta) {
  if (!data) {
    pref_ = nullptr;
    return;
  }
  if (comm_ || teacher_ || grpo_)
    throw std::invalid_argument(
        "a DPO run trains in one process, without a teacher or GRPO (set_preference)");
  if (!(std::isfinite(beta) && beta > 0.0f))
    throw std::invalid_argument("DPO beta must be > 0, got " + std::to_string(beta));
  if (ref_train.size() != 2 * data->train().size() || ref_val.size() != 2 * data->val().size())
    throw std::invalid_argument(
        "DPO reference log-probabilities do not match the preference pairs (2 per pair)");
  pref_ = data;
  ref_train_ = std::move(ref_train);
  ref_val_ = std::move(ref_val);
  beta_ = beta;
  const size_t rows = size_t(2 * cfg_.batch_size * cfg_.seq_len);
  x_.assign(rows, 0);
  y_.assign(rows, -1);
  ref_batch_.assign(size_t(2 * cfg_.batch_size), 0.0f);
  batch_pairs_.assign(size_t(cfg_.batch_size), nullptr);
  pair_order_.resize(data->train().size());
  pair_epoch_ = -1;
  // Twice the rows per step: a FLOP budget allows half the steps.
  rows_per_sample_ = 2;
  horizon_ = step_horizon(model_, cfg_, 2);
  schedule_ = make_schedule(cfg_.lr_schedule, schedule_options(cfg_, horizon_));
}

void Trainer::set_grpo(GrpoObjective* objective) {
  if (objective && (comm_ || teacher_ || pref_))
    throw std::invalid_argument(
        "a GRPO run trains in one process, without a teacher or preference pairs");
  grpo_ = objective;
  rows_per_sample_ = objective ? objective->options().group : 1;
  horizon_ = step_horizon(model_, cfg_, rows_per_sample_);
  schedule_ = make_schedule(cfg_.lr_schedule, schedule_options(cfg_, horizon_));
}

void Trainer::next_preference_batch(int64_t index) {
  const int64_t B = cfg_.batch_size, n = int64_t(pref_->train().size());
  for (int64_t i = 0; i < B; ++i) {
    const int64_t k = index * B + i, epoch = k / n;
    if (epoch != pair_epoch_) {
      epoch_order(pair_order_, uint64_t(cfg_.seed), epoch);
      pair_epoch_ = epoch;
    }
    const int64_t p = pair_order_[size_t(k % n)];
    batch_pairs_[size_t(i)] = &pref_->train()[size_t(p)];
    ref_batch_[size_t(i)] = ref_train_[size_t(2 * p)];
    ref_batch_[size_t(B + i)] = ref_train_[size_t(2 * p + 1)];
  }
  pack_preference_batch(batch_pairs_.data(), B, cfg_.seq_len, x_.data(), y_.data());
}

double Trainer::evaluate_preference() {
  NoGradGuard no_grad;
  Graph& g = current_graph();
  const int64_t B = cfg_.batch_size, T = cfg_.seq_len, n = int64_t(pref_->val().size());
  double loss = 0;
  DpoParts sum;
  float* refs = ref_batch_.data();  // between steps: the training batch's buffers are free
  for (int64_t b0 = 0; b0 < n; b0 += B) {
    const int64_t nb = std::min(B, n - b0);
    for (int64_t i = 0; i < nb; ++i) {
      batch_pairs_[size_t(i)] = &pref_->val()[size_t(b0 + i)];
      refs[i] = ref_val_[size_t(2 * (b0 + i))];
      refs[nb + i] = ref_val_[size_t(2 * (b0 + i) + 1)];
    }
    pack_preference_batch(batch_pairs_.data(), nb, T, x_.data(), y_.data());
    const Shape s{2 * nb, T};
    DpoParts p;
    model_.preference_loss(Tokens{x_.data(), s}, Tokens{y_.data(), s}, refs, beta_, &p, false);
    loss += model_.lm_loss() * double(nb);
    sum.margin += p.margin * double(nb);
    sum.accuracy += p.accuracy * double(nb);
    g.clear();
  }
  val_parts_.margin = sum.margin / double(n);
  val_parts_.accuracy = sum.accuracy / double(n);
  return loss / double(n);
}

void Trainer::request_stop(const std::string& reason) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (!stop_) stop_reason_ = reason;
    stop_ = true;
  }
  cv_.notify_all();
}

void Trainer::pause() {
  paused_ = true;
}

void Trainer::resume() {
  paused_ = false;
  cv_.notify_all();
}

void Trainer::step_once() {
  ++single_steps_;
  cv_.notify_all();
}

bool Trainer::wait_turn() {
  if (!paused_ && !stop_) return true;
  std::unique_lock<std::mutex> lk(mu_);
  cv_.wait(lk, [&] { return stop_ || !paused_ || single_steps_ > 0; });
  if (stop_) return false;
  if (paused_ && single_steps_ > 0) --single_steps_;
  return true;
}

double Trainer::evaluate() {
  if (pref_) return evaluate_preference();
  if (grpo_) {
    val_reward_ = grpo_->val_reward(model_);
    return -val_reward_;
  }
  NoGradGuard no_grad;
  Graph& g = current_graph();
  const Shape s{eval_.batch_size, eval_.seq_len};
  double total = 0;
  if (comm_) {
    // Batch i on rank i % N; the per-batch losses (zeros elsewhere, so their
    // sum over ranks is exact) are then added in batch order as below: the
    // same value a single process computes from the same weights.
    const int n = comm_->size(), me = comm_->rank();
    for (int64_t i = 0; i < eval_.n_batches; ++i) {
      eval_losses_[size_t(i)] = 0.0;
      if (i % n != me) continue;
      model_.loss(Tokens{eval_.x_batch(i), s}, Tokens{eval_.y_batch(i), s}, false);
      eval_losses_[size_t(i)] = model_.lm_loss();
      g.clear();
    }
    comm_->allreduce_sum(eval_losses_.data(), eval_.n_batches);
    for (double v : eval_losses_) total += v;
    return eval_.n_batches > 0 ? total / double(eval_.n_batches) : 0.0;
  }
  for (int64_t i = 0; i < eval_.n_batches; ++i) {
    model_.loss(Tokens{eval_.x_batch(i), s}, Tokens{eval_.y_batch(i), s}, false);
    total += model_.lm_loss();
    g.clear();
  }
  return eval_.n_batches > 0 ? total / double(eval_.n_batches) : 0.0;
}

void Trainer::add_extra(const std::string& name, double v) {
  auto& extra = metrics_.extra;
  for (size_t i = 0; i < extra.size(); ++i)
    if (extra[i].first == name) {
      extra[i].second += v;
      aux_seen_[i] = 1;
      return;
    }
  extra.emplace_back(name, v);  // first time only: later steps reuse the entry
  aux_seen_.push_back(1);
}

void Trainer::accumulate_aux(double w) {
  const AuxOutputs& aux = aux_outputs();
  for (const AuxOutputs::Loss& l : aux.losses()) add_extra(l.name, w * double(l.value.item()));
  for (const AuxOutputs::Metric& mt : aux.metrics()) add_extra(mt.name, w * mt.value);
}

StepMetrics& Trainer::train_step() {
  const auto t0 = Clock::now();
  Graph& g = current_graph();
  // Over ranks, this process trains on its share of every (global) batch, and
  // each share's mean loss gets weight 1 / world_size: the sum over ranks is
  // the batch mean.
  const int ranks = world_size();
  const int64_t rows = cfg_.batch_size / ranks;
  const int64_t off = comm_ ? int64_t(comm_->rank()) * rows * cfg_.seq_len : 0;
  const Shape s{rows, cfg_.seq_len};
  const int64_t accum = cfg_.grad_accumulation_steps;
  const float grad_scale = 1.0f / float(accum * ranks);
  for (Parameter* p : params_) p->zero_grad();
  double loss_sum = 0;
  // One StepMetrics lives across steps so its named aux entries keep their
  // storage: values restart at 0, entries not emitted this step are dropped.
  StepMetrics& m = metrics_;
  for (auto& e : m.extra) e.second = 0;
  aux_seen_.assign(m.extra.size(), 0);
  m.eval_loss.reset();
  for (int64_t micro = 0; micro < accum; ++micro) {
    if (grpo_) {
      GrpoStats st;
      Tensor loss =
          grpo_->loss(model_, step_ * accum + micro, rows, cfg_.seq_len, uint64_t(cfg_.seed), &st);
      loss_sum += double(loss.item());
      const double w = 1.0 / double(accum);
      add_extra("grpo/reward_mean", st.reward_mean * w);
      add_extra("grpo/reward_std", st.reward_std * w);
      add_extra("grpo/kl", st.kl * w);
      add_extra("grpo/completion_tokens", st.completion_tokens * w);
      g.backward(loss, grad_scale);
      g.clear();
      continue;
    }
    if (pref_) {
      next_preference_batch(step_ * accum + micro);
      const Shape s2{2 * rows, cfg_.seq_len};
      DpoParts parts;
      Tensor loss = model_.preference_loss(Tokens{x_.data(), s2}, Tokens{y_.data(), s2},
                                           ref_batch_.data(), beta_, &parts, true);
      loss_sum += model_.lm_loss();
      const double w = 1.0 / double(accum);
      add_extra("dpo/reward_margin", parts.margin * w);
      add_extra("dpo/reward_accuracy", parts.accuracy * w);
      add_extra("dpo/chosen_reward", parts.chosen_reward * w);
      add_extra("dpo/rejected_reward", parts.rejected_reward * w);
      accumulate_aux(w);
      g.backward(loss, grad_scale);
      g.clear();
      continue;
    }
    sampler_.next(x_.data(), y_.data());
    if (replicas_ > 1) {
      loss_sum += data_parallel_micro_step(grad_scale, rows, off);
      continue;
    }
    const Tokens xs{x_.data() + off, s}, ys{y_.data() + off, s};
    Tensor loss;
    if (teacher_) {
      Tensor teacher_logits;
      {
        NoGradGuard no_grad;  // a constant target: nothing of the teacher is on the tape
        teacher_logits = teacher_->forward(xs, nullptr, false);
      }
      DistillParts parts;
      loss = model_.distill_loss(xs, ys, teacher_logits, temperature_, alpha_, &parts, true);
      add_extra("distill_kl", parts.kl / double(accum));
      add_extra("distill_loss", double(alpha_) * parts.ce / double(accum) +
                                    double(1.0f - alpha_) * double(temperature_) *
                                        double(temperature_) * parts.kl / double(accum));
    } else {
      loss = model_.loss(xs, ys, true);
    }
    loss_sum += model_.lm_loss();
    accumulate_aux(1.0 / double(accum));
    g.backward(loss, grad_scale);  // mean over micro-batches (and ranks)
    g.clear();
  }
  if (replicas_ > 1) reduce_replica_grads();
  if (comm_) loss_sum = reduce_across_ranks(loss_sum);
  size_t kept = 0;
  for (size_t i = 0; i < m.extra.size(); ++i)
    if (aux_seen_[i]) std::swap(m.extra[kept++], m.extra[i]);
  m.extra.resize(kept);
  m.step = step_;
  m.loss = loss_sum / double(accum);
  m.learning_rate = schedule_.lr_at(step_);
  // Diagnostics read the unclipped gradient and the pre-update weights; a
  // non-finite loss skips the update, and with it the hook.
  if (std::isfinite(m.loss))
    for (Callback* cb : callbacks_) cb->on_before_update(*this, step_);
  // Of the gradient summed over ranks: every rank clips (and steps) alike.
  m.grad_norm = clipper_.clip(cfg_.max_grad_norm);  // max_grad_norm 0: norm only
  if (std::isfinite(m.loss) && std::isfinite(m.grad_norm)) {
    optimizer_->step(float(m.learning_rate));
    model_.visit([](Module& mod) { mod.after_optimizer_step(); });
  }
  m.step_time_ms = seconds_since(t0) * 1000.0;
  tokens_seen_ += tokens_per_step();
  m.tokens_seen = tokens_seen_;
  m.tokens_per_sec = double(tokens_per_step()) / (m.step_time_ms / 1000.0);
  return m;
}

double Trainer::data_parallel_micro_step(float grad_scale, int64_t batch_rows, int64_t offset) {
  constexpr int kMaxReplicas = 64;
  const int R = replicas_;
  const int64_t rows = batch_rows / R, T = cfg_.seq_len;
  double losses[kMaxReplicas];
  std::exception_ptr errors[kMaxReplicas];
#pragma omp parallel num_threads(R)
  {
    // Inside the region every op and GEMM runs on its own thread only.
    const int r = omp_get_thread_num();
    ReplicaScope scope(r);
    Graph& g = current_graph();  // per thread
    try {
      const Shape s{rows, T};
      const int64_t off = offset + int64_t(r) * rows * T;
      Tensor loss = model_.loss(Tokens{x_.data() + off, s}, Tokens{y_.data() + off, s}, true);
      losses[r] = double(loss.item());          // no aux losses in data-parallel-safe models
      g.backward(loss, grad_scale / float(R));  // equal rows: the batch mean
    } catch (...) {
      errors[r] = std::current_exception();
    }
    g.clear();
  }
  double sum = 0;
  for (int r = 0; r < R; ++r) {
    if (errors[r]) std::rethrow_exception(errors[r]);
    sum += losses[r];
  }
  return sum / double(R);
}

void Trainer::reduce_replica_grads() {
  // Parameters in parallel; within one, replicas are added in order, so the
  // result depends on the replica count only.
  run_tasks(int64_t(params_.size()), task_threads(int64_t(params_.size())), [&](int64_t i, int) {
    Parameter* p = params_[size_t(i)];
    float* g0 = p->grad();
    const int64_t n = p->numel();
    for (int r = 1; r < replicas_; ++r) span_add(g0, p->replica_grad(r), n);
  });
}

double Trainer::reduce_across_ranks(double local_loss_sum) {
  const auto t0 = Clock::now();
  flat_grads_->gather();
  comm_->allreduce_sum(flat_grads_->data(), flat_grads_->size());
  flat_grads_->scatter();
  // The step's gradient all-reduce (with packing, and any wait for a slower
  // rank), recorded per step to show what data parallelism costs.
  add_extra("allreduce_ms", seconds_since(t0) * 1000.0);
  // Loss and stop flag: every rank must leave the loop after the same step,
  // or the others would wait in the next step's all-reduce forever.
  double v[2] = {local_loss_sum, stop_ ? 1.0 : 0.0};
  comm_->allreduce_sum(v, 2);
  if (v[1] > 0) {
    stop_agreed_ = true;
    request_stop("stop requested on another rank");  // keeps this rank's own reason if it has one
  }
  return v[0] / double(comm_->size());
}

TrainSummary Trainer::train() {
  TrainSummary sum;
  sum.params = model_.num_parameters();
  const int threads =
      cfg_.threads > 0 ? int(cfg_.threads) : int(std::max(1u, std::thread::hardware_concurrency()));
  set_num_threads(threads);
  // Data parallelism when the batch splits evenly and the model allows it:
  // each thread trains on its share of the rows, single-threaded, so no op
  // waits at a barrier and small GEMMs are not split (measured faster than
  // spreading every op over the threads). Same data and update; the sums run
  // in another order, so losses differ from a 1-thread run in the last bits.
  const int64_t rows = cfg_.batch_size / world_size();  // this process's share
  replicas_ = threads > 1 && threads <= 64 && rows % threads == 0 && model_.data_parallel_safe() &&
                      !teacher_ && !pref_ && !grpo_
                  ? threads
                  : 1;
  for (Parameter* p : params_) p->set_replicas(replicas_);
  tokens_seen_ = step_ * tokens_per_step();
  const auto start = Clock::now();
  for (Callback* cb : callbacks_) cb->on_train_begin(*this);
  std::vector<double> losses, times;  // reserved: the loop itself never allocates
  losses.reserve(size_t(std::max<int64_t>(0, horizon_ - step_)));
  times.reserve(losses.capacity());
  bool evaluated_last = false;
  budget_reason_.clear();
  std::array<double, 5> gaps{};  // time budget: recent step-to-step wall times
  double last_now = 0, last_eval_s = 0;
  while (step_ < horizon_) {
    // Over ranks, a stop is agreed in the step's reduction (reduce_across_ranks).
    if (comm_ ? stop_agreed_ : !wait_turn()) break;
    StepMetrics& m = train_step();
    m.wall_time_s = seconds_since(start);
    losses.push_back(m.loss);
    times.push_back(m.step_time_ms);
    const bool diverged = !std::isfinite(m.loss) || !std::isfinite(m.grad_norm);
    evaluated_last = false;
    if (!diverged && cfg_.eval_interval > 0 && (step_ + 1) % cfg_.eval_interval == 0) {
      const auto e0 = Clock::now();
      m.eval_loss = evaluate();
      last_eval_s = seconds_since(e0);
      if (grpo_) add_extra("grpo/val_reward", val_reward_);
      if (pref_) {
        add_extra("dpo/val_reward_accuracy", val_parts_.accuracy);
        add_extra("dpo/val_reward_margin", val_parts_.margin);
      }
      evaluated_last = true;
    }
    ++step_;
    for (Callback* cb : callbacks_) cb->on_step_metrics(*this, m);
    // Entries callbacks added (every few steps): the next step's flags fit without allocating.
    aux_seen_.reserve(m.extra.size());
    for (Callback* cb : callbacks_) cb->on_step_end(*this, m);
    if (m.eval_loss) {
      sum.val_loss = m.eval_loss;
      if (!sum.best_val_loss || *m.eval_loss < *sum.best_val_loss) sum.best_val_loss = m.eval_loss;
      for (Callback* cb : callbacks_) cb->on_eval_end(*this, m.step, *m.eval_loss);
    }
    if (diverged) {
      sum.status = RunStatus::kDiverged;
      sum.message = "non-finite " + std::string(std::isfinite(m.loss) ? "gradient norm" : "loss") +
                    " at step " + std::to_string(m.step) + "; weights kept from the step before";
      break;
    }
    // Over ranks only rank 0 (which records the run) judges the time budget;
    // its stop reaches the others in the next step's reduction.
    if (cfg_.time_budget_s > 0 && step_ < horizon_ && budget_reason_.empty() &&
        (!comm_ || comm_->rank() == 0)) {
      // The next step is judged by the longest of the last few wall-clock
      // gaps between steps (callbacks, evaluations and checkpoints included),
      // and the final evaluation must fit too: as long as the last one, or
      // before any, a third of a step (a forward) per evaluation batch.
      const double now = seconds_since(start);
      gaps[size_t(step_) % gaps.size()] = now - last_now;
      last_now = now;
      const double next_s = *std::max_element(gaps.begin(), gaps.end());
      const double final_eval_s = last_eval_s > 0
                                      ? last_eval_s
                                      : double(cfg_.eval_batches) * m.step_time_ms / 1000.0 /
                                            (3.0 * double(cfg_.grad_accumulation_steps));
      if (now + next_s + final_eval_s > cfg_.time_budget_s) {
        budget_reason_ = "time budget of " + sci(cfg_.time_budget_s) + " s reached after step " +
                         std::to_string(step_) + " of " + std::to_string(horizon_);
        request_stop(budget_reason_);
      }
    }
  }
  if (sum.status != RunStatus::kDiverged) {
    if (step_ >= horizon_ || !budget_reason_.empty()) {
      // A budget is a planned end, not an interruption: completed, with the
      // reason. A time-budgeted run can be resumed for more steps.
      sum.status = RunStatus::kCompleted;
      if (!budget_reason_.empty())
        sum.message = budget_reason_;
      else if (horizon_ < cfg_.max_steps)
        sum.message = "FLOP budget of " + sci(cfg_.flop_budget) + " reached after step " +
                      std::to_string(step_) + " (" + std::to_string(horizon_) +
                      " steps fit; train.max_steps " + std::to_string(cfg_.max_steps) + ")";
    } else {
      sum.status = RunStatus::kStopped;
      std::lock_guard<std::mutex> lk(mu_);
      sum.message = stop_reason_;
    }
    if (!evaluated_last && !losses.empty()) {
      double v = evaluate();
      sum.val_loss = v;
      if (!sum.best_val_loss || v < *sum.best_val_loss) sum.best_val_loss = v;
      for (Callback* cb : callbacks_) cb->on_eval_end(*this, step_ - 1, v);
    }
  }
  sum.steps = step_;
  sum.elapsed_s = seconds_since(start);
  const size_t n = losses.size(), last = std::min<size_t>(10, n);
  for (size_t i = n - last; i < n; ++i) sum.final_train_loss += losses[i] / double(last);
  const size_t skip = n > 5 ? 5 : 0;
  std::vector<double> steady(times.begin() + long(skip), times.end());
  if (!steady.empty()) {
    double total_ms = 0;
    for (double t : steady) total_ms += t;
    sum.tokens_per_sec = double(tokens_per_step()) * double(steady.size()) / (total_ms / 1000.0);
    std::nth_element(steady.begin(), steady.begin() + long(steady.size() / 2), steady.end());
    sum.median_step_ms = steady[steady.size() / 2];
  }
  for (Callback* cb : callbacks_) cb->on_train_end(*this, sum);
  return sum;
}

}  // namespace bl
