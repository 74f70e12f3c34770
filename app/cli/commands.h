// blocklab-cli subcommands. Each returns the process exit code.
#pragma once

#include <string>
#include <vector>

namespace bl::cli {

int train_command(const std::vector<std::string>& argv);
int bench_command(const std::vector<std::string>& argv);
int sample_command(const std::vector<std::string>& argv);
/// runs list | show | export | compare | tag | note | delete (the experiment store).
int runs_command(const std::vector<std::string>& argv);
/// models list | info NAME | count NAME [--detail] (registry, presets, architectures).
int models_command(const std::vector<std::string>& argv);

}  // namespace bl::cli
