// gut-coordinator: bootstraps one run (ranks, neighbours, hyperparameters), collects the agents'
// metrics and writes the run's metrics.csv, metrics.svg and summary.json. Not on the data path.
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>

#include <CLI/CLI.hpp>
#include "absl/synchronization/mutex.h"
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "coordinator/coordinator.h"
#include "core/codec/codec.h"
#include "services/grpc_options.h"
#include "services/metrics.h"

namespace {
volatile std::sig_atomic_t g_signal = 0;
void OnSignal(int sig) { g_signal = sig; }
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"gut-coordinator: bootstrap and metrics for a gut run (never sees parameters)"};
  std::string manifest, out_dir, listen = "0.0.0.0:7070", port_file, metrics_address, run_id;
  std::vector<std::string> overrides;
  bool print_config = false, print_num_agents = false;
  double join_timeout_s = 600, run_timeout_s = 7 * 24 * 3600.0, linger_s = 3;
  app.add_option("--manifest", manifest, "run manifest (YAML), same schema as gut-sim")->required();
  app.add_option("--set", overrides, "override a manifest key, e.g. --set run.epochs=1 (repeatable)");
  app.add_option("--out", out_dir, "output directory: metrics.csv, metrics.svg, summary.json, agents.json");
  app.add_option("--listen", listen, "address of the Coordinator service (port 0: pick one)")->capture_default_str();
  app.add_option("--port-file", port_file, "write the bound port here once listening");
  app.add_option("--metrics", metrics_address, "serve Prometheus /metrics on this address (empty: off)");
  app.add_option("--run-id", run_id, "run id (default: run name + random suffix)");
  app.add_option("--join-timeout-s", join_timeout_s, "bootstrap barrier limit")->capture_default_str();
  app.add_option("--run-timeout-s", run_timeout_s, "give up when the run has not finished by then")->capture_default_str();
  app.add_option("--linger-s", linger_s, "keep serving this long after the run ends (late leaves)")->capture_default_str();
  app.add_flag("--print-config", print_config, "print the resolved manifest and exit");
  app.add_flag("--print-num-agents", print_num_agents, "print the number of agents and exit (launchers)");
  CLI11_PARSE(app, argc, argv);
  // Debian's Abseil keeps mutex deadlock detection on (a graph update on every lock).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);

  auto config = gut::core::LoadManifest(manifest, overrides);
  if (!config.ok()) {
    std::fprintf(stderr, "gut-coordinator: invalid manifest: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  if (print_config) {
    std::cout << gut::core::ToYaml(*config) << "\n";
    return 0;
  }
  if (print_num_agents) {
    std::cout << config->num_agents << "\n";
    return 0;
  }
  if (out_dir.empty()) {
    std::fprintf(stderr, "gut-coordinator: --out is required\n");
    return 2;
  }
  gut::coordinator::CoordinatorOptions opt;
  opt.out_dir = out_dir;
  opt.join_timeout = absl::Seconds(join_timeout_s);
  opt.run_id = run_id;
  auto svc = gut::coordinator::CoordinatorService::Create(*config, opt);
  if (!svc.ok()) {
    std::fprintf(stderr, "gut-coordinator: %s\n", std::string(svc.status().message()).c_str());
    return 2;
  }
  auto& service = **svc;

  std::unique_ptr<gut::services::MetricsEndpoint> metrics;
  if (!metrics_address.empty()) {
    auto m = gut::services::MetricsEndpoint::Start(metrics_address);
    if (!m.ok()) {
      std::fprintf(stderr, "gut-coordinator: %s\n", std::string(m.status().message()).c_str());
      return 2;
    }
    metrics = std::move(*m);
    auto& reg = metrics->registry();
    auto& joined = prometheus::BuildGauge().Name("gut_coordinator_agents_joined")
                       .Help("Agents that have joined the run.").Register(reg).Add({});
    prometheus::BuildGauge().Name("gut_coordinator_agents_expected")
        .Help("Agents the manifest asks for.").Register(reg).Add({}).Set(config->num_agents);
    auto& left = prometheus::BuildGauge().Name("gut_coordinator_agents_left")
                     .Help("Agents that have left the run.").Register(reg).Add({});
    auto& epoch = prometheus::BuildGauge().Name("gut_coordinator_epoch")
                      .Help("Last epoch every agent has reported.").Register(reg).Add({});
    auto& finished = prometheus::BuildGauge().Name("gut_coordinator_run_finished")
                         .Help("1 once every agent has sent its final report.").Register(reg).Add({});
    auto& acc = prometheus::BuildGauge().Name("gut_coordinator_test_accuracy_ratio")
                    .Help("Test accuracy over agents at the last epoch (stat = mean, min, max).").Register(reg);
    auto& acc_mean = acc.Add({{"stat", "mean"}});
    auto& acc_min = acc.Add({{"stat", "min"}});
    auto& acc_max = acc.Add({{"stat", "max"}});
    auto& loss = prometheus::BuildGauge().Name("gut_coordinator_train_loss")
                     .Help("Mean train loss over agents at the last epoch.").Register(reg).Add({});
    auto& consensus = prometheus::BuildGauge().Name("gut_coordinator_consensus_distance")
                          .Help("Consensus distance estimated from the agents' parameter sketches.")
                          .Register(reg).Add({});
    auto& rps = prometheus::BuildGauge().Name("gut_coordinator_rounds_per_second")
                    .Help("Training rounds per second over the run so far.").Register(reg).Add({});
    prometheus::BuildGauge().Name("gut_run_info").Help("The run this coordinator serves.").Register(reg)
        .Add({{"run_id", service.run_id()}, {"algorithm", config->hyper.algorithm},
              {"codec", gut::core::CodecName(config->codec.kind)}, {"graph", config->graph},
              {"agents", std::to_string(config->num_agents)}})
        .Set(1);
    service.on_change = [&](const gut::v1::StatusResponse& s, const gut::report::EpochRecord* r) {
      joined.Set(s.joined());
      left.Set(s.left());
      epoch.Set(s.epoch());
      finished.Set(s.finished() ? 1 : 0);
      if (r != nullptr) {
        if (r->evaluated) {
          acc_mean.Set(r->acc_mean);
          acc_min.Set(r->acc_min);
          acc_max.Set(r->acc_max);
        }
        loss.Set(r->train_loss);
        consensus.Set(r->consensus);
        rps.Set(r->rounds_per_s);
      }
    };
    spdlog::info("metrics on http://{}:{}/metrics", metrics_address.substr(0, metrics_address.rfind(':')),
                 metrics->port());
  }
  service.OnEpoch([](const gut::report::EpochRecord& r) {
    std::printf("%s\n", gut::report::FormatProgress(r).c_str());
    std::fflush(stdout);
  });

  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  gut::services::StreamTuning().ApplyToServer(&builder, /*peer_port=*/false);
  builder.RegisterService(&service);
  auto server = builder.BuildAndStart();
  if (!server || port == 0) {
    std::fprintf(stderr, "gut-coordinator: cannot listen on '%s'\n", listen.c_str());
    return 2;
  }
  if (!port_file.empty()) {
    std::ofstream(port_file + ".tmp") << port << "\n";
    std::rename((port_file + ".tmp").c_str(), port_file.c_str());
  }
  std::printf("gut-coordinator: run %s: %d agents, %s graph, %s, %d epochs; listening on port %d\n",
              service.run_id().c_str(), config->num_agents, config->graph.c_str(),
              config->hyper.algorithm.c_str(), config->epochs, port);
  std::fflush(stdout);

  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  absl::Status result = absl::DeadlineExceededError("run timeout");
  const absl::Time until = absl::Now() + absl::Seconds(run_timeout_s);
  while (absl::Now() < until) {
    if (g_signal != 0) {
      result = absl::CancelledError(absl::StrCat("stopped by signal ", static_cast<int>(g_signal)));
      break;
    }
    result = service.WaitFinished(absl::Milliseconds(200));
    if (result.code() != absl::StatusCode::kDeadlineExceeded) break;
  }
  if (result.ok() && linger_s > 0) absl::SleepFor(absl::Seconds(linger_s));
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  if (metrics) (void)gut::report::AtomicWrite(out_dir + "/metrics.prom", metrics->Render());
  if (!result.ok()) {
    std::fprintf(stderr, "gut-coordinator: %s\n", std::string(result.message()).c_str());
    return 1;
  }
  std::printf("gut-coordinator: wrote %s/metrics.csv, metrics.svg and summary.json\n", out_dir.c_str());
  return 0;
}
