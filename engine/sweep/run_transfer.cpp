#include "sweep/run_transfer.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "store/experiment_store.h"
#include "store/schema.h"
#include "sweep/sqlite_stmt.h"
#include "sweep/sweep_report.h"
#include "train/store_logger.h"

namespace bl {
namespace fs = std::filesystem;
using sweep_sql::Stmt;

namespace {

// SQL string literal (file names in VACUUM INTO / ATTACH).
std::string quoted(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

// Closes a connection on scope exit.
struct Connection {
  sqlite3* db;
  ~Connection() { sqlite3_close_v2(db); }
};

std::vector<std::string> find_databases(const std::string& source, ImportReport& rep) {
  std::vector<std::string> out;
  std::error_code ec;
  const fs::file_status st = fs::status(source, ec);
  if (fs::is_regular_file(st)) return {source};
  if (!fs::is_directory(st)) {
    rep.problems.push_back(source + ": no such file or directory");
    return out;
  }
  fs::recursive_directory_iterator it(source, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!name.empty() && name[0] == '.') {  // unfinished publishes (.tmp-*) and the like
      if (it->is_directory(ec)) it.disable_recursion_pending();
      continue;
    }
    // Run files (checkpoints) are not databases; do not walk them.
    if (name == "runs" && it->is_directory(ec)) {
      it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file(ec) && it->path().extension() == ".db")
      out.push_back(it->path().string());
  }
  if (ec) rep.problems.push_back(source + ": " + ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

// Where an imported checkpoint path points: the same file under the target's
// run directory when the source's run directory (next to the source database)
// holds it; else the path as it was (a database imported on the host that wrote it).
std::string repoint(const std::string& path, int64_t old_id, const fs::path& src_run_dir,
                    const fs::path& dst_run_dir, bool copied) {
  const std::string marker = "/runs/" + std::to_string(old_id) + "/";
  const size_t at = path.rfind(marker);
  if (!copied || at == std::string::npos) return path;
  const std::string rel = path.substr(at + marker.size());
  std::error_code ec;
  if (!fs::exists(src_run_dir / rel, ec)) return path;
  return (dst_run_dir / rel).string();
}

struct SourceResult {
  int64_t imported = 0, duplicates = 0, files = 0;
};

SourceResult import_one(sqlite3* db, const std::string& target_db, const std::string& src) {
  sweep_sql::exec(db, "ATTACH DATABASE " + quoted(src) + " AS src", src + ": cannot attach");
  struct Detach {
    sqlite3* db;
    ~Detach() { sqlite3_exec(db, "DETACH DATABASE src", nullptr, nullptr, nullptr); }
  } detach{db};
  {
    Stmt a(db, "PRAGMA src.application_id", src);
    const int64_t app = a.step() ? a.i64(0) : 0;
    Stmt v(db, "PRAGMA src.user_version", src);
    const int64_t version = v.step() ? v.i64(0) : 0;
    if (app != store::kApplicationId)
      throw StoreError(src + ": not a Blocklab experiment database");
    if (version != store::current_schema_version())
      throw StoreError(src + ": schema version " + std::to_string(version) +
                       ", this build imports " + std::to_string(store::current_schema_version()) +
                       " (open it once with this build: blocklab-cli runs list --db FILE)");
  }
  {
    // Import is keyed by run UUID; a run without one (a database migrated to
    // v3, where the column may hold NULL, then damaged) would be imported
    // again by every import. Such a source is refused whole.
    Stmt q(db, "SELECT id FROM src.runs WHERE uuid IS NULL OR uuid = '' ORDER BY id LIMIT 1", src);
    if (q.step())
      throw StoreError(src + ": run " + std::to_string(q.i64(0)) +
                       " has no UUID (a damaged database); nothing imported from it");
    // Runs are copied by id; a row whose id is not an integer (its schema
    // edited: `id` no longer the rowid) matched nothing, yet counted as
    // imported, and its metrics went to the run imported before it.
    Stmt k(db, "SELECT uuid FROM src.runs WHERE typeof(id) <> 'integer' LIMIT 1", src);
    if (k.step())
      throw StoreError(src + ": run " + k.text(0) +
                       " has no integer id (a damaged database); nothing imported from it");
  }
  SourceResult res;
  const fs::path src_dir = fs::absolute(src).parent_path();
  std::vector<fs::path> copied_dirs;  // removed again if the transaction fails
  try {
    sweep_sql::Transaction tx(db, target_db + ": import of " + src);
    sweep_sql::exec(db,
                    "INSERT OR IGNORE INTO main.sweeps(uuid, name, spec, created_at, status) "
                    "SELECT uuid, name, spec, created_at, status FROM src.sweeps ORDER BY id;"
                    "INSERT INTO main.metric_names(name) SELECT name FROM src.metric_names "
                    "WHERE true ON CONFLICT(name) DO NOTHING",
                    src + ": sweeps and metric names");
    std::vector<std::pair<int64_t, std::string>> runs;
    {
      Stmt q(db, "SELECT id, uuid FROM src.runs ORDER BY id", src);
      while (q.step()) runs.emplace_back(q.i64(0), q.text(1));
    }
    for (const auto& [old_id, uuid] : runs) {
      {
        Stmt dup(db, "SELECT 1 FROM main.runs WHERE uuid = ?1", target_db);
        dup.bind(1, uuid);
        if (dup.step()) {
          ++res.duplicates;
          continue;
        }
      }
      const std::string what = src + ": run " + std::to_string(old_id);
      {
        Stmt ins(db,
                 "INSERT INTO main.runs(name, status, status_message, created_at, started_at, "
                 "finished_at, model_config, train_config, preset, dataset_path, dataset_size, "
                 "dataset_sha256, tokenizer, param_count, notes, program_version, host, pid, "
                 "parent_run_id, summary, machine, uuid, sweep_id, sweep_trial) "
                 // A run still 'running' in a copy can never finish here: no
                 // process of this host writes it. It is imported interrupted.
                 "SELECT s.name, CASE s.status WHEN 'running' THEN 'interrupted' ELSE s.status "
                 "END, CASE s.status WHEN 'running' THEN 'imported from ' || ?2 || "
                 "' while its process was still running' ELSE s.status_message END, "
                 "s.created_at, s.started_at, "
                 "s.finished_at, s.model_config, s.train_config, s.preset, s.dataset_path, "
                 "s.dataset_size, s.dataset_sha256, s.tokenizer, s.param_count, s.notes, "
                 "s.program_version, s.host, s.pid, "
                 "(SELECT m.id FROM main.runs m JOIN src.runs p ON p.uuid = m.uuid "
                 " WHERE p.id = s.parent_run_id), "
                 "s.summary, s.machine, s.uuid, "
                 "(SELECT ms.id FROM main.sweeps ms JOIN src.sweeps ss ON ss.uuid = ms.uuid "
                 " WHERE ss.id = s.sweep_id), "
                 "s.sweep_trial FROM src.runs s WHERE s.id = ?1",
                 what);
        ins.bind(1, old_id).bind(2, src).run();
        // Exactly one row, or new_id below would be an earlier run's.
        if (sqlite3_changes(db) != 1)
          throw StoreError(what + ": its row could not be copied (a damaged database)");
      }
      const int64_t new_id = sqlite3_last_insert_rowid(db);
      const std::string copy_rows =
          "INSERT INTO main.metrics(run_id, name_id, step, wall_time, value) "
          "SELECT ?2, mn.id, m.step, m.wall_time, m.value FROM src.metrics m "
          "JOIN src.metric_names sn ON sn.id = m.name_id "
          "JOIN main.metric_names mn ON mn.name = sn.name WHERE m.run_id = ?1 ORDER BY m.rowid;";
      for (const std::string& sql :
           {copy_rows,
            std::string("INSERT INTO main.evals(run_id, step, name, value) SELECT ?2, step, name, "
                        "value FROM src.evals WHERE run_id = ?1 ORDER BY id"),
            std::string("INSERT INTO main.samples(run_id, step, prompt, text, temperature, "
                        "created_at) SELECT ?2, step, prompt, text, temperature, created_at "
                        "FROM src.samples WHERE run_id = ?1 ORDER BY id"),
            std::string("INSERT INTO main.run_tags(run_id, tag) SELECT ?2, tag FROM src.run_tags "
                        "WHERE run_id = ?1")}) {
        Stmt c(db, sql, what);
        c.bind(1, old_id).bind(2, new_id).run();
      }
      // Run files: copied next to the target database, checkpoint paths re-pointed.
      const fs::path src_run_dir = src_dir / "runs" / std::to_string(old_id);
      const fs::path dst_run_dir = run_files_dir(target_db, new_id);
      std::error_code ec;
      bool copied = false;
      if (fs::is_directory(src_run_dir, ec)) {
        fs::create_directories(dst_run_dir.parent_path(), ec);
        copied_dirs.push_back(dst_run_dir);
        fs::copy(src_run_dir, dst_run_dir,
                 fs::copy_options::recursive | fs::copy_options::overwrite_existing, ec);
        if (ec)
          throw StoreError(what + ": cannot copy its files " + src_run_dir.string() + " to " +
                           dst_run_dir.string() + ": " + ec.message());
        copied = true;
        ++res.files;
      }
      Stmt ck(db,
              "SELECT step, path, sha256, created_at FROM src.checkpoints WHERE run_id = ?1 "
              "ORDER BY step, id",
              what);
      ck.bind(1, old_id);
      Stmt put(db,
               "INSERT INTO main.checkpoints(run_id, step, path, sha256, created_at) "
               "VALUES (?1, ?2, ?3, ?4, ?5)",
               what);
      while (ck.step()) {
        put.bind(1, new_id).bind(2, ck.i64(0));
        put.bind(3, repoint(ck.text(1), old_id, src_run_dir, dst_run_dir, copied));
        put.bind(4, ck.text(2)).bind(5, ck.f64(3)).run();
      }
      ++res.imported;
    }
    tx.commit();
  } catch (...) {
    std::error_code ec;
    for (const fs::path& d : copied_dirs) fs::remove_all(d, ec);
    throw;
  }
  return res;
}

}  // namespace

std::string publish_store(const std::string& db_path, const std::string& publish_dir,
                          const std::string& name) {
  std::error_code ec;
  fs::create_directories(publish_dir, ec);
  if (ec) throw StoreError(publish_dir + ": cannot create the publish directory: " + ec.message());
  const fs::path tmp = fs::path(publish_dir) / (".tmp-" + name + "-" + std::to_string(getpid()));
  const fs::path dst = fs::path(publish_dir) / name;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  if (ec) throw StoreError(tmp.string() + ": cannot create: " + ec.message());
  {
    // A consistent snapshot by SQLite itself, WAL content included.
    Connection c{sweep_sql::open_connection(db_path, 60000)};
    sweep_sql::exec(c.db, "VACUUM INTO " + quoted((tmp / "experiments.db").string()),
                    db_path + ": cannot copy the database to " + tmp.string());
  }
  const fs::path runs = fs::absolute(db_path).parent_path() / "runs";
  if (fs::is_directory(runs, ec)) {
    fs::copy(runs, tmp / "runs", fs::copy_options::recursive, ec);
    if (ec)
      throw StoreError(runs.string() + ": cannot copy the run files to " + tmp.string() + ": " +
                       ec.message());
  }
  fs::remove_all(dst, ec);  // a re-run of the same task replaces its earlier result
  if (::rename(tmp.c_str(), dst.c_str()) != 0)
    throw StoreError(tmp.string() + ": cannot rename to " + dst.string() + ": " +
                     std::strerror(errno));
  return dst.string();
}

ImportReport import_runs(const std::string& target_db, const std::vector<std::string>& sources) {
  ImportReport rep;
  std::vector<std::string> dbs;
  for (const std::string& s : sources)
    for (const std::string& f : find_databases(s, rep)) dbs.push_back(f);
  {
    ExperimentStore create(target_db);  // creates and migrates the target
  }
  Connection c{sweep_sql::open_connection(target_db, 60000)};
  const fs::path target_abs = fs::absolute(target_db);
  for (const std::string& f : dbs) {
    std::error_code ec;
    if (fs::equivalent(fs::absolute(f), target_abs, ec)) {
      rep.problems.push_back(f + ": is the target database itself; skipped");
      continue;
    }
    try {
      const SourceResult r = import_one(c.db, target_db, f);
      ++rep.databases;
      rep.imported += r.imported;
      rep.duplicates += r.duplicates;
      rep.files_copied += r.files;
    } catch (const std::exception& e) {
      rep.problems.push_back(e.what());
    }
  }
  rep.sweeps_completed = complete_finished_sweeps(target_db);
  return rep;
}

}  // namespace bl
