// Simulation: n agents of one run in one process, in lock-step rounds over an InProcessExchange,
// driving the very same core::Algorithm objects as gut-agentd through the same epoch driver
// (core/train/epoch_driver.h). Owns the data, the shards, the trainers, the algorithms and the
// exchange. Reports one EpochRecord per epoch to a callback; core/report turns them into
// metrics.csv, summary.json and metrics.svg.
//
// Checkpoints: with a checkpoint directory the whole run (every agent's algorithm state and
// sampler position, the byte counters, the epoch records so far) is saved every
// checkpoint.every_rounds rounds and when a stop is requested; a run started with `resume` picks
// up from the newest checkpoint that verifies and ends bit-identical to an uninterrupted run.
#ifndef GUT_SIM_SIMULATION_H_
#define GUT_SIM_SIMULATION_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/config/manifest.h"
#include "core/exchange/forgery.h"
#include "core/report/run_report.h"

namespace gut::sim {

using report::EpochRecord;
using report::Summary;

struct SimRunOptions {
  std::string checkpoint_dir;   // empty: no checkpoints
  bool resume = false;          // start from the newest usable checkpoint in checkpoint_dir
  const std::atomic<bool>* stop = nullptr;  // polled between rounds; a stop checkpoints, then
                                            // Run returns CANCELLED
};

class Simulation {
 public:
  // Loads the data, partitions it and builds every agent. Errors name what is wrong.
  static absl::StatusOr<std::unique_ptr<Simulation>> Create(const core::RunConfig& config);
  ~Simulation();

  // Runs the whole protocol; calls on_epoch after every epoch (from the calling thread).
  absl::StatusOr<Summary> Run(const std::function<void(const EpochRecord&)>& on_epoch,
                              const SimRunOptions& options = {});

  // Runs `rounds` training rounds without evaluation (benchmarks); returns seconds taken.
  absl::StatusOr<double> RunTrainingRounds(int rounds);

  // The drill (core/exchange/forgery.h): agent `rank` forges what its neighbours receive.
  absl::Status InjectForgery(int rank, const core::Forgery& f);

  int num_agents() const;
  int64_t num_params() const;
  int rounds_per_epoch() const;
  // The round Run started at (0, or the resumed checkpoint's).
  int64_t start_round() const;
  // Agent i's current model.
  std::vector<float> Params(int agent) const;
  // Model-sized buffers the algorithm keeps per agent besides x_i.
  int algorithm_buffers() const;
  // Agent i's current model as a file PyTorch loads (model-final.pt), and the mean over the agents
  // (model-average.pt; core::Trainer::ExportModel says what the files hold).
  absl::StatusOr<std::string> ExportModel(int agent) const;
  absl::StatusOr<std::string> ExportAverageModel() const;
  // The SHA-256 of the TorchScript model file, empty for a built-in model.
  std::string model_sha256() const;

 private:
  struct State;
  class Participant;
  explicit Simulation(std::unique_ptr<State> s);
  std::unique_ptr<State> s_;
};

}  // namespace gut::sim

#endif  // GUT_SIM_SIMULATION_H_
