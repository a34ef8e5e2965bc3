// ThreadPool: a fixed set of worker threads for fork-join loops (ParallelFor). gut-sim runs its
// agents on it, one agent per task, each worker with one compute thread. A per-worker init hook
// runs once on every worker (e.g. to set LibTorch's thread count for that thread).
// ParallelFor may be called from one thread at a time; it returns when every index is done.
#ifndef GUT_CORE_COMMON_THREAD_POOL_H_
#define GUT_CORE_COMMON_THREAD_POOL_H_

#include <atomic>
#include <functional>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace gut::core {

class ThreadPool {
 public:
  // `threads` >= 1 workers; the calling thread takes part in every ParallelFor as worker 0.
  explicit ThreadPool(int threads, std::function<void()> init = nullptr);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }
  // Runs fn(i) for i in [0, n), indices handed out dynamically.
  void ParallelFor(int n, const std::function<void(int)>& fn);
  // Same, and tells fn which worker (0 .. size()-1) runs index i, for per-worker scratch.
  void ParallelForWorker(int n, const std::function<void(int i, int worker)>& fn);

 private:
  void WorkerLoop(int worker);
  void Drain(int worker);

  std::vector<std::thread> workers_;
  absl::Mutex mu_;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  int busy_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  const std::function<void(int, int)>* fn_ = nullptr;
  int n_ = 0;
  std::atomic<int> next_{0};
};

}  // namespace gut::core

#endif  // GUT_CORE_COMMON_THREAD_POOL_H_
