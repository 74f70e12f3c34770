#include "run/memory_estimate.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "core/arch_analysis.h"

namespace bl {

namespace {

/// fp32 values of optimizer state per trainable weight (train/optimizers/).
double optimizer_floats(const TrainConfig& t) {
  if (t.optimizer == "adamw") return 2;  // first and second moments
  if (t.optimizer == "sgd") return t.momentum > 0 ? 1 : 0;
  return 1;  // lion: momentum; adafactor: factored moments, bounded by one
}

std::string gb(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GB", bytes / 1e9);
  return buf;
}

}  // namespace

MemoryEstimate estimate_training_memory(const ModelConfig& m, const TrainConfig& t,
                                        int64_t trainable) {
  const ArchAnalysis a = analyse_architecture(m, t.seq_len, t.batch_size);
  MemoryEstimate e;
  const double params = double(a.total.params);
  const double train_params = trainable < 0 ? params : double(trainable);
  e.weight_bytes = a.total.weight_bytes;
  e.gradient_bytes = 4.0 * train_params;
  e.optimizer_bytes = 4.0 * train_params * optimizer_floats(t);
  e.activation_bytes = a.total.activation_bytes;
  return e;
}

int64_t machine_memory_bytes() {
  if (const char* limit = std::getenv("BLOCKLAB_MEMORY_LIMIT_MB"))
    if (const long long mb = std::atoll(limit); mb > 0) return int64_t(mb) << 20;
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("MemTotal:", 0) == 0) {
      std::istringstream s(line.substr(9));
      long long kb = 0;
      if (s >> kb && kb > 0) return int64_t(kb) * 1024;
    }
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? int64_t(pages) * int64_t(page) : 0;
}

std::vector<std::string> memory_errors(const MemoryEstimate& e, int64_t available) {
  if (available <= 0 || e.total() <= double(available)) return {};
  return {"memory: training this model needs about " + gb(e.total()) + " (weights " +
          gb(e.weight_bytes) + ", gradients " + gb(e.gradient_bytes) + ", optimizer state " +
          gb(e.optimizer_bytes) + ", activations " + gb(e.activation_bytes) +
          ") but this machine has " + gb(double(available)) +
          " of RAM; reduce model.block.d_model, model.n_layers, train.batch_size or "
          "train.seq_len"};
}

}  // namespace bl
