// Durable small writes: the bytes reach the disk (fsync) before the call
// returns, so a checkpoint's checkpoint.json, a manifest or a write-journal
// line is never seen empty or half-written after a crash or power loss.
#pragma once

#include <filesystem>
#include <string>

namespace bl {

/// Writes `content` to `path` (truncating, or appending with `append`) and
/// fsyncs it. Throws std::runtime_error naming the file on any failure.
void write_file_synced(const std::filesystem::path& path, const std::string& content,
                       bool append = false);

}  // namespace bl
