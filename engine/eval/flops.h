// Training FLOPs and model FLOPs utilisation (MFU) of a run.
//
// FLOPs per token are the engine's own count (LanguageModel::flops_per_token,
// also behind `models count` and the composer), the Chinchilla convention:
// 6 x (parameters a token passes through: MoE's active experts, the LM head's
// matmul included even when tied) for forward + backward (2 per weight
// forward, 4 backward), plus attention mixing: forward Q K^T and P V cost
// 2 x 2 x T x d per token and layer at context T, counted over the full T x T
// (not halved for causality), times 3 for forward + backward: 12 x L x T x d
// for standard attention (each mixer counts its own: windows, latent
// attention, scans). Total FLOPs = FLOPs per token x tokens trained (steps x
// tokens per step). MFU = achieved FLOP/s (FLOPs per token x steady-state
// tokens/s) / the machine's peak, measured once per process and thread count
// by an fp32 GEMM probe through the engine's GEMM (so "peak" is what this
// build's best kernel reaches on a large square product, not a datasheet).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>

#include "train/callbacks.h"

namespace bl {

/// FLOP/s of an n x n x n fp32 GEMM (n = 1024) through bl::gemm at `threads`
/// (<= 0: the current thread count), best of 3 after a warm-up; cached per
/// thread count for the process.
double measured_peak_flops(int threads = 0);

struct FlopsReport {
  double flops_per_token = 0;
  double total_flops = 0;
  double achieved_flops_per_sec = 0;
  double peak_flops_per_sec = 0;
  double mfu = 0;  // achieved / peak, in [0, 1] in practice
};

FlopsReport flops_report(double flops_per_token, int64_t tokens_trained, double tokens_per_sec,
                         double peak_flops_per_sec);

/// {"flops_per_token", "total_flops", "achieved_flops_per_sec", "peak_flops_per_sec", "mfu"}.
nlohmann::json to_json(const FlopsReport& r);

/// At the end of training: measures the peak (at the trainer's threads),
/// computes the report and, if given, writes it into `sink` (a run summary's
/// extra fields). Add it before the store logger so the summary holds it.
class FlopsMeter : public Callback {
 public:
  FlopsMeter(double flops_per_token, int64_t tokens_per_step)
      : flops_per_token_(flops_per_token), tokens_per_step_(tokens_per_step) {}
  void set_sink(nlohmann::json* sink) { sink_ = sink; }
  void on_train_end(Trainer& t, const TrainSummary& s) override;
  /// Valid after training.
  const FlopsReport& report() const { return report_; }
  double flops_per_token() const { return flops_per_token_; }

 private:
  double flops_per_token_;
  int64_t tokens_per_step_;
  nlohmann::json* sink_ = nullptr;
  FlopsReport report_;
};

}  // namespace bl
