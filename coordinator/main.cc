// gut-coordinator: bootstraps one run (ranks, neighbours, hyperparameters), watches over it
// (heartbeats, recovery after a crash, the fault policy), collects the agents' metrics and writes
// the run's metrics.csv, metrics.svg and summary.json. Never on the data path.
#include <csignal>
#include <optional>
#include <cstdio>
#include <fstream>
#include <iostream>

#include <CLI/CLI.hpp>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/coordinator_metrics.h"
#include "coordinator/coordinator_service.h"
#include "coordinator/status_page.h"
#include "core/common/atomic_file.h"
#include "core/common/cli.h"
#include "core/common/log_context.h"
#include "core/common/process.h"
#include "core/config/exchange_settings.h"
#include "core/report/epoch_log.h"
#include "services/grpc_options.h"
#include "services/health_server.h"
#include "services/library_logs.h"
#include "services/metrics.h"
#include "services/restarting_server.h"
#include "services/tls.h"

namespace {
volatile std::sig_atomic_t g_signal = 0;
void OnSignal(int sig) { g_signal = sig; }
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"gut-coordinator: bootstrap, recovery and metrics for a gut run (never sees parameters)"};
  app.set_version_flag("");  // replaced by AddCommonFlags
  std::string manifest, out_dir, listen = "127.0.0.1:7070", port_file, metrics_address, run_id, token_file;
  gut::services::TlsFiles tls_files;
  bool insecure = false;
  gut::core::LogOptions log;
  std::vector<std::string> overrides;
  bool print_config = false, print_num_agents = false, resume = false;
  double join_timeout_s = 600, run_timeout_s = 7 * 24 * 3600.0, linger_s = 3, heartbeat_timeout_s = 5;
  app.add_option("--manifest", manifest, "run manifest (YAML), same schema as gut-sim")->required();
  app.add_option("--set", overrides, "override a manifest key, e.g. --set run.epochs=1 (repeatable)");
  app.add_option("--out", out_dir, "output directory: metrics.csv, metrics.svg, summary.json, agents.json, state");
  app.add_flag("--resume", resume, "carry on the run saved in --out (after a coordinator crash or a stop)");
  app.add_option("--listen", listen, "address of the Coordinator service; port 0 picks one; a non-loopback address "
                                     "needs TLS or --insecure")->capture_default_str();
  app.add_option("--tls-ca", tls_files.ca, "PEM CA certificate of the run (mutual TLS: agents must present one)");
  app.add_option("--tls-cert", tls_files.cert, "PEM certificate of the coordinator");
  app.add_option("--tls-key", tls_files.key, "PEM private key of --tls-cert");
  app.add_flag("--insecure", insecure, "allow plaintext on a non-loopback address");
  bool require_rank_binding = false;
  app.add_flag("--require-rank-binding", require_rank_binding,
               "TLS: admit only agent certificates bound to a rank (spiffe://gut/agent/rank/K), each to its rank");
  app.add_option("--port-file", port_file, "write the bound port here once listening");
  app.add_option("--metrics", metrics_address, "serve Prometheus /metrics and the status page on this address (empty: off)");
  std::string health_listen;
  app.add_option("--health-listen", health_listen, "plaintext grpc.health.v1 only, for Kubernetes probes (off by default)");
  app.add_option("--run-id", run_id, "run id (default: run name + random suffix)");
  app.add_option("--join-token-file", token_file, "require this file's contents (one line) as the join token");
  app.add_option("--join-timeout-s", join_timeout_s, "bootstrap barrier limit")->capture_default_str();
  app.add_option("--heartbeat-timeout-s", heartbeat_timeout_s, "an agent silent this long is lost")->capture_default_str();
  app.add_option("--run-timeout-s", run_timeout_s, "give up when the run has not finished by then")->capture_default_str();
  app.add_option("--linger-s", linger_s, "keep serving this long after the run ends (late leaves)")->capture_default_str();
  bool public_metrics = false;
  app.add_flag("--public-metrics", public_metrics,
               "allow --metrics and --health-listen on a non-loopback address (they have no authentication)");
  app.add_flag("--print-config", print_config, "print the resolved manifest and exit");
  app.add_flag("--print-num-agents", print_num_agents, "print the number of agents and exit (launchers)");
  gut::core::AddCommonFlags(app, "gut-coordinator", &log);
  if (const int code = gut::core::Parse(app, argc, argv); code >= 0) return code;
  // Debian's Abseil keeps mutex deadlock detection on (a graph update on every lock).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  gut::core::SetupLogging(log, "coordinator");
  gut::services::RouteLibraryLogsToSpdlog();
  if (auto s = gut::services::RequirePublicFlag(metrics_address, health_listen, public_metrics); !s.ok()) {
    spdlog::error("{}", std::string(s.message()));
    return 2;
  }
  gut::core::RaiseFileLimit();
  gut::core::RestrictFileModes();

  gut::core::RunConfig config;
  if (const int code = gut::core::LoadManifestForMain(manifest, overrides, print_config, &config); code >= 0) return code;
  if (print_num_agents) {
    std::cout << config.num_agents << "\n";
    return 0;
  }
  if (out_dir.empty()) {
    spdlog::error("--out is required");
    return 2;
  }
  std::optional<gut::services::TlsMaterial> tls;
  if (tls_files.enabled()) {
    auto m = gut::services::LoadTls(tls_files, gut::services::Role::kCoordinator);
    if (!m.ok()) {
      spdlog::error("{}", std::string(m.status().message()));
      return 2;
    }
    tls = std::move(*m);
  }
  if (auto s = gut::services::RequireSecureListen("--listen", listen, tls.has_value(), insecure); !s.ok()) {
    spdlog::error("{}", std::string(s.message()));
    return 2;
  }
  if (insecure && !gut::services::IsLoopback(listen)) spdlog::warn("--insecure: plaintext on {}", listen);
  gut::coordinator::CoordinatorOptions opt;
  opt.out_dir = out_dir;
  opt.join_timeout = absl::Seconds(join_timeout_s);
  opt.run_id = run_id;
  opt.resume = resume;
  opt.heartbeat_timeout = absl::Seconds(heartbeat_timeout_s);
  opt.require_identity = tls.has_value();
  if (require_rank_binding && !tls) {
    spdlog::error("--require-rank-binding needs TLS (--tls-ca, --tls-cert, --tls-key): ranks are bound to "
                  "certificates");
    return 2;
  }
  opt.require_rank_binding = require_rank_binding;
  if (!token_file.empty()) {
    auto token = gut::core::ReadWholeFile(token_file);
    if (!token.ok()) {
      spdlog::error("--join-token-file: {}", std::string(token.status().message()));
      return 2;
    }
    opt.join_token = token->substr(0, token->find_first_of("\r\n"));
    if (opt.join_token.empty()) {
      spdlog::error("--join-token-file {} is empty", token_file);
      return 2;
    }
  }
  if (config.deadline_s <= heartbeat_timeout_s + 1) {
    spdlog::warn("exchange.deadline_s ({} s) is not above --heartbeat-timeout-s ({} s) + 1 s: the neighbours of an "
                 "agent that hangs with its streams open give up before this coordinator notices it is gone",
                 config.deadline_s, heartbeat_timeout_s);
  }
  auto svc = gut::coordinator::CoordinatorService::Create(config, opt);
  if (!svc.ok()) {
    if (svc.status().code() == absl::StatusCode::kAlreadyExists) {
      spdlog::info("{}", std::string(svc.status().message()));
      return 0;
    }
    spdlog::error("{}", std::string(svc.status().message()));
    return 2;
  }
  auto& service = **svc;

  std::unique_ptr<gut::services::MetricsEndpoint> metrics;
  std::unique_ptr<gut::coordinator::CoordinatorMetrics> gauges;
  if (!metrics_address.empty()) {
    auto m = gut::services::MetricsEndpoint::Start(metrics_address);
    if (!m.ok()) {
      spdlog::error("{}", std::string(m.status().message()));
      return 2;
    }
    metrics = std::move(*m);
    gauges = std::make_unique<gut::coordinator::CoordinatorMetrics>(metrics->registry(), config, service.run_id(),
                                                                      gut::kVersion);
    service.OnChange([&](const gut::coordinator::CoordinatorView& v) { gauges->Update(v); });
    metrics->AddCollectable(gut::services::CounterCollector(
        "gut_coordinator_tls_handshake_failures_total", "TLS handshakes that failed on the coordinator's gRPC port.",
        [] { return static_cast<double>(gut::services::TlsHandshakeFailures()); }));
    metrics->Serve(
        "/", [] { return std::make_pair(std::string("text/html; charset=utf-8"), gut::coordinator::StatusPageHtml()); },
        {{"Content-Security-Policy", gut::coordinator::StatusPageCsp()}});
    metrics->Serve("/status.json", [&service] {
      return std::make_pair(std::string("application/json"), gut::coordinator::StatusJson(service.View()));
    });
    const std::string bound = metrics_address.substr(0, metrics_address.rfind(':'));
    const std::string host = bound.empty() || bound == "0.0.0.0" ? "127.0.0.1" : bound;
    service.SetMetricsAddress(absl::StrCat(host, ":", metrics->port()));
    spdlog::info("metrics on http://{}:{}/metrics (bound to {}:{})", host, metrics->port(), bound, metrics->port());
  }
  gut::core::SetLogRunId(service.run_id());
  service.OnEpoch([metric = gut::report::Metric::For(config)](const gut::report::EpochRecord& r) {
    gut::report::LogEpochLine(r, metric);
  });

  grpc::EnableDefaultHealthCheckService(true);
  // Comes back after gRPC gives its port up for lack of file descriptors (restarting_server.h).
  auto server = gut::services::RestartingServer::Start(
      listen, gut::services::ServerCredentials(tls ? &*tls : nullptr), [&service](grpc::ServerBuilder* b) {
        gut::services::StreamTuning().ApplyToServer(b, /*peer_port=*/false);
        b->RegisterService(&service);
      });
  if (!server.ok()) {
    spdlog::error("{}", std::string(server.status().message()));
    return 2;
  }
  const int port = (*server)->port();
  std::unique_ptr<gut::services::HealthServer> health_server;
  if (!health_listen.empty()) {
    // Kubernetes' gRPC probes speak neither TLS nor our protocol: the health service alone, in
    // plaintext, on an address of its own.
    auto h = gut::services::HealthServer::Start(health_listen);
    if (!h.ok()) {
      spdlog::error("{}", std::string(h.status().message()));
      return 2;
    }
    health_server = std::move(*h);
    spdlog::info("health service on port {}", health_server->port());
  }
  if (!port_file.empty()) (void)gut::core::AtomicWrite(port_file, absl::StrCat(port, "\n"));
  spdlog::info("run {}: {} agents, {} graph, {}, {} epochs; listening on port {}{}{}", service.run_id(),
               config.num_agents, config.graph, config.hyper.algorithm, config.epochs, port,
               tls ? " (mutual TLS)" : " (plaintext)", resume ? " (resumed)" : "");
  spdlog::info("exchange: {}", gut::core::DescribeExchange(config));
  for (const auto& w : gut::core::ExchangeWarnings(config)) spdlog::warn("{}", w);

  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  absl::Status result = absl::DeadlineExceededError("run timeout");
  bool stopped = false;
  const absl::Time until = absl::Now() + absl::Seconds(run_timeout_s);
  while (absl::Now() < until) {
    if (g_signal != 0) {
      stopped = true;
      result = absl::CancelledError(absl::StrCat("stopped by signal ", static_cast<int>(g_signal)));
      break;
    }
    result = service.WaitFinished(absl::Milliseconds(200));
    if (result.code() != absl::StatusCode::kDeadlineExceeded) break;
  }
  // Every agent has left, but their last reports may still be on the way (an agent leaves once
  // its flush time is up, and its reporter keeps trying until the process ends).
  if (result.code() == absl::StatusCode::kAborted && service.WaitComplete(absl::Seconds(10))) result = absl::OkStatus();
  if (stopped) service.LetStoppingAgentsLeave(absl::Seconds(10));
  if (!result.ok()) service.WriteUnfinished(stopped ? "stopped" : "failed", std::string(result.message()));
  if (gauges) gauges->Update(service.View());
  // The page's last state, readable from disk once this process is gone.
  if (auto s = gut::core::AtomicWrite(out_dir + "/status.html", gut::coordinator::StatusPageFile(service.View()));
      !s.ok()) {
    spdlog::error("{}", s.ToString());
  }
  // Agents learn of a failure from their next heartbeat, and Prometheus sees the final status on
  // its next scrape: keep answering a little longer.
  if (linger_s > 0 && !stopped) absl::SleepFor(absl::Seconds(linger_s));
  (*server)->Shutdown(absl::Now() + absl::Seconds(2));
  if (health_server) health_server->Shutdown();
  if (metrics) (void)gut::core::AtomicWrite(out_dir + "/metrics.prom", metrics->Render());
  if (stopped) {
    spdlog::info("stopped; the run's state is in {} (continue with --resume)", out_dir);
    return 0;
  }
  if (!result.ok()) {
    gut::core::LogEvent(spdlog::level::err, "run_failed", {}, std::string(result.message()));
    return 1;
  }
  if (const auto unwritten = service.Unwritten(); !unwritten.empty()) {
    spdlog::error("the run finished, but {} in {} could not be written (reasons above): its reports are in "
                  "reports.jsonl; free space and run again with --resume to write them",
                  absl::StrJoin(unwritten, ", "), out_dir);
    return 1;
  }
  gut::core::LogEvent(spdlog::level::info, "run_finished", {},
                      absl::StrCat("wrote ", out_dir, "/metrics.csv, metrics.svg, summary.json and status.html"));
  return 0;
}
