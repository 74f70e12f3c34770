// Moving runs between experiment databases, for sweeps on machines that do
// not share one: SQLite's WAL needs all its connections on one host, so each
// Slurm task writes a database on its own local disk, publishes a finished
// copy to a shared folder, and `runs import` merges the copies into the main
// store, keyed by run UUID (research.md E.2: only SQLite ever opens the files).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace bl {

/// Publishes the database at `db_path` with its run files (<db dir>/runs/) as
/// `<publish_dir>/<name>/`: a consistent copy made by SQLite (VACUUM INTO) in
/// a hidden temporary directory, then renamed into place, so a reader of
/// publish_dir sees a task's result whole or not at all. Returns the directory.
std::string publish_store(const std::string& db_path, const std::string& publish_dir,
                          const std::string& name);

struct ImportReport {
  int64_t databases = 0;   // read
  int64_t imported = 0;    // runs added
  int64_t duplicates = 0;  // runs already present (same UUID): skipped
  int64_t files_copied = 0;
  std::vector<std::string> problems;  // sources that could not be read, each named
  /// Slurm sweeps ('submitted') whose every trial now has a result: marked completed.
  std::vector<int64_t> sweeps_completed;
};

/// Merges the runs of the databases in `sources` into `target_db`: a source is
/// a database file or a directory searched for *.db files (hidden entries,
/// such as unfinished publishes, are skipped). A run whose UUID the target
/// already has is skipped, so importing again changes nothing. Each run comes
/// with its metrics, evals, samples, checkpoints, tags and sweep (merged by
/// sweep UUID), its status as recorded (running and failed runs too), its
/// parent when the parent is in the target, and its run files copied to the
/// target's runs/<new id>/ with the checkpoint paths pointing there (a run
/// still 'running' in its copy arrives 'interrupted': nothing here will finish
/// it). Each
/// source database is one transaction. A source that cannot be read is named
/// in `problems` and the others are still imported.
ImportReport import_runs(const std::string& target_db, const std::vector<std::string>& sources);

}  // namespace bl
