#include "store/experiment_store.h"

#include <signal.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <unordered_map>
#include <utility>

#include "io/bounded_read.h"
#include "simd/isa.h"
#include "store/process_status.h"
#include "store/schema.h"
#include "store/write_journal.h"
#include "tensor/gemm.h"

#ifndef BLOCKLAB_VERSION
#define BLOCKLAB_VERSION "unknown"
#endif

namespace bl {
namespace fs = std::filesystem;

namespace {

constexpr const char* kStatusNames[] = {"running",  "completed", "stopped",
                                        "diverged", "failed",    "interrupted"};
constexpr RunStatus kStatuses[] = {RunStatus::kRunning, RunStatus::kCompleted,
                                   RunStatus::kStopped, RunStatus::kDiverged,
                                   RunStatus::kFailed,  RunStatus::kInterrupted};

// What this process runs on, for RunRecord::machine.
nlohmann::json machine_json() {
  return {{"cpu", cpu_name()},
          {"kernel_isa", kernel_isa()},
          {"blas", blas_name()},
          {"threads", num_threads()}};
}

std::string dump_json(const nlohmann::json& j) {
  // replace: never throw on invalid UTF-8 in a config string.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

nlohmann::json parse_json(const std::string& text) {
  if (text.empty()) return nullptr;
  if (json_nesting_depth(text, kMaxJsonDepth) > kMaxJsonDepth) return nlohmann::json(text);
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  return j.is_discarded() ? nlohmann::json(text) : j;  // hand-edited garbage: keep as string
}

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

}  // namespace

nlohmann::json this_machine_json() {
  return machine_json();
}

const char* run_status_name(RunStatus s) {
  for (size_t i = 0; i < std::size(kStatuses); ++i)
    if (kStatuses[i] == s) return kStatusNames[i];
  return "unknown";
}

std::optional<RunStatus> parse_run_status(std::string_view s) {
  for (size_t i = 0; i < std::size(kStatuses); ++i)
    if (s == kStatusNames[i]) return kStatuses[i];
  return std::nullopt;
}

std::string new_uuid() {
  std::random_device rd;  // the kernel's getrandom: unique across machines and processes
  uint8_t b[16];
  for (int i = 0; i < 16; i += 4) {
    const uint32_t v = rd();
    std::memcpy(b + i, &v, 4);
  }
  b[6] = uint8_t((b[6] & 0x0f) | 0x40);  // version 4
  b[8] = uint8_t((b[8] & 0x3f) | 0x80);  // RFC 4122 variant
  char out[37];
  std::snprintf(out, sizeof out,
                "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
                b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
                b[15]);
  return out;
}

std::string default_db_path() {
  auto env = [](const char* name) -> std::string {
    const char* v = std::getenv(name);
    return v ? v : "";
  };
  if (std::string p = env("BLOCKLAB_DB"); !p.empty()) return p;
  if (std::string x = env("XDG_DATA_HOME"); !x.empty())
    return (fs::path(x) / "blocklab" / "experiments.db").string();
  if (std::string h = env("HOME"); !h.empty())
    return (fs::path(h) / ".local" / "share" / "blocklab" / "experiments.db").string();
  throw StoreError(
      "cannot find a place for the experiment database: none of $BLOCKLAB_DB, "
      "$XDG_DATA_HOME, $HOME is set");
}

// ---------------------------------------------------------------------------
namespace detail {
struct StoreImpl {
  // One buffered metric row; the name is already resolved to its id.
  struct Row {
    int64_t run_id, name_id, step;
    double wall_time, value;
  };

  std::string path;
  sqlite3* db = nullptr;
  bool read_only = false;
  StoreOptions opt;
  int last_rc = SQLITE_OK;  // extended code of the last failure

  std::vector<Row> pending;  // reserved to flush_rows; cleared, never shrunk
  std::chrono::steady_clock::time_point oldest_pending;
  size_t flush_at = 0;  // row count that triggers an automatic flush
  std::unordered_map<std::string, int64_t, StringHash, std::equal_to<>> name_ids;
  std::vector<int64_t> known_runs;  // runs verified to exist (log_metric fast path)
  std::unordered_map<const char*, sqlite3_stmt*> stmts;  // keyed by SQL literal

  ~StoreImpl() {
    for (auto& [sql, s] : stmts) sqlite3_finalize(s);
    if (db) sqlite3_close_v2(db);
  }

  [[noreturn]] void fail(const std::string& what) {
    last_rc = db ? sqlite3_extended_errcode(db) : SQLITE_ERROR;
    throw StoreError(path + ": " + what + ": " + (db ? sqlite3_errmsg(db) : "not open"), last_rc);
  }

  void require_writable() const {
    if (read_only) throw StoreError(path + ": opened read-only; cannot write");
  }

  sqlite3_stmt* prepare(const char* sql) {
    auto it = stmts.find(sql);
    if (it != stmts.end()) return it->second;
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr) != SQLITE_OK)
      fail(std::string("cannot prepare \"") + sql + "\"");
    stmts.emplace(sql, s);
    return s;
  }

  void exec(const char* sql) {
    sqlite3_stmt* s = prepare(sql);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) fail(sql);
  }

  template <class Body>
  void write(Body&& body);
  void insert_pending();
  void drop_rows_of_missing_runs();
  void flush();
  void flush_for_read() {
    if (!read_only && !pending.empty()) flush();
  }
  bool run_exists(int64_t run_id);
  void ensure_run(int64_t run_id);
  int64_t name_id(std::string_view name);
  void recover_interrupted();
};
}  // namespace detail

namespace {

// A cached statement bound and stepped once; reset on scope exit so a read
// transaction never outlives the call that started it.
class Query {
 public:
  Query(detail::StoreImpl& im, const char* sql) : im_(im), s_(im.prepare(sql)) {}
  ~Query() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  Query(const Query&) = delete;
  Query& operator=(const Query&) = delete;

  Query& bind(int i, int64_t v) { return check(sqlite3_bind_int64(s_, i, v)); }
  Query& bind(int i, int v) { return bind(i, int64_t{v}); }
  Query& bind(int i, double v) { return check(sqlite3_bind_double(s_, i, v)); }
  Query& bind(int i, std::string_view v) {
    // An empty view may have data() == nullptr, which SQLite would bind as NULL.
    return check(sqlite3_bind_text64(s_, i, v.empty() ? "" : v.data(), v.size(), SQLITE_TRANSIENT,
                                     SQLITE_UTF8));
  }
  Query& bind(int i, const std::string& v) { return bind(i, std::string_view(v)); }
  Query& bind(int i, const char* v) { return bind(i, std::string_view(v)); }
  Query& bind(int i, std::nullopt_t) { return check(sqlite3_bind_null(s_, i)); }
  template <class T>
  Query& bind(int i, const std::optional<T>& v) {
    return v ? bind(i, *v) : bind(i, std::nullopt);
  }

  /// True while there is a row; throws on errors.
  bool step() {
    int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    im_.fail(std::string("\"") + sqlite3_sql(s_) + "\" failed");
  }
  void run() {
    while (step()) {
    }
  }

  bool null(int c) const { return sqlite3_column_type(s_, c) == SQLITE_NULL; }
  int64_t i64(int c) const { return sqlite3_column_int64(s_, c); }
  double f64(int c) const {
    // NaN is stored as NULL (SQLite has no NaN).
    return null(c) ? std::numeric_limits<double>::quiet_NaN() : sqlite3_column_double(s_, c);
  }
  std::optional<double> opt_f64(int c) const {
    return null(c) ? std::nullopt : std::optional<double>(sqlite3_column_double(s_, c));
  }
  std::optional<int64_t> opt_i64(int c) const {
    return null(c) ? std::nullopt : std::optional<int64_t>(i64(c));
  }
  std::string text(int c) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, c));
    return p ? std::string(p, sqlite3_column_bytes(s_, c)) : std::string();
  }

 private:
  Query& check(int rc) {
    if (rc != SQLITE_OK) im_.fail("cannot bind a parameter");
    return *this;
  }
  detail::StoreImpl& im_;
  sqlite3_stmt* s_;
};

}  // namespace

// Runs `body` in one BEGIN IMMEDIATE transaction together with every
// buffered metric row, so a write never overtakes earlier metrics. On
// failure the transaction rolls back and the rows stay buffered.
template <class Body>
void detail::StoreImpl::write(Body&& body) {
  require_writable();
  for (int attempt = 0;; ++attempt) {
    exec("BEGIN IMMEDIATE");
    last_rc = SQLITE_OK;
    try {
      insert_pending();
      body();
      exec("COMMIT");
    } catch (...) {
      const int rc = last_rc;
      sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
      // Another connection deleted a run we were logging to: its rows have
      // nowhere to go. Drop them and retry once; anything else propagates.
      if (attempt == 0 && rc == SQLITE_CONSTRAINT_FOREIGNKEY && !pending.empty()) {
        const size_t before = pending.size();
        drop_rows_of_missing_runs();
        if (pending.size() != before) continue;
      }
      throw;
    }
    pending.clear();
    flush_at = opt.flush_rows;
    return;
  }
}

void detail::StoreImpl::insert_pending() {
  if (pending.empty()) return;
  sqlite3_stmt* s = prepare(
      "INSERT INTO metrics(run_id, name_id, step, wall_time, value) VALUES (?1, ?2, ?3, ?4, ?5)");
  for (const Row& r : pending) {
    sqlite3_bind_int64(s, 1, r.run_id);
    sqlite3_bind_int64(s, 2, r.name_id);
    sqlite3_bind_int64(s, 3, r.step);
    sqlite3_bind_double(s, 4, r.wall_time);
    sqlite3_bind_double(s, 5, r.value);  // NaN binds as NULL
    const int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) fail("cannot insert metric rows");
  }
}

void detail::StoreImpl::drop_rows_of_missing_runs() {
  std::vector<int64_t> missing;
  for (const Row& r : pending)
    if (std::find(missing.begin(), missing.end(), r.run_id) == missing.end() &&
        !run_exists(r.run_id))
      missing.push_back(r.run_id);
  std::erase_if(pending, [&](const Row& r) {
    return std::find(missing.begin(), missing.end(), r.run_id) != missing.end();
  });
  std::erase_if(known_runs, [&](int64_t id) {
    return std::find(missing.begin(), missing.end(), id) != missing.end();
  });
}

void detail::StoreImpl::flush() {
  if (pending.empty()) return;
  write([] {});
}

bool detail::StoreImpl::run_exists(int64_t run_id) {
  Query q(*this, "SELECT 1 FROM runs WHERE id = ?1");
  q.bind(1, run_id);
  return q.step();
}

void detail::StoreImpl::ensure_run(int64_t run_id) {
  for (int64_t id : known_runs)
    if (id == run_id) return;
  if (!run_exists(run_id)) throw StoreError(path + ": no run with id " + std::to_string(run_id));
  known_runs.push_back(run_id);
}

int64_t detail::StoreImpl::name_id(std::string_view name) {
  auto it = name_ids.find(name);
  if (it != name_ids.end()) return it->second;
  // First use of a name on this connection: get or create its id (an
  // autocommit statement of its own; names are never deleted).
  {
    Query ins(*this, "INSERT INTO metric_names(name) VALUES (?1) ON CONFLICT(name) DO NOTHING");
    ins.bind(1, name).run();
  }
  Query sel(*this, "SELECT id FROM metric_names WHERE name = ?1");
  sel.bind(1, name);
  if (!sel.step()) fail("metric name vanished");
  const int64_t id = sel.i64(0);
  name_ids.emplace(std::string(name), id);
  return id;
}

void detail::StoreImpl::recover_interrupted() {
  const std::string host = host_name();
  std::vector<std::pair<int64_t, int64_t>> dead;  // (run id, pid)
  {
    Query q(*this, "SELECT id, pid FROM runs WHERE status = 'running' AND host = ?1");
    q.bind(1, host);
    while (q.step())
      if (!process_alive(q.null(1) ? 0 : q.i64(1))) dead.emplace_back(q.i64(0), q.i64(1));
  }
  if (dead.empty()) return;
  write([&] {
    for (auto [id, pid] : dead) {
      Query u(*this,
              "UPDATE runs SET status = 'interrupted', status_message = ?2 "
              "WHERE id = ?1 AND status = 'running'");
      u.bind(1, id)
          .bind(2, "process " + std::to_string(pid) + " on " + host +
                       " ended without finishing the run")
          .run();
    }
  });
}

// ---------------------------------------------------------------------------
namespace {

// The message for a file that must not be written to.
[[noreturn]] void throw_damaged(const std::string& path, const std::string& detail) {
  throw StoreError(path + ": the database file is damaged (" + detail +
                       "); refusing to write into it. Recover what it holds with: sqlite3 '" +
                       path +
                       "' .recover | sqlite3 recovered.db  (then use --db recovered.db, or move it "
                       "into place)",
                   SQLITE_CORRUPT);
}

// Writing into a damaged file can spread the damage and hides it: check the
// size (a truncated file is not a whole number of pages) and run a quick_check
// bounded by `budget_s` (a huge database is left unchecked rather than stall).
void refuse_damaged(detail::StoreImpl& im, double budget_s) {
  int64_t page = 0;
  {
    Query ps(im, "PRAGMA page_size");
    page = ps.step() ? ps.i64(0) : 0;
  }
  std::error_code ec;
  const auto size = fs::file_size(im.path, ec);  // stat only: the file is never opened here
  if (!ec && page > 0 && size % uint64_t(page) != 0)
    throw_damaged(im.path, "its size, " + std::to_string(size) +
                               " bytes, is not a whole number of " + std::to_string(page) +
                               "-byte pages: it was truncated or extended");
  if (budget_s <= 0) return;
  using Clock = std::chrono::steady_clock;
  Clock::time_point deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                  std::chrono::duration<double>(budget_s));
  sqlite3_progress_handler(
      im.db, 1000,
      [](void* d) { return Clock::now() > *static_cast<Clock::time_point*>(d) ? 1 : 0; },
      &deadline);
  sqlite3_stmt* st = nullptr;
  std::string problems;
  int rc = sqlite3_prepare_v2(im.db, "PRAGMA quick_check(5)", -1, &st, nullptr);
  if (rc == SQLITE_OK) {
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      const auto* t = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
      const std::string line = t ? t : "";
      if (line != "ok") problems += (problems.empty() ? "" : "; ") + line;
    }
  }
  const std::string err = sqlite3_errmsg(im.db);
  sqlite3_finalize(st);
  sqlite3_progress_handler(im.db, 0, nullptr, nullptr);
  if ((rc & 0xff) == SQLITE_INTERRUPT) return;  // too big to check within the budget
  if ((rc & 0xff) == SQLITE_CORRUPT || (rc & 0xff) == SQLITE_NOTADB) throw_damaged(im.path, err);
  if (rc != SQLITE_DONE && rc != SQLITE_OK) throw StoreError(im.path + ": quick_check: " + err, rc);
  if (!problems.empty()) throw_damaged(im.path, "quick_check: " + problems);
}

// file: URI of a path (RFC 3986 escaping of what SQLite's URI parser reads).
std::string file_uri(const std::string& path) {
  std::string abs = fs::absolute(path).lexically_normal().string();
  std::string out = "file:";
  for (unsigned char c : abs) {
    if (c == '%' || c == '?' || c == '#' || c < 0x20 || c >= 0x7f) {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      out += buf;
    } else {
      out += char(c);
    }
  }
  return out;
}

// Read-only fallback for a database whose directory or mount is read-only.
// immutable=1 takes no locks and ignores the -wal file, so say when one exists.
std::unique_ptr<detail::StoreImpl> open_immutable(const std::string& path) {
  auto im = std::make_unique<detail::StoreImpl>();
  im->path = path;
  im->read_only = true;
  const std::string uri = file_uri(path) + "?immutable=1";
  if (sqlite3_open_v2(uri.c_str(), &im->db,
                      SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX,
                      nullptr) != SQLITE_OK)
    im->fail("cannot open read-only");
  sqlite3_extended_result_codes(im->db, 1);
  std::error_code ec;
  if (fs::exists(path + "-wal", ec) && fs::file_size(path + "-wal", ec) > 0)
    std::fprintf(stderr,
                 "note: %s is in a read-only location; opened as a snapshot of the main file "
                 "(changes still in %s-wal are not shown)\n",
                 path.c_str(), path.c_str());
  return im;
}

std::unique_ptr<detail::StoreImpl> finish_read_only_open(std::unique_ptr<detail::StoreImpl> im) {
  int64_t app_id = 0, version = 0;
  {
    Query a(*im, "PRAGMA application_id");
    app_id = a.step() ? a.i64(0) : 0;
  }
  {
    Query v(*im, "PRAGMA user_version");
    version = v.step() ? v.i64(0) : 0;
  }
  if (app_id != store::kApplicationId)
    throw StoreError(im->path + ": is not a Blocklab experiment database; left untouched");
  if (version != store::current_schema_version())
    throw StoreError(im->path + ": schema version " + std::to_string(version) +
                     " differs from this build's (" +
                     std::to_string(store::current_schema_version()) +
                     ") and the read-only location cannot be upgraded");
  im->exec("PRAGMA query_only = ON");
  return im;
}

std::unique_ptr<detail::StoreImpl> open_store(const std::string& path, bool read_only,
                                              const StoreOptions& opt) {
  if (path.empty()) throw StoreError("experiment database path is empty");
  std::error_code ec;
  const fs::path p(path);
  const fs::file_status st = fs::status(p, ec);
  if (fs::exists(st)) {
    if (fs::is_directory(st))
      throw StoreError(path + ": is a directory, not a Blocklab experiment database");
    // The file itself is never opened here, only through SQLite (which checks
    // the header below, before writing anything): closing any other descriptor
    // on it would drop every POSIX lock this process holds on the database,
    // and another process could then delete the WAL under our connections.
  } else if (read_only) {
    throw StoreError(path + ": no experiment database here (nothing has been recorded yet)");
  } else if (p.has_parent_path()) {
    fs::create_directories(p.parent_path(), ec);
    if (ec)
      throw StoreError(path + ": cannot create directory " + p.parent_path().string() + ": " +
                       ec.message());
  }

  auto im = std::make_unique<detail::StoreImpl>();
  im->path = path;
  im->read_only = read_only;
  im->opt = opt;
  if (im->opt.flush_rows == 0) im->opt.flush_rows = 1;
  im->flush_at = im->opt.flush_rows;
  im->pending.reserve(std::min<size_t>(im->opt.flush_rows, 1 << 16));

  const int flags = SQLITE_OPEN_NOMUTEX |
                    (read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  if (sqlite3_open_v2(path.c_str(), &im->db, flags, nullptr) != SQLITE_OK)
    im->fail(read_only ? "cannot open" : "cannot open or create (is the directory writable?)");
  sqlite3_extended_result_codes(im->db, 1);
  if (!read_only && sqlite3_db_readonly(im->db, "main") == 1)
    throw StoreError(path + ": not writable (read-only file or file system)");
  sqlite3_busy_timeout(im->db, opt.busy_timeout_ms > 0 ? opt.busy_timeout_ms : 5000);

  // Inspect before writing anything, so a foreign or newer database is left as it was.
  int64_t app_id = 0, version = 0, objects = 0;
  try {
    Query a(*im, "PRAGMA application_id");
    app_id = a.step() ? a.i64(0) : 0;
  } catch (const StoreError&) {
    const int rc = im->last_rc & 0xff;
    if (read_only && (rc == SQLITE_CANTOPEN || rc == SQLITE_READONLY)) {
      // A WAL database in a read-only directory: no -shm can be created.
      im = open_immutable(path);
      return finish_read_only_open(std::move(im));
    }
    if (rc == SQLITE_NOTADB)
      throw StoreError(path +
                       ": is not a Blocklab experiment database (not an SQLite file); "
                       "left untouched");
    if (rc == SQLITE_CORRUPT) throw StoreError(path + ": the database file is corrupt");
    throw;
  }
  {
    Query v(*im, "PRAGMA user_version");
    version = v.step() ? v.i64(0) : 0;
  }
  {
    Query o(*im, "SELECT count(*) FROM sqlite_master");
    objects = o.step() ? o.i64(0) : 0;
  }
  const int64_t current = store::current_schema_version();
  if (app_id != store::kApplicationId) {
    if (app_id != 0 || objects > 0)
      throw StoreError(path +
                       ": is an SQLite database but not a Blocklab experiment database; "
                       "left untouched");
    if (read_only) throw StoreError(path + ": empty database (nothing has been recorded yet)");
  }
  if (version > current)
    throw StoreError(path + ": schema version " + std::to_string(version) +
                     " is newer than this Blocklab build supports (" + std::to_string(current) +
                     "); upgrade Blocklab to open it");

  if (read_only) {
    if (version < current)
      throw StoreError(path + ": schema version " + std::to_string(version) +
                       " is older than this build's (" + std::to_string(current) +
                       "); open it read-write once to upgrade it");
    im->exec("PRAGMA query_only = ON");
    return im;
  }
  if (objects > 0) refuse_damaged(*im, opt.quick_check_s);

  {
    Query j(*im, "PRAGMA journal_mode = WAL");
    const std::string mode = j.step() ? j.text(0) : "";
    if (mode != "wal") throw StoreError(path + ": cannot switch to WAL mode (got '" + mode + "')");
  }
  im->exec("PRAGMA synchronous = NORMAL");
  im->exec("PRAGMA foreign_keys = ON");
  if (opt.max_size_bytes > 0) {
    Query ps(*im, "PRAGMA page_size");
    const int64_t page = ps.step() ? ps.i64(0) : 4096;
    // Not exec(): its statement cache is keyed by the SQL literal's address.
    const std::string sql = "PRAGMA max_page_count = " +
                            std::to_string(std::max<int64_t>(1, opt.max_size_bytes / page));
    if (sqlite3_exec(im->db, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) im->fail(sql);
  }
  store::migrate(im->db, path, store::migrations());
  if (opt.recover_interrupted) {
    try {
      im->recover_interrupted();
    } catch (const StoreError& e) {
      if (!e.busy()) throw;  // another process is writing: the next open marks them
    }
  }
  return im;
}

RunRecord read_run(Query& q) {
  RunRecord r;
  r.id = q.i64(0);
  r.name = q.text(1);
  r.status = parse_run_status(q.text(2)).value_or(RunStatus::kFailed);
  r.status_message = q.text(3);
  r.created_at = q.f64(4);
  r.started_at = q.opt_f64(5);
  r.finished_at = q.opt_f64(6);
  r.model_config = parse_json(q.text(7));
  r.train_config = parse_json(q.text(8));
  r.preset = q.text(9);
  r.dataset_path = q.text(10);
  r.dataset_size = q.opt_i64(11);
  r.dataset_sha256 = q.text(12);
  r.tokenizer = parse_json(q.text(13));
  r.param_count = q.opt_i64(14);
  r.notes = q.text(15);
  r.program_version = q.text(16);
  r.host = q.text(17);
  r.pid = q.null(18) ? 0 : q.i64(18);
  r.parent_run_id = q.opt_i64(19);
  r.summary = parse_json(q.text(20));
  r.machine = parse_json(q.text(21));
  r.uuid = q.text(22);
  r.sweep_id = q.opt_i64(23);
  r.sweep_trial = q.opt_i64(24);
  // Tags arrive as one string joined with the unit separator (0x1f).
  const std::string tags = q.text(25);
  for (size_t b = 0; b < tags.size();) {
    size_t e = tags.find('\x1f', b);
    if (e == std::string::npos) e = tags.size();
    r.tags.push_back(tags.substr(b, e - b));
    b = e + 1;
  }
  return r;
}

#define BL_RUN_COLUMNS                                                                         \
  "id, name, status, status_message, created_at, started_at, finished_at, model_config, "      \
  "train_config, preset, dataset_path, dataset_size, dataset_sha256, tokenizer, param_count, " \
  "notes, program_version, host, pid, parent_run_id, summary, machine, uuid, sweep_id, "       \
  "sweep_trial, "                                                                              \
  "(SELECT group_concat(tag, char(31)) FROM "                                                  \
  "(SELECT tag FROM run_tags WHERE run_id = runs.id ORDER BY tag))"

// Recursive skip-scan over the (run_id, name_id, step) index: one seek per
// distinct metric instead of a scan of every row of the run.
#define BL_RUN_NAME_IDS                                                               \
  "WITH RECURSIVE ids(id) AS ("                                                       \
  " SELECT (SELECT min(name_id) FROM metrics WHERE run_id = ?1)"                      \
  " UNION ALL"                                                                        \
  " SELECT (SELECT min(name_id) FROM metrics WHERE run_id = ?1 AND name_id > ids.id)" \
  " FROM ids WHERE ids.id IS NOT NULL) "

std::vector<std::string> normalized_tags(const std::vector<std::string>& tags) {
  std::vector<std::string> t = tags;
  std::sort(t.begin(), t.end());
  t.erase(std::unique(t.begin(), t.end()), t.end());
  return t;
}

}  // namespace

// ---------------------------------------------------------------------------
namespace {
StoreOptions with_env_cap(StoreOptions o) {
  if (o.max_size_bytes == 0)
    if (const char* v = std::getenv("BLOCKLAB_DB_MAX_BYTES"); v && *v)
      o.max_size_bytes = std::strtoll(v, nullptr, 10);
  return o;
}
}  // namespace

ExperimentStore::ExperimentStore(const std::string& path, const StoreOptions& options)
    : impl_(open_store(path, false, with_env_cap(options))) {
  if (impl_->opt.replay_pending) replay_write_journals(*this);
}

ExperimentStore::ExperimentStore(std::unique_ptr<detail::StoreImpl> impl)
    : impl_(std::move(impl)) {}

ExperimentStore ExperimentStore::open_readonly(const std::string& path) {
  return ExperimentStore(open_store(path, true, {}));
}

ExperimentStore::ExperimentStore(ExperimentStore&&) noexcept = default;
ExperimentStore& ExperimentStore::operator=(ExperimentStore&& o) noexcept {
  if (this != &o) {
    ExperimentStore old(std::move(*this));  // flushes and closes our connection
    impl_ = std::move(o.impl_);
  }
  return *this;
}

ExperimentStore::~ExperimentStore() {
  if (!impl_) return;
  try {
    impl_->flush();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "[store] lost %zu buffered metric rows: %s\n", impl_->pending.size(),
                 e.what());
  }
  impl_.reset();
}

detail::StoreImpl& ExperimentStore::im() {
  if (!impl_) throw StoreError("experiment store is closed");
  return *impl_;
}

void ExperimentStore::close() {
  if (!impl_) return;
  impl_->flush();  // throws with the rows still buffered; the destructor retries
  impl_.reset();
}

const std::string& ExperimentStore::path() const {
  static const std::string closed;
  return impl_ ? impl_->path : closed;
}

bool ExperimentStore::read_only() const {
  return impl_ && impl_->read_only;
}

int64_t ExperimentStore::create_run(const RunRecord& run) {
  detail::StoreImpl& m = im();
  if (run.parent_run_id) m.ensure_run(*run.parent_run_id);
  const double now = unix_now();
  int64_t id = 0;
  m.write([&] {
    {
      Query q(
          m,
          "INSERT INTO runs(name, status, status_message, created_at, started_at, "
          "finished_at, model_config, train_config, preset, dataset_path, dataset_size, "
          "dataset_sha256, tokenizer, param_count, notes, program_version, host, pid, "
          "parent_run_id, summary, machine, uuid, sweep_id, sweep_trial) VALUES (?1, ?2, ?3, ?4, "
          "?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, "
          "?22, ?23, ?24)");
      q.bind(1, run.name)
          .bind(2, run_status_name(run.status))
          .bind(3, run.status_message)
          .bind(4, run.created_at != 0 ? run.created_at : now)
          .bind(5, run.started_at ? *run.started_at : now)
          .bind(6, run.finished_at)
          .bind(7, dump_json(run.model_config))
          .bind(8, dump_json(run.train_config))
          .bind(9, run.preset)
          .bind(10, run.dataset_path)
          .bind(11, run.dataset_size)
          .bind(12, run.dataset_sha256)
          .bind(13, dump_json(run.tokenizer))
          .bind(14, run.param_count)
          .bind(15, run.notes)
          .bind(16,
                run.program_version.empty() ? std::string(BLOCKLAB_VERSION) : run.program_version)
          .bind(17, run.host.empty() ? host_name() : run.host)
          .bind(18, run.pid != 0 ? run.pid : int64_t{getpid()});
      q.bind(19, run.parent_run_id);
      if (run.summary.is_null())
        q.bind(20, std::nullopt);
      else
        q.bind(20, dump_json(run.summary));
      q.bind(21, dump_json(run.machine.empty() ? machine_json() : run.machine));
      q.bind(22, run.uuid.empty() ? new_uuid() : run.uuid);
      q.bind(23, run.sweep_id).bind(24, run.sweep_trial);
      q.run();
    }
    id = sqlite3_last_insert_rowid(m.db);
    for (const std::string& t : normalized_tags(run.tags)) {
      Query q(m, "INSERT INTO run_tags(run_id, tag) VALUES (?1, ?2)");
      q.bind(1, id).bind(2, t).run();
    }
  });
  m.known_runs.push_back(id);
  return id;
}

void ExperimentStore::set_status(int64_t run_id, RunStatus status, const std::string& message) {
  detail::StoreImpl& m = im();
  m.ensure_run(run_id);
  m.write([&] {
    Query q(m, "UPDATE runs SET status = ?2, status_message = ?3 WHERE id = ?1");
    q.bind(1, run_id).bind(2, run_status_name(status)).bind(3, message).run();
  });
}

void ExperimentStore::log_metric(int64_t run_id, int64_t step, double wall_time,
                                 std::string_view name, double value) {
  detail::StoreImpl& m = im();
  m.require_writable();
  m.ensure_run(run_id);
  const int64_t nid = m.name_id(name);
  const auto now = std::chrono::steady_clock::now();
  if (m.pending.empty()) m.oldest_pending = now;
  m.pending.push_back({run_id, nid, step, wall_time, value});
  const bool full = m.pending.size() >= m.flush_at;
  const bool old =
      std::chrono::duration<double>(now - m.oldest_pending).count() >= m.opt.flush_interval_s;
  if (!full && !old) return;
  try {
    m.flush();
  } catch (const StoreError&) {
    // Another writer holds the lock beyond busy_timeout: keep the rows and
    // retry after another batch/interval instead of failing the training step.
    const int rc = m.last_rc & 0xff;
    if (rc != SQLITE_BUSY && rc != SQLITE_LOCKED) throw;
    m.flush_at = m.pending.size() + m.opt.flush_rows;
    m.oldest_pending = now;
  }
}

const StoreOptions& ExperimentStore::options() const {
  static const StoreOptions defaults;
  return impl_ ? impl_->opt : defaults;
}

size_t ExperimentStore::discard_pending() {
  if (!impl_) return 0;
  const size_t n = impl_->pending.size();
  impl_->pending.clear();
  impl_->flush_at = impl_->opt.flush_rows;
  return n;
}

void ExperimentStore::flush() {
  im().flush();
}

size_t ExperimentStore::pending_rows() const {
  return impl_ ? impl_->pending.size() : 0;
}

void ExperimentStore::log_eval(int64_t run_id, int64_t step, std::string_view name, double value) {
  detail::StoreImpl& m = im();
  m.require_writable();
  m.ensure_run(run_id);
  m.write([&] {
    Query q(m, "INSERT INTO evals(run_id, step, name, value) VALUES (?1, ?2, ?3, ?4)");
    q.bind(1, run_id).bind(2, step).bind(3, name).bind(4, value).run();
  });
}

int64_t ExperimentStore::log_sample(int64_t run_id, int64_t step, const std::string& prompt,
                                    const std::string& text, double temperature) {
  detail::StoreImpl& m = im();
  m.require_writable();
  m.ensure_run(run_id);
  int64_t id = 0;
  m.write([&] {
    Query q(m,
            "INSERT INTO samples(run_id, step, prompt, text, temperature, created_at) "
            "VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
    q.bind(1, run_id).bind(2, step).bind(3, prompt).bind(4, text).bind(5, temperature);
    q.bind(6, unix_now()).run();
    id = sqlite3_last_insert_rowid(m.db);
  });
  return id;
}

int64_t ExperimentStore::add_checkpoint(int64_t run_id, int64_t step, const std::string& path,
                                        const std::string& sha256) {
  detail::StoreImpl& m = im();
  m.require_writable();
  m.ensure_run(run_id);
  int64_t id = 0;
  m.write([&] {
    Query q(m,
            "INSERT INTO checkpoints(run_id, step, path, sha256, created_at) "
            "VALUES (?1, ?2, ?3, ?4, ?5)");
    q.bind(1, run_id).bind(2, step).bind(3, path).bind(4, sha256).bind(5, unix_now()).run();
    id = sqlite3_last_insert_rowid(m.db);
  });
  return id;
}

void ExperimentStore::finish_run(int64_t run_id, RunStatus status, const nlohmann::json& summary,
                                 const std::string& message) {
  if (status == RunStatus::kRunning)
    throw std::invalid_argument("[store] finish_run needs a final status, not 'running'");
  detail::StoreImpl& m = im();
  m.require_writable();
  m.ensure_run(run_id);
  m.write([&] {
    Query q(m,
            "UPDATE runs SET status = ?2, status_message = ?3, finished_at = ?4, summary = ?5 "
            "WHERE id = ?1");
    q.bind(1, run_id).bind(2, run_status_name(status)).bind(3, message).bind(4, unix_now());
    if (summary.is_null())
      q.bind(5, std::nullopt);
    else
      q.bind(5, dump_json(summary));
    q.run();
  });
}

void ExperimentStore::set_tags(int64_t run_id, const std::vector<std::string>& tags) {
  detail::StoreImpl& m = im();
  m.require_writable();
  m.ensure_run(run_id);
  m.write([&] {
    {
      Query d(m, "DELETE FROM run_tags WHERE run_id = ?1");
      d.bind(1, run_id).run();
    }
    for (const std::string& t : normalized_tags(tags)) {
      Query q(m, "INSERT INTO run_tags(run_id, tag) VALUES (?1, ?2)");
      q.bind(1, run_id).bind(2, t).run();
    }
  });
}

namespace {
// One text column of an existing run; `sql` binds ?1 = run id, ?2 = value.
void update_run_text(detail::StoreImpl& m, int64_t run_id, const char* sql,
                     const std::string& value) {
  m.require_writable();
  m.ensure_run(run_id);
  m.write([&] {
    Query q(m, sql);
    q.bind(1, run_id).bind(2, value).run();
  });
}
}  // namespace

void ExperimentStore::set_notes(int64_t run_id, const std::string& notes) {
  update_run_text(im(), run_id, "UPDATE runs SET notes = ?2 WHERE id = ?1", notes);
}

void ExperimentStore::set_name(int64_t run_id, const std::string& name) {
  update_run_text(im(), run_id, "UPDATE runs SET name = ?2 WHERE id = ?1", name);
}

void ExperimentStore::set_summary(int64_t run_id, const nlohmann::json& summary) {
  update_run_text(im(), run_id, "UPDATE runs SET summary = ?2 WHERE id = ?1", dump_json(summary));
}

bool ExperimentStore::delete_run(int64_t run_id) {
  detail::StoreImpl& m = im();
  m.require_writable();
  // Buffered rows of this run would violate the foreign key: drop them first.
  std::erase_if(m.pending, [&](const detail::StoreImpl::Row& r) { return r.run_id == run_id; });
  std::erase(m.known_runs, run_id);
  bool deleted = false;
  m.write([&] {
    Query q(m, "DELETE FROM runs WHERE id = ?1");
    q.bind(1, run_id).run();
    deleted = sqlite3_changes(m.db) > 0;
  });
  return deleted;
}

std::vector<RunRecord> ExperimentStore::list_runs(const RunFilter& filter) {
  detail::StoreImpl& m = im();
  m.flush_for_read();
  constexpr const char* kWhere =
      " FROM runs WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR EXISTS "
      "(SELECT 1 FROM run_tags t WHERE t.run_id = runs.id AND t.tag = ?2)) "
      "AND (?4 IS NULL OR sweep_id = ?4) ";
  static const std::string desc =
      std::string("SELECT " BL_RUN_COLUMNS) + kWhere + "ORDER BY id DESC LIMIT ?3";
  static const std::string asc =
      std::string("SELECT " BL_RUN_COLUMNS) + kWhere + "ORDER BY id ASC LIMIT ?3";
  Query q(m, filter.newest_first ? desc.c_str() : asc.c_str());
  if (filter.status)
    q.bind(1, run_status_name(*filter.status));
  else
    q.bind(1, std::nullopt);
  q.bind(2, filter.tag);
  q.bind(3, filter.limit > 0 ? filter.limit : int64_t{-1});
  q.bind(4, filter.sweep_id);
  std::vector<RunRecord> runs;
  while (q.step()) runs.push_back(read_run(q));
  return runs;
}

std::optional<RunRecord> ExperimentStore::get_run(int64_t run_id) {
  detail::StoreImpl& m = im();
  m.flush_for_read();
  Query q(m, "SELECT " BL_RUN_COLUMNS " FROM runs WHERE id = ?1");
  q.bind(1, run_id);
  if (!q.step()) return std::nullopt;
  return read_run(q);
}

MetricSeries ExperimentStore::metrics(int64_t run_id, std::string_view name, int64_t after_step) {
  detail::StoreImpl& m = im();
  m.flush_for_read();
  MetricSeries out;
  // One statement = one short read transaction.
  Query q(m,
          "SELECT step, wall_time, value FROM metrics WHERE run_id = ?1 AND name_id = "
          "(SELECT id FROM metric_names WHERE name = ?2) AND step > ?3 ORDER BY step, rowid");
  q.bind(1, run_id).bind(2, name).bind(3, after_step);
  while (q.step()) {
    out.steps.push_back(q.i64(0));
    out.wall_times.push_back(q.f64(1));
    out.values.push_back(q.f64(2));
  }
  return out;
}

std::vector<std::string> ExperimentStore::metric_names(int64_t run_id) {
  detail::StoreImpl& m = im();
  m.flush_for_read();
  Query q(m, BL_RUN_NAME_IDS
          "SELECT n.name FROM ids JOIN metric_names n ON n.id = ids.id ORDER BY n.name");
  q.bind(1, run_id);
  std::vector<std::string> names;
  while (q.step()) names.push_back(q.text(0));
  return names;
}

std::optional<int64_t> ExperimentStore::latest_step(int64_t run_id) {
  detail::StoreImpl& m = im();
  m.flush_for_read();
  // max over per-metric maxima: each inner max is a single index seek.
  Query q(m, BL_RUN_NAME_IDS
          "SELECT max((SELECT max(step) FROM metrics WHERE run_id = ?1 AND name_id = ids.id)) "
          "FROM ids WHERE ids.id IS NOT NULL");
  q.bind(1, run_id);
  if (!q.step()) return std::nullopt;
  return q.opt_i64(0);
}

std::vector<EvalRecord> ExperimentStore::evals(int64_t run_id, std::string_view name) {
  detail::StoreImpl& m = im();
  m.flush_for_read();
  Query q(m,
          "SELECT step, name, value FROM evals WHERE run_id = ?1 AND (?2 = '' OR name = ?2) "
          "ORDER BY step, name, id");
  q.bind(1, run_id).bind(2, name);
  std::vector<EvalRecord> out;
  while (q.step()) out.push_back({q.i64(0), q.text(1), q.f64(2)});
  return out;
}

std::vector<SampleRecord> ExperimentStore::samples(int64_t run_id) {
  detail::StoreImpl& m = im();
  m.flush_for_read();
  Query q(m,
          "SELECT id, step, prompt, text, temperature, created_at FROM samples "
          "WHERE run_id = ?1 ORDER BY step, id");
  q.bind(1, run_id);
  std::vector<SampleRecord> out;
  while (q.step()) out.push_back({q.i64(0), q.i64(1), q.text(2), q.text(3), q.f64(4), q.f64(5)});
  return out;
}

std::vector<CheckpointRecord> ExperimentStore::checkpoints(int64_t run_id) {
  detail::StoreImpl& m = im();
  m.flush_for_read();
  Query q(m,
          "SELECT id, step, path, sha256, created_at FROM checkpoints "
          "WHERE run_id = ?1 ORDER BY step, id");
  q.bind(1, run_id);
  std::vector<CheckpointRecord> out;
  while (q.step()) out.push_back({q.i64(0), q.i64(1), q.text(2), q.text(3), q.f64(4)});
  return out;
}

int ExperimentStore::schema_version() {
  Query q(im(), "PRAGMA user_version");
  return q.step() ? static_cast<int>(q.i64(0)) : 0;
}

}  // namespace bl
