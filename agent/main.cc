// gut-agentd: one agent of a decentralised run (see agent/agent.h; flags: --help; exit codes:
// 0 done or stopped on request, 1 the run failed, 2 bad flags or input).
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>

#include <spdlog/spdlog.h>

#include "absl/synchronization/mutex.h"
#include "agent/agent.h"
#include "core/common/cli.h"
#include "core/common/numerics.h"
#include "core/common/process.h"
#include "core/exchange/forgery.h"
#include "services/library_logs.h"
#include "services/tls.h"

namespace {
std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"gut-agentd: one agent of a gut run; joins the coordinator, trains, gossips with its neighbours"};
  app.set_version_flag("");  // replaced by AddCommonFlags
  gut::agent::AgentOptions o;
  gut::core::LogOptions log;
  app.add_option("--coordinator", o.coordinator, "coordinator address host:port")->required();
  app.add_option("--listen", o.listen, "peer service address; port 0 picks one; a non-loopback address needs TLS "
                                       "or --insecure, and --advertise")->capture_default_str();
  app.add_option("--advertise", o.advertise, "address the neighbours dial (default: the --listen address)");
  app.add_option("--health-listen", o.health_listen, "plaintext grpc.health.v1 only, for Kubernetes probes (off by default)");
  app.add_option("--tls-ca", o.tls_ca, "PEM CA certificate of the run (mutual TLS on every channel)");
  app.add_option("--tls-cert", o.tls_cert, "PEM certificate of this agent; its common name is the agent's name");
  app.add_option("--tls-key", o.tls_key, "PEM private key of --tls-cert");
  app.add_flag("--insecure", o.insecure, "allow plaintext on a non-loopback address");
  app.add_option("--join-token-file", o.join_token_file, "file holding the coordinator's join token");
  app.add_option("--data-dir", o.data_dir, "data set directory (overrides the manifest's data.path)");
  app.add_option("--model", o.model_file,
                 "model.name: torchscript: this agent's own copy of the run's model file (default: the coordinator's)");
  app.add_flag("--local-data", o.local_data, "train on all of --data-dir's training set instead of a partition share");
  app.add_option("--checkpoint-dir", o.checkpoint_dir, "checkpoints, params-final.f32, model-final.pt, metrics.csv, metrics.prom");
  app.add_option("--metrics", o.metrics_address, "serve Prometheus /metrics on this address, e.g. 127.0.0.1:9100");
  app.add_option("--metrics-advertise", o.metrics_advertise, "scrape address to register at the coordinator");
  app.add_option("--name", o.name, "agent name (default: the certificate's name, else hostname-pid); a rejoin under "
                                   "the same name keeps its rank");
  app.add_option("--rank", o.rank, "request this rank (e.g. a StatefulSet ordinal); -1: any")->capture_default_str();
  app.add_option("--threads", o.threads, "LibTorch intra-op threads")->capture_default_str()->check(CLI::Range(1, 256));
  app.add_option("--compute-nice", o.compute_nice,
                 "nice value of the training thread, so that network threads run first (0: unchanged)")
      ->capture_default_str();
  app.add_option("--join-timeout-s", o.join_timeout_s, "give up joining after this long")->capture_default_str();
  app.add_option("--stop-timeout-s", o.stop_timeout_s, "shut down within this long after SIGTERM")->capture_default_str();
  app.add_option("--report-flush-s", o.report_flush_s, "at the end, wait this long for undelivered reports")
      ->capture_default_str();
  app.add_option("--heartbeat-s", o.heartbeat_s, "seconds between heartbeats to the coordinator")->capture_default_str();
  app.add_flag("--fast-failure-detection", o.fast_failure_detection, "1 s keepalive (tests)");
  bool public_metrics = false;
  app.add_flag("--public-metrics", public_metrics,
               "allow --metrics and --health-listen on a non-loopback address (they have no authentication)");
  std::string forge;
  app.add_option("--inject-forged-updates", forge,
                 "drill: play a hostile agent, MODE:FROM_ROUND:ROUNDS with MODE huge (1e30), zeros or negate10 "
                 "(the honest update times -10); the neighbours must refuse every forged message")
      ->check([](const std::string& v) -> std::string {
        auto f = gut::core::ParseForgery(v);
        return f.ok() ? "" : std::string(f.status().message());
      });
  gut::core::AddCommonFlags(app, "gut-agentd", &log);
  if (const int code = gut::core::Parse(app, argc, argv); code >= 0) return code;
  if (!forge.empty()) o.forge = *gut::core::ParseForgery(forge);
  if (auto s = gut::services::RequirePublicFlag(o.metrics_address, o.health_listen, public_metrics); !s.ok()) {
    std::fprintf(stderr, "%s\n", std::string(s.message()).c_str());
    return 2;
  }
  gut::core::SetProgramArguments(argc, argv);
  // Debian's Abseil keeps mutex deadlock detection on (a graph update on every lock).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  gut::core::SetupLogging(log, o.name.empty() ? "gut-agentd" : o.name);
  gut::services::RouteLibraryLogsToSpdlog();
  gut::core::RaiseFileLimit();
  gut::core::RestrictFileModes();
  gut::core::TuneAllocator();
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  const int code = gut::agent::RunAgent(o, &g_stop);
  // Everything that matters is written and every stream is closed: skip static destructors.
  spdlog::shutdown();
  std::fflush(nullptr);
  std::_Exit(code);
}
