// A run's results as files, shared by gut-sim and gut-coordinator (no LibTorch here):
// metrics.csv (one row per epoch), summary.json (configuration, results, timings), metrics.svg.
// Every file is written atomically (temporary file, then rename): a crash never leaves half a file.
#ifndef GUT_CORE_REPORT_RUN_REPORT_H_
#define GUT_CORE_REPORT_RUN_REPORT_H_

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "core/config/manifest.h"
#include "core/common/atomic_file.h"

namespace gut::report {

using core::AtomicWrite;

struct EpochRecord {
  int epoch = 0;  // 1-based
  int epochs = 0;
  int64_t rounds = 0;  // rounds done so far
  double lr = 0;
  double train_loss = 0;  // mean over agents of the epoch's mean minibatch loss
  bool evaluated = false;
  // The test metric over agents (Metric): accuracy in [0, 1], or RMSE (model.loss: mse).
  double acc_mean = 0, acc_min = 0, acc_max = 0;
  double test_loss = 0;
  double consensus = 0;  // sqrt(1/n sum ||x_i - x̄||^2)
  double wall_s = 0;     // since the start of training
  double train_s = 0;    // time in training rounds only (no evaluation)
  double rounds_per_s = 0;
  double eta_s = 0;
  int64_t bytes_sent = 0;
  int64_t raw_bytes_sent = 0;  // the same messages as plain fp32: compression = bytes_sent / this
  // Mean over agents of ||x - x̂|| / ||x|| at the end of the epoch (Algorithm::replica_error, in
  // rank order); -1 when the method keeps no public copy.
  double replica_error = -1;
  double compression() const {
    return raw_bytes_sent > 0 ? static_cast<double>(bytes_sent) / static_cast<double>(raw_bytes_sent) : 1.0;
  }
};

// A run's history as flat numbers and back, for checkpoints (kEpochRecordFields per record).
constexpr size_t kEpochRecordFields = 18;
std::vector<double> FlattenRecords(const std::vector<EpochRecord>& records);
std::vector<EpochRecord> UnflattenRecords(const std::vector<double>& flat);

struct Summary {
  std::vector<EpochRecord> epochs;
  // The test metric (Metric) after the final gossip rounds: over agents, and per agent.
  double final_acc_mean = 0, final_acc_min = 0, final_acc_max = 0;
  std::vector<double> final_acc;
  double consensus_before_gossip = 0, consensus_after_gossip = 0;
  double wall_s = 0;
  int64_t rounds = 0;
  int64_t bytes_sent = 0;
  int64_t raw_bytes_sent = 0;
  int64_t num_params = 0;
  int threads = 0;
  int64_t solver_fallbacks = -1;  // summed over agents (Algorithm::solver_fallbacks); -1: not known
  int64_t messages_refused = -1;  // summed over agents (core/exchange/message_guard.h); -1: not known
  // How the run ended: "finished", "failed" (with `failure`, the first error) or "stopped".
  std::string status = "finished";
  std::string failure;
  struct Dropped {
    int rank = 0;
    int64_t round = 0;  // the round the survivors went on from without it
  };
  std::vector<Dropped> dropped;  // fault.on_peer_loss: drop
  int agents = 0;                // agents whose final accuracy is in final_acc (0: all)
  std::string model_sha256;      // the TorchScript model file's, empty for a built-in model
};

// How a run's test metric is named wherever it is shown (model.loss decides): accuracy, in percent
// (columns test_acc_*), or the root mean squared error of a regression (test_rmse_*).
struct Metric {
  std::string name = "accuracy";  // "accuracy" or "rmse", as summary.json's "metric" says
  std::string key = "acc";        // the stem of the CSV columns and JSON keys: test_<key>_mean
  std::string label = "test accuracy";
  bool percent = true;
  static Metric For(const core::RunConfig& config);
  // One value as the epoch line shows it: "83.72%" or "0.1234".
  std::string Format(double v) const;
};

// metrics.csv: a header and one row per epoch. summary.json: config, results, timings.
absl::Status WriteMetricsCsv(const std::string& path, const std::vector<EpochRecord>& epochs,
                             core::Durability durability = core::Durability::kFsync, const Metric& metric = {});
absl::Status WriteSummaryJson(const std::string& path, const core::RunConfig& config,
                              const Summary& summary);
std::string FormatProgress(const EpochRecord& r, const Metric& metric = {});
// metrics.svg: the test metric's band, train loss and consensus distance per epoch.
absl::Status WritePlot(const std::string& path, const std::string& title,
                       const std::vector<EpochRecord>& epochs,
                       core::Durability durability = core::Durability::kRename, const Metric& metric = {});

// Mean, min and max of one per-agent value (the test metric), added in rank order: the mean is the
// running sum of value / n, so gut-sim and the coordinator get the same bits.
struct AgentSpread {
  explicit AgentSpread(int agents) : n(agents) {}
  void Add(double v) {
    mean += v / n;
    min = added == 0 ? v : std::min(min, v);
    max = added == 0 ? v : std::max(max, v);
    ++added;
  }
  int n;
  int added = 0;
  double mean = 0, min = 1, max = 0;  // min 1, max 0 until a value is added
};

}  // namespace gut::report

#endif  // GUT_CORE_REPORT_RUN_REPORT_H_
