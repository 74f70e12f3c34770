#include "train/rewards.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace bl {

namespace {

std::string first_line(const std::string& s) {
  return s.substr(0, s.find('\n'));
}

std::string quoted(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

double run_command(const std::string& cmd, const std::string& prompt, const std::string& completion,
                   const std::string& target) {
  // The completion goes through a file: popen's pipe is one-way.
  char path[] = "/tmp/blocklab_reward_XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) throw std::runtime_error("reward cmd: cannot create a temporary file");
  const bool wrote = write(fd, completion.data(), completion.size()) == ssize_t(completion.size());
  close(fd);
  std::string out;
  int status = -1;
  if (wrote) {
    const std::string line = "BLOCKLAB_PROMPT=" + quoted(prompt) +
                             " BLOCKLAB_TARGET=" + quoted(target) + " /bin/sh -c " + quoted(cmd) +
                             " < " + path;
    if (FILE* p = popen(line.c_str(), "r")) {
      char buf[256];
      size_t got;
      while ((got = fread(buf, 1, sizeof buf, p)) > 0 && out.size() < 4096) out.append(buf, got);
      status = pclose(p);
    }
  }
  unlink(path);
  if (!wrote) throw std::runtime_error("reward cmd: cannot write the completion");
  if (status != 0)
    throw std::runtime_error("reward command '" + cmd + "' failed (exit status " +
                             std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : -1) +
                             "); it must print a number and exit 0");
  char* end = nullptr;
  const double v = std::strtod(out.c_str(), &end);
  if (end == out.c_str() || !std::isfinite(v))
    throw std::runtime_error("reward command '" + cmd + "' printed no number (\"" +
                             first_line(out).substr(0, 80) + "\")");
  return v;
}

}  // namespace

Reward Reward::parse(const std::string& spec) {
  Reward r;
  r.spec_ = spec;
  const size_t colon = spec.find(':');
  const std::string kind = spec.substr(0, colon);
  const std::string arg = colon == std::string::npos ? "" : spec.substr(colon + 1);
  const std::string forms = " (exact, regex:PATTERN, length:N or cmd:COMMAND)";
  if (kind == "exact" && colon == std::string::npos) {
    r.kind_ = Kind::kExact;
  } else if (kind == "regex" && !arg.empty()) {
    r.kind_ = Kind::kRegex;
    try {
      r.regex_ = std::regex(arg, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      throw std::invalid_argument("reward " + spec + ": bad pattern (" + e.what() + ")");
    }
  } else if (kind == "length" && !arg.empty()) {
    r.kind_ = Kind::kLength;
    char* end = nullptr;
    r.length_ = std::strtod(arg.c_str(), &end);
    if (*end != '\0' || !(r.length_ >= 1) || !std::isfinite(r.length_))
      throw std::invalid_argument("reward " + spec + ": N must be a number >= 1");
  } else if (kind == "cmd" && !arg.empty()) {
    r.kind_ = Kind::kCommand;
  } else {
    throw std::invalid_argument("unknown reward '" + spec + "'" + forms);
  }
  r.arg_ = arg;
  return r;
}

double Reward::operator()(const std::string& prompt, const std::string& completion,
                          const std::string& target) const {
  switch (kind_) {
    case Kind::kExact:
      return first_line(completion) == target ? 1.0 : 0.0;
    case Kind::kRegex:
      return std::regex_search(completion, regex_) ? 1.0 : 0.0;
    case Kind::kLength:
      return std::max(0.0,
                      1.0 - std::fabs(double(first_line(completion).size()) - length_) / length_);
    case Kind::kCommand:
      return run_command(arg_, prompt, completion, target);
  }
  return 0.0;
}

}  // namespace bl
