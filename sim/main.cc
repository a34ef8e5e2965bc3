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

#include "absl/strings/str_format.h"
#include "core/common/process.h"
#include "core/config/manifest.h"
#include "sim/simulation.h"

namespace {
std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"gut-sim: decentralised training of n agents in one process (GUT, QG-GUTm, baselines)"};
  std::string manifest, out_dir;
  std::vector<std::string> overrides;
  bool print_config = false, resume = false;
  std::string checkpoint_dir;
  app.add_option("--manifest", manifest, "run manifest (YAML), e.g. deploy/examples/fmnist-ring16-qggutm.yaml")
      ->required();
  app.add_option("--out", out_dir, "output directory for metrics.csv and summary.json")->required();
  app.add_option("--set", overrides, "override a manifest key, e.g. --set run.epochs=1 (repeatable)");
  app.add_flag("--print-config", print_config, "print the resolved manifest and exit");
  app.add_option("--checkpoint-dir", checkpoint_dir, "checkpoint directory (default OUT/checkpoints)");
  app.add_flag("--resume", resume, "continue from the newest checkpoint in the checkpoint directory");
  CLI11_PARSE(app, argc, argv);
  gut::core::TuneAllocator();

  auto config = gut::core::LoadManifest(manifest, overrides);
  if (!config.ok()) {
    std::fprintf(stderr, "gut-sim: invalid manifest: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  if (print_config) {
    std::cout << gut::core::ToYaml(*config) << "\n";
    return 0;
  }
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) {
    std::fprintf(stderr, "gut-sim: cannot create output directory '%s': %s\n", out_dir.c_str(), ec.message().c_str());
    return 2;
  }
  std::printf("gut-sim: %s: %d agents, %s graph, %s (lr %g, momentum %g, mu %g), %s alpha %g, %d epochs\n",
              config->name.c_str(), config->num_agents, config->graph.c_str(),
              config->hyper.algorithm.c_str(), config->hyper.lr, config->hyper.momentum, config->hyper.mu,
              config->dataset.c_str(), config->alpha, config->epochs);
  std::fflush(stdout);
  auto sim = gut::sim::Simulation::Create(*config);
  if (!sim.ok()) {
    std::fprintf(stderr, "gut-sim: %s\n", std::string(sim.status().message()).c_str());
    return 1;
  }
  std::printf("gut-sim: %lld parameters per agent, %d rounds per epoch, %d algorithm buffers per agent\n",
              static_cast<long long>((*sim)->num_params()), (*sim)->rounds_per_epoch(),
              (*sim)->algorithm_buffers());
  std::fflush(stdout);
  gut::sim::SimRunOptions run_options;
  if (config->checkpoint_enabled || resume) {
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
  auto summary = (*sim)->Run([&](const gut::report::EpochRecord& r) {
    std::printf("%s\n", gut::report::FormatProgress(r).c_str());
    std::fflush(stdout);
    seen.push_back(r);
    if (auto s = gut::report::WriteMetricsCsv(csv, seen); !s.ok())
      std::fprintf(stderr, "gut-sim: %s\n", std::string(s.message()).c_str());
    if (auto s = gut::report::WritePlot(svg, config->name, seen); !s.ok())
      std::fprintf(stderr, "gut-sim: %s\n", std::string(s.message()).c_str());
  }, run_options);
  if (!summary.ok()) {
    if (summary.status().code() == absl::StatusCode::kCancelled) {
      std::printf("gut-sim: %s; checkpoint in %s (continue with the same command and --resume)\n",
                  std::string(summary.status().message()).c_str(), run_options.checkpoint_dir.c_str());
      return 0;
    }
    std::fprintf(stderr, "gut-sim: %s\n", std::string(summary.status().message()).c_str());
    return 1;
  }
  const std::string json = (std::filesystem::path(out_dir) / "summary.json").string();
  if (auto s = gut::report::WriteSummaryJson(json, *config, *summary); !s.ok()) {
    std::fprintf(stderr, "gut-sim: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  std::printf("final (after %d gossip rounds): test accuracy mean %.2f%% min %.2f%% max %.2f%%, "
              "consensus %.3e -> %.3e, wall %.1fs, %.1f MB sent\n",
              config->final_gossip_rounds, 100 * summary->final_acc_mean, 100 * summary->final_acc_min,
              100 * summary->final_acc_max, summary->consensus_before_gossip, summary->consensus_after_gossip,
              summary->wall_s, summary->bytes_sent / 1e6);
  if (summary->solver_fallbacks > 0) {
    std::printf("warning: %s could not solve its per-round subproblem %lld times (non-finite data; the "
                "previous solution was reused each time)\n",
                config->hyper.algorithm.c_str(), static_cast<long long>(summary->solver_fallbacks));
  }
  std::printf("wrote %s, %s and %s\n", csv.c_str(), svg.c_str(), json.c_str());
  return 0;
}
