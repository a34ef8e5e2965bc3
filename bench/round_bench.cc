// round_bench: per-round cost of gut-sim against the bare compute floor, side by side in one run.
//
//   round_bench [--manifest FILE] [--rounds R] [--reps K] [--out FILE.md] [--against key=value ...]
//
// For the manifest's configuration (default: the 16-ring Fashion-MNIST QG-GUTm run) it measures,
// alternating K times between the variants so that machine noise hits all of them alike:
//   floor     n agents x (LeNet-5 forward + backward + plain SGD step) per round, same threads,
//             same batches, no algorithm and no exchange;
//   sim       gut-sim's training round (algorithm + in-process exchange), for the manifest's
//             algorithm and for its DSGD counterpart (qg-gutm -> qg-dsgdm, gut -> dsgd), or with
//             --against, for the manifest with those overrides instead (e.g. the same network as a
//             TorchScript file: bench/torchscript_bench.sh).
// It reports wall ms per round, CPU ms per agent-step, the ratios, and the algorithm's model-sized
// buffers. Evaluation is not part of a round.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <functional>
#include <tuple>
#include <thread>

#include <CLI/CLI.hpp>

#include "absl/strings/str_format.h"
#include "core/common/process.h"
#include "core/common/random.h"
#include "core/common/thread_pool.h"
#include "core/config/manifest.h"
#include "core/data/dataset.h"
#include "core/data/partition.h"
#include "core/models/model.h"
#include "core/train/trainer.h"
#include "sim/simulation.h"

namespace {

struct Sample {
  double wall_ms_per_round = 0;
  double cpu_ms_per_step = 0;
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

template <typename F>
Sample Time(int rounds, int agents, F&& run) {
  const double c0 = gut::core::CpuSeconds();
  const auto t0 = std::chrono::steady_clock::now();
  run(rounds);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double cpu = gut::core::CpuSeconds() - c0;
  return {1e3 * wall / rounds, 1e3 * cpu / (double(rounds) * agents)};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"round_bench: gut-sim round time vs the bare compute floor"};
  std::string manifest = "deploy/examples/fmnist-ring16-qggutm.yaml", out;
  int rounds = 118, reps = 5;
  std::vector<std::string> overrides, against;
  app.add_option("--manifest", manifest);
  app.add_option("--against", against, "compare with the manifest under these overrides instead of the DSGD counterpart");
  app.add_option("--rounds", rounds, "rounds per measurement");
  app.add_option("--reps", reps, "alternating repetitions");
  app.add_option("--set", overrides);
  app.add_option("--out", out, "append the markdown table to this file");
  CLI11_PARSE(app, argc, argv);
  gut::core::TuneAllocator();

  auto config = gut::core::LoadManifest(manifest, overrides);
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  std::string baseline = config->hyper.algorithm == "qg-gutm" ? "qg-dsgdm"
                         : config->hyper.algorithm == "gut" ? "dsgd"
                                                            : config->hyper.algorithm;
  gut::core::RunConfig base_config = *config;
  base_config.hyper.algorithm = baseline;
  base_config.hyper.mu = 0;
  if (!against.empty()) {
    std::vector<std::string> all = overrides;
    all.insert(all.end(), against.begin(), against.end());
    auto c = gut::core::LoadManifest(manifest, all);
    if (!c.ok()) {
      std::fprintf(stderr, "--against: %s\n", std::string(c.status().message()).c_str());
      return 2;
    }
    base_config = *c;
    baseline.clear();
    for (const auto& a : against) baseline += (baseline.empty() ? "" : ", ") + a;
  }

  auto sim = gut::sim::Simulation::Create(*config);
  auto base = gut::sim::Simulation::Create(base_config);
  if (!sim.ok() || !base.ok()) {
    std::fprintf(stderr, "%s\n", std::string((sim.ok() ? base : sim).status().message()).c_str());
    return 1;
  }
  const int n = config->num_agents;

  // The floor: the same trainers' work without the algorithm or the exchange.
  auto data = gut::core::LoadDataset(config->dataset, config->data_path);
  auto model = gut::core::ModelForRun(*config);
  auto shards = config->partition == "iid"
                    ? gut::core::IidPartition(data->train.size(), n, config->seed)
                    : gut::core::DirichletPartition(data->train.labels, data->train.num_classes, n, config->alpha,
                                                    config->seed);
  std::vector<std::unique_ptr<gut::core::Trainer>> trainers;
  const std::vector<float> x0 = *gut::core::InitialModel(*model, config->init, config->seed);
  for (int i = 0; i < n; ++i) {
    trainers.push_back(*gut::core::Trainer::Create(
        *model, &data->train, (*shards)[i], config->batch_size,
        gut::core::DeriveSeed(config->seed, i, gut::core::SeedPurpose::kSampler)));
    auto p = trainers.back()->point();
    std::copy(x0.begin(), x0.end(), p.begin());
  }
  const int threads = config->threads > 0 ? config->threads : int(std::thread::hardware_concurrency());
  gut::core::ThreadPool pool(std::min(threads, n), [] { gut::core::SetComputeThreads(1); });
  const float lr = static_cast<float>(config->hyper.lr) * 0.1f;
  auto floor_rounds = [&](int r) {
    for (int k = 0; k < r; ++k) {
      pool.ParallelFor(n, [&](int i) {
        auto& t = *trainers[i];
        t.NextBatch();
        (void)t.ComputeGradient();
        float* w = t.point().data();
        const float* g = t.gradient().data();
        for (size_t j = 0; j < t.point().size(); ++j) w[j] -= lr * g[j];
      });
    }
  };

  // Warm-up; a variant that cannot run a round stops the benchmark with its error.
  floor_rounds(10);
  for (auto* s : {&*sim, &*base}) {
    if (auto w = (*s)->RunTrainingRounds(10); !w.ok()) {
      std::fprintf(stderr, "%s\n", std::string(w.status().message()).c_str());
      return 1;
    }
  }

  // A timing is only worth a ratio if the variant trained: every agent's parameters must have
  // moved (a variant that silently stopped training once measured 0.01 ms against a 49 ms floor).
  auto moved = [n](const std::function<std::vector<float>(int)>& params, const std::vector<std::vector<float>>& before) {
    for (int i = 0; i < n; ++i)
      if (params(i) == before[i]) return i;
    return -1;
  };
  auto snapshot = [n](const std::function<std::vector<float>(int)>& params) {
    std::vector<std::vector<float>> out;
    for (int i = 0; i < n; ++i) out.push_back(params(i));
    return out;
  };
  const std::function<std::vector<float>(int)> floor_params = [&](int i) {
    return std::vector<float>(trainers[i]->point().begin(), trainers[i]->point().end());
  };
  const std::function<std::vector<float>(int)> sim_params = [&](int i) { return (*sim)->Params(i); };
  const std::function<std::vector<float>(int)> base_params = [&](int i) { return (*base)->Params(i); };
  std::vector<double> fw, fc, sw, sc, bw, bc;
  for (int rep = 0; rep < reps; ++rep) {
    const auto f0 = snapshot(floor_params), s0 = snapshot(sim_params), b0 = snapshot(base_params);
    Sample f = Time(rounds, n, floor_rounds);
    absl::Status failed;
    auto run = [&failed](gut::sim::Simulation& s, int r) {
      if (auto t = s.RunTrainingRounds(r); !t.ok() && failed.ok()) failed = t.status();
    };
    Sample s = Time(rounds, n, [&](int r) { run(**sim, r); });
    Sample b = Time(rounds, n, [&](int r) { run(**base, r); });
    if (!failed.ok()) {
      std::fprintf(stderr, "%s\n", std::string(failed.message()).c_str());
      return 1;
    }
    for (const auto& [name, params, before] :
         {std::make_tuple(std::string("the compute floor"), &floor_params, &f0),
          std::make_tuple("gut-sim " + config->hyper.algorithm, &sim_params, &s0),
          std::make_tuple("gut-sim " + baseline, &base_params, &b0)}) {
      if (const int still = moved(*params, *before); still >= 0) {
        std::fprintf(stderr, "round_bench: %s did no work in repetition %d: agent %d's parameters did not change "
                     "over %d rounds; no ratio is printed\n", name.c_str(), rep + 1, still, rounds);
        return 1;
      }
    }
    fw.push_back(f.wall_ms_per_round); fc.push_back(f.cpu_ms_per_step);
    sw.push_back(s.wall_ms_per_round); sc.push_back(s.cpu_ms_per_step);
    bw.push_back(b.wall_ms_per_round); bc.push_back(b.cpu_ms_per_step);
    std::fprintf(stderr, "rep %d: floor %.2f ms, %s %.2f ms, %s %.2f ms per round\n", rep + 1,
                 f.wall_ms_per_round, config->hyper.algorithm.c_str(), s.wall_ms_per_round,
                 baseline.c_str(), b.wall_ms_per_round);
  }
  const double F = Median(fw), S = Median(sw), B = Median(bw);
  std::vector<double> ratio_sf, ratio_sb;
  for (int k = 0; k < reps; ++k) {
    ratio_sf.push_back(sw[k] / fw[k]);
    ratio_sb.push_back(sw[k] / bw[k]);
  }
  char date[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", std::gmtime(&now));
  const int64_t P = (*sim)->num_params();
  std::string table = absl::StrFormat(
      "### round_bench, %s\n\n"
      "Configuration: %s (%d agents, %s, batch %d, %lld parameters), %d worker threads x 1 compute "
      "thread, %d rounds x %d alternating repetitions; medians.\n\n"
      "| variant | wall ms / round | CPU ms / agent-step | ratio to floor |\n|---|---|---|---|\n"
      "| compute floor (fwd+bwd+SGD, no algorithm, no exchange) | %.2f | %.2f | 1.00 |\n"
      "| gut-sim %s | %.2f | %.2f | %.3f |\n"
      "| gut-sim %s | %.2f | %.2f | %.3f |\n\n"
      "- %s over %s, time per round: %+.1f %% (median of per-repetition ratios %.3f)\n"
      "- %s over floor (median of per-repetition ratios): %.3f\n"
      "- model-sized buffers kept per agent besides x: %s %d, %s %d (extra: %d = %.0f KiB)\n",
      date, config->name, n, config->graph, config->batch_size, static_cast<long long>(P), std::min(threads, n),
      rounds, reps, F, Median(fc), config->hyper.algorithm, S, Median(sc), S / F, baseline, B,
      Median(bc), B / F, config->hyper.algorithm, baseline, 100 * (Median(ratio_sb) - 1),
      Median(ratio_sb), config->hyper.algorithm, Median(ratio_sf), config->hyper.algorithm,
      (*sim)->algorithm_buffers(), baseline, (*base)->algorithm_buffers(),
      (*sim)->algorithm_buffers() - (*base)->algorithm_buffers(),
      ((*sim)->algorithm_buffers() - (*base)->algorithm_buffers()) * P * 4 / 1024.0);
  if (!against.empty()) {
    std::vector<double> ratio_bs;
    for (int k = 0; k < reps; ++k) ratio_bs.push_back(bw[k] / sw[k]);
    table += absl::StrFormat("- with %s over without, time per round (median of per-repetition ratios): %.3f\n",
                             baseline, Median(ratio_bs));
  }
  std::printf("%s", table.c_str());
  if (!out.empty()) {
    std::ofstream f(out, std::ios::app);
    f << table << "\n";
  }
  return 0;
}
