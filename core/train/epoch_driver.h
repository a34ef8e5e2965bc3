// The run protocol, written once for gut-sim (n agents in lock-step) and gut-agentd (one agent
// over the network): epochs of training rounds with the learning-rate schedule, evaluation every
// run.eval_every epochs and after the last, a divergence check on each epoch's loss, the final
// gossip rounds, and checkpoints every checkpoint.every_rounds (docs/algorithms.md §6.1,
// docs/architecture.md "One epoch driver").
//
// Rounds are counted globally: rounds [0, epochs * rounds_per_epoch) train, the next
// final_gossip_rounds only average. A run can start at any round boundary (a resumed or rolled
// back run): "start at round r" means rounds [0, r) are done, including the end-of-epoch work of
// every epoch that ended at or before r. The driver holds no state of its own, so the
// participant's checkpoint is the whole truth.
//
// What happens inside a round (which agents, which exchange, metrics) is the participant's. The
// driver calls it from one thread. Errors from the participant are returned unchanged (a round
// interrupted by a rollback, for instance); the driver adds only its own: CANCELLED when a stop
// was requested (at a round boundary, before the round) and ABORTED when an epoch's loss is not
// finite.
#ifndef GUT_CORE_TRAIN_EPOCH_DRIVER_H_
#define GUT_CORE_TRAIN_EPOCH_DRIVER_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "core/config/lr_schedule.h"

namespace gut::core {

struct RunPlan {
  int epochs = 0;
  int64_t rounds_per_epoch = 0;
  int final_gossip_rounds = 0;
  int eval_every = 1;
  LrSchedule schedule;
  int64_t checkpoint_every_rounds = 0;  // 0: no periodic checkpoints

  int64_t training_rounds() const { return static_cast<int64_t>(epochs) * rounds_per_epoch; }
  int64_t total_rounds() const { return training_rounds() + final_gossip_rounds; }
  // The epoch (0-based) a training round belongs to; epochs for the final gossip rounds.
  int EpochOf(int64_t round) const;
};

struct EpochEnd {
  int epoch = 0;          // 1-based: the epoch that just ended
  int64_t rounds = 0;     // rounds done so far
  double lr = 0;          // the epoch's learning rate
  double train_loss = 0;  // mean over the participant's agents of the epoch's mean minibatch loss
  bool evaluate = false;  // the test set is due at this epoch
};

class RunParticipant {
 public:
  virtual ~RunParticipant() = default;
  // One training round (draw the minibatch, run every phase of the algorithm) of every agent the
  // participant runs; the minibatch losses go into the epoch's loss.
  virtual absl::Status TrainRound(int64_t round, double lr) = 0;
  // One round of plain averaging x <- Wx (docs/algorithms.md §1.6).
  virtual absl::Status GossipRound(int64_t round) = 0;
  // The mean train loss of the epoch that just ended; starts the next epoch's sum from zero.
  virtual double TakeEpochLoss() = 0;
  // Evaluation (when due), reports, progress output.
  virtual absl::Status EndEpoch(const EpochEnd& end) = 0;
  // After the last round: the final evaluation and the run's outputs.
  virtual absl::Status Finish(int64_t rounds) = 0;
  // A consistent state after `rounds` rounds (called at checkpoint.every_rounds multiples).
  virtual absl::Status Checkpoint(int64_t rounds) = 0;
  // Polled before every round.
  virtual bool StopRequested() = 0;
  // What most likely made the loss blow up in this run's configuration (a sentence that names
  // the setting to change); see DivergenceAdvice in core/config/manifest.h.
  virtual std::string DivergenceHint() = 0;
};

// Runs rounds [start_round, plan.total_rounds()) and then Finish. Returns OK when the run is done.
absl::Status DriveRun(const RunPlan& plan, int64_t start_round, RunParticipant* participant);

}  // namespace gut::core

#endif  // GUT_CORE_TRAIN_EPOCH_DRIVER_H_
