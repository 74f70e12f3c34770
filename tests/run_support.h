// Shared by the tests that launch runs on the bundled corpus: the corpus, and
// the message a launch that must fail gives.
#pragma once

#include <exception>
#include <string>

#include "data/text_dataset.h"
#include "run/launcher.h"
#include "test_paths.h"

namespace bl::test {

/// resources/data/tinyshakespeare.txt, read once.
inline const std::string& shakespeare() {
  static const std::string text =
      read_text_file(std::string(BLOCKLAB_SOURCE_DIR) + "/resources/data/tinyshakespeare.txt");
  return text;
}

/// What launch_run(spec) throws ("(no error)" if it launches).
inline std::string launch_error(const RunSpec& spec) {
  try {
    launch_run(spec);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace bl::test
