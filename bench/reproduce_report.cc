// reproduce_report: the tables and plots of bench/reproduce.sh's runs, and the step that files a
// finished run into its study's CSVs.
//
//   reproduce_report [--root bench/results/reproduce] [--table bench/results/fmnist-table.md]
//   reproduce_report --root ROOT --study PHASE --collect RUN_DIR [--note TEXT]
//   reproduce_report --root ROOT --study PHASE --copy TAG
//
// The first form reads every study (ROOT/<phase>-runs.csv and ROOT/<phase>.csv; see study_csv.h;
// tags are fmnist-<graph><agents>-a<alpha>-<method>-s<seed>) and writes the table (default: ROOT's
// parent folder/fmnist-table.md; mean and sample standard deviation over seeds of the final test
// accuracy, laid out like the poster) and accuracy-per-epoch plots (ROOT/*.svg; the line is the mean
// over seeds, the band min to max).
// Missing runs show as "-" with the number of seeds found, so a partial reproduction reports what
// it has.
// --collect puts a finished gut-sim run folder (command.txt, metrics.csv, summary.json; named by its
// tag) into ROOT/PHASE.csv and ROOT/PHASE-runs.csv; --copy copies a run that another study already
// holds.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <CLI/CLI.hpp>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "bench/study_csv.h"
#include "core/report/plot.h"
#include "core/report/run_report.h"

namespace fs = std::filesystem;

namespace {

struct Run {
  std::string graph, method;
  int agents = 0, seed = 0;
  std::string alpha;
  double final_acc = 0, wall_s = 0, ms_per_round = 0, msgs_per_edge = 0, num_params = 0;
  std::vector<double> acc;  // per epoch, test accuracy mean over agents
};

struct Key {
  std::string graph;
  int agents;
  std::string alpha, method;
  bool operator<(const Key& o) const {
    return std::tie(graph, agents, alpha, method) < std::tie(o.graph, o.agents, o.alpha, o.method);
  }
};

std::string Read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const std::map<std::string, std::string>& Labels() {
  static const auto* m = new std::map<std::string, std::string>{
      {"qg-dsgdm", "QG-DSGDm"}, {"qg-gutm", "QG-GUTm"}, {"dsgd", "DSGD"},   {"gut", "GUT"},
      {"gt", "Gradient tracking"}, {"d2", "D² (Exact Diffusion)"}, {"mt", "Momentum tracking"},
      {"relaysgd", "RelaySGD (chain)"}, {"ngm", "NGM"}, {"cga", "CGA"}, {"dsgdm-n", "DSGDm-N"},
      {"qg-dsgdm-lin", "QG-DSGDm (Lin et al.)"}, {"qg-dsgdm-ref", "QG-DSGDm, reference order"},
      {"qg-gutm-ref", "QG-GUTm, reference order"}};
  return *m;
}
std::string Label(const std::string& m) {
  auto it = Labels().find(m);
  return it == Labels().end() ? m : it->second;
}

struct Stats {
  int n = 0;
  double mean = 0, sd = 0, lo = 0, hi = 0;
};
Stats Of(const std::vector<double>& v) {
  Stats s;
  s.n = static_cast<int>(v.size());
  if (v.empty()) return s;
  s.lo = s.hi = v[0];
  for (double x : v) {
    s.mean += x / s.n;
    s.lo = std::min(s.lo, x);
    s.hi = std::max(s.hi, x);
  }
  for (double x : v) s.sd += s.n > 1 ? (x - s.mean) * (x - s.mean) / (s.n - 1) : 0;
  s.sd = std::sqrt(s.sd);
  return s;
}

class Report {
 public:
  explicit Report(std::map<Key, std::vector<Run>> runs) : runs_(std::move(runs)) {}

  std::vector<double> Finals(const Key& k) const {
    std::vector<double> v;
    if (auto it = runs_.find(k); it != runs_.end())
      for (const auto& r : it->second) v.push_back(100 * r.final_acc);
    return v;
  }
  // The local models' mean accuracy after the last epoch, before the final gossip rounds.
  std::vector<double> LastEpoch(const Key& k) const {
    std::vector<double> v;
    if (auto it = runs_.find(k); it != runs_.end())
      for (const auto& r : it->second)
        if (!r.acc.empty()) v.push_back(100 * r.acc.back());
    return v;
  }
  std::string Cell(const Key& k, bool last_epoch = false) const {
    const Stats s = Of(last_epoch ? LastEpoch(k) : Finals(k));
    if (s.n == 0) return "-";
    if (s.n == 1) return absl::StrFormat("%.2f (1)", s.mean);  // one seed: no spread to show
    return absl::StrFormat("%.2f ± %.2f (%d)", s.mean, s.sd, s.n);
  }
  const std::vector<Run>* Runs(const Key& k) const {
    auto it = runs_.find(k);
    return it == runs_.end() ? nullptr : &it->second;
  }
  const Run* Find(const Key& k, int seed) const {
    if (const auto* rs = Runs(k))
      for (const auto& r : *rs)
        if (r.seed == seed) return &r;
    return nullptr;
  }

  // Accuracy per epoch, mean over seeds with the min-max band, one series per key.
  std::string Plot(const std::string& title, const std::vector<std::pair<std::string, Key>>& lines) const {
    std::vector<gut::report::Series> series;
    for (const auto& [name, key] : lines) {
      const auto* rs = Runs(key);
      if (!rs || rs->empty()) continue;
      size_t epochs = rs->front().acc.size();
      for (const auto& r : *rs) epochs = std::min(epochs, r.acc.size());
      gut::report::Series s;
      s.name = absl::StrFormat("%s (%d)", name, rs->size());
      for (size_t e = 0; e < epochs; ++e) {
        std::vector<double> v;
        for (const auto& r : *rs) v.push_back(100 * r.acc[e]);
        const Stats st = Of(v);
        s.x.push_back(e + 1);
        s.y.push_back(st.mean);
        s.lo.push_back(st.lo);
        s.hi.push_back(st.hi);
      }
      series.push_back(std::move(s));
    }
    return gut::report::RenderLineChart(title, "epoch", "test accuracy (%), mean over agents", series);
  }

 private:
  std::map<Key, std::vector<Run>> runs_;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"reproduce_report: tables and plots of bench/reproduce.sh's runs"};
  std::string root = "bench/results/reproduce", table, study, collect, copy, note;
  app.add_option("--root", root, "the study CSVs; the plots go here too");
  app.add_option("--table", table, "where the markdown goes (default: fmnist-table.md in ROOT's parent folder)");
  app.add_option("--study", study, "with --collect or --copy: the study (phase) whose CSVs get the run");
  auto* collect_opt = app.add_option("--collect", collect, "a finished run folder to put into the study's CSVs");
  auto* copy_opt = app.add_option("--copy", copy, "a run tag to copy into the study from the study that has it");
  app.add_option("--note", note, "with --collect: text for the run's note column");
  collect_opt->excludes(copy_opt);
  CLI11_PARSE(app, argc, argv);
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  if (!collect.empty() || !copy.empty()) {
    if (study.empty()) {
      std::fprintf(stderr, "reproduce_report: --collect and --copy need --study\n");
      return 2;
    }
    if (!collect.empty()) {
      if (auto s = gut::bench::CollectRun(root, study, collect, note); !s.ok()) {
        std::fprintf(stderr, "reproduce_report: %s\n", std::string(s.message()).c_str());
        return 1;
      }
      return 0;
    }
    auto from = gut::bench::CopyRun(root, study, copy);
    if (!from.ok()) {
      std::fprintf(stderr, "reproduce_report: %s\n", std::string(from.status().message()).c_str());
      return 1;
    }
    std::printf("reproduce_report: %s copied from %s into %s\n", copy.c_str(), from->c_str(), study.c_str());
    return 0;
  }
  if (table.empty()) table = (fs::path(root).parent_path() / "fmnist-table.md").string();
  // Plots are linked relative to the table.
  const std::string rel = fs::relative(fs::path(root), fs::absolute(fs::path(table)).parent_path()).string();
  auto link = [&](const std::string& f) { return "`" + (rel.empty() || rel == "." ? f : rel + "/" + f) + "`"; };

  std::vector<std::string> studies;
  auto loaded = gut::bench::LoadStudies(root, &studies);
  if (!loaded.ok()) {
    std::fprintf(stderr, "reproduce_report: %s (run bench/reproduce.sh first)\n",
                 std::string(loaded.status().message()).c_str());
    return 1;
  }
  // Grouped in tag order (the order the plots and means add them in).
  std::map<Key, std::vector<Run>> runs;
  const int found = static_cast<int>(loaded->size());
  for (const auto& sr : *loaded) {
    Run r;
    r.graph = sr.parts.graph;
    r.agents = sr.parts.agents;
    r.alpha = sr.parts.alpha;
    r.method = sr.parts.method;
    r.seed = sr.parts.seed;
    r.final_acc = sr.final_acc;
    r.wall_s = sr.wall_s;
    r.ms_per_round = sr.ms_per_round;
    r.num_params = sr.num_params;
    r.acc = sr.acc;
    // Model-sized fp32 vectors per agent per neighbour per training round (ring: 2 neighbours each;
    // chain: 2(n-1) directed edges).
    const double directed_edges = r.method == "relaysgd" ? 2.0 * (r.agents - 1) : 2.0 * r.agents;
    if (sr.rounds > 0 && r.num_params > 0)
      r.msgs_per_edge = sr.bytes_sent / sr.rounds / directed_edges / (4 * r.num_params);
    runs[{r.graph, r.agents, r.alpha, r.method}].push_back(r);
  }
  Report rep(std::move(runs));
  auto ring16 = [](const std::string& alpha, const std::string& method) { return Key{"ring", 16, alpha, method}; };
  // "s12 89.90, s1 90.24, s2 89.33": final accuracy per seed, in the plan's seed order.
  auto per_seed = [&](const Key& k) {
    std::vector<std::string> cells;
    for (int seed : {12, 1, 2}) {
      const Run* r = rep.Find(k, seed);
      if (!r) continue;
      // Epochs at the start where every agent predicted one class (test accuracy 10 %).
      size_t stuck = 0;
      while (stuck < r->acc.size() && r->acc[stuck] <= 0.1005) ++stuck;
      std::string note;
      if (stuck == r->acc.size() && stuck > 0) note = " (at chance in every epoch)";
      else if (stuck >= 2) note = absl::StrFormat(" (at chance for the first %d epochs)", stuck);
      cells.push_back(absl::StrFormat("s%d %.2f%s", seed, 100 * r->final_acc, note));
    }
    return cells.empty() ? std::string("-") : absl::StrJoin(cells, ", ");
  };

  std::string md = absl::StrFormat(
      "# Fashion-MNIST reproduction (LeNet-5, 100 epochs)\n\n"
      "Regenerate: `bench/reproduce.sh` (resumable; `--list` shows what is done; it ends with "
      "`build/bench/reproduce_report --root %s`). Each cell: final test accuracy (%%, mean over agents after "
      "51 gossip rounds), mean ± sample standard deviation over seeds (number of seeds in brackets; seeds "
      "12, 1, 2). Per-run commands: the `command` column of %s (one row per run; its epochs are in %s). "
      "%d runs found.\n\n",
      root, link("<phase>-runs.csv"), link("<phase>.csv"), found);

  md += "## The poster's table: 16-agent ring\n\n| method | α = 0.1 | α = 0.01 |\n|---|---|---|\n";
  for (const char* m : {"qg-dsgdm", "qg-gutm"})
    md += absl::StrFormat("| %s | %s | %s |\n", Label(m), rep.Cell(ring16("0.1", m)), rep.Cell(ring16("0.01", m)));
  // The poster's rows (docs/algorithms.md §6.3), α = 0.1 then α = 0.01; `extra` pads further columns.
  auto poster_rows = [](const std::string& extra) {
    return absl::StrFormat("| poster QG-DSGDm | 89.94 ± 0.44 | 83.43 ± 0.94 |%s\n"
                           "| poster QG-GUTm | 90.11 ± 0.02 | 84.60 ± 1.00 |%s\n\n",
                           extra, extra);
  };
  md += poster_rows("");
  md += "The same runs, each agent's own model after the last epoch (before the 51 gossip rounds), mean over "
        "agents:\n\n| method | α = 0.1 | α = 0.01 |\n|---|---|---|\n";
  for (const char* m : {"qg-dsgdm", "qg-gutm"})
    md += absl::StrFormat("| %s | %s | %s |\n", Label(m), rep.Cell(ring16("0.1", m), true),
                          rep.Cell(ring16("0.01", m), true));
  md += "\nPer seed (final accuracy; seeds in the order 12, 1, 2 where present):\n\n";
  for (const char* a : {"0.1", "0.01"})
    for (const char* m : {"qg-dsgdm", "qg-gutm"})
      md += absl::StrFormat("- α = %s, %s: %s\n", a, Label(m), per_seed(ring16(a, m)));
  md += "\n";
  md += "Plots: " + link("fmnist-a0.1.svg") + ", " + link("fmnist-a0.01.svg") + ".\n\n";

  // The same table with the reference code's minibatch order (bench/reproduce.sh --phase table-ref).
  md += "## The poster's table with the reference code's minibatch order\n\n"
        "The runs above shuffle each agent's shard from its own stream (`data.shuffle: agent`). The reference "
        "code (PyTorch 1.2) draws every epoch's `randperm` from its process-global generator, seeded with the "
        "run seed on every rank, so ranks 1..15 see their shards in one shared order and rank 0 (which also "
        "drew torchsummary's input) in another. `data.shuffle: reference` replays that stream on LibTorch's "
        "generator. Same seeds, partitions and initial models as above; only the minibatch order differs.\n\n"
        "| method | α = 0.1 | α = 0.01 | α = 0.1, last epoch | α = 0.01, last epoch |\n|---|---|---|---|---|\n";
  for (const char* m : {"qg-dsgdm-ref", "qg-gutm-ref"})
    md += absl::StrFormat("| %s | %s | %s | %s | %s |\n", Label(m), rep.Cell(ring16("0.1", m)),
                          rep.Cell(ring16("0.01", m)), rep.Cell(ring16("0.1", m), true),
                          rep.Cell(ring16("0.01", m), true));
  md += poster_rows(" | |") + "Per seed (final accuracy):\n\n";
  for (const char* a : {"0.1", "0.01"})
    for (const char* m : {"qg-dsgdm-ref", "qg-gutm-ref"})
      md += absl::StrFormat("- α = %s, %s: %s\n", a, Label(m), per_seed(ring16(a, m)));
  md += "\nThe plots above draw these runs too.\n\n";

  md += "## Every method at α = 0.1, 16 agents (RelaySGD on the ring's spanning chain)\n\n"
        "| method | final accuracy | messages per neighbour per round | ms per round | wall per run (s) |\n"
        "|---|---|---|---|---|\n";
  for (const char* m : {"dsgd", "gut", "qg-dsgdm", "qg-gutm", "gt", "d2", "mt", "relaysgd", "ngm", "cga", "dsgdm-n",
                        "qg-dsgdm-lin"}) {
    const auto* rs = rep.Runs(ring16("0.1", m));
    if (!rs) {
      md += absl::StrFormat("| %s | - | | | |\n", Label(m));
      continue;
    }
    double msgs = 0, ms = 0, wall = 0;
    for (const auto& r : *rs) {
      msgs += r.msgs_per_edge / rs->size();
      ms += r.ms_per_round / rs->size();
      wall += r.wall_s / rs->size();
    }
    md += absl::StrFormat("| %s | %s | %.3f | %.1f | %.0f |\n", Label(m), rep.Cell(ring16("0.1", m)), msgs, ms, wall);
  }
  md += "\nMessages: model-sized fp32 vectors per neighbour per training round, from the bytes sent (RelaySGD's "
        "extra value is its relay count). RelaySGD's final averaging relays the frozen models over the chain, so "
        "its agents end at the exact average; every other method ends with 51 rounds of x <- Wx (docs/algorithms.md "
        "§1.6). ms per round and wall time depend on what else the machine was running; the accuracies do not "
        "(runs are deterministic). Plot: " + link("fmnist-methods.svg") + ".\n\n";

  md += "## Topology at 32 agents, α = 0.1\n\n| method | ring | torus (C_32(1,4)) | Dyck |\n|---|---|---|---|\n";
  for (const char* m : {"qg-dsgdm", "qg-gutm"})
    md += absl::StrFormat("| %s | %s | %s | %s |\n", Label(m), rep.Cell({"ring", 32, "0.1", m}),
                          rep.Cell({"torus", 32, "0.1", m}), rep.Cell({"dyck", 32, "0.1", m}));
  md += "\nPlot: " + link("fmnist-topology.svg") + ".\n\n## Agent count on the ring, α = 0.1\n\n"
        "| method | 8 | 16 | 32 | 64 |\n|---|---|---|---|---|\n";
  for (const char* m : {"qg-dsgdm", "qg-gutm"})
    md += absl::StrFormat("| %s | %s | %s | %s | %s |\n", Label(m), rep.Cell({"ring", 8, "0.1", m}),
                          rep.Cell({"ring", 16, "0.1", m}), rep.Cell({"ring", 32, "0.1", m}),
                          rep.Cell({"ring", 64, "0.1", m}));
  // The 16-agent column has more seeds than the others; seed 12 alone compares like with like.
  auto seed12 = [&](const Key& k) {
    const Run* r = rep.Find(k, 12);
    return r ? absl::StrFormat("%.2f", 100 * r->final_acc) : std::string("-");
  };
  for (const char* m : {"qg-dsgdm", "qg-gutm"})
    md += absl::StrFormat("| %s, seed 12 | %s | %s | %s | %s |\n", Label(m), seed12({"ring", 8, "0.1", m}),
                          seed12({"ring", 16, "0.1", m}), seed12({"ring", 32, "0.1", m}),
                          seed12({"ring", 64, "0.1", m}));
  md += "\nThe per-agent batch stays 32, so the global batch grows with the agent count (8 agents: 235 "
        "rounds per epoch; 64 agents: 30). Plot: " + link("fmnist-agents.svg") + ".\n";
  // QG-GUTm's mu at alpha = 0.01: the paper records mu = 0.01 for alpha = 0.1 only (docs/algorithms.md §6.2).
  md += "\n## QG-GUTm's μ at α = 0.01, 16-agent ring\n\n"
        "The paper records μ = 0.01 for Fashion-MNIST at α = 0.1 only; the poster's table above uses it at α = 0.01 "
        "too. `bench/reproduce.sh --phase mu-grid` runs docs/algorithms.md §6.2's grid (0.06 left out) on seed 12, "
        "then the best μ there on seeds 1 and 2. Final: after the 51 gossip rounds; last epoch: each agent's "
        "own model before them.\n\n| μ | final | last epoch | per seed (final) |\n|---|---|---|---|\n";
  for (const char* mu : {"0.005", "0.01", "0.02", "0.05", "0.08"}) {
    const std::string m = std::string(mu) == "0.01" ? "qg-gutm" : std::string("qg-gutm-mu") + mu;
    md += absl::StrFormat("| %s | %s | %s | %s |\n", mu, rep.Cell(ring16("0.01", m)),
                          rep.Cell(ring16("0.01", m), true), per_seed(ring16("0.01", m)));
  }
  md += absl::StrFormat("| QG-DSGDm (μ = 0) | %s | %s | %s |\n", rep.Cell(ring16("0.01", "qg-dsgdm")),
                        rep.Cell(ring16("0.01", "qg-dsgdm"), true), per_seed(ring16("0.01", "qg-dsgdm")));
  md += "\nWith β = 0.9 the network average moves (1 − μ)(1 − β)/(1 − β − μ) times as fast as QG-DSGDm's "
        "(docs/algorithms.md §1.4 (g)): 1.05x at μ = 0.005, 1.1x at 0.01, 1.9x at 0.05, 4.6x at 0.08. Plot: " +
        link("fmnist-a0.01.svg") + " (QG-GUTm with μ = 0.05 drawn too).\n";
  const fs::path overhead = fs::path(root) / "overhead.md";
  if (fs::exists(overhead)) md += "\n## Overheads per agent (bench/overhead_bench)\n\n" + Read(overhead);

  auto write = [&](const std::string& name, const std::string& text) {
    if (auto s = gut::report::AtomicWrite((fs::path(root) / name).string(), text); !s.ok()) {
      std::fprintf(stderr, "reproduce_report: %s\n", std::string(s.message()).c_str());
      std::exit(1);
    }
  };
  if (auto s = gut::report::AtomicWrite(table, md); !s.ok()) {
    std::fprintf(stderr, "reproduce_report: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  for (const char* a : {"0.1", "0.01"}) {
    std::vector<std::pair<std::string, Key>> series = {{"QG-DSGDm", ring16(a, "qg-dsgdm")},
                                                       {"QG-GUTm", ring16(a, "qg-gutm")},
                                                       {"QG-DSGDm ref. order", ring16(a, "qg-dsgdm-ref")},
                                                       {"QG-GUTm ref. order", ring16(a, "qg-gutm-ref")}};
    if (std::string(a) == "0.01") series.push_back({"QG-GUTm mu=0.05", ring16(a, "qg-gutm-mu0.05")});
    write(absl::StrFormat("fmnist-a%s.svg", a),
          rep.Plot(absl::StrFormat("Fashion-MNIST, LeNet-5, 16-agent ring, alpha = %s", a), series));
  }
  std::vector<std::pair<std::string, Key>> methods;
  for (const char* m : {"dsgd", "gut", "qg-dsgdm", "qg-gutm", "gt", "d2", "mt", "relaysgd", "ngm", "cga"})
    methods.push_back({Label(m), ring16("0.1", m)});
  write("fmnist-methods.svg", rep.Plot("Fashion-MNIST, 16 agents, alpha = 0.1: every method", methods));
  std::vector<std::pair<std::string, Key>> topo, agents;
  for (const char* g : {"ring", "torus", "dyck"})
    for (const char* m : {"qg-dsgdm", "qg-gutm"}) topo.push_back({Label(m) + " " + g, {g, 32, "0.1", m}});
  for (int n : {8, 16, 32, 64})
    for (const char* m : {"qg-dsgdm", "qg-gutm"})
      agents.push_back({absl::StrFormat("%s n=%d", Label(m), n), {"ring", n, "0.1", m}});
  write("fmnist-topology.svg", rep.Plot("Fashion-MNIST, 32 agents, alpha = 0.1: topologies", topo));
  write("fmnist-agents.svg", rep.Plot("Fashion-MNIST, ring, alpha = 0.1: agent count", agents));
  std::printf("reproduce_report: %d runs in %zu studies (%s); wrote %s and 5 plots in %s\n", found, studies.size(),
              absl::StrJoin(studies, ", ").c_str(), table.c_str(), root.c_str());
  return 0;
}
