#include "train/optimizers/adafactor.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "simd/span_ops.h"
#include "train/optimizers/adafactor_kernels.h"

namespace bl {

Adafactor::Adafactor(std::vector<Parameter*> params, const OptimizerOptions& opt)
    : Optimizer(std::move(params), opt), use_m_(opt.beta1.has_value()) {
  if (use_m_) {
    b1_ = *opt.beta1;
    if (!(b1_ >= 0.0f && b1_ < 1.0f))
      throw std::invalid_argument("[adafactor] beta1 must be in [0, 1), got " +
                                  std::to_string(b1_));
  }
  if (!(opt.adafactor_decay_rate < 0.0f))
    throw std::invalid_argument("[adafactor] decay_rate must be < 0 (default -0.8)");
  if (!(opt.adafactor_clip_threshold > 0.0f))
    throw std::invalid_argument("[adafactor] clip_threshold must be > 0");
  if (!(opt.adafactor_eps1 >= 0.0f) || !(opt.adafactor_eps2 >= 0.0f))
    throw std::invalid_argument("[adafactor] eps1 and eps2 must be >= 0");
  info_.resize(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    const Shape& s = params_[i]->shape();
    Info& in = info_[i];
    in.factored = s.rank >= 2;
    if (in.factored) {
      in.rows = s[-2];
      in.cols = s[-1];
      in.batch = in.rows * in.cols == 0 ? 0 : s.numel() / (in.rows * in.cols);
      in.row = add_state(i, "exp_avg_sq_row", in.batch * in.rows);
      in.col = add_state(i, "exp_avg_sq_col", in.batch * in.cols);
      in.rfac.resize(size_t(in.batch * in.rows));
      in.cfac.resize(size_t(in.batch * in.cols));
      in.colsum.resize(size_t(in.cols));
    } else {
      in.v = add_state(i, "exp_avg_sq", params_[i]->numel());
    }
    if (use_m_) in.m = add_state(i, "exp_avg", params_[i]->numel());
  }
}

void Adafactor::update(float lr, const std::vector<size_t>& active) {
  order_.assign(active.begin(), active.end());
  // Largest first for dynamic scheduling; ties by index keep the order
  // deterministic (std::sort, unlike stable_sort, needs no temporary buffer).
  std::sort(order_.begin(), order_.end(), [&](size_t a, size_t b) {
    const int64_t na = params_[a]->numel(), nb = params_[b]->numel();
    return na != nb ? na > nb : a < b;
  });
  int64_t total = 0;
  for (size_t i : order_) total += params_[i]->numel();
  const int64_t n = int64_t(order_.size());
  const bool par = total >= 65536 && n > 1 && !omp_in_parallel() && omp_get_max_threads() > 1;
#pragma omp parallel for schedule(dynamic, 1) if (par)
  for (int64_t k = 0; k < n; ++k) update_one(order_[size_t(k)], lr);
}

void Adafactor::update_one(size_t i, float lr) {
  Parameter* p = params_[i];
  Info& in = info_[i];
  const int64_t n = p->numel();
  if (n == 0) return;
  float* w = p->data();
  const float* g = p->grad();
  const double eps1 = opt_.adafactor_eps1;
  const double t = double(param_step(i));
  const double beta2t = 1.0 - std::pow(t, double(opt_.adafactor_decay_rate));
  const double keep = beta2t, take = 1.0 - beta2t;

  double lr_t = lr;
  if (opt_.adafactor_scale_parameter)
    lr_t *= std::max(double(opt_.adafactor_eps2), std::sqrt(span_sum_squares(w, n) / double(n)));

  // 1. Second-moment statistics, then the sum of squares of the unscaled update
  //    u = g * rfac[row] * cfac[col] (factored) or g / sqrt(v) (unfactored).
  double uss = 0.0;
  if (in.factored) {
    const int64_t R = in.rows, C = in.cols;
    float* rf = in.rfac.data();
    float* cf = in.cfac.data();
    double* cs = in.colsum.data();
    for (int64_t b = 0; b < in.batch; ++b) {
      float* row = in.row + b * R;
      float* col = in.col + b * C;
      std::fill(cs, cs + C, 0.0);
      for (int64_t r = 0; r < R; ++r) {  // row and column sums in one pass over g
        const double s = adafactor_row_col_sumsq(g + (b * R + r) * C, C, cs);
        row[r] = float(keep * row[r] + take * (s / double(C) + eps1));
      }
      for (int64_t c = 0; c < C; ++c) {
        col[c] = float(keep * col[c] + take * (cs[c] / double(R) + eps1));
        cf[b * C + c] = float(1.0 / std::sqrt(double(col[c])));
      }
      // r_factor = rsqrt(row / mean(row)) over this batch entry's rows.
      double rmean = 0.0;
      for (int64_t r = 0; r < R; ++r) rmean += row[r];
      rmean /= double(R);
      for (int64_t r = 0; r < R; ++r) rf[b * R + r] = float(1.0 / std::sqrt(row[r] / rmean));
      for (int64_t r = 0; r < R; ++r) {
        const double s = adafactor_scaled_sumsq(g + (b * R + r) * C, cf + b * C, C);
        uss += s * double(rf[b * R + r]) * double(rf[b * R + r]);
      }
    }
  } else {
    float* v = in.v;
    for (int64_t k = 0; k < n; ++k) {
      const double gk = g[k];
      v[k] = float(keep * v[k] + take * (gk * gk + eps1));
      const double u = gk / std::sqrt(double(v[k]));
      uss += u * u;
    }
  }

  // 2. Clip the update to RMS <= d, scale by lr_t, optional first moment, decay.
  const double rms_u = std::sqrt(uss / double(n));
  const float scale = float(lr_t / std::max(1.0, rms_u / double(opt_.adafactor_clip_threshold)));
  const float decay_mul = decays(*p) ? float(1.0 - double(opt_.weight_decay) * lr_t) : 1.0f;
  const float b1 = b1_, c1 = 1.0f - b1_;
  float* m = in.m;
  if (in.factored) {
    const int64_t C = in.cols;
    for (int64_t r = 0; r < in.batch * in.rows; ++r)
      adafactor_row_update(w + r * C, g + r * C, in.cfac.data() + (r / in.rows) * C,
                           m ? m + r * C : nullptr, C, scale * in.rfac[size_t(r)], decay_mul, b1);
  } else {
    const float* v = in.v;
    for (int64_t k = 0; k < n; ++k) {
      float u = scale * float(double(g[k]) / std::sqrt(double(v[k])));
      if (m) u = m[k] = b1 * m[k] + c1 * u;
      w[k] = w[k] * decay_mul - u;
    }
  }
}

}  // namespace bl
