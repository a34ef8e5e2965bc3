#include "core/common/process.h"

#include <malloc.h>
#include <sys/resource.h>
#include <sys/stat.h>

namespace gut::core {

void TuneAllocator() {
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
}

long RaiseFileLimit() {
  rlimit r{};
  if (getrlimit(RLIMIT_NOFILE, &r) != 0) return -1;
  if (r.rlim_cur < r.rlim_max) {
    r.rlim_cur = r.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &r) != 0) return -1;
  }
  return static_cast<long>(r.rlim_cur);
}

unsigned RestrictFileModes() {
  const mode_t old = umask(0);
  const mode_t now = old | 027;
  umask(now);
  return now;
}

double CpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + 1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

}  // namespace gut::core
