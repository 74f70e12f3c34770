// Shared by the fuzzers: the bytes under test go to a file in a per-process
// scratch directory (most readers take a path), and a reader's clean refusal
// (any std::exception) is an expected outcome; crashes, sanitizer reports,
// leaks and timeouts are what libFuzzer reports.
#pragma once

#include <stdlib.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <new>
#include <string>

namespace bl::fuzz {

/// A directory created once per process and removed at exit.
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    std::string tmpl = (std::filesystem::temp_directory_path() / "blocklab_fuzz_XXXXXX").string();
    if (!mkdtemp(tmpl.data())) abort();
    std::filesystem::path p = tmpl;
    static struct Remover {
      std::filesystem::path p;
      ~Remover() {
        std::error_code ec;
        std::filesystem::remove_all(p, ec);
      }
    } remover{p};
    return p;
  }();
  return dir;
}

inline void write_file(const std::filesystem::path& path, const uint8_t* data, size_t size) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(data), std::streamsize(size));
  if (!f) abort();
}

/// Runs `f`; a std::exception is the reader refusing the input, which is fine.
template <class F>
void expect_clean(F&& f) {
  try {
    f();
  } catch (const std::exception&) {
  }
}

/// Like expect_clean, and the refusal must say which file it is about (an
/// error that names nothing misleads, issue 18 C) and must not be bad_alloc
/// (a reader bounds what it allocates by the file's size).
template <class F>
void expect_clean_naming(F&& f, const std::string& file) {
  try {
    f();
  } catch (const std::bad_alloc&) {
    fprintf(stderr, "reader ran out of memory instead of refusing the input\n");
    abort();
  } catch (const std::exception& e) {
    if (std::string(e.what()).find(file) == std::string::npos) {
      fprintf(stderr, "error does not name %s: %s\n", file.c_str(), e.what());
      abort();
    }
  }
}

}  // namespace bl::fuzz
