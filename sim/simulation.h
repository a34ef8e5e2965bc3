// Simulation: n agents of one run in one process, in lock-step rounds over an InProcessExchange,
// driving the very same core::Algorithm objects as gut-agentd. Owns the data, the shards, the
// trainers, the algorithms and the exchange. Reports one EpochRecord per epoch to a callback; the
// writers of sim/report.h turn them into metrics.csv, summary.json and metrics.svg.
#ifndef GUT_SIM_SIMULATION_H_
#define GUT_SIM_SIMULATION_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/config/manifest.h"
#include "sim/report.h"

namespace gut::sim {

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

}  // namespace gut::sim

#endif  // GUT_SIM_SIMULATION_H_
