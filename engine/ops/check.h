// Argument checks for ops: throw std::invalid_argument("[op] message").
// A macro so the message (often built from shapes) is only assembled on failure:
// a passing check costs one branch and never allocates.
#pragma once

#include <stdexcept>
#include <string>

namespace bl {

[[noreturn]] inline void op_fail(const char* op, const std::string& msg) {
  throw std::invalid_argument(std::string("[") + op + "] " + msg);
}

}  // namespace bl

#define op_check(cond, op, msg)      \
  do {                               \
    if (!(cond)) ::bl::op_fail(op, msg); \
  } while (0)
