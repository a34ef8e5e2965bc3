#include "core/common/thread_pool.h"

namespace gut::core {

ThreadPool::ThreadPool(int threads, std::function<void()> init) {
  if (init) init();
  for (int t = 1; t < threads; ++t) {
    workers_.emplace_back([this, init, t] {
      if (init) init();
      WorkerLoop(t);
    });
  }
}

ThreadPool::~ThreadPool() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  for (auto& w : workers_) w.join();
}

void ThreadPool::Drain(int worker) {
  for (int i = next_.fetch_add(1); i < n_; i = next_.fetch_add(1)) (*fn_)(i, worker);
}

void ThreadPool::WorkerLoop(int worker) {
  uint64_t seen = 0;
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this, &seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stop_ || generation_ != seen;
      };
      mu_.Await(absl::Condition(&ready));
      if (stop_) return;
      seen = generation_;
    }
    Drain(worker);
    absl::MutexLock lock(&mu_);
    --busy_;
  }
}

void ThreadPool::ParallelFor(int n, const std::function<void(int)>& fn) {
  ParallelForWorker(n, [&fn](int i, int) { fn(i); });
}

void ThreadPool::ParallelForWorker(int n, const std::function<void(int, int)>& fn) {
  if (workers_.empty() || n <= 1) {
    for (int i = 0; i < n; ++i) fn(i, 0);
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    fn_ = &fn;
    n_ = n;
    next_.store(0);
    busy_ = static_cast<int>(workers_.size());
    ++generation_;
  }
  Drain(0);
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(+[](int* b) { return *b == 0; }, &busy_));
  fn_ = nullptr;
}

}  // namespace gut::core
