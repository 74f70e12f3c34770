// blocklab-cli runs: browse and manage the runs recorded in the experiment
// database (list, show, export, compare, tag, note, delete).
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "args.h"
#include "commands.h"
#include "run/run_plan.h"
#include "setup.h"
#include "store/experiment_store.h"
#include "sweep/run_transfer.h"
#include "train/store_logger.h"

namespace bl::cli {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const char* kRunsUsage =
    "usage: blocklab-cli runs <subcommand> [--db FILE]\n"
    "  list    [--status S] [--tag T] [--sweep ID] [--limit N] [--json]\n"
    "  show    ID [--json]\n"
    "  export  ID [--format csv|json] [--out FILE]\n"
    "  compare ID ID... [--json]\n"
    "  tag     ID TAG... [--remove]\n"
    "  note    ID TEXT\n"
    "  delete  ID [--force]\n"
    "  import  DIR|FILE... [--json]   merge runs of other databases (published sweep tasks)\n"
    "          by run UUID: already imported runs are skipped\n"
    "The database is --db FILE, else $BLOCKLAB_DB, else $XDG_DATA_HOME/blocklab/experiments.db.\n";

std::string db_path_of(const Args& args) {
  return args.get("db").value_or(default_db_path());
}

bool db_exists(const std::string& path) {
  std::error_code ec;
  return fs::exists(path, ec);
}

/// Opens for reading. Read-write when possible, so runs of dead processes are
/// marked interrupted first; read-only on a read-only file or directory.
ExperimentStore open_for_reading(const std::string& path) {
  if (!db_exists(path))
    throw std::runtime_error(path +
                             ": no experiment database here (nothing has been recorded yet)");
  const fs::path dir = fs::absolute(path).parent_path();
  if (::access(path.c_str(), W_OK) == 0 && ::access(dir.c_str(), W_OK) == 0) {
    try {
      return ExperimentStore(path);
    } catch (const StoreError& e) {
      if (!e.damaged()) throw;
      std::fprintf(stderr, "warning: %s\n", e.what());  // still readable: show what it holds
    }
  }
  return ExperimentStore::open_readonly(path);
}

ExperimentStore open_for_writing(const std::string& path) {
  if (!db_exists(path))
    throw std::runtime_error(path +
                             ": no experiment database here (nothing has been recorded yet)");
  return ExperimentStore(path);
}

RunRecord get_run(ExperimentStore& store, int64_t id) {
  auto r = store.get_run(id);
  if (!r) throw std::runtime_error(store.path() + ": no run with id " + std::to_string(id));
  return *r;
}

/// The positional run id at index i (after the subcommand).
int64_t run_id_arg(const Args& args, size_t i, const char* sub) {
  if (args.positional().size() <= i)
    throw UsageError(std::string("runs ") + sub + " needs a run id (see blocklab-cli runs list)");
  return parse_run_id(args.positional()[i], std::string("runs ") + sub);
}

void no_more_positionals(const Args& args, size_t n) {
  if (args.positional().size() > n)
    throw UsageError("unexpected argument '" + args.positional()[n] + "'");
}

std::string fmt_time(std::optional<double> t) {
  if (!t || *t <= 0) return "-";
  std::time_t s = std::time_t(*t);
  std::tm tm{};
  localtime_r(&s, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

std::string fmt_num(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[32];
  if ((v == std::floor(v) || std::fabs(v) >= 1e5) && std::fabs(v) < 1e15)
    std::snprintf(buf, sizeof buf, "%.0f", v);  // counts, throughput: no exponent
  else
    std::snprintf(buf, sizeof buf, "%.5g", v);
  return buf;
}

/// A JSON value as a short table cell.
std::string cell(const json& v) {
  if (v.is_null()) return "-";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number()) return fmt_num(v.get<double>());
  return v.dump();
}

/// Exact number for exports: shortest round-trip text, "nan"/"inf" as words.
std::string exact_num(double v) {
  if (!std::isfinite(v)) return std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf");
  return json(v).dump();
}

json num_or_null(double v) {
  return std::isfinite(v) ? json(v) : json();
}

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? sep : "") + v[i];
  return out;
}

/// Prints rows as left-aligned columns (the first row is the header).
void print_table(const std::vector<std::vector<std::string>>& rows) {
  if (rows.empty()) return;
  std::vector<size_t> w;
  for (auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) {
      if (w.size() <= i) w.push_back(0);
      w[i] = std::max(w[i], r[i].size());
    }
  for (auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i)
      line += r[i] + (i + 1 < r.size() ? std::string(w[i] - r[i].size() + 2, ' ') : "");
    std::printf("%s\n", line.c_str());
  }
}

bool lower_is_better(const std::string& name) {
  return name.find("loss") != std::string::npos;
}

struct MetricStat {
  int64_t count = 0;
  int64_t last_step = 0;
  double final = NAN;
  std::optional<double> best;  // min for losses
  int64_t best_step = 0;
};

std::map<std::string, MetricStat> metric_stats(ExperimentStore& store, int64_t id) {
  std::map<std::string, MetricStat> out;
  for (const std::string& n : store.metric_names(id)) {
    MetricSeries s = store.metrics(id, n);
    MetricStat st;
    st.count = int64_t(s.size());
    if (!s.size()) continue;
    st.last_step = s.steps.back();
    st.final = s.values.back();
    if (lower_is_better(n))
      for (size_t i = 0; i < s.size(); ++i)
        if (std::isfinite(s.values[i]) && (!st.best || s.values[i] < *st.best)) {
          st.best = s.values[i];
          st.best_step = s.steps[i];
        }
    out[n] = st;
  }
  return out;
}

json run_json(const RunRecord& r) {
  return {{"id", r.id},
          {"name", r.name},
          {"status", run_status_name(r.status)},
          {"status_message", r.status_message},
          {"created_at", r.created_at},
          {"started_at", r.started_at ? json(*r.started_at) : json()},
          {"finished_at", r.finished_at ? json(*r.finished_at) : json()},
          {"preset", r.preset},
          {"dataset_path", r.dataset_path},
          {"dataset_size", r.dataset_size ? json(*r.dataset_size) : json()},
          {"dataset_sha256", r.dataset_sha256},
          {"tokenizer", r.tokenizer},
          {"param_count", r.param_count ? json(*r.param_count) : json()},
          {"tags", r.tags},
          {"notes", r.notes},
          {"program_version", r.program_version},
          {"host", r.host},
          {"machine", r.machine},
          {"pid", r.pid},
          {"parent_run_id", r.parent_run_id ? json(*r.parent_run_id) : json()},
          {"uuid", r.uuid},
          {"sweep_id", r.sweep_id ? json(*r.sweep_id) : json()},
          {"sweep_trial", r.sweep_trial ? json(*r.sweep_trial) : json()},
          {"model_config", r.model_config},
          {"train_config", r.train_config},
          {"summary", r.summary}};
}

/// Steps done: the summary's count for finished runs, else the last logged step + 1.
std::optional<int64_t> steps_done(ExperimentStore& store, const RunRecord& r) {
  if (r.summary.is_object() && r.summary.contains("steps") && r.summary["steps"].is_number())
    return r.summary["steps"].get<int64_t>();
  if (auto s = store.latest_step(r.id)) return *s + 1;
  return std::nullopt;
}

json summary_value(const RunRecord& r, const char* key) {
  if (r.summary.is_object() && r.summary.contains(key)) return r.summary[key];
  return json();
}

// --------------------------------------------------------------- list

int runs_list(const Args& args) {
  no_more_positionals(args, 1);
  const std::string path = db_path_of(args);
  RunFilter f;
  if (auto s = args.get("status")) {
    f.status = parse_run_status(*s);
    if (!f.status)
      throw UsageError(
          "--status must be one of running, completed, stopped, diverged, failed, "
          "interrupted; got '" +
          *s + "'");
  }
  f.tag = args.get("tag");
  if (auto sw = args.get("sweep")) f.sweep_id = parse_run_id(*sw, "--sweep");
  f.limit = args.get_int("limit", 1).value_or(0);
  if (!db_exists(path)) {
    if (args.flag("json"))
      std::printf("[]\n");
    else
      std::printf("no runs recorded yet (no database at %s)\n", path.c_str());
    return 0;
  }
  ExperimentStore store = open_for_reading(path);
  std::vector<RunRecord> runs = store.list_runs(f);
  if (args.flag("json")) {
    json a = json::array();
    for (auto& r : runs) {
      json j = run_json(r);
      j.erase("model_config");
      j.erase("train_config");
      auto steps = steps_done(store, r);
      j["steps"] = steps ? json(*steps) : json();
      a.push_back(j);
    }
    std::printf("%s\n", a.dump(2).c_str());
    return 0;
  }
  if (runs.empty()) {
    std::printf("no runs match in %s\n", path.c_str());
    return 0;
  }
  std::vector<std::vector<std::string>> rows = {{"ID", "NAME", "STATUS", "PRESET", "STEPS",
                                                 "TRAIN_LOSS", "VAL_LOSS", "PARENT", "SWEEP",
                                                 "CREATED", "TAGS"}};
  for (auto& r : runs) {
    auto steps = steps_done(store, r);
    json loss = summary_value(r, "final_train_loss");
    if (loss.is_null()) {
      MetricSeries s = store.metrics(r.id, "loss", steps ? *steps - 2 : INT64_MIN);
      if (s.size()) loss = num_or_null(s.values.back());
    }
    rows.push_back({std::to_string(r.id), r.name, run_status_name(r.status),
                    r.preset.empty() ? "-" : r.preset, steps ? std::to_string(*steps) : "-",
                    cell(loss), cell(summary_value(r, "val_loss")),
                    r.parent_run_id ? std::to_string(*r.parent_run_id) : "-",
                    // sweep id / trial index
                    r.sweep_id ? std::to_string(*r.sweep_id) + "/" +
                                     (r.sweep_trial ? std::to_string(*r.sweep_trial) : "-")
                               : "-",
                    fmt_time(r.created_at), r.tags.empty() ? "-" : join(r.tags, ",")});
  }
  print_table(rows);
  return 0;
}

// --------------------------------------------------------------- show

int runs_show(const Args& args) {
  const int64_t id = run_id_arg(args, 1, "show");
  no_more_positionals(args, 2);
  ExperimentStore store = open_for_reading(db_path_of(args));
  RunRecord r = get_run(store, id);
  auto stats = metric_stats(store, id);
  std::vector<CheckpointRecord> ckpts = store.checkpoints(id);
  std::vector<EvalRecord> evals = store.evals(id);
  if (args.flag("json")) {
    json j = run_json(r);
    json m = json::object();
    for (auto& [n, st] : stats)
      m[n] = {{"count", st.count},
              {"last_step", st.last_step},
              {"final", num_or_null(st.final)},
              {"best", st.best ? json(*st.best) : json()},
              {"best_step", st.best ? json(st.best_step) : json()}};
    j["metrics"] = m;
    json c = json::array();
    for (auto& ck : ckpts)
      c.push_back({{"step", ck.step},
                   {"path", ck.path},
                   {"sha256", ck.sha256},
                   {"created_at", ck.created_at},
                   {"exists", fs::exists(fs::path(ck.path) / "checkpoint.json")}});
    j["checkpoints"] = c;
    json e = json::array();
    for (auto& ev : evals)
      e.push_back({{"step", ev.step + 1}, {"name", ev.name}, {"value", num_or_null(ev.value)}});
    j["evals"] = e;
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("run %lld: %s\n", (long long)r.id, r.name.c_str());
  std::vector<std::vector<std::string>> rows;
  auto row = [&](const std::string& k, const std::string& v) { rows.push_back({"  " + k, v}); };
  row("status", std::string(run_status_name(r.status)) +
                    (r.status_message.empty() ? "" : " (" + r.status_message + ")"));
  if (r.parent_run_id) row("parent", "run " + std::to_string(*r.parent_run_id));
  if (is_distill_run(r)) {
    // "distillation of teacher run 3 (DIR), T 2, alpha 0.5"
    const json& d = r.summary["distill"];
    const json& tr = d.value("teacher_run", json());
    const std::string ckpt = d.value("teacher_checkpoint", std::string());
    row("distilled from",
        "teacher " + (tr.is_number_integer() ? "run " + cell(tr) + " (" + ckpt + ")" : ckpt) +
            ", temperature " + cell(d.value("temperature", json())) + ", alpha " +
            cell(d.value("alpha", json())));
  }
  if (is_preference_run(r)) {
    const json& d = r.summary["dpo"];
    const json& br = d.value("base_run", json());
    const std::string ckpt = d.value("base_checkpoint", std::string());
    row("DPO from", (br.is_number_integer() ? "run " + cell(br) + " (" + ckpt + ")" : ckpt) +
                        ", beta " + cell(d.value("beta", json())));
  }
  if (is_grpo_run(r)) {
    const json& d = r.summary["grpo"];
    const json& br = d.value("base_run", json());
    const std::string ckpt = d.value("base_checkpoint", std::string());
    row("GRPO from", (br.is_number_integer() ? "run " + cell(br) + " (" + ckpt + ")" : ckpt) +
                         ", reward " + cell(d.value("reward", json())) + ", group " +
                         cell(d.value("group", json())) + ", beta " +
                         cell(d.value("beta", json())));
  }
  row("created", fmt_time(r.created_at));
  row("started", fmt_time(r.started_at));
  row("finished", fmt_time(r.finished_at));
  if (!r.preset.empty()) row("preset", r.preset);
  row("dataset",
      r.dataset_path + (r.dataset_size ? " (" + std::to_string(*r.dataset_size) + " bytes)" : ""));
  if (!r.dataset_sha256.empty()) row("dataset sha256", r.dataset_sha256);
  if (r.tokenizer.is_object() && r.tokenizer.contains("type")) {
    // "bpe (vocab 4352, /path/tokenizer.json)": a BPE run names its file.
    std::string tok = cell(r.tokenizer["type"]);
    if (r.tokenizer.contains("vocab_size")) {
      tok += " (vocab " + cell(r.tokenizer["vocab_size"]);
      const std::string source = r.tokenizer.value("source", std::string());
      tok += (source.empty() ? "" : ", " + source) + ")";
    }
    row("tokenizer", tok);
  }
  if (r.param_count) row("parameters", std::to_string(*r.param_count));
  row("program",
      "blocklab " + r.program_version + " on " + r.host + " (pid " + std::to_string(r.pid) + ")");
  if (r.machine.is_object() && r.machine.contains("kernel_isa"))
    row("machine", cell(r.machine.value("cpu", json())) + ", kernels " +
                       cell(r.machine["kernel_isa"]) + ", blas " +
                       cell(r.machine.value("blas", json())) + ", " +
                       cell(r.machine.value("threads", json())) + " threads");
  row("tags", r.tags.empty() ? "-" : join(r.tags, ", "));
  if (!r.notes.empty()) row("notes", r.notes);
  print_table(rows);
  if (r.summary.is_object() && !r.summary.empty()) {
    std::printf("\nsummary:\n");
    rows.clear();
    for (auto& [k, v] : r.summary.items())
      rows.push_back({"  " + k, v.is_object() ? v.dump() : cell(v)});
    print_table(rows);
  }
  if (!stats.empty()) {
    std::printf("\nmetrics:\n");
    rows = {{"  NAME", "ROWS", "LAST_STEP", "FINAL", "BEST", "BEST_STEP"}};
    for (auto& [n, st] : stats)
      rows.push_back({"  " + n, std::to_string(st.count), std::to_string(st.last_step),
                      fmt_num(st.final), st.best ? fmt_num(*st.best) : "-",
                      st.best ? std::to_string(st.best_step) : "-"});
    print_table(rows);
  }
  // `blocklab-cli eval` results (the trainer's eval_loss is a metric above too).
  rows = {{"  STEP", "NAME", "VALUE"}};
  for (auto& ev : evals)
    if (ev.name != "eval_loss")
      rows.push_back({"  " + std::to_string(ev.step + 1), ev.name, fmt_num(ev.value)});
  if (rows.size() > 1) {
    std::printf("\nevals:\n");
    print_table(rows);
  }
  std::printf("\ncheckpoints:%s\n", ckpts.empty() ? " none" : "");
  if (!ckpts.empty()) {
    rows = {{"  STEP", "PATH", "SHA256", "SAVED"}};
    for (auto& ck : ckpts) {
      const bool exists = fs::exists(fs::path(ck.path) / "checkpoint.json");
      rows.push_back({"  " + std::to_string(ck.step), ck.path + (exists ? "" : " (deleted)"),
                      ck.sha256.substr(0, 16), fmt_time(ck.created_at)});
    }
    print_table(rows);
  }
  std::printf("\nmodel config:\n%s\n", r.model_config.dump(2).c_str());
  std::printf("\ntrain config:\n%s\n", r.train_config.dump(2).c_str());
  return 0;
}

// --------------------------------------------------------------- export

int runs_export(const Args& args) {
  const int64_t id = run_id_arg(args, 1, "export");
  no_more_positionals(args, 2);
  const std::string format = args.get("format").value_or("csv");
  if (format != "csv" && format != "json")
    throw UsageError("--format must be csv or json, got '" + format + "'");
  ExperimentStore store = open_for_reading(db_path_of(args));
  RunRecord r = get_run(store, id);
  std::vector<std::string> names = store.metric_names(id);
  std::map<std::string, MetricSeries> series;
  for (auto& n : names) series[n] = store.metrics(id, n);
  std::string text;
  if (format == "json") {
    json j = {{"run", run_json(r)}};
    json m = json::object();
    for (auto& [n, s] : series) {
      json vals = json::array();
      for (double v : s.values) vals.push_back(num_or_null(v));
      json steps = json::array();
      for (int64_t st : s.steps) steps.push_back(st + 1);  // steps taken, as charts and CLI count
      m[n] = {{"step", steps}, {"wall_time", s.wall_times}, {"value", vals}};
    }
    j["metrics"] = m;
    json e = json::array();
    for (auto& ev : store.evals(id))
      e.push_back({{"step", ev.step}, {"name", ev.name}, {"value", num_or_null(ev.value)}});
    j["evals"] = e;
    json c = json::array();
    for (auto& ck : store.checkpoints(id))
      c.push_back({{"step", ck.step},
                   {"path", ck.path},
                   {"sha256", ck.sha256},
                   {"created_at", ck.created_at}});
    j["checkpoints"] = c;
    json sm = json::array();
    for (auto& s : store.samples(id))
      sm.push_back({{"step", s.step},
                    {"prompt", s.prompt},
                    {"text", s.text},
                    {"temperature", s.temperature}});
    j["samples"] = sm;
    text = j.dump(2) + "\n";
  } else {
    // Wide: one row per step, one column per metric; empty = not logged at that step.
    std::map<int64_t, std::pair<double, std::vector<std::optional<double>>>> rows;
    for (size_t k = 0; k < names.size(); ++k) {
      const MetricSeries& s = series[names[k]];
      for (size_t i = 0; i < s.size(); ++i) {
        auto [it, fresh] = rows.try_emplace(s.steps[i]);
        if (fresh) {
          it->second.first = s.wall_times[i];
          it->second.second.resize(names.size());
        }
        it->second.second[k] = s.values[i];
      }
    }
    text = "step,wall_time";
    for (auto& n : names) {
      text += ',';
      text += n;
    }
    text += '\n';
    for (auto& [step, rw] : rows) {
      text += std::to_string(step + 1);  // steps taken (1-based), as charts and CLI count
      text += ',';
      text += exact_num(rw.first);
      for (auto& v : rw.second) {
        text += ',';
        if (v) text += exact_num(*v);
      }
      text += '\n';
    }
  }
  if (auto out = args.get("out")) {
    std::ofstream f(*out, std::ios::binary);
    f << text;
    if (!f.flush()) throw std::runtime_error("cannot write " + *out);
    std::fprintf(stderr, "exported run %lld (%zu metrics) to %s\n", (long long)id, names.size(),
                 out->c_str());
  } else {
    std::fwrite(text.data(), 1, text.size(), stdout);
  }
  return 0;
}

// --------------------------------------------------------------- compare

void flatten(const json& j, const std::string& prefix, std::map<std::string, json>& out) {
  if (j.is_object() && !j.empty()) {
    for (auto& [k, v] : j.items()) flatten(v, prefix.empty() ? k : prefix + "." + k, out);
  } else {
    out[prefix] = j;
  }
}

int runs_compare(const Args& args) {
  if (args.positional().size() < 3)
    throw UsageError("runs compare needs at least two run ids (e.g. runs compare 3 5)");
  std::vector<int64_t> ids;
  for (size_t i = 1; i < args.positional().size(); ++i)
    ids.push_back(run_id_arg(args, i, "compare"));
  ExperimentStore store = open_for_reading(db_path_of(args));
  std::vector<RunRecord> runs;
  for (int64_t id : ids) runs.push_back(get_run(store, id));

  // Config: every field that is not the same in all runs.
  std::vector<std::map<std::string, json>> flat(runs.size());
  std::set<std::string> keys;
  for (size_t i = 0; i < runs.size(); ++i) {
    const RunRecord& r = runs[i];
    flatten(r.model_config, "model", flat[i]);
    flatten(r.train_config, "train", flat[i]);
    flat[i]["preset"] = r.preset;
    flat[i]["dataset"] = r.dataset_path;
    flat[i]["dataset_sha256"] = r.dataset_sha256;
    if (r.tokenizer.is_object() && r.tokenizer.contains("type"))
      flat[i]["tokenizer"] = r.tokenizer["type"];
    for (auto& [k, v] : flat[i]) keys.insert(k);
  }
  std::vector<std::string> diff;
  for (auto& k : keys) {
    bool same = true;
    for (size_t i = 1; i < runs.size() && same; ++i) {
      auto a = flat[0].find(k), b = flat[i].find(k);
      same = (a == flat[0].end()) == (b == flat[i].end()) &&
             (a == flat[0].end() || a->second == b->second);
    }
    if (!same) diff.push_back(k);
  }
  // Metrics: summary numbers, then final / best of every logged metric.
  std::vector<std::map<std::string, MetricStat>> stats;
  std::set<std::string> metric_names;
  for (auto& r : runs) {
    stats.push_back(metric_stats(store, r.id));
    for (auto& [n, s] : stats.back()) metric_names.insert(n);
  }
  std::vector<std::pair<std::string, std::vector<json>>> metric_rows;
  auto add_row = [&](const std::string& label, auto&& value_of) {
    std::vector<json> vals;
    for (size_t i = 0; i < runs.size(); ++i) vals.push_back(value_of(i));
    metric_rows.emplace_back(label, vals);
  };
  add_row("status", [&](size_t i) { return json(run_status_name(runs[i].status)); });
  add_row("steps", [&](size_t i) {
    auto s = steps_done(store, runs[i]);
    return s ? json(*s) : json();
  });
  for (const char* k :
       {"final_train_loss", "val_loss", "best_val_loss", "tokens_per_sec", "elapsed_s"})
    add_row(k, [&](size_t i) { return summary_value(runs[i], k); });
  for (auto& n : metric_names) {
    add_row(n + " (final)", [&](size_t i) {
      auto it = stats[i].find(n);
      return it == stats[i].end() ? json() : num_or_null(it->second.final);
    });
    if (lower_is_better(n))
      add_row(n + " (best)", [&](size_t i) {
        auto it = stats[i].find(n);
        return it == stats[i].end() || !it->second.best ? json() : json(*it->second.best);
      });
  }

  if (args.flag("json")) {
    json j = {{"runs", ids}};
    json c = json::object();
    for (auto& k : diff) {
      json a = json::array();
      for (auto& f : flat) a.push_back(f.count(k) ? f[k] : json());
      c[k] = a;
    }
    j["config_diff"] = c;
    json m = json::object();
    for (auto& [label, vals] : metric_rows) m[label] = vals;
    j["metrics"] = m;
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::vector<std::string> header = {"FIELD"};
  for (auto& r : runs)
    header.push_back("run " + std::to_string(r.id) + (r.name.empty() ? "" : " (" + r.name + ")"));
  std::printf("config (fields that differ):\n");
  if (diff.empty()) {
    std::printf("  none: all runs have the same configuration\n");
  } else {
    std::vector<std::vector<std::string>> rows = {header};
    rows[0][0] = "  " + rows[0][0];
    for (auto& k : diff) {
      std::vector<std::string> row = {"  " + k};
      for (auto& f : flat) row.push_back(f.count(k) ? cell(f[k]) : "-");
      rows.push_back(row);
    }
    print_table(rows);
  }
  std::printf("\nmetrics:\n");
  std::vector<std::vector<std::string>> rows = {header};
  rows[0][0] = "  " + rows[0][0];
  for (auto& [label, vals] : metric_rows) {
    std::vector<std::string> row = {"  " + label};
    for (auto& v : vals) row.push_back(cell(v));
    rows.push_back(row);
  }
  print_table(rows);
  return 0;
}

// --------------------------------------------------------------- tag / note / delete

int runs_tag(const Args& args) {
  const int64_t id = run_id_arg(args, 1, "tag");
  if (args.positional().size() < 3)
    throw UsageError("runs tag needs a run id and at least one tag");
  ExperimentStore store = open_for_writing(db_path_of(args));
  RunRecord r = get_run(store, id);
  std::set<std::string> tags(r.tags.begin(), r.tags.end());
  for (size_t i = 2; i < args.positional().size(); ++i) {
    const std::string& t = args.positional()[i];
    if (t.empty() || t.find_first_of(" \t\n,") != std::string::npos)
      throw UsageError("tag '" + t + "' must be non-empty without spaces or commas");
    if (args.flag("remove"))
      tags.erase(t);
    else
      tags.insert(t);
  }
  store.set_tags(id, std::vector<std::string>(tags.begin(), tags.end()));
  std::printf(
      "run %lld tags: %s\n", (long long)id,
      tags.empty() ? "-" : join(std::vector<std::string>(tags.begin(), tags.end()), ", ").c_str());
  return 0;
}

int runs_note(const Args& args) {
  const int64_t id = run_id_arg(args, 1, "note");
  if (args.positional().size() < 3)
    throw UsageError("runs note needs a run id and the note text (\"\" clears it)");
  std::vector<std::string> words(args.positional().begin() + 2, args.positional().end());
  ExperimentStore store = open_for_writing(db_path_of(args));
  get_run(store, id);
  store.set_notes(id, join(words, " "));
  std::printf("run %lld note %s\n", (long long)id, join(words, " ").empty() ? "cleared" : "saved");
  return 0;
}

int runs_delete(const Args& args) {
  const int64_t id = run_id_arg(args, 1, "delete");
  no_more_positionals(args, 2);
  ExperimentStore store = open_for_writing(db_path_of(args));
  RunRecord r = get_run(store, id);
  if (r.status == RunStatus::kRunning && !args.flag("force"))
    throw std::runtime_error("run " + std::to_string(id) + " is still running (pid " +
                             std::to_string(r.pid) + " on " + r.host +
                             "); stop it first or pass --force");
  const std::string dir = run_files_dir(store.path(), id);
  store.delete_run(id);
  std::error_code ec;
  const auto removed = fs::remove_all(dir, ec);
  if (ec)
    throw std::runtime_error("run " + std::to_string(id) + " deleted from the database, but " +
                             dir + " could not be removed: " + ec.message());
  std::printf("deleted run %lld%s\n", (long long)id,
              removed > 0 ? (" and its files in " + dir).c_str() : "");
  return 0;
}

// --------------------------------------------------------------- import
int runs_import(const Args& args) {
  if (args.positional().size() < 2)
    throw UsageError("runs import needs one or more databases or directories to import from");
  const std::vector<std::string> sources(args.positional().begin() + 1, args.positional().end());
  const std::string path = db_path_of(args);
  const ImportReport rep = import_runs(path, sources);
  for (const std::string& p : rep.problems) std::fprintf(stderr, "warning: %s\n", p.c_str());
  if (args.flag("json")) {
    std::printf("%s\n", json{{"databases", rep.databases},
                             {"imported", rep.imported},
                             {"duplicates", rep.duplicates},
                             {"run_dirs_copied", rep.files_copied},
                             {"problems", rep.problems},
                             {"sweeps_completed", rep.sweeps_completed}}
                            .dump()
                            .c_str());
  } else {
    std::printf("imported %lld runs from %lld databases into %s (%lld already there, skipped)\n",
                (long long)rep.imported, (long long)rep.databases, path.c_str(),
                (long long)rep.duplicates);
    for (int64_t id : rep.sweeps_completed)
      std::printf(
          "sweep %lld: every trial has a result now; marked completed (blocklab-cli sweep "
          "show %lld)\n",
          (long long)id, (long long)id);
  }
  // Some sources unreadable: the others are imported, and the exit code says so.
  return rep.problems.empty() ? 0 : 1;
}

}  // namespace

int runs_command(const std::vector<std::string>& argv) {
  Args args(argv, {"db", "status", "tag", "sweep", "limit", "format", "out"},
            {"json", "remove", "force", "help"});
  if (args.flag("help") || args.positional().empty()) {
    std::fputs(kRunsUsage, args.flag("help") ? stdout : stderr);
    return args.flag("help") ? 0 : 2;
  }
  const std::string& sub = args.positional()[0];
  // Options only make sense for some subcommands: catch typos like "runs show 3 --format csv".
  const std::map<std::string, std::set<std::string>> allowed = {
      {"list", {"db", "status", "tag", "sweep", "limit", "json"}},
      {"import", {"db", "json"}},
      {"show", {"db", "json"}},
      {"export", {"db", "format", "out"}},
      {"compare", {"db", "json"}},
      {"tag", {"db", "remove"}},
      {"note", {"db"}},
      {"delete", {"db", "force"}}};
  auto it = allowed.find(sub);
  if (it == allowed.end()) throw UsageError("unknown runs subcommand '" + sub + "'\n" + kRunsUsage);
  for (const char* o : {"db", "status", "tag", "sweep", "limit", "format", "out"})
    if (args.get(o) && !it->second.count(o))
      throw UsageError("runs " + sub + " does not take --" + o);
  for (const char* o : {"json", "remove", "force"})
    if (args.flag(o) && !it->second.count(o))
      throw UsageError("runs " + sub + " does not take --" + o);
  if (sub == "list") return runs_list(args);
  if (sub == "show") return runs_show(args);
  if (sub == "export") return runs_export(args);
  if (sub == "compare") return runs_compare(args);
  if (sub == "tag") return runs_tag(args);
  if (sub == "note") return runs_note(args);
  if (sub == "import") return runs_import(args);
  return runs_delete(args);
}

}  // namespace bl::cli
