#pragma once
// Facts about this host and its processes that the stores record and check:
// a run or sweep task whose recorded pid is gone is interrupted, not running.
#include <cstdint>
#include <string>

namespace bl {

/// Seconds since the Unix epoch, as stored in the databases' timestamps.
double unix_now();

/// This machine's host name ("" when it cannot be read).
std::string host_name();

/// True while `pid` runs on this host. A zombie counts as gone (it has stopped
/// for good; in a container it may wait long for a reaper), a pid owned by
/// another user as alive.
bool process_alive(int64_t pid);

}  // namespace bl
