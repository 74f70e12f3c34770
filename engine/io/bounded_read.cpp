#include "io/bounded_read.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace bl {

std::string read_regular_file(const std::string& path, int64_t max_bytes) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) throw std::runtime_error(path + ": cannot open file (no such file)");
  if (!fs::is_regular_file(st))
    throw std::runtime_error(path + ": not a regular file (" +
                             (fs::is_directory(st) ? std::string("a directory")
                              : fs::is_fifo(st)    ? std::string("a FIFO")
                                                   : std::string("a device or special file")) +
                             "); only regular files are read");
  const auto size = fs::file_size(path, ec);
  if (ec) throw std::runtime_error(path + ": cannot read its size (" + ec.message() + ")");
  if (int64_t(size) > max_bytes)
    throw std::runtime_error(path + ": " + std::to_string(size) + " bytes, more than the " +
                             std::to_string(max_bytes) + " this file may have");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open (" + std::strerror(errno) + ")");
  std::string text(size_t(size), '\0');
  in.read(text.data(), std::streamsize(size));
  if (in.gcount() != std::streamsize(size))
    throw std::runtime_error(path + ": read " + std::to_string(in.gcount()) + " of " +
                             std::to_string(size) + " bytes (changed while reading?)");
  return text;
}

int json_nesting_depth(std::string_view text, int limit) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (const char ch : text) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (ch == '\\')
        escaped = true;
      else if (ch == '"')
        in_string = false;
      continue;
    }
    if (ch == '"') {
      in_string = true;
    } else if (ch == '[' || ch == '{') {
      if (++depth > deepest && (deepest = depth) > limit) return deepest;
    } else if (ch == ']' || ch == '}') {
      --depth;
    }
  }
  return deepest;
}

void check_json_depth(std::string_view text, const std::string& what) {
  if (json_nesting_depth(text, kMaxJsonDepth) > kMaxJsonDepth)
    throw std::runtime_error(what + ": JSON nested deeper than " + std::to_string(kMaxJsonDepth) +
                             " levels (refused before parsing)");
}

}  // namespace bl
