// Reading files and JSON that may be hostile: regular files only (a FIFO
// would block forever, /dev/zero would read until memory runs out), a size
// limit, and JSON nesting bounded before it is parsed (nlohmann's dump() and
// destructors recurse: a deeply nested file would overflow the stack).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace bl {

/// The contents of `path`, which must be a regular file (links are followed)
/// of at most max_bytes. Throws std::runtime_error naming the file and the
/// rule otherwise.
std::string read_regular_file(const std::string& path, int64_t max_bytes);

/// Deepest nesting of arrays and objects in JSON text (string contents do not
/// count); stops counting past `limit`.
int json_nesting_depth(std::string_view text, int limit);

/// The most levels of nested arrays and objects the engine accepts.
constexpr int kMaxJsonDepth = 64;

/// Throws std::runtime_error("<what>: JSON nested deeper than 64 levels")
/// when text nests more than kMaxJsonDepth levels.
void check_json_depth(std::string_view text, const std::string& what);

}  // namespace bl
