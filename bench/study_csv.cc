#include "bench/study_csv.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <regex>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "core/common/atomic_file.h"

namespace fs = std::filesystem;

namespace gut::bench {
namespace {

constexpr absl::string_view kRunsSuffix = "-runs.csv";

// gut-sim's metrics.csv columns, in its order.
const std::vector<std::string>& MetricColumns() {
  static const auto* v = new std::vector<std::string>{
      "epoch",        "rounds",    "lr",           "train_loss", "test_acc_mean",   "test_acc_min", "test_acc_max",
      "test_loss",    "consensus_distance", "wall_s", "train_s",  "rounds_per_s", "bytes_sent"};
  return *v;
}
const std::vector<std::string>& SettingColumns() {
  static const auto* v = new std::vector<std::string>{"tag", "method", "graph", "agents", "alpha", "seed"};
  return *v;
}
// Runs-file columns after the settings, and the summary.json value each comes from.
const std::vector<std::pair<std::string, std::string>>& SummaryColumns() {
  static const auto* v = new std::vector<std::pair<std::string, std::string>>{
      {"final_acc_mean", "/final/test_acc_mean"},
      {"final_acc_min", "/final/test_acc_min"},
      {"final_acc_max", "/final/test_acc_max"},
      {"consensus_before_gossip", "/final/consensus_before_gossip"},
      {"consensus_after_gossip", "/final/consensus_after_gossip"},
      {"rounds", "/timing/rounds"},
      {"bytes_sent", "/exchange/bytes_sent"},
      {"num_params", "/exchange/num_params"},
      {"wall_s", "/timing/wall_s"},
      {"train_s", "/timing/train_s"},
      {"ms_per_training_round", "/timing/ms_per_training_round"},
      {"threads", "/timing/threads"},
      {"solver_fallbacks", "/final/solver_fallbacks"},
      {"algorithm", "/config/algorithm"},
      {"topology", "/config/graph"},
      {"weights", "/config/weights"},
      {"lr", "/config/lr"},
      {"momentum", "/config/momentum"},
      {"mu", "/config/mu"},
      {"nesterov", "/config/nesterov"},
      {"init", "/config/init"},
      {"codec", "/config/codec"},
      {"epochs", "/config/epochs"},
      {"final_acc_per_agent", "/final/test_acc_per_agent"}};
  return *v;
}

std::string RunsPath(const std::string& root, const std::string& study) {
  return (fs::path(root) / absl::StrCat(study, kRunsSuffix)).string();
}
std::string EpochsPath(const std::string& root, const std::string& study) {
  return (fs::path(root) / (study + ".csv")).string();
}

// A summary.json value as CSV text: strings as they are, numbers in the shortest form that reads
// back to the same double, lists space-separated; "" when absent (older gut-sim versions).
std::string JsonText(const nlohmann::json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_array()) {
    std::vector<std::string> parts;
    for (const auto& e : j) parts.push_back(JsonText(e));
    return absl::StrJoin(parts, " ");
  }
  return j.dump();
}
std::string Field(const nlohmann::json& j, const std::string& pointer) {
  const nlohmann::json::json_pointer p(pointer);
  return j.contains(p) ? JsonText(j.at(p)) : std::string();
}

absl::StatusOr<CsvTable> ReadCsv(const std::string& path) {
  auto text = core::ReadWholeFile(path);
  if (!text.ok()) return text.status();
  return ParseCsv(*text, path);
}

// An existing file's table, or an empty one with `header`; an existing file must have `header`.
absl::StatusOr<CsvTable> OpenForMerge(const std::string& path, const std::vector<std::string>& header) {
  if (!fs::exists(path)) return CsvTable{header, {}};
  auto t = ReadCsv(path);
  if (!t.ok()) return t.status();
  if (t->header != header)
    return absl::FailedPreconditionError(absl::StrCat(path, ": columns are ", absl::StrJoin(t->header, ","),
                                                      "; expected ", absl::StrJoin(header, ",")));
  return t;
}

// TAG's rows replaced by `rows` (appended at the end), written atomically.
absl::Status Merge(const std::string& path, const std::vector<std::string>& header, const std::string& tag,
                   std::vector<std::vector<std::string>> rows) {
  auto t = OpenForMerge(path, header);
  if (!t.ok()) return t.status();
  auto& r = t->rows;
  r.erase(std::remove_if(r.begin(), r.end(), [&](const auto& row) { return row.at(0) == tag; }), r.end());
  for (auto& row : rows) r.push_back(std::move(row));
  return core::AtomicWrite(path, FormatCsv(*t));
}

std::vector<std::vector<std::string>> RowsOf(const CsvTable& t, const std::string& tag) {
  std::vector<std::vector<std::string>> out;
  for (const auto& row : t.rows)
    if (row.at(0) == tag) out.push_back(row);
  return out;
}

}  // namespace

int CsvTable::Column(absl::string_view name) const {
  for (size_t i = 0; i < header.size(); ++i)
    if (header[i] == name) return static_cast<int>(i);
  return -1;
}

absl::StatusOr<CsvTable> ParseCsv(absl::string_view text, const std::string& path_for_errors) {
  CsvTable t;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    ++line_no;
    if (absl::EndsWith(line, "\r")) line.remove_suffix(1);
    std::vector<std::string> fields(1);
    bool quoted = false;
    for (size_t i = 0; i < line.size(); ++i) {
      const char c = line[i];
      if (quoted && c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        fields.back() += '"';
        ++i;
      } else if (c == '"') {
        quoted = !quoted;
      } else if (c == ',' && !quoted) {
        fields.emplace_back();
      } else {
        fields.back() += c;
      }
    }
    if (quoted) return absl::DataLossError(absl::StrCat(path_for_errors, ":", line_no, ": unterminated quote"));
    if (line_no == 1) {
      t.header = std::move(fields);
    } else if (fields.size() != t.header.size()) {
      return absl::DataLossError(absl::StrCat(path_for_errors, ":", line_no, ": ", fields.size(),
                                              " fields, the header has ", t.header.size()));
    } else {
      t.rows.push_back(std::move(fields));
    }
  }
  if (t.header.empty()) return absl::DataLossError(absl::StrCat(path_for_errors, ": empty"));
  return t;
}

std::string FormatCsv(const CsvTable& table) {
  auto field = [](const std::string& f) {
    if (f.find_first_of(",\"") == std::string::npos) return f;
    return absl::StrCat("\"", absl::StrReplaceAll(f, {{"\"", "\"\""}}), "\"");
  };
  std::string out;
  auto line = [&](const std::vector<std::string>& row) {
    std::vector<std::string> fs;
    for (const auto& f : row) fs.push_back(field(f));
    absl::StrAppend(&out, absl::StrJoin(fs, ","), "\n");
  };
  line(table.header);
  for (const auto& row : table.rows) line(row);
  return out;
}

const std::vector<std::string>& EpochColumns() {
  static const auto* v = [] {
    auto* c = new std::vector<std::string>(SettingColumns());
    c->insert(c->end(), MetricColumns().begin(), MetricColumns().end());
    return c;
  }();
  return *v;
}
const std::vector<std::string>& RunColumns() {
  static const auto* v = [] {
    auto* c = new std::vector<std::string>(SettingColumns());
    for (const auto& [name, pointer] : SummaryColumns()) c->push_back(name);
    c->push_back("command");
    c->push_back("note");
    return c;
  }();
  return *v;
}

bool ParseTag(const std::string& tag, TagParts* parts) {
  static const std::regex re(R"(fmnist-([a-z0-9]+?)(\d+)-a([0-9.]+)-(.+)-s(\d+))");
  std::smatch m;
  if (!std::regex_match(tag, m, re)) return false;
  parts->graph = m[1];
  parts->agents = std::stoi(m[2]);
  parts->alpha = m[3];
  parts->method = m[4];
  parts->seed = std::stoi(m[5]);
  return true;
}

absl::Status CollectRun(const std::string& root, const std::string& study, const std::string& run_dir,
                        const std::string& note) {
  const fs::path dir = fs::path(run_dir).lexically_normal();
  const std::string tag = (dir.has_filename() ? dir : dir.parent_path()).filename().string();
  TagParts p;
  if (!ParseTag(tag, &p))
    return absl::InvalidArgumentError(absl::StrCat(run_dir, ": the folder name '", tag,
                                                   "' is not fmnist-<graph><agents>-a<alpha>-<method>-s<seed>"));
  auto command = core::ReadWholeFile((dir / "command.txt").string());
  auto metrics = ReadCsv((dir / "metrics.csv").string());
  auto summary_text = core::ReadWholeFile((dir / "summary.json").string());
  for (const absl::Status& s : {command.status(), metrics.status(), summary_text.status()})
    if (!s.ok()) return s;
  nlohmann::json summary;
  try {
    summary = nlohmann::json::parse(*summary_text);
  } catch (const std::exception& e) {
    return absl::DataLossError(absl::StrCat((dir / "summary.json").string(), ": ", e.what()));
  }
  // The tag must name what gut-sim ran.
  const std::string seed = Field(summary, "/config/seed"), agents = Field(summary, "/config/agents");
  const std::string alpha = Field(summary, "/config/alpha");
  if (seed != std::to_string(p.seed) || agents != std::to_string(p.agents) || alpha.empty() ||
      std::stod(alpha) != std::stod(p.alpha))
    return absl::FailedPreconditionError(absl::StrCat(run_dir, ": summary.json has seed ", seed, ", ", agents,
                                                      " agents, alpha ", alpha, "; the tag says otherwise"));
  const std::vector<std::string> settings = {tag, p.method, p.graph, std::to_string(p.agents), p.alpha,
                                             std::to_string(p.seed)};
  std::vector<int> cols;
  for (const auto& name : MetricColumns()) {
    cols.push_back(metrics->Column(name));
    if (cols.back() < 0)
      return absl::DataLossError(absl::StrCat((dir / "metrics.csv").string(), ": no column ", name));
  }
  std::vector<std::vector<std::string>> epoch_rows;
  for (const auto& row : metrics->rows) {
    std::vector<std::string> out = settings;
    for (int c : cols) out.push_back(row[c]);
    epoch_rows.push_back(std::move(out));
  }
  std::vector<std::string> run_row = settings;
  for (const auto& [name, pointer] : SummaryColumns()) run_row.push_back(Field(summary, pointer));
  std::string first_line(absl::StripAsciiWhitespace(std::vector<std::string>(absl::StrSplit(*command, '\n'))[0]));
  run_row.push_back(first_line);
  run_row.push_back(absl::StrReplaceAll(note, {{"\n", " "}}));
  // Epoch rows first: the run counts as collected once its runs-file row is there.
  if (auto s = Merge(EpochsPath(root, study), EpochColumns(), tag, std::move(epoch_rows)); !s.ok()) return s;
  return Merge(RunsPath(root, study), RunColumns(), tag, {run_row});
}

absl::StatusOr<std::string> CopyRun(const std::string& root, const std::string& study, const std::string& tag) {
  std::vector<std::string> others;
  for (const auto& e : fs::directory_iterator(root)) {
    const std::string name = e.path().filename().string();
    if (absl::EndsWith(name, kRunsSuffix) && name != absl::StrCat(study, kRunsSuffix))
      others.push_back(name.substr(0, name.size() - kRunsSuffix.size()));
  }
  std::sort(others.begin(), others.end());
  for (const auto& other : others) {
    auto runs = ReadCsv(RunsPath(root, other));
    if (!runs.ok()) return runs.status();
    auto run_rows = RowsOf(*runs, tag);
    if (run_rows.empty()) continue;
    auto epochs = ReadCsv(EpochsPath(root, other));
    if (!epochs.ok()) return epochs.status();
    if (runs->header != RunColumns() || epochs->header != EpochColumns())
      return absl::FailedPreconditionError(absl::StrCat(root, ": ", other, "'s columns are not this version's"));
    if (auto s = Merge(EpochsPath(root, study), EpochColumns(), tag, RowsOf(*epochs, tag)); !s.ok()) return s;
    if (auto s = Merge(RunsPath(root, study), RunColumns(), tag, run_rows); !s.ok()) return s;
    return other;
  }
  return absl::NotFoundError(absl::StrCat("no study in ", root, " has ", tag));
}

absl::StatusOr<std::vector<StudyRun>> LoadStudies(const std::string& root, std::vector<std::string>* studies) {
  if (!fs::is_directory(root)) return absl::NotFoundError(absl::StrCat(root, " is not a folder"));
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(root)) {
    const std::string name = e.path().filename().string();
    if (absl::EndsWith(name, kRunsSuffix)) names.push_back(name.substr(0, name.size() - kRunsSuffix.size()));
  }
  std::sort(names.begin(), names.end());
  std::map<std::string, StudyRun> runs;
  for (const auto& study : names) {
    auto rt = ReadCsv(RunsPath(root, study));
    if (!rt.ok()) return rt.status();
    auto et = ReadCsv(EpochsPath(root, study));
    if (!et.ok()) return et.status();
    const int r_tag = rt->Column("tag"), r_acc = rt->Column("final_acc_mean"), r_wall = rt->Column("wall_s");
    const int r_ms = rt->Column("ms_per_training_round"), r_np = rt->Column("num_params");
    const int e_tag = et->Column("tag"), e_acc = et->Column("test_acc_mean"), e_rounds = et->Column("rounds");
    const int e_bytes = et->Column("bytes_sent");
    if (std::min({r_tag, r_acc, r_wall, r_ms, r_np, e_tag, e_acc, e_rounds, e_bytes}) < 0)
      return absl::DataLossError(absl::StrCat(root, ": ", study, "'s files lack the report's columns"));
    std::map<std::string, std::vector<const std::vector<std::string>*>> epoch_rows;
    for (const auto& row : et->rows) epoch_rows[row[e_tag]].push_back(&row);
    studies->push_back(study);
    for (const auto& row : rt->rows) {
      StudyRun r;
      r.tag = row[r_tag];
      r.study = study;
      if (runs.count(r.tag)) continue;  // the same run in an earlier study
      if (!ParseTag(r.tag, &r.parts))
        return absl::DataLossError(absl::StrCat(RunsPath(root, study), ": tag '", r.tag, "' is not a run tag"));
      try {
        r.final_acc = std::stod(row[r_acc]);
        r.wall_s = std::stod(row[r_wall]);
        r.ms_per_round = std::stod(row[r_ms]);
        r.num_params = std::stod(row[r_np]);
        for (const auto* e : epoch_rows[r.tag]) {
          if (!(*e)[e_acc].empty()) r.acc.push_back(std::stod((*e)[e_acc]));
          r.rounds = std::stod((*e)[e_rounds]);
          r.bytes_sent = std::stod((*e)[e_bytes]);
        }
      } catch (const std::exception& e) {
        return absl::DataLossError(absl::StrCat(root, ": ", study, ", ", r.tag, ": a number does not parse"));
      }
      runs.emplace(r.tag, std::move(r));
    }
  }
  std::vector<StudyRun> out;
  for (auto& [tag, r] : runs) out.push_back(std::move(r));
  return out;
}

}  // namespace gut::bench
