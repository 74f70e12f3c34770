// SHA-256 manifest of a directory's files (checkpoints, PEFT adapters), so that
// every file is verified before it is loaded, not only the weights: an edited
// learning rate or step in checkpoint.json, a zeroed RNG state or bit flips in
// optimizer.safetensors are refused naming the file (issue 18 C).
//
// manifest.json: {"format": "blocklab-manifest", "version": 1,
//                 "files": {"<name>": "<hex sha256>", ...}} over every regular
// file directly in the directory except manifest.json itself. Whoever records
// the directory (the experiment store) keeps the SHA-256 of manifest.json, so
// rewriting the manifest to match edited files is detected too.
#pragma once

#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace bl {

constexpr const char* kManifestFile = "manifest.json";

/// A file differs from its manifest (or the manifest from its record). what()
/// names the file.
class ManifestError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Hashes every regular file in `dir` (not recursing), or only `files` when
/// given, and writes dir/manifest.json durably (fsync). Returns the SHA-256 of
/// manifest.json. Throws std::runtime_error naming the file on I/O errors;
/// anything hashed that is not a regular file is an error.
std::string write_manifest(const std::string& dir, const std::vector<std::string>& files = {});

/// Whether dir/manifest.json exists (old checkpoints and adapters have none).
bool has_manifest(const std::string& dir);

/// Checks dir/manifest.json against `recorded_sha256` (skipped when empty),
/// then every file it lists against its hash; a file missing or changed (and,
/// with `exact`, a file not listed) is a ManifestError naming it and `what`
/// ("checkpoint", "adapter").
void verify_manifest(const std::string& dir, const std::string& recorded_sha256,
                     const std::string& what, bool exact = true);

}  // namespace bl
