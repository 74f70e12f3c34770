#include "train/system_metrics.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "train/trainer.h"

namespace bl {

namespace {
// Reads a small /proc file into buf (NUL-terminated); false if unreadable.
// open/read rather than fopen: fopen allocates its FILE buffer.
bool read_small(const char* path, char* buf, size_t cap) {
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  size_t n = 0;
  while (n + 1 < cap) {
    const ssize_t r = ::read(fd, buf + n, cap - 1 - n);
    if (r <= 0) break;
    n += size_t(r);
  }
  ::close(fd);
  buf[n] = '\0';
  return n > 0;
}
}  // namespace

ProcessSample sample_process() {
  ProcessSample s;
  rusage ru{};
  if (getrusage(RUSAGE_SELF, &ru) == 0)
    s.cpu_s = double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
              double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
  char buf[4096];
  if (read_small("/proc/self/statm", buf, sizeof buf)) {
    // "size resident shared ...", in pages.
    char* end = nullptr;
    std::strtoll(buf, &end, 10);
    const long long resident = std::strtoll(end, nullptr, 10);
    s.rss_mb = double(resident) * double(sysconf(_SC_PAGESIZE)) / (1024.0 * 1024.0);
  }
  if (read_small("/proc/self/status", buf, sizeof buf))
    if (const char* t = std::strstr(buf, "\nThreads:")) s.threads = std::atoi(t + 9);
  return s;
}

void SystemMetrics::on_train_begin(Trainer&) {
  last_wall_ = Clock::now();
  last_cpu_s_ = sample_process().cpu_s;
  samples_ = 0;
}

void SystemMetrics::on_step_metrics(Trainer& t, StepMetrics& m) {
  const auto now = Clock::now();
  const double wall_s = std::chrono::duration<double>(now - last_wall_).count();
  // The first step (a point early in every run), then every period, and the
  // last step of the horizon (a stop or budget end may go unsampled).
  const bool last = t.step() >= t.horizon();
  if (samples_ > 0 && wall_s < period_s_ && !last) return;
  const ProcessSample s = sample_process();
  // CPU % over the interval since the previous sample: 100 per busy core.
  const double cpu = wall_s > 0 ? 100.0 * (s.cpu_s - last_cpu_s_) / wall_s : 0.0;
  set_extra(m, "sys/cpu_percent", cpu);
  if (s.rss_mb > 0) set_extra(m, "sys/rss_mb", s.rss_mb);
  if (s.threads > 0) set_extra(m, "sys/threads", double(s.threads));
  last_wall_ = now;
  last_cpu_s_ = s.cpu_s;
  ++samples_;
}

}  // namespace bl
