// AgentParticipant: one agent's part of the run protocol (core/train/epoch_driver.h) over the
// network: training and gossip rounds through the GrpcExchange, epoch reports to the coordinator,
// its own metrics.csv, Prometheus series, and checkpoints of everything its future depends on
// (algorithm state, sampler position, the epoch's partial loss, counters, the report rows so far).
//
// Recovery hooks: Pending() makes the next round fail with ABORTED (a command of the
// coordinator's is waiting: the agent rolls back between rounds); Restore/RestoreInitial put the
// agent back to a checkpoint or to the start, bit for bit.
// Threads: the agent's training thread calls everything except Status(), which the heartbeat
// thread reads.
#ifndef GUT_AGENT_AGENT_PARTICIPANT_H_
#define GUT_AGENT_AGENT_PARTICIPANT_H_

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/agent_metrics.h"
#include "core/algorithm/algorithm.h"
#include "core/checkpoint/checkpoint_store.h"
#include "core/config/manifest.h"
#include "core/train/epoch_driver.h"
#include "core/train/trainer.h"
#include "services/coordinator_client.h"
#include "services/grpc_exchange.h"

namespace gut::agent {

// What the heartbeat thread reports (a snapshot; the training thread updates it).
struct AgentProgress {
  int64_t round = 0;
  int epoch = 0;
  double loss = std::numeric_limits<double>::quiet_NaN();
  double accuracy = std::numeric_limits<double>::quiet_NaN();
  std::vector<int64_t> checkpoints;
};

struct ParticipantParts {
  const core::RunConfig* config = nullptr;
  int rank = 0;
  int64_t rounds_per_epoch = 0;
  core::Trainer* trainer = nullptr;
  const core::Dataset* test = nullptr;
  services::GrpcExchange* exchange = nullptr;
  services::CoordinatorClient* client = nullptr;
  AgentMetrics* metrics = nullptr;        // null: no /metrics
  core::CheckpointStore* store = nullptr;  // null: no checkpoints
  std::string out_dir;                    // params-final.f32 and metrics.csv (empty: none)
  // Builds the method's initial state (every agent from the same x0).
  std::function<absl::StatusOr<std::unique_ptr<core::Algorithm<float>>>()> make_algorithm;
  const std::atomic<bool>* stop = nullptr;  // SIGTERM
};

class AgentParticipant final : public core::RunParticipant {
 public:
  explicit AgentParticipant(ParticipantParts p);

  absl::Status TrainRound(int64_t round, double lr) override;
  absl::Status GossipRound(int64_t round) override;
  double TakeEpochLoss() override;
  absl::Status EndEpoch(const core::EpochEnd& end) override;
  absl::Status Finish(int64_t rounds) override;
  absl::Status Checkpoint(int64_t rounds) override;
  bool StopRequested() override;
  std::string DivergenceHint() override;

  // ---- recovery ----
  // A command is waiting: the next round (and any wait in the exchange) ends with ABORTED.
  void SetPending(bool pending) { pending_ = pending; }
  // What every command answer says (any thread): RunCommand.hold_round (Hold) and stop_round,
  // the round to stop and checkpoint at after SIGTERM.
  void Standing(int64_t hold_round, int64_t stop_round) {
    Hold(hold_round);
    stop_round_ = stop_round;
  }
  int64_t stop_round() const { return stop_round_; }
  // RunCommand.hold_round: keep that checkpoint for a restore the coordinator prepares (any thread).
  void Hold(int64_t round) {
    if (p_.store != nullptr) p_.store->Pin(round);
  }
  int64_t holding() const { return p_.store != nullptr ? p_.store->pinned() : 0; }
  // The state of a fresh run (round 0, the manifest's topology: version 1).
  absl::Status RestoreInitial();
  // The checkpoint of `round`, bit for bit; returns the topology version it was taken under.
  absl::StatusOr<uint32_t> Restore(int64_t round);
  // A checkpoint of the current round boundary outside the schedule (a stop).
  absl::Status SaveStop();
  void set_topology_version(uint32_t v) { topology_version_ = v; }

  int64_t rounds() const { return round_; }
  core::Algorithm<float>& algorithm() { return *algorithm_; }
  AgentProgress Progress();
  void SyncMetrics();

 private:
  absl::Status Save(int64_t rounds, bool scheduled);
  void Visit(core::StateVisitor<float>* v);
  gut::v1::EpochMetrics EpochReport(int epoch, double lr, double train_loss, const core::EvalResult* ev, bool final);
  void WriteLocalCsv();
  void SendReport(const gut::v1::EpochMetrics& m);  // queues it, and keeps it for a restore
  void UpdateProgress(int epoch, double loss, const double* accuracy);
  double Elapsed() const;

  ParticipantParts p_;
  std::unique_ptr<core::Algorithm<float>> algorithm_;
  std::vector<float> scratch_;
  std::atomic<bool> pending_{false};
  std::atomic<int64_t> stop_round_{0};
  uint32_t topology_version_ = 1;
  // Everything below goes into checkpoints.
  int64_t round_ = 0;
  double loss_sum_ = 0;
  double train_s_ = 0, compute_s_ = 0, wait_s_ = 0, wall_offset_ = 0;
  std::vector<std::string> csv_rows_;
  // Every report queued so far (serialised EpochMetrics): a restored agent sends them again, since
  // the coordinator may have stopped before it received some (reports are idempotent, and one it
  // holds already changes nothing).
  std::vector<std::string> reports_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  int64_t start_round_ = 0;  // where this process began (for the rate)

  // Lock order: taken under Agent::mu_ (agent.cc, the heartbeat thread); a leaf.
  std::mutex progress_mu_;
  AgentProgress progress_;  // guarded by progress_mu_
};

}  // namespace gut::agent

#endif  // GUT_AGENT_AGENT_PARTICIPANT_H_
