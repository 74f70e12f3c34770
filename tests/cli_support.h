// Runs blocklab-cli as a child process and captures its output and exit code.
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

#include "test_paths.h"  // BLOCKLAB_SOURCE_DIR, BLOCKLAB_CLI_PATH

namespace bl::test {

struct CliResult {
  int exit_code = -1;
  std::string out;  // stdout and stderr, interleaved
  /// Last non-empty line of the output.
  std::string last_line() const {
    size_t end = out.find_last_not_of('\n');
    if (end == std::string::npos) return "";
    size_t start = out.rfind('\n', end);
    return out.substr(start == std::string::npos ? 0 : start + 1,
                      end - (start == std::string::npos ? 0 : start + 1) + 1);
  }
};

/// args are passed through the shell: quote them as needed.
inline CliResult run_cli(const std::string& args, bool merge_stderr = true) {
  std::string cmd =
      std::string(BLOCKLAB_CLI_PATH) + " " + args + (merge_stderr ? " 2>&1" : " 2>/dev/null");
  CliResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

}  // namespace bl::test
