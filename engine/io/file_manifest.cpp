#include "io/file_manifest.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "io/bounded_read.h"
#include "io/sha256.h"
#include "io/synced_file.h"

namespace bl {
namespace fs = std::filesystem;

namespace {

constexpr const char* kFormat = "blocklab-manifest";

void hash_one(const fs::path& file, std::map<std::string, std::string>& out) {
  std::error_code ec;
  if (!fs::is_regular_file(fs::symlink_status(file, ec)))
    throw ManifestError(file.string() + ": not a regular file");
  out[file.filename().string()] = sha256_file(file.string());
}

std::map<std::string, std::string> hash_files(const fs::path& dir,
                                              const std::vector<std::string>& only = {}) {
  std::map<std::string, std::string> files;
  for (const std::string& name : only) hash_one(dir / name, files);
  if (!only.empty()) return files;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name == kManifestFile) continue;
    hash_one(e.path(), files);
  }
  if (ec) throw std::runtime_error("cannot list " + dir.string() + ": " + ec.message());
  return files;
}

}  // namespace

std::string write_manifest(const std::string& dir, const std::vector<std::string>& files) {
  const nlohmann::json j = {{"format", kFormat}, {"version", 1}, {"files", hash_files(dir, files)}};
  const std::string text = j.dump(2) + "\n";
  write_file_synced(fs::path(dir) / kManifestFile, text);
  return sha256_hex(text);
}

bool has_manifest(const std::string& dir) {
  std::error_code ec;
  return fs::exists(fs::path(dir) / kManifestFile, ec);
}

void verify_manifest(const std::string& dir, const std::string& recorded_sha256,
                     const std::string& what, bool exact) {
  const fs::path mpath = fs::path(dir) / kManifestFile;
  std::string text;
  try {
    text = read_regular_file(mpath.string(), int64_t(1) << 20);
  } catch (const std::exception& e) {
    throw ManifestError(e.what());
  }
  const std::string changed =
      ": SHA-256 differs from the one recorded when the " + what +
      " was saved (the file was modified or is corrupt); refusing to load it";
  if (!recorded_sha256.empty() && sha256_hex(text) != recorded_sha256)
    throw ManifestError(mpath.string() + changed);
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || j.value("format", "") != kFormat ||
      !j.contains("files") || !j["files"].is_object())
    throw ManifestError(mpath.string() + ": not a Blocklab file manifest");
  std::map<std::string, std::string> listed;
  for (auto& [name, sha] : j["files"].items()) {
    if (!sha.is_string()) throw ManifestError(mpath.string() + ": bad entry for " + name);
    listed[name] = sha.get<std::string>();
  }
  std::map<std::string, std::string> actual;
  try {
    std::vector<std::string> names;
    if (!exact)
      for (const auto& [name, sha] : listed) names.push_back(name);
    actual = exact ? hash_files(dir) : std::map<std::string, std::string>{};
    for (const std::string& name : names) {
      std::error_code ec;
      if (fs::exists(fs::symlink_status(fs::path(dir) / name, ec)))
        hash_one(fs::path(dir) / name, actual);
    }
  } catch (const ManifestError&) {
    throw;
  } catch (const std::exception& e) {
    throw ManifestError(e.what());
  }
  for (const auto& [name, sha] : listed) {
    auto it = actual.find(name);
    const std::string file = (fs::path(dir) / name).string();
    if (it == actual.end())
      throw ManifestError(file + ": missing (listed in " + mpath.string() + ")");
    if (it->second != sha) throw ManifestError(file + changed);
  }
  for (const auto& [name, sha] : actual)
    if (!listed.count(name))
      throw ManifestError((fs::path(dir) / name).string() + ": not part of the " + what +
                          " as saved (not in " + mpath.string() + "); refusing to load it");
}

}  // namespace bl
