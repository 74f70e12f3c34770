#include "train/optimizers/adafactor.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "tensor/parallel.h"

namespace bl {

namespace {

double sum_sq(const float* x, int64_t n) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += double(x[i]) * double(x[i]);
  return s;
}

// Rows below this many elements of work per thread are not worth a fork/join.
int64_t rows_per_thread(int64_t cols) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, cols)); }

}  // namespace

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
  size_t max_rows = 1, max_cols = 1;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Shape& s = params_[i]->shape();
    Info in;
    in.factored = s.rank >= 2;
    if (in.factored) {
      in.rows = s[-2];
      in.cols = s[-1];
      in.batch = in.rows * in.cols == 0 ? 0 : s.numel() / (in.rows * in.cols);
      in.row = add_state(i, "exp_avg_sq_row", in.batch * in.rows);
      in.col = add_state(i, "exp_avg_sq_col", in.batch * in.cols);
      max_rows = std::max(max_rows, size_t(in.batch * in.rows));
      max_cols = std::max(max_cols, size_t(in.batch * in.cols));
    } else {
      in.v = add_state(i, "exp_avg_sq", params_[i]->numel());
    }
    if (use_m_) in.m = add_state(i, "exp_avg", params_[i]->numel());
    info_.push_back(in);
  }
  rfac_.resize(max_rows);
  cfac_.resize(max_cols);
  acc_.resize(std::max(max_rows, max_cols));
}

void Adafactor::update(float lr, const std::vector<size_t>& active) {
  for (size_t i : active) update_one(i, lr);
}

void Adafactor::update_one(size_t i, float lr) {
  Parameter* p = params_[i];
  const Info& in = info_[i];
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
    lr_t *= std::max(double(opt_.adafactor_eps2), std::sqrt(sum_sq(w, n) / double(n)));

  // Update the second-moment statistics and build the per-element scale factors,
  // so that u = g * rfac[row] * cfac[col] (factored) or g * rfac[i] (unfactored).
  const int64_t nrows = in.factored ? in.batch * in.rows : 1;
  const int64_t C = in.factored ? in.cols : n;
  float* rf = rfac_.data();
  float* cf = cfac_.data();
  double* acc = acc_.data();
  float* v = in.v;
  if (in.factored) {
    const int64_t R = in.rows;
    float* row = in.row;
    float* col = in.col;
    parallel_for(
        nrows,
        [&](int64_t r) {
          const double mean = sum_sq(g + r * C, C) / double(C) + eps1;
          row[r] = float(keep * row[r] + take * mean);
        },
        rows_per_thread(C));
    for (int64_t b = 0; b < in.batch; ++b) {
      double* a = acc;
      for (int64_t c = 0; c < C; ++c) a[c] = 0.0;
      for (int64_t r = 0; r < R; ++r) {
        const float* gr = g + (b * R + r) * C;
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) a[c] += double(gr[c]) * double(gr[c]);
      }
      float* cb = col + b * C;
      for (int64_t c = 0; c < C; ++c) {
        cb[c] = float(keep * cb[c] + take * (a[c] / double(R) + eps1));
        cf[b * C + c] = float(1.0 / std::sqrt(double(cb[c])));
      }
      // r_factor = rsqrt(row / mean(row)) over this batch entry's rows.
      double rmean = 0.0;
      for (int64_t r = 0; r < R; ++r) rmean += row[b * R + r];
      rmean /= double(R);
      for (int64_t r = 0; r < R; ++r) rf[b * R + r] = float(1.0 / std::sqrt(row[b * R + r] / rmean));
    }
  } else {
    for (int64_t k = 0; k < n; ++k) {
      const double gk = g[k];
      v[k] = float(keep * v[k] + take * (gk * gk + eps1));
    }
  }

  // RMS of the unscaled update (deterministic: per-row partial sums, summed in order).
  if (in.factored) {
    parallel_for(
        nrows,
        [&](int64_t r) {
          const float* gr = g + r * C;
          const float* cfr = cf + (r / in.rows) * C;
          const double rr = rf[r];
          double s = 0.0;
#pragma omp simd reduction(+ : s)
          for (int64_t c = 0; c < C; ++c) {
            const double u = double(gr[c]) * double(cfr[c]);
            s += u * u;
          }
          acc[r] = s * rr * rr;
        },
        rows_per_thread(C));
  } else {
    double s = 0.0;
    for (int64_t k = 0; k < n; ++k) {
      const double u = double(g[k]) / std::sqrt(double(v[k]));
      s += u * u;
    }
    acc[0] = s;
  }
  double ss = 0.0;
  for (int64_t r = 0; r < nrows; ++r) ss += acc[r];
  const double rms_u = std::sqrt(ss / double(n));
  const float scale = float(lr_t / std::max(1.0, rms_u / double(opt_.adafactor_clip_threshold)));
  const float decay_mul = decays(*p) ? float(1.0 - double(opt_.weight_decay) * lr_t) : 1.0f;
  const float b1 = b1_, c1 = 1.0f - b1_;
  float* m = in.m;

  // Apply: u = scale * g * factors; optional first moment; decoupled decay.
  auto apply_row = [&](int64_t r, const float* fac_c, float fac_r) {
    float* __restrict wr = w + r * C;
    const float* __restrict gr = g + r * C;
    const float sr = scale * fac_r;
    if (m) {
      float* __restrict mr = m + r * C;
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) {
        const float u = sr * gr[c] * fac_c[c];
        const float mc = b1 * mr[c] + c1 * u;
        mr[c] = mc;
        wr[c] = wr[c] * decay_mul - mc;
      }
    } else {
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) wr[c] = wr[c] * decay_mul - sr * gr[c] * fac_c[c];
    }
  };
  if (in.factored) {
    parallel_for(
        nrows, [&](int64_t r) { apply_row(r, cf + (r / in.rows) * C, rf[r]); },
        rows_per_thread(C));
  } else {
    for (int64_t k = 0; k < n; ++k) {
      const float u = scale * float(double(g[k]) / std::sqrt(double(v[k])));
      float uk = u;
      if (m) uk = m[k] = b1 * m[k] + c1 * u;
      w[k] = w[k] * decay_mul - uk;
    }
  }
}

}  // namespace bl
