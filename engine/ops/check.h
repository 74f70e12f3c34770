// Argument checks for ops: throw std::invalid_argument("[op] message").
#pragma once

#include <stdexcept>
#include <string>

namespace bl {

inline void op_check(bool ok, const char* op, const std::string& msg) {
  if (!ok) throw std::invalid_argument(std::string("[") + op + "] " + msg);
}

}  // namespace bl
