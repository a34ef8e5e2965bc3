// gut-sim: runs n agents of a manifest in one process and writes metrics.csv and summary.json.
//   gut-sim --manifest FILE --out DIR [--set key.path=value ...] [--resume]
// Ctrl-C (or SIGTERM) stops at the next round boundary and writes a checkpoint; the same command
// with --resume continues from it, bit-identical to an uninterrupted run.
#include <atomic>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "core/common/atomic_file.h"
#include "core/common/cli.h"
#include "core/common/numerics.h"
#include "core/common/process.h"
#include "core/config/exchange_settings.h"
#include "core/config/manifest.h"
#include "core/report/epoch_log.h"
#include "sim/simulation.h"

namespace {
std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"gut-sim: decentralised training of n agents in one process (GUT, QG-GUTm, baselines)"};
  app.set_version_flag("");  // replaced by AddCommonFlags
  gut::core::LogOptions log;
  std::string manifest, out_dir;
  std::vector<std::string> overrides;
  bool print_config = false, resume = false, print_numerics = false;
  std::string checkpoint_dir;
  app.add_option("--manifest", manifest, "run manifest (YAML), e.g. deploy/examples/fmnist-ring16-qggutm.yaml")
      ->required();
  app.add_option("--out", out_dir, "output directory for metrics.csv and summary.json")->required();
  app.add_option("--set", overrides, "override a manifest key, e.g. --set run.epochs=1 (repeatable)");
  app.add_flag("--print-config", print_config, "print the resolved manifest and exit");
  app.add_flag("--print-numerics-environment", print_numerics,
               "print the environment run.numerics sets (KEY=VALUE lines) and exit");
  app.add_option("--checkpoint-dir", checkpoint_dir, "checkpoint directory (default OUT/checkpoints)");
  std::string forge;
  app.add_option("--inject-forged-updates", forge,
                 "drill: agent RANK plays a hostile agent, RANK:MODE:FROM_ROUND:ROUNDS with MODE huge (1e30), zeros "
                 "or negate10 (its honest update times -10)");
  app.add_flag("--resume", resume, "continue from the newest checkpoint in the checkpoint directory");
  gut::core::AddCommonFlags(app, "gut-sim", &log);
  if (const int code = gut::core::Parse(app, argc, argv); code >= 0) return code;
  gut::core::SetProgramArguments(argc, argv);
  gut::core::SetupLogging(log, "gut-sim");
  int forge_rank = -1;
  gut::core::Forgery forgery;
  if (!forge.empty()) {
    const size_t colon = forge.find(':');
    auto f = gut::core::ParseForgery(colon == std::string::npos ? "" : forge.substr(colon + 1));
    if (colon == std::string::npos || !absl::SimpleAtoi(forge.substr(0, colon), &forge_rank) || forge_rank < 0 ||
        !f.ok()) {
      spdlog::error("--inject-forged-updates: expected RANK:MODE:FROM_ROUND:ROUNDS with MODE huge, zeros or "
                    "negate10, got '{}'", forge);
      return 2;
    }
    forgery = *f;
  }
  gut::core::TuneAllocator();

  gut::core::RunConfig config;
  if (const int code = gut::core::LoadManifestForMain(manifest, overrides, print_config, &config); code >= 0) return code;
  if (print_numerics) {
    for (const auto& [k, v] : gut::core::NumericsEnvironment(*gut::core::ParseNumerics(config.numerics)))
      std::cout << k << "=" << v << "\n";
    return 0;
  }
  // run.numerics: restart with the mode's environment before any library chooses its kernels.
  if (auto s = gut::core::EnterNumerics(*gut::core::ParseNumerics(config.numerics)); !s.ok()) {
    spdlog::error("{}", std::string(s.message()));
    return 2;
  }
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) {
    spdlog::error("cannot create output directory '{}': {}", out_dir, ec.message());
    return 2;
  }
  spdlog::info("{}: {} agents, {} graph, {} (lr {}, momentum {}, mu {}), {} alpha {}, {} epochs", config.name,
               config.num_agents, config.graph, config.hyper.algorithm, config.hyper.lr, config.hyper.momentum,
               config.hyper.mu, config.dataset, config.alpha, config.epochs);
  spdlog::info("exchange: {}", gut::core::DescribeExchange(config));
  for (const auto& w : gut::core::ExchangeWarnings(config)) spdlog::warn("{}", w);
  auto sim = gut::sim::Simulation::Create(config);
  if (!sim.ok()) {
    spdlog::error("{}", std::string(sim.status().message()));
    return sim.status().code() == absl::StatusCode::kInvalidArgument || sim.status().code() == absl::StatusCode::kNotFound ||
                   sim.status().code() == absl::StatusCode::kDataLoss
               ? 2
               : 1;
  }
  spdlog::info("{} parameters per agent, {} rounds per epoch, {} algorithm buffers per agent", (*sim)->num_params(),
               (*sim)->rounds_per_epoch(), (*sim)->algorithm_buffers());
  if (!(*sim)->model_sha256().empty()) {
    spdlog::info("model: TorchScript file {} (sha256 {}), test metric {}", config.model_path,
                 (*sim)->model_sha256(), gut::core::MetricName(config));
  }
  if (forge_rank >= 0) {
    if (auto s = (*sim)->InjectForgery(forge_rank, forgery); !s.ok()) {
      spdlog::error("{}", std::string(s.message()));
      return 2;
    }
    spdlog::warn("drill: agent {} forges its messages ({}) in rounds {} to {}", forge_rank, forgery.mode,
                 forgery.from_round, forgery.from_round + forgery.rounds - 1);
  }
  gut::sim::SimRunOptions run_options;
  if (config.checkpoint_enabled || resume) {
    run_options.checkpoint_dir =
        checkpoint_dir.empty() ? (std::filesystem::path(out_dir) / "checkpoints").string() : checkpoint_dir;
  }
  run_options.resume = resume;
  run_options.stop = &g_stop;
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  const std::string csv = (std::filesystem::path(out_dir) / "metrics.csv").string();
  const std::string svg = (std::filesystem::path(out_dir) / "metrics.svg").string();
  std::vector<gut::report::EpochRecord> seen;
  const gut::report::Metric metric = gut::report::Metric::For(config);
  auto summary = (*sim)->Run([&](const gut::report::EpochRecord& r) {
    gut::report::LogEpochLine(r, metric);
    gut::core::SetLogRound(r.rounds);
    seen.push_back(r);
    if (auto s = gut::report::WriteMetricsCsv(csv, seen, gut::core::Durability::kFsync, metric); !s.ok())
      spdlog::error("{}", std::string(s.message()));
    if (auto s = gut::report::WritePlot(svg, config.name, seen, gut::core::Durability::kRename, metric); !s.ok())
      spdlog::error("{}", std::string(s.message()));
  }, run_options);
  if (!summary.ok()) {
    if (summary.status().code() == absl::StatusCode::kCancelled) {
      spdlog::info("{}; checkpoint in {} (continue with the same command and --resume)",
                   std::string(summary.status().message()), run_options.checkpoint_dir);
      return 0;
    }
    spdlog::error("{}", std::string(summary.status().message()));
    return summary.status().code() == absl::StatusCode::kNotFound ? 2 : 1;
  }
  const std::string json = (std::filesystem::path(out_dir) / "summary.json").string();
  if (auto s = gut::report::WriteSummaryJson(json, config, *summary); !s.ok()) {
    spdlog::error("{}", std::string(s.message()));
    return 1;
  }
  spdlog::info("final (after {} gossip rounds): {} mean {} min {} max {}, consensus {:.3e} -> {:.3e}, wall {:.1f}s, "
               "{:.1f} MB sent",
               config.final_gossip_rounds, metric.label, metric.Format(summary->final_acc_mean),
               metric.Format(summary->final_acc_min), metric.Format(summary->final_acc_max),
               summary->consensus_before_gossip, summary->consensus_after_gossip, summary->wall_s,
               summary->bytes_sent / 1e6);
  if (summary->messages_refused > 0) {
    spdlog::warn("{} neighbour message(s) were refused as implausible (NaN or infinity, all zeros, or over 100x "
                 "the receiver's model) and replaced by the receiver's own", summary->messages_refused);
  }
  if (summary->solver_fallbacks > 0) {
    spdlog::warn("{} could not solve its per-round subproblem {} times (non-finite data; the previous solution was "
                 "reused each time)", config.hyper.algorithm, summary->solver_fallbacks);
  }
  // Every agent's final model, in the cluster's layout (agents/rank-NN/params-final.f32, raw
  // little-endian float32), so that a cluster's results can be compared with cmp.
  for (int i = 0; i < (*sim)->num_agents(); ++i) {
    const auto dir = std::filesystem::path(out_dir) / absl::StrFormat("agents/rank-%02d", i);
    std::filesystem::create_directories(dir, ec);
    const auto x = (*sim)->Params(i);
    if (auto s = gut::core::AtomicWrite((dir / "params-final.f32").string(),
                                        absl::string_view(reinterpret_cast<const char*>(x.data()), x.size() * sizeof(float)),
                                        gut::core::Durability::kRename);
        !s.ok()) {
      spdlog::error("{}", std::string(s.message()));
      return 1;
    }
    // The same model as a file PyTorch loads (README: "Take the model home").
    auto pt = (*sim)->ExportModel(i);
    if (!pt.ok()) {
      spdlog::error("rank {}: {}", i, std::string(pt.status().message()));
      return 1;
    }
    if (auto s = gut::core::AtomicWrite((dir / "model-final.pt").string(), *pt, gut::core::Durability::kRename); !s.ok()) {
      spdlog::error("{}", std::string(s.message()));
      return 1;
    }
  }
  auto average = (*sim)->ExportAverageModel();
  if (!average.ok()) {
    spdlog::error("{}", std::string(average.status().message()));
    return 1;
  }
  const std::string average_path = (std::filesystem::path(out_dir) / "model-average.pt").string();
  if (auto s = gut::core::AtomicWrite(average_path, *average); !s.ok()) {
    spdlog::error("{}", std::string(s.message()));
    return 1;
  }
  spdlog::info("wrote {}, {}, {}, {} and agents/rank-NN/{{params-final.f32,model-final.pt}}", csv, svg, json,
               average_path);
  return 0;
}
