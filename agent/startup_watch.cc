#include "agent/startup_watch.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>

#include <spdlog/spdlog.h>

namespace gut::agent {

StartupWatch::StartupWatch(const std::atomic<bool>* stop, double stop_timeout_s) : stop_(stop) {
  thread_ = std::thread([this, stop_timeout_s] {
    auto stopping = [this] { return stop_ != nullptr && stop_->load(); };
    while (!started_ && !stopping()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    // Leave room for the exit itself: tearing down a LibTorch process took up to 0.8 s with 16
    // agents on 2 cores.
    const auto give_up = std::chrono::steady_clock::now() +
                         std::chrono::duration<double>(std::max(stop_timeout_s / 2, stop_timeout_s - 2));
    while (!started_ && std::chrono::steady_clock::now() < give_up) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (started_) return;
    spdlog::info("stop requested during start-up: leaving before training, nothing to save");
    spdlog::shutdown();
    std::_Exit(0);
  });
}

void StartupWatch::End() {
  started_ = true;
  if (thread_.joinable()) thread_.join();
}

}  // namespace gut::agent
