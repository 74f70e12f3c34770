#include "train/diagnostics.h"

#include <Eigen/SVD>
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>

#include "tensor/parallel.h"
#include "train/trainer.h"

namespace bl {

double effective_rank(const float* a, int64_t rows, int64_t cols) {
  using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  Eigen::Map<const Mat> m(a, rows, cols);
  // Singular values only: no U / V.
  Eigen::BDCSVD<Eigen::MatrixXf> svd(m);
  const Eigen::VectorXf& s = svd.singularValues();
  double total = 0;
  for (int i = 0; i < s.size(); ++i) total += double(s[i]);
  if (!(total > 0)) return 0.0;
  double h = 0;
  for (int i = 0; i < s.size(); ++i) {
    const double p = double(s[i]) / total;
    if (p > 0) h -= p * std::log(p);
  }
  return std::exp(h);
}

std::string diagnostics_group(const std::string& name) {
  const size_t dot = name.find('.');
  if (dot == std::string::npos) return name;
  const size_t next = name.find('.', dot + 1);
  const std::string second =
      name.substr(dot + 1, next == std::string::npos ? next : next - dot - 1);
  const bool numbered = !second.empty() && std::all_of(second.begin(), second.end(), [](char c) {
    return std::isdigit(static_cast<unsigned char>(c));
  });
  return numbered ? name.substr(0, next) : name.substr(0, dot);
}

void Diagnostics::on_train_begin(Trainer& t) {
  groups_.clear();
  matrices_.clear();
  before_.clear();
  pending_ = -1;
  if (interval_ <= 0) return;
  std::vector<Parameter*> seen;  // tied weights count once
  size_t total = 0;
  for (auto& [name, p] : t.model().named_parameters()) {
    if (!p->trainable() || std::find(seen.begin(), seen.end(), p) != seen.end()) continue;
    seen.push_back(p);
    const std::string g = diagnostics_group(p->name());
    auto it =
        std::find_if(groups_.begin(), groups_.end(), [&](const Group& x) { return x.name == g; });
    if (it == groups_.end()) it = groups_.insert(groups_.end(), Group{g, {}, 0});
    it->params.push_back(p);
    total += size_t(p->numel());
    const Shape& s = p->shape();
    if (s.rank >= 2 && s.rows() >= 2 && s.cols() >= 2) {
      std::string n = p->name();
      if (n.size() > 7 && n.compare(n.size() - 7, 7, ".weight") == 0) n.resize(n.size() - 7);
      matrices_.push_back({p, "diag/eff_rank/" + n});
    }
  }
  before_.assign(total, 0.0f);
  ranks_.assign(matrices_.size(), 0.0);
}

void Diagnostics::on_before_update(Trainer&, int64_t step) {
  if (!due(step) || groups_.empty()) return;
  const auto t0 = std::chrono::steady_clock::now();
  float* dst = before_.data();
  for (Group& g : groups_) {
    double sq = 0;
    for (Parameter* p : g.params) {
      const float* gr = p->grad();
      const float* w = p->data();
      const int64_t n = p->numel();
      for (int64_t i = 0; i < n; ++i) sq += double(gr[i]) * double(gr[i]);
      std::copy(w, w + n, dst);
      dst += n;
    }
    g.grad_sq = sq;
  }
  pending_ = step;
  spent_ms_ =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

void Diagnostics::on_step_metrics(Trainer&, StepMetrics& m) {
  if (pending_ != m.step) return;  // not due, or the update was not reached
  pending_ = -1;
  const auto t0 = std::chrono::steady_clock::now();
  const float* before = before_.data();
  auto put = [&](const char* what, const std::string& group, double v) {
    name_.assign("diag/").append(what).append("/").append(group);
    set_extra(m, name_, v);
  };
  for (const Group& g : groups_) {
    double w_sq = 0, w0_sq = 0, d_sq = 0;
    for (Parameter* p : g.params) {
      const float* w = p->data();
      const int64_t n = p->numel();
      for (int64_t i = 0; i < n; ++i) {
        const double a = w[i], b = before[i];
        w_sq += a * a;
        w0_sq += b * b;
        d_sq += (a - b) * (a - b);
      }
      before += n;
    }
    put("grad_norm", g.name, std::sqrt(g.grad_sq));
    put("weight_norm", g.name, std::sqrt(w_sq));
    put("update_ratio", g.name, w0_sq > 0 ? std::sqrt(d_sq / w0_sq) : 0.0);
  }
  // One matrix per task over the training threads: single-threaded, the SVDs
  // competed with the idle workers' spin-wait (measured ~3x slower on 2 cores).
  const int64_t n = int64_t(matrices_.size());
  run_tasks(n, task_threads(n), [&](int64_t i, int) {
    const Parameter* p = matrices_[size_t(i)].p;
    ranks_[size_t(i)] = effective_rank(p->data(), p->shape().rows(), p->shape().cols());
  });
  for (size_t i = 0; i < matrices_.size(); ++i) set_extra(m, matrices_[i].metric, ranks_[i]);
  spent_ms_ +=
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  set_extra(m, "diag/time_ms", spent_ms_);
}

}  // namespace bl
