// Simulation: n agents of one run in one process, in lock-step rounds over an InProcessExchange,
// driving the very same core::Algorithm objects as gut-agentd. Owns the data, the shards, the
// trainers, the algorithms and the exchange. Reports one EpochRecord per epoch to a callback and
// writes metrics.csv and summary.json into an output directory.
#ifndef GUT_SIM_SIMULATION_H_
#define GUT_SIM_SIMULATION_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/config/manifest.h"

namespace gut::sim {

struct EpochRecord {
  int epoch = 0;  // 1-based
  int epochs = 0;
  int64_t rounds = 0;  // rounds done so far
  double lr = 0;
  double train_loss = 0;  // mean over agents of the epoch's mean minibatch loss
  bool evaluated = false;
  double acc_mean = 0, acc_min = 0, acc_max = 0;  // test accuracy over agents, in [0, 1]
  double test_loss = 0;
  double consensus = 0;  // sqrt(1/n sum ||x_i - x̄||^2)
  double wall_s = 0;     // since the start of training
  double train_s = 0;    // time in training rounds only (no evaluation)
  double rounds_per_s = 0;
  double eta_s = 0;
  int64_t bytes_sent = 0;
};

struct Summary {
  std::vector<EpochRecord> epochs;
  double final_acc_mean = 0, final_acc_min = 0, final_acc_max = 0;
  std::vector<double> final_acc;  // per agent, after the final gossip rounds
  double consensus_before_gossip = 0, consensus_after_gossip = 0;
  double wall_s = 0;
  int64_t rounds = 0;
  int64_t bytes_sent = 0;
  int64_t num_params = 0;
  int threads = 0;
};

class Simulation {
 public:
  // Loads the data, partitions it and builds every agent. Errors name what is wrong.
  static absl::StatusOr<std::unique_ptr<Simulation>> Create(const core::RunConfig& config);
  ~Simulation();

  // Runs the whole protocol; calls on_epoch after every epoch (from the calling thread).
  absl::StatusOr<Summary> Run(const std::function<void(const EpochRecord&)>& on_epoch);

  // Runs `rounds` training rounds without evaluation (benchmarks); returns seconds taken.
  absl::StatusOr<double> RunTrainingRounds(int rounds);

  int num_agents() const;
  int64_t num_params() const;
  int rounds_per_epoch() const;
  // Agent i's current model.
  std::vector<float> Params(int agent) const;
  // Model-sized buffers the algorithm keeps per agent besides x_i.
  int algorithm_buffers() const;

 private:
  struct State;
  explicit Simulation(std::unique_ptr<State> s);
  std::unique_ptr<State> s_;
};

// metrics.csv: a header and one row per epoch. summary.json: config, results, timings.
absl::Status WriteMetricsCsv(const std::string& path, const std::vector<EpochRecord>& epochs);
absl::Status WriteSummaryJson(const std::string& path, const core::RunConfig& config,
                              const Summary& summary);
std::string FormatProgress(const EpochRecord& r);
// metrics.svg: accuracy band, train loss and consensus distance per epoch.
absl::Status WritePlot(const std::string& path, const std::string& title,
                       const std::vector<EpochRecord>& epochs);

}  // namespace gut::sim

#endif  // GUT_SIM_SIMULATION_H_
