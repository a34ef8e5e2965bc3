// frontier_report: the table and the plot of bench/compression_frontier.sh's CSV (one row per run:
// method, codec settings, consensus step gamma, final accuracy, compression ratio, replica error).
//
//   frontier_report --csv bench/results/compression/frontier-full.csv
//                   [--table FILE.md] [--plot FILE.svg] [--reference fp32]
//                   [--reference-acc A --reference-from TEXT]
//
// The table lists every run by method, then by bytes (compression ratio: bytes on the wire over
// the same messages in fp32), with its distance in points to the method's reference codec (fp32,
// gamma 1). The plot draws, per method, the frontier: the best final accuracy reached at or below
// each compression ratio, over log10(ratio), so the smallest messages that still keep an accuracy
// can be read off. Failed (diverged) runs are listed in the table and left out of the plot.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/str_format.h"
#include "bench/study_csv.h"
#include "core/report/plot.h"

namespace {

struct Row {
  std::string tag, method, codec, gamma, status;
  double acc = NAN, ratio = NAN, replica_error = NAN;
  std::string extra;  // further overrides (compression_frontier.sh --set), "key=value ..."; "" for none
};

// compression_frontier.sh tags a run "<method>-<codec>-g<gamma>" and then "-<key>-<value>" per
// --set; this gives those pairs back as "key=value key=value".
std::string ExtraSettings(const std::string& tag, const std::string& gamma) {
  const std::string mark = "-g" + gamma;
  const size_t at = tag.find(mark);
  if (gamma.empty() || at == std::string::npos || at + mark.size() >= tag.size()) return "";
  const std::vector<std::string> parts = absl::StrSplit(tag.substr(at + mark.size() + 1), '-');
  std::string out;
  for (size_t k = 0; k + 1 < parts.size(); k += 2) {
    absl::StrAppend(&out, out.empty() ? "" : " ", parts[k], "=", parts[k + 1]);
  }
  return out;
}

double Number(const std::vector<std::string>& r, int col) {
  double v = NAN;
  if (col >= 0 && col < static_cast<int>(r.size()) && !r[col].empty() && absl::SimpleAtod(r[col], &v)) return v;
  return NAN;
}

std::string Field(const std::vector<std::string>& r, int col) {
  return col >= 0 && col < static_cast<int>(r.size()) ? r[col] : "";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("Table and plot of bench/compression_frontier.sh's CSV");
  std::string csv_path, table_path, plot_path, reference = "fp32", reference_from;
  double reference_acc = NAN;
  app.add_option("--csv", csv_path, "the frontier CSV")->required();
  app.add_option("--table", table_path, "markdown table (default: the CSV's path with .md)");
  app.add_option("--plot", plot_path, "SVG plot (default: the CSV's path with .svg)");
  app.add_option("--reference", reference, "the codec each method is compared with");
  app.add_option("--reference-acc", reference_acc,
                 "the reference's final accuracy (0..1) when the CSV has no row for it, e.g. a run of another study");
  app.add_option("--reference-from", reference_from, "where --reference-acc comes from (printed in the table)");
  CLI11_PARSE(app, argc, argv);
  const std::string stem = csv_path.substr(0, csv_path.rfind('.'));
  if (table_path.empty()) table_path = stem + ".md";
  if (plot_path.empty()) plot_path = stem + ".svg";

  std::ifstream in(csv_path);
  if (!in) {
    std::fprintf(stderr, "frontier_report: cannot read %s\n", csv_path.c_str());
    return 1;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  auto table = gut::bench::ParseCsv(ss.str(), csv_path);
  if (!table.ok()) {
    std::fprintf(stderr, "frontier_report: %s\n", std::string(table.status().message()).c_str());
    return 1;
  }
  const int c_tag = table->Column("tag"), c_method = table->Column("method"), c_codec = table->Column("codec"),
            c_gamma = table->Column("gamma"), c_status = table->Column("status"),
            c_acc = table->Column("final_acc_mean"), c_ratio = table->Column("compression_ratio"),
            c_err = table->Column("replica_error");
  for (const auto& [name, col] : {std::pair<const char*, int>{"tag", c_tag}, {"method", c_method},
                                  {"final_acc_mean", c_acc}, {"compression_ratio", c_ratio}}) {
    if (col < 0) {
      std::fprintf(stderr, "frontier_report: %s has no column %s\n", csv_path.c_str(), name);
      return 1;
    }
  }
  std::map<std::string, std::vector<Row>> by_method;
  for (const auto& r : table->rows) {
    Row row{Field(r, c_tag), Field(r, c_method), Field(r, c_codec), Field(r, c_gamma), Field(r, c_status),
            Number(r, c_acc), Number(r, c_ratio), Number(r, c_err),
            ExtraSettings(Field(r, c_tag), Field(r, c_gamma))};
    by_method[row.method].push_back(row);
  }

  std::string md = absl::StrFormat(
      "# Compression frontier\n\nFrom `%s` (bench/compression_frontier.sh). ratio: bytes per round per edge "
      "over fp32's; Δ: points against %s at gamma 1 of the same method; replica error: ||x - x̂|| / ||x|| at "
      "the end; other settings: overrides beyond the codec's (the direct form is the default below gamma 1, "
      "docs/algorithms.md §8.4).\n\n| method | codec | gamma | other settings | ratio | final accuracy | Δ | "
      "replica error | status |\n|---|---|---|---|---:|---:|---:|---:|---|\n",
      csv_path, reference);
  if (!std::isnan(reference_acc)) {
    const size_t at = md.find("| method |");
    md.insert(at, absl::StrFormat("Reference (%s at gamma 1, not in this CSV): %.2f %% from %s.\n\n", reference,
                                  100 * reference_acc, reference_from.empty() ? "--reference-acc" : reference_from));
  }
  std::vector<gut::report::Series> series;
  for (auto& [method, rows] : by_method) {
    double ref = reference_acc;
    for (const Row& r : rows)
      if (r.codec == reference && r.gamma == "1" && r.extra.empty() && r.status == "finished") ref = r.acc;
    std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
      const double ra = std::isnan(a.ratio) ? -1 : a.ratio, rb = std::isnan(b.ratio) ? -1 : b.ratio;
      return ra != rb ? ra > rb : a.tag < b.tag;
    });
    for (const Row& r : rows) {
      const bool ok = r.status == "finished" && !std::isnan(r.acc);
      md += absl::StrFormat("| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", method, r.codec, r.gamma, r.extra,
                            std::isnan(r.ratio) ? "-" : absl::StrFormat("%.4f", r.ratio),
                            ok ? absl::StrFormat("%.2f %%", 100 * r.acc) : "-",
                            ok && !std::isnan(ref) ? absl::StrFormat("%+.2f", 100 * (r.acc - ref)) : "-",
                            std::isnan(r.replica_error) ? "-" : absl::StrFormat("%.3g", r.replica_error),
                            r.status);
    }
    // The frontier: walking from the largest messages to the smallest, the best accuracy at or
    // below each ratio (a codec that is both bigger and worse than another adds no point).
    std::vector<Row> done;
    for (const Row& r : rows)
      if (r.status == "finished" && !std::isnan(r.acc) && r.ratio > 0) done.push_back(r);
    std::sort(done.begin(), done.end(), [](const Row& a, const Row& b) { return a.ratio < b.ratio; });
    gut::report::Series s;
    s.name = method;
    double best = -1;
    for (const Row& r : done) {
      if (r.acc <= best) continue;
      best = r.acc;
      s.x.push_back(std::log10(r.ratio));
      s.y.push_back(100 * r.acc);
    }
    if (!s.x.empty()) series.push_back(std::move(s));
  }
  std::ofstream(table_path) << md;
  std::ofstream(plot_path) << gut::report::RenderLineChart(
      "Final accuracy against bytes per round per edge (frontier per method)",
      "log10(bytes / fp32 bytes)", "final test accuracy, %", series);
  std::printf("%s\n%s\n", table_path.c_str(), plot_path.c_str());
  return 0;
}
