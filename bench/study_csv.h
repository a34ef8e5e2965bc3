// The study CSVs of bench/reproduce.sh. A study is one of its phases (table, dsgd-gut, baselines,
// topology, agents, mu-grid, table-ref); each has two files in ROOT (bench/results/reproduce):
//
//   ROOT/<study>.csv       one row per epoch of every run of the study (kEpochColumns): the run's tag
//                          and settings, then gut-sim's metrics.csv row, copied verbatim
//   ROOT/<study>-runs.csv  one row per run (kRunColumns): the results after the final gossip rounds,
//                          timing and bytes from summary.json, the resolved settings and the command
//
// A run is in a study once its tag has a row in <study>-runs.csv (written after the epoch rows).
// Tags are fmnist-<graph><agents>-a<alpha>-<method>-s<seed>. A run that several phases plan (the
// 16-agent ring of the agents phase is the table's run) has its rows in each of their files, so
// every study's files are complete on their own; the report reads each tag once.
#ifndef GUT_BENCH_STUDY_CSV_H_
#define GUT_BENCH_STUDY_CSV_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace gut::bench {

// A CSV file: a header row and data rows (RFC 4180 quoting; no line breaks inside fields).
struct CsvTable {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  int Column(absl::string_view name) const;  // -1 when absent
};
absl::StatusOr<CsvTable> ParseCsv(absl::string_view text, const std::string& path_for_errors);
std::string FormatCsv(const CsvTable& table);

const std::vector<std::string>& EpochColumns();
const std::vector<std::string>& RunColumns();

// The settings a tag names; false when `tag` is not fmnist-<graph><agents>-a<alpha>-<method>-s<seed>.
struct TagParts {
  std::string graph, alpha, method;
  int agents = 0, seed = 0;
};
bool ParseTag(const std::string& tag, TagParts* parts);

// A finished gut-sim run folder (command.txt, metrics.csv, summary.json; its name is the tag) into
// ROOT/STUDY.csv and ROOT/STUDY-runs.csv, replacing any earlier rows of the same tag. `note`: free
// text for the runs file's note column.
absl::Status CollectRun(const std::string& root, const std::string& study, const std::string& run_dir,
                        const std::string& note);
// TAG's rows, from the first other study in ROOT (by name) that has the run, into STUDY's files.
// Returns the study it came from.
absl::StatusOr<std::string> CopyRun(const std::string& root, const std::string& study, const std::string& tag);

// One run as the report needs it.
struct StudyRun {
  std::string tag, study;
  TagParts parts;
  double final_acc = 0, wall_s = 0, ms_per_round = 0, num_params = 0;
  std::vector<double> acc;           // test accuracy per epoch, mean over agents
  double rounds = 0, bytes_sent = 0;  // at the end of the last epoch (final gossip rounds excluded)
};
// Every run of every study in ROOT (each <study>-runs.csv with its <study>.csv), each tag once (from
// the first study by name), sorted by tag. `studies` receives the study names found.
absl::StatusOr<std::vector<StudyRun>> LoadStudies(const std::string& root, std::vector<std::string>* studies);

}  // namespace gut::bench

#endif  // GUT_BENCH_STUDY_CSV_H_
