// overhead_bench: per-agent time per training step and memory of every method against DSGD, side
// by side in one run (the poster's overhead table, docs/algorithms.md §6.3).
//
//   overhead_bench [--manifest FILE] [--rounds R] [--reps K] [--methods a,b,...] [--out FILE.md]
//
// Every method runs gut-sim's training round on the manifest's configuration (default: the
// 16-ring Fashion-MNIST LeNet-5 run) with the settings bench/reproduce.sh uses; the methods
// alternate K times so that machine noise hits all alike. Time: wall ms per round and CPU ms per
// agent-step, medians, and the median of the per-repetition ratios to DSGD (and of QG-GUTm to
// QG-DSGDm, the poster's pairing). Memory, two ways: the model-sized vectors an agent keeps
// between rounds (x, one gradient, the method's persistent buffers), and the heap gut-sim holds per
// agent once the method has run a few rounds (everything: state, per-round send/receive buffers,
// neighbour models and cross-gradients, the per-thread model workspaces shared out over the
// agents), without the data set.
#include <malloc.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <map>

#include <CLI/CLI.hpp>

#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "core/common/process.h"
#include "core/config/manifest.h"
#include "core/data/dataset.h"
#include "sim/simulation.h"

namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// The overrides bench/reproduce.sh uses for each method on the QG-GUTm manifest.
std::vector<std::string> MethodSets(const std::string& m) {
  if (m == "qg-gutm") return {};
  if (m == "qg-dsgdm") return {"algorithm.name=qg-dsgdm", "algorithm.mu=0"};
  if (m == "dsgd") return {"algorithm.name=dsgd", "algorithm.momentum=0", "algorithm.mu=0"};
  if (m == "gut") return {"algorithm.name=gut", "algorithm.momentum=0", "algorithm.mu=0.9"};
  if (m == "gt" || m == "d2") return {"algorithm.name=" + m, "algorithm.momentum=0", "algorithm.mu=0"};
  if (m == "relaysgd")
    return {"algorithm.name=relaysgd", "algorithm.mu=0", "topology.graph=chain", "topology.weights=metropolis"};
  return {"algorithm.name=" + m, "algorithm.mu=0"};
}

int64_t HeapBytes() {
  const struct mallinfo2 mi = mallinfo2();
  return static_cast<int64_t>(mi.uordblks + mi.hblkhd);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"overhead_bench: time and memory per agent of every method against DSGD"};
  std::string manifest = "deploy/examples/fmnist-ring16-qggutm.yaml", out;
  std::string methods = "dsgd,gut,qg-dsgdm,qg-gutm,gt,d2,mt,relaysgd,ngm,cga";
  int rounds = 59, reps = 5;
  app.add_option("--manifest", manifest);
  app.add_option("--rounds", rounds, "rounds per measurement");
  app.add_option("--reps", reps, "alternating repetitions");
  app.add_option("--methods", methods, "comma-separated; the first is the reference (DSGD)");
  app.add_option("--out", out, "append the markdown table to this file");
  CLI11_PARSE(app, argc, argv);
  gut::core::TuneAllocator();

  const std::vector<std::string> names = absl::StrSplit(methods, ',');
  std::vector<std::unique_ptr<gut::sim::Simulation>> sims;
  std::vector<double> heap_per_agent;
  gut::core::RunConfig config;
  int64_t data_bytes = 0;
  {
    auto c = gut::core::LoadManifest(manifest, {});
    if (!c.ok()) {
      std::fprintf(stderr, "%s\n", std::string(c.status().message()).c_str());
      return 2;
    }
    const int64_t h0 = HeapBytes();
    auto d = gut::core::LoadDataset(c->dataset, c->data_path);
    data_bytes = HeapBytes() - h0;
  }
  for (const auto& m : names) {
    auto c = gut::core::LoadManifest(manifest, MethodSets(m));
    if (!c.ok()) {
      std::fprintf(stderr, "%s: %s\n", m.c_str(), std::string(c.status().message()).c_str());
      return 2;
    }
    config = *c;
    const int64_t h0 = HeapBytes();
    auto s = gut::sim::Simulation::Create(*c);
    if (!s.ok()) {
      std::fprintf(stderr, "%s: %s\n", m.c_str(), std::string(s.status().message()).c_str());
      return 1;
    }
    (void)(*s)->RunTrainingRounds(5);  // warm-up; RelaySGD sizes its relay buffers here
    heap_per_agent.push_back(double(HeapBytes() - h0 - data_bytes) / c->num_agents);
    sims.push_back(std::move(*s));
  }
  const int n = config.num_agents;
  std::vector<std::vector<double>> wall(names.size()), cpu(names.size());
  for (int rep = 0; rep < reps; ++rep) {
    for (size_t k = 0; k < names.size(); ++k) {
      const std::vector<float> before = sims[k]->Params(0);
      const double c0 = gut::core::CpuSeconds();
      const auto t0 = std::chrono::steady_clock::now();
      if (auto s = sims[k]->RunTrainingRounds(rounds); !s.ok()) {
        std::fprintf(stderr, "%s: %s\n", names[k].c_str(), std::string(s.status().message()).c_str());
        return 1;
      }
      const double w = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      // A timing counts only if the method trained: no ratio from a variant that did nothing.
      if (sims[k]->Params(0) == before) {
        std::fprintf(stderr, "%s did no work in repetition %d: agent 0's parameters did not change over %d rounds; "
                     "no table is printed\n", names[k].c_str(), rep + 1, rounds);
        return 1;
      }
      wall[k].push_back(1e3 * w / rounds);
      cpu[k].push_back(1e3 * (gut::core::CpuSeconds() - c0) / (double(rounds) * n));
    }
    std::fprintf(stderr, "rep %d/%d done\n", rep + 1, reps);
  }
  auto ratio = [&](size_t a, size_t b) {
    std::vector<double> r;
    for (int k = 0; k < reps; ++k) r.push_back(cpu[a][k] / cpu[b][k]);
    return Median(r);
  };
  auto vectors = [&](size_t k) { return 2 + sims[k]->algorithm_buffers(); };  // x, gradient, buffers
  char date[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", std::gmtime(&now));
  const int64_t P = sims[0]->num_params();
  std::string table = absl::StrFormat(
      "### overhead_bench, %s\n\n"
      "Configuration: %s (%d agents, batch %d, model %s, %lld parameters), %d rounds x %d alternating "
      "repetitions, medians. Compute overhead = CPU per agent-step / %s's - 1 (median of per-repetition "
      "ratios). Memory: model-sized vectors kept per agent between rounds (x, one gradient, the method's "
      "persistent buffers), and the heap gut-sim holds per agent after a few rounds (state, per-round buffers, "
      "neighbour models, workspaces), without the data set.\n\n"
      "| method | wall ms / round | CPU ms / agent-step | compute overhead vs %s | vectors kept per agent | "
      "heap per agent (KiB) | memory overhead vs %s (heap) |\n"
      "|---|---|---|---|---|---|---|\n",
      date, config.name, n, config.batch_size, config.model, static_cast<long long>(P), rounds, reps, names[0],
      names[0], names[0]);
  for (size_t k = 0; k < names.size(); ++k) {
    absl::StrAppendFormat(&table, "| %s | %.2f | %.3f | %+.3f | %d | %.0f | %+.3f |\n", names[k], Median(wall[k]),
                          Median(cpu[k]), ratio(k, 0) - 1, vectors(k), heap_per_agent[k] / 1024,
                          heap_per_agent[k] / heap_per_agent[0] - 1);
  }
  std::map<std::string, size_t> at;
  for (size_t k = 0; k < names.size(); ++k) at[names[k]] = k;
  if (at.count("qg-gutm") && at.count("qg-dsgdm")) {
    const size_t a = at["qg-gutm"], b = at["qg-dsgdm"];
    absl::StrAppendFormat(&table,
                          "\nQG-GUTm against QG-DSGDm (the poster's pairing): compute overhead %+.3f, memory "
                          "overhead %+.3f by heap, %+.3f by kept vectors (poster, LeNet-5: 0.275 compute, 0.099 "
                          "memory).\n",
                          ratio(a, b) - 1, heap_per_agent[a] / heap_per_agent[b] - 1,
                          double(vectors(a)) / vectors(b) - 1);
  }
  if (at.count("gut") && at.count("dsgd")) {
    const size_t a = at["gut"], b = at["dsgd"];
    absl::StrAppendFormat(&table, "GUT against DSGD: compute overhead %+.3f, memory overhead %+.3f by heap, %+.3f by kept vectors.\n",
                          ratio(a, b) - 1, heap_per_agent[a] / heap_per_agent[b] - 1,
                          double(vectors(a)) / vectors(b) - 1);
  }
  std::printf("%s", table.c_str());
  if (!out.empty()) {
    std::ofstream f(out, std::ios::app);
    f << table << "\n";
  }
  return 0;
}
