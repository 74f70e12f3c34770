#include "store/write_journal.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>

#include "io/bounded_read.h"
#include "io/synced_file.h"
#include "store/experiment_store.h"

namespace bl {
namespace fs = std::filesystem;

namespace {

constexpr const char* kJournalName = "pending-writes.jsonl";
constexpr const char* kKinds[] = {"metric", "eval", "checkpoint", "finish"};

nlohmann::json to_json(const WriteItem& w) {
  nlohmann::json j = {{"op", kKinds[int(w.kind)]}, {"run", w.run_id}, {"step", w.step}};
  auto num = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(); };
  switch (w.kind) {
    case WriteItem::Kind::kMetric:
      j["wall_time"] = w.wall_time;
      [[fallthrough]];
    case WriteItem::Kind::kEval:
      j["name"] = w.name;
      j["value"] = num(w.value);  // NaN/Inf: null (read back as NaN, as the store keeps them)
      break;
    case WriteItem::Kind::kCheckpoint:
      j["path"] = w.path;
      j["sha256"] = w.sha256;
      break;
    case WriteItem::Kind::kFinish:
      j["status"] = run_status_name(w.status);
      j["summary"] = w.summary;
      j["message"] = w.message;
      break;
  }
  return j;
}

WriteItem from_json(const nlohmann::json& j) {
  WriteItem w;
  const std::string op = j.at("op").get<std::string>();
  int k = 0;
  while (k < 4 && op != kKinds[k]) ++k;
  if (k == 4) throw std::invalid_argument("unknown op " + op);
  w.kind = WriteItem::Kind(k);
  w.run_id = j.at("run").get<int64_t>();
  w.step = j.at("step").get<int64_t>();
  auto num = [](const nlohmann::json& v) {
    return v.is_number() ? v.get<double>() : std::numeric_limits<double>::quiet_NaN();
  };
  w.wall_time = num(j.value("wall_time", nlohmann::json()));
  w.value = num(j.value("value", nlohmann::json()));
  w.name = j.value("name", "");
  w.path = j.value("path", "");
  w.sha256 = j.value("sha256", "");
  if (w.kind == WriteItem::Kind::kFinish) {
    auto st = parse_run_status(j.at("status").get<std::string>());
    if (!st) throw std::invalid_argument("unknown status");
    w.status = *st;
    w.summary = j.value("summary", nlohmann::json());
    w.message = j.value("message", "");
  }
  return w;
}

// Run id of a journal's directory name; 0 if it is not a number.
int64_t run_of_dir(const fs::path& dir) {
  const std::string n = dir.filename().string();
  if (n.empty() || n.size() > 18 || n.find_first_not_of("0123456789") != std::string::npos)
    return 0;
  return std::stoll(n);
}

// One durable journal append (the run's directory may not exist yet).
void append_synced(const fs::path& path, const std::string& text) {
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  write_file_synced(path, text, /*append=*/true);
}
}  // namespace

std::string write_journal_path(const std::string& db_path, int64_t run_id) {
  const fs::path db = fs::absolute(db_path).lexically_normal();
  return (db.parent_path() / "runs" / std::to_string(run_id) / kJournalName).string();
}

std::string checkpoint_intent_path(const std::string& db_path, int64_t run_id, int64_t step) {
  return (fs::path(write_journal_path(db_path, run_id)).parent_path() /
          ("pending-checkpoint-" + std::to_string(step) + ".json"))
      .string();
}

void write_checkpoint_intent(const std::string& db_path, const WriteItem& ck) {
  const std::string path = checkpoint_intent_path(db_path, ck.run_id, ck.step);
  std::error_code ec;
  fs::remove(path, ec);
  append_synced(path, to_json(ck).dump() + "\n");
}

void remove_checkpoint_intent(const std::string& db_path, const WriteItem& ck) {
  std::error_code ec;
  fs::remove(checkpoint_intent_path(db_path, ck.run_id, ck.step), ec);
}

void append_write_journal(const std::string& db_path, const std::vector<WriteItem>& items) {
  std::map<int64_t, std::string> by_run;
  for (const WriteItem& w : items)
    by_run[w.run_id] +=
        to_json(w).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  for (const auto& [run, text] : by_run) append_synced(write_journal_path(db_path, run), text);
}

void apply_write(ExperimentStore& store, const WriteItem& w) {
  switch (w.kind) {
    case WriteItem::Kind::kMetric:
      store.log_metric(w.run_id, w.step, w.wall_time, w.name, w.value);
      break;
    case WriteItem::Kind::kEval:
      store.log_eval(w.run_id, w.step, w.name, w.value);
      break;
    case WriteItem::Kind::kCheckpoint:
      store.add_checkpoint(w.run_id, w.step, w.path, w.sha256);
      break;
    case WriteItem::Kind::kFinish:
      store.finish_run(w.run_id, w.status, w.summary, w.message);
      break;
  }
}

namespace {

// The items of one journal or intent file; a torn or unreadable line is skipped.
void read_items(const fs::path& file, int64_t run, std::vector<WriteItem>& items) {
  const std::string text = read_regular_file(file.string(), int64_t(1) << 30);
  size_t b = 0;
  while (b < text.size()) {
    size_t e = text.find('\n', b);
    if (e == std::string::npos) e = text.size();
    const auto j = nlohmann::json::parse(text.substr(b, e - b), nullptr, false);
    b = e + 1;
    if (j.is_discarded() || !j.is_object()) continue;
    try {
      WriteItem w = from_json(j);
      if (w.run_id == run) items.push_back(std::move(w));
    } catch (const std::exception&) {
    }
  }
}

}  // namespace

size_t replay_write_journals(ExperimentStore& store) {
  const fs::path runs = fs::absolute(store.path()).lexically_normal().parent_path() / "runs";
  std::error_code ec;
  if (!fs::is_directory(runs, ec)) return 0;
  size_t replayed = 0;
  for (const fs::directory_entry& d : fs::directory_iterator(runs, ec)) {
    const int64_t run = run_of_dir(d.path());
    if (run == 0) continue;
    std::vector<fs::path> files;
    std::error_code ec2;
    for (const fs::directory_entry& f : fs::directory_iterator(d.path(), ec2)) {
      const std::string n = f.path().filename().string();
      if (n == kJournalName || (n.starts_with("pending-checkpoint-") && n.ends_with(".json")))
        files.push_back(f.path());
    }
    if (files.empty()) continue;
    try {
      const std::optional<RunRecord> rec = store.get_run(run);
      if (rec && rec->status == RunStatus::kRunning) continue;  // its live process owns them
      std::vector<WriteItem> items;
      if (rec) {
        for (const fs::path& f : files) read_items(f, run, items);
        const std::vector<CheckpointRecord> have = store.checkpoints(run);
        std::vector<WriteItem> todo;
        for (WriteItem& w : items) {
          if (w.kind == WriteItem::Kind::kCheckpoint) {
            bool dup = false;
            for (const CheckpointRecord& c : have) dup |= c.step == w.step && c.path == w.path;
            for (const WriteItem& t : todo)
              dup |= t.kind == w.kind && t.step == w.step && t.path == w.path;
            if (dup) continue;
          }
          todo.push_back(std::move(w));
        }
        // Registrations first: a kept finish must not precede its checkpoint.
        std::stable_partition(todo.begin(), todo.end(), [](const WriteItem& w) {
          return w.kind != WriteItem::Kind::kFinish;
        });
        for (const WriteItem& w : todo) apply_write(store, w);
        store.flush();
        items = std::move(todo);
      }
      for (const fs::path& f : files) fs::remove(f, ec2);
      replayed += items.size();
      if (!items.empty())
        std::fprintf(stderr, "[store] %s: wrote %s of run %lld kept in %s\n", store.path().c_str(),
                     describe_writes(items).c_str(), (long long)run, d.path().string().c_str());
    } catch (const std::exception& e) {
      store.discard_pending();  // still kept in the files
      std::fprintf(
          stderr,
          "[store] %s: cannot yet replay the writes kept in %s (kept for the next open): %s\n",
          store.path().c_str(), d.path().string().c_str(), e.what());
    }
  }
  return replayed;
}

std::string describe_writes(const std::vector<WriteItem>& items) {
  size_t n[4] = {};
  for (const WriteItem& w : items) ++n[int(w.kind)];
  std::string out;
  auto add = [&](size_t c, const char* one, const char* many) {
    if (!c) return;
    if (!out.empty()) out += ", ";
    out += std::to_string(c) + " " + (c == 1 ? one : many);
  };
  add(n[0], "metric row", "metric rows");
  add(n[1], "evaluation", "evaluations");
  add(n[2], "checkpoint registration", "checkpoint registrations");
  if (n[3]) out += std::string(out.empty() ? "" : ", ") + "the final status and summary";
  return out.empty() ? "nothing" : out;
}

}  // namespace bl
