// CoordinatorService: the gRPC face of one run's coordinator. It validates Joins (the bootstrap
// barrier: every Join returns once all agents of the manifest are in), hands each agent its rank,
// neighbours, weights, hyperparameters and the run's command, collects per-epoch reports
// (EpochAggregator) and heartbeats, and orchestrates recovery (Membership): it is on the control
// path only, never on the data path, and training goes on without it.
//
// Security: with TLS every caller presents a certificate; the name in it is the agent's name, bound
// to a rank at its first Join. Report, Heartbeat and Leave for a rank are accepted only from the
// identity bound to it, and a Join under a taken name only from the same identity; a join token
// (when configured) must come with every Join. Refusals are counted by reason and never echo the
// run id or any other value of the coordinator.
//
// Durability: coordinator-state.json (membership, generation, dropped ranks) and reports.jsonl in
// the output directory; a coordinator started with `resume` carries on from them.
// Thread-safety: gRPC calls and the monitor thread share one mutex (mu_).
#ifndef GUT_COORDINATOR_COORDINATOR_SERVICE_H_
#define GUT_COORDINATOR_COORDINATOR_SERVICE_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "coordinator/epoch_aggregator.h"
#include "coordinator/membership.h"
#include "coordinator/progress.h"
#include "coordinator/stragglers.h"
#include "core/config/manifest.h"
#include "core/models/model_file.h"
#include "gut/v1/coordinator.grpc.pb.h"

namespace gut::coordinator {

struct CoordinatorOptions {
  std::string out_dir;  // metrics.csv, summary.json, metrics.svg, agents.json, state, journal
  absl::Duration join_timeout = absl::Minutes(10);  // the bootstrap barrier's limit
  std::string run_id;   // empty: name + random suffix (or the saved run's, with resume)
  bool resume = false;  // carry on the run saved in out_dir
  absl::Duration heartbeat_timeout = absl::Seconds(5);
  std::string join_token;  // empty: none required
  bool require_identity = false;  // TLS: refuse callers without a verified certificate
  // TLS: every joining certificate must be bound to a rank (spiffe://gut/agent/rank/K), so no
  // agent certificate can take a rank meant for another (--require-rank-binding).
  bool require_rank_binding = false;
};

// Why the coordinator refused a call (label of gut_coordinator_requests_refused_total).
enum class Refusal { kRunId, kVersion, kToken, kIdentity, kRank, kBadRequest, kCount };
const char* RefusalName(Refusal r);
// Whether two secrets (join tokens) are equal, in time that does not depend on where they differ.
bool SameSecret(const std::string& a, const std::string& b);

// What the metrics and the status page show; built under the lock, handed out by value.
struct CoordinatorView {
  std::string run_id;
  std::string metric;  // the test metric's name: accuracy or rmse (model.loss)
  std::string status;  // "joining", "running", "finished", "failed"
  std::string failure;
  int joined = 0, expected = 0, active = 0, left = 0;
  uint64_t generation = 0;
  int64_t rounds_per_epoch = 0;
  int epoch = 0, epochs = 0;
  bool has_last = false;
  report::EpochRecord last;  // the last aggregated epoch (has_last)
  std::map<int, AgentRecord> agents;
  std::vector<std::pair<int, int>> edges;  // the current graph (without dropped ranks)
  std::vector<DroppedRank> dropped;
  ProgressEstimate progress;  // from heartbeat rounds (progress.h); no ETA once the run is over
  absl::Time now;             // when the view was taken (for "last heard" and "stalled since")
  // Seconds each rank's neighbours waited for it: in all, and in the last 30 s (stragglers.h);
  // the rank the run waits for (-1: none stands out).
  std::map<int, double> waited_on, waited_on_recent;
  int straggler = -1;
  int64_t refused[static_cast<int>(Refusal::kCount)] = {};
};

class CoordinatorService final : public gut::v1::Coordinator::Service {
 public:
  static absl::StatusOr<std::unique_ptr<CoordinatorService>> Create(core::RunConfig config,
                                                                    CoordinatorOptions options);
  ~CoordinatorService() override;

  grpc::Status Join(grpc::ServerContext* ctx, const gut::v1::JoinRequest* req, gut::v1::JoinResponse* resp) override;
  grpc::Status Report(grpc::ServerContext* ctx, const gut::v1::ReportRequest* req,
                      gut::v1::ReportResponse* resp) override;
  grpc::Status Heartbeat(grpc::ServerContext* ctx, const gut::v1::HeartbeatRequest* req,
                         gut::v1::HeartbeatResponse* resp) override;
  grpc::Status Status(grpc::ServerContext* ctx, const gut::v1::StatusRequest* req,
                      gut::v1::StatusResponse* resp) override;
  grpc::Status Leave(grpc::ServerContext* ctx, const gut::v1::LeaveRequest* req, gut::v1::LeaveResponse* resp) override;
  // model_handover.cc: the TorchScript model file, to a joined agent only.
  grpc::Status FetchModel(grpc::ServerContext* ctx, const gut::v1::FetchModelRequest* req,
                          grpc::ServerWriter<gut::v1::ModelChunk>* writer) override;

  // Called with every aggregated epoch (progress printing), and after every change of the view
  // (metrics), under the service's lock: keep them short.
  void OnEpoch(std::function<void(const report::EpochRecord&)> fn) { on_epoch_ = std::move(fn); }
  void OnChange(std::function<void(const CoordinatorView&)> fn) { on_change_ = std::move(fn); }
  // Blocks until the run is over (finished, failed, or every agent left) or `timeout` passes.
  // Returns OK for a finished run, the failure otherwise.
  absl::Status WaitFinished(absl::Duration timeout);
  // After this process was asked to stop: keeps answering for up to `limit` while agents asked to
  // stop at the same time (a Ctrl-C reaches every process) still need the stop round from here.
  void LetStoppingAgentsLeave(absl::Duration limit) ABSL_LOCKS_EXCLUDED(mu_);
  // Waits only for the run's last report (agents that already left may have reports in flight).
  bool WaitComplete(absl::Duration timeout);
  // The run's outputs as they stand, with `status` ("stopped", "failed") and `why`, when the
  // coordinator is stopped before the run ended.
  void WriteUnfinished(const std::string& status, const std::string& why);
  // The outputs the last write of metrics.csv, metrics.svg and summary.json left out (empty: all written).
  std::vector<std::string> Unwritten() const;
  const std::string& run_id() const { return run_id_; }
  CoordinatorView View() const;
  // The coordinator's own /metrics address, listed in prometheus-targets.json with the agents'.
  void SetMetricsAddress(const std::string& address) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  CoordinatorService(core::RunConfig config, CoordinatorOptions options, core::MixingMatrix w);
  std::string IdentityOf(const grpc::ServerContext* ctx) const;
  grpc::Status Refuse(Refusal why, grpc::StatusCode code, const std::string& log, const std::string& answer)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Monitor();
  void Persist() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WriteAgents() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void AfterRecovery(uint64_t before) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FillJoinResponse(int rank, uint32_t incarnation, gut::v1::JoinResponse* resp) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  CoordinatorView ViewLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Changed() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The monitor thread: the slowest active agent's heartbeat round into progress_.
  void ObserveProgress(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int64_t SlowestRound() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);  // -1: nobody joined yet

  const core::RunConfig config_;
  const CoordinatorOptions options_;
  const core::MixingMatrix w_;
  std::string run_id_;
  std::string manifest_yaml_;
  // model.name: torchscript: the file read at start (null for a built-in model). Immutable once
  // Create returns, so FetchModel streams it without the lock.
  std::shared_ptr<const core::ModelFile> model_;
  std::function<void(const report::EpochRecord&)> on_epoch_;
  std::function<void(const CoordinatorView&)> on_change_;

  // Lock order: the coordinator's only lock; under it run just the OnEpoch/OnChange callbacks.
  mutable absl::Mutex mu_;
  Membership members_ ABSL_GUARDED_BY(mu_);
  EpochAggregator aggregator_ ABSL_GUARDED_BY(mu_);
  int64_t rounds_per_epoch_ ABSL_GUARDED_BY(mu_) = -1;  // local data: decided when everyone is in
  std::string join_error_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;  // stopped by a signal (WriteUnfinished)
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  int64_t refused_[static_cast<int>(Refusal::kCount)] ABSL_GUARDED_BY(mu_) = {};
  std::string metrics_address_ ABSL_GUARDED_BY(mu_);
  ProgressTracker progress_ ABSL_GUARDED_BY(mu_);         // fed by the monitor thread
  StragglerBoard stragglers_ ABSL_GUARDED_BY(mu_);        // fed by heartbeats
  std::vector<std::string> unwritten_ ABSL_GUARDED_BY(mu_);  // outputs the last WriteOutputs could not write
  absl::Time start_ = absl::Now();
  absl::Time last_tick_ = absl::InfinitePast();  // the monitor thread's own (no lock needed)
  absl::Time last_progress_change_ = absl::InfinitePast();  // the monitor thread's own
  std::thread monitor_;
};

}  // namespace gut::coordinator

#endif  // GUT_COORDINATOR_COORDINATOR_SERVICE_H_
