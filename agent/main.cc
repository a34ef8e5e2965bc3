// gut-agentd: one agent of a decentralised run (see agent/agent.h).
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>

#include <CLI/CLI.hpp>
#include "absl/synchronization/mutex.h"
#include <spdlog/spdlog.h>

#include "agent/agent.h"
#include "core/common/process.h"

namespace {
std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"gut-agentd: one agent of a gut run; joins the coordinator, trains, gossips with its neighbours"};
  gut::agent::AgentOptions o;
  app.add_option("--coordinator", o.coordinator, "coordinator address host:port")->required();
  app.add_option("--listen", o.listen, "peer service address (port 0: pick one)")->capture_default_str();
  app.add_option("--advertise", o.advertise, "address neighbours dial (default 127.0.0.1:<port>)");
  app.add_option("--data-dir", o.data_dir, "data set directory (overrides the manifest's data.path)");
  app.add_flag("--local-data", o.local_data, "train on all of --data-dir's training set instead of a partition share");
  app.add_option("--checkpoint-dir", o.checkpoint_dir, "directory for params-final.f32 and this agent's metrics.csv");
  app.add_option("--metrics", o.metrics_address, "serve Prometheus /metrics on this address, e.g. 0.0.0.0:9100");
  app.add_option("--metrics-advertise", o.metrics_advertise, "scrape address to register at the coordinator");
  app.add_option("--name", o.name, "agent name (default hostname-pid); a rejoin under the same name keeps its rank");
  app.add_option("--rank", o.rank, "request this rank (e.g. a StatefulSet ordinal); -1: any")->capture_default_str();
  app.add_option("--threads", o.threads, "LibTorch intra-op threads")->capture_default_str();
  app.add_option("--compute-nice", o.compute_nice,
                 "nice value of the training thread, so that network threads run first (0: unchanged)")
      ->capture_default_str();
  app.add_option("--join-timeout-s", o.join_timeout_s, "give up joining after this long")->capture_default_str();
  app.add_option("--stop-timeout-s", o.stop_timeout_s, "shut down within this long after SIGTERM")->capture_default_str();
  app.add_option("--report-flush-s", o.report_flush_s, "at the end, wait this long for undelivered reports")
      ->capture_default_str();
  app.add_option("--heartbeat-s", o.heartbeat_s, "seconds between heartbeats to the coordinator")->capture_default_str();
  app.add_flag("--fast-failure-detection", o.fast_failure_detection, "1 s keepalive (tests)");
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  // Debian's Abseil keeps mutex deadlock detection on (a graph update on every lock).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  spdlog::set_level(spdlog::level::from_str(log_level));
  spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
  gut::core::TuneAllocator();
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  const int code = gut::agent::RunAgent(o, &g_stop);
  // Everything that matters is written and every stream is closed; skip static destructors
  // (see RunAgent).
  spdlog::shutdown();
  std::fflush(nullptr);
  std::_Exit(code);
}
