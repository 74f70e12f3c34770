#include "browser/run_loader.h"

#include <QFile>
#include <QTextStream>
#include <map>
#include <stdexcept>

#include "core/arch_analysis.h"

namespace bl {

RunCurves load_run_curves(ExperimentStore& store, const RunRecord& run, int64_t after_step) {
  RunCurves c;
  c.id = run.id;
  c.name = QString::fromStdString(run.name);
  const MetricSeries loss = store.metrics(run.id, "loss", after_step);
  if (loss.size() > 0) {
    auto by_step = [&](const char* name) {
      const MetricSeries s = store.metrics(run.id, name, after_step);
      std::map<int64_t, double> m;
      for (size_t i = 0; i < s.size(); ++i) m.emplace_hint(m.end(), s.steps[i], s.values[i]);
      return m;
    };
    const auto lr = by_step("learning_rate"), gn = by_step("grad_norm"),
               tps = by_step("tokens_per_sec"), tok = by_step("tokens_seen"),
               step_ms = by_step("step_time_ms");
    // Every other metric (MoE losses, expert load, all-reduce time, ...) for
    // the charts' "Add chart".
    std::vector<std::pair<std::string, std::map<int64_t, double>>> others;
    for (const std::string& name : store.metric_names(run.id))
      if (name != "loss" && name != "learning_rate" && name != "grad_norm" &&
          name != "tokens_per_sec" && name != "tokens_seen" && name != "step_time_ms")
        others.emplace_back(name, by_step(name.c_str()));
    const double t0 = run.started_at.value_or(loss.wall_times.front());
    for (size_t i = 0; i < loss.size(); ++i) {
      const int64_t s = loss.steps[i];
      auto a = lr.find(s), b = gn.find(s), d = tps.find(s), e = tok.find(s);
      if (a == lr.end() || b == gn.end() || d == tps.end() || e == tok.end())
        break;  // the rest of this step is not committed yet: next poll
      StepMetrics m;
      m.step = s;
      m.loss = loss.values[i];
      m.learning_rate = a->second;
      m.grad_norm = b->second;
      m.tokens_per_sec = d->second;
      m.tokens_seen = int64_t(e->second);
      m.wall_time_s = loss.wall_times[i] - t0;
      if (auto st = step_ms.find(s); st != step_ms.end()) m.step_time_ms = st->second;
      for (const auto& [name, values] : others)
        if (auto v = values.find(s); v != values.end()) m.extra.emplace_back(name, v->second);
      c.add(m);
    }
  }
  const int64_t last = c.size() ? c.step.back() : after_step;
  for (const EvalRecord& e : store.evals(run.id, "eval_loss"))
    if (e.step > after_step && e.step <= last) c.evals.emplace_back(e.step, e.value);
  // Once per full load: the incremental polls of a growing run append steps to
  // curves that already have it (and the config analysis is not free).
  if (after_step < 0) c.flops_per_token = run_flops_per_token(run);
  return c;
}

double run_flops_per_token(const RunRecord& run) {
  const auto f = run.summary.find("flops_per_token");
  if (f != run.summary.end() && f->is_number()) return f->get<double>();
  try {
    const ModelConfig m = model_config_from_json(run.model_config);
    const int64_t seq_len = run.train_config.value("seq_len", m.block.max_seq_len);
    const ArchAnalysis a = analyse_architecture(m, seq_len);
    return a.error.empty() ? a.total.flops_per_token : 0.0;
  } catch (const std::exception&) {
    return 0.0;  // an unreadable config: no FLOPs axis for this run
  }
}

void write_metrics_csv(ExperimentStore& store, const std::vector<int64_t>& run_ids,
                       const QString& path) {
  QFile f(path);
  if (!f.open(QIODevice::WriteOnly | QIODevice::Truncate | QIODevice::Text))
    throw std::runtime_error(path.toStdString() + ": " + f.errorString().toStdString());
  QTextStream out(&f);
  out << "run_id,run_name,metric,step,wall_time,value\n";
  for (int64_t id : run_ids) {
    const auto run = store.get_run(id);
    if (!run) continue;
    QString name = QString::fromStdString(run->name);
    name = "\"" + name.replace("\"", "\"\"") + "\"";
    for (const std::string& metric : store.metric_names(id)) {
      const MetricSeries s = store.metrics(id, metric);
      const QString m = QString::fromStdString(metric);
      for (size_t i = 0; i < s.size(); ++i)
        out << id << ',' << name << ',' << m << ',' << s.steps[i] + 1 << ','  // steps taken
            << QString::number(s.wall_times[i], 'f', 3) << ','
            << QString::number(s.values[i], 'g', 9) << '\n';
    }
  }
  out.flush();
  if (f.error() != QFileDevice::NoError)
    throw std::runtime_error(path.toStdString() + ": " + f.errorString().toStdString());
}

}  // namespace bl
