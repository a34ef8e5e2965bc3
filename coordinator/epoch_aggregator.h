// EpochAggregator: the agents' per-epoch reports turned into the run's history and outputs
// (gut-sim's metrics.csv, metrics.svg and summary.json, through core/report). An epoch is
// aggregated once every active agent has reported it: mean/min/max test accuracy (added in rank
// order, as gut-sim does, so the numbers match to the bit), mean loss, and the consensus distance
// estimated from the agents' parameter sketches.
//
// Durability: every accepted report, and every rollback, is appended to reports.jsonl in the
// output directory (one JSON object per line, fsync'd). A restarted coordinator replays it and
// carries on where the crashed one stopped. A rollback to round r forgets every epoch that ended
// after r: the agents report those epochs again.
//
// Not thread-safe: the service calls it under its mutex.
#ifndef GUT_COORDINATOR_EPOCH_AGGREGATOR_H_
#define GUT_COORDINATOR_EPOCH_AGGREGATOR_H_

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "coordinator/membership.h"
#include "core/config/manifest.h"
#include "core/report/run_report.h"
#include "gut/v1/common.pb.h"

namespace gut::coordinator {

class EpochAggregator {
 public:
  EpochAggregator(core::RunConfig config, std::string out_dir);
  ~EpochAggregator();

  // Opens the journal; with `replay`, first feeds back what it holds (a restarted coordinator).
  absl::Status Open(bool replay, const Membership& members);

  // Records a report (replacing an earlier one of the same rank and epoch) and aggregates every
  // epoch now complete over the active agents. Returns the newly aggregated epochs.
  std::vector<report::EpochRecord> Add(const gut::v1::EpochMetrics& m, const Membership& members);
  // A rollback to `restore_round`: epochs that ended after it are forgotten.
  void Rewind(int64_t restore_round, int64_t rounds_per_epoch);

  // Every active agent has sent its final report (after the final gossip rounds).
  bool complete(const Membership& members) const;
  // The run's summary: the final reports if complete, else what the epochs so far say.
  report::Summary Summarise(const Membership& members) const;
  // metrics.csv, metrics.svg and summary.json with `status` ("finished", "failed").
  // Writes metrics.csv, metrics.svg and summary.json; returns the names of those it could not
  // write (each logged with its reason), so nobody says "wrote" for a file that is not there.
  std::vector<std::string> WriteOutputs(const Membership& members, const std::string& status,
                                        const std::string& failure);
  // The TorchScript model file's SHA-256, recorded in summary.json (empty: a built-in model).
  void set_model_sha256(std::string sha) { model_sha256_ = std::move(sha); }

  int last_epoch() const { return last_epoch_; }
  double last_consensus() const { return last_consensus_; }
  const std::vector<report::EpochRecord>& epochs() const { return epochs_; }

 private:
  std::vector<report::EpochRecord> Aggregate(const Membership& members);
  void Journal(const std::string& line);

  const core::RunConfig config_;
  const std::string out_dir_;
  std::string model_sha256_;
  std::FILE* journal_ = nullptr;
  // epoch -> rank -> metrics; final reports under key epochs + 1.
  std::map<int, std::map<int, gut::v1::EpochMetrics>> reports_;
  std::vector<report::EpochRecord> epochs_;
  int last_epoch_ = 0;
  double last_consensus_ = -1;
};

}  // namespace gut::coordinator

#endif  // GUT_COORDINATOR_EPOCH_AGGREGATOR_H_
