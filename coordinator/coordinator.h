// The coordinator of one run: validates the manifest, assigns ranks at Join (a barrier: every
// Join returns once all agents of the manifest are in), hands each agent its neighbours, weights,
// hyperparameters and seed, and aggregates the agents' per-epoch reports (mean/min/max over
// agents, the consensus distance estimated from parameter sketches) into gut-sim's output files.
// It never sees parameters: it is not on the data path, and training goes on without it.
#ifndef GUT_COORDINATOR_COORDINATOR_H_
#define GUT_COORDINATOR_COORDINATOR_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/config/manifest.h"
#include "core/topology/mixing.h"
#include "gut/v1/coordinator.grpc.pb.h"
#include "core/report/run_report.h"

namespace gut::coordinator {

struct CoordinatorOptions {
  std::string out_dir;                        // metrics.csv, summary.json, metrics.svg, agents.json
  absl::Duration join_timeout = absl::Minutes(10);  // the bootstrap barrier's limit
  std::string run_id;                         // empty: name + random suffix
};

class CoordinatorService final : public gut::v1::Coordinator::Service {
 public:
  static absl::StatusOr<std::unique_ptr<CoordinatorService>> Create(core::RunConfig config,
                                                                    CoordinatorOptions options);

  grpc::Status Join(grpc::ServerContext* ctx, const gut::v1::JoinRequest* req,
                    gut::v1::JoinResponse* resp) override;
  grpc::Status Report(grpc::ServerContext* ctx, const gut::v1::ReportRequest* req,
                      gut::v1::ReportResponse* resp) override;
  grpc::Status Status(grpc::ServerContext* ctx, const gut::v1::StatusRequest* req,
                      gut::v1::StatusResponse* resp) override;
  grpc::Status Leave(grpc::ServerContext* ctx, const gut::v1::LeaveRequest* req,
                     gut::v1::LeaveResponse* resp) override;

  // Called with every aggregated epoch (progress printing).
  void OnEpoch(std::function<void(const report::EpochRecord&)> fn) { on_epoch_ = std::move(fn); }
  // Blocks until the run is over (every agent sent its final report, or left) or `timeout`.
  // Returns the run's failure, if an agent reported one.
  absl::Status WaitFinished(absl::Duration timeout);
  const std::string& run_id() const { return run_id_; }
  const core::RunConfig& config() const { return config_; }

  // Prometheus gauges are updated through this hook (set by main; may be empty).
  std::function<void(const gut::v1::StatusResponse&, const report::EpochRecord*)> on_change;

 private:
  CoordinatorService(core::RunConfig config, CoordinatorOptions options, core::MixingMatrix w);
  struct Agent {
    std::string name, address, metrics_address;
    int64_t local_samples = 0;
    bool left = false;
  };
  void AggregateEpoch(int epoch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Finish() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WriteAgents() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  gut::v1::StatusResponse StatusLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const core::RunConfig config_;
  const CoordinatorOptions options_;
  const core::MixingMatrix w_;
  std::string run_id_;
  std::string manifest_yaml_;
  std::function<void(const report::EpochRecord&)> on_epoch_;

  mutable absl::Mutex mu_;
  std::map<int, Agent> agents_ ABSL_GUARDED_BY(mu_);  // by rank
  int64_t rounds_per_epoch_ ABSL_GUARDED_BY(mu_) = -1;  // decided when everyone is in
  std::string join_error_ ABSL_GUARDED_BY(mu_);
  // epoch -> rank -> metrics (final reports under key epochs + 1)
  std::map<int, std::map<int, gut::v1::EpochMetrics>> reports_ ABSL_GUARDED_BY(mu_);
  std::vector<report::EpochRecord> epochs_ ABSL_GUARDED_BY(mu_);
  int last_epoch_ ABSL_GUARDED_BY(mu_) = 0;
  double last_consensus_ ABSL_GUARDED_BY(mu_) = -1;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool agents_written_ ABSL_GUARDED_BY(mu_) = false;
  std::string failure_ ABSL_GUARDED_BY(mu_);
  absl::Time start_ = absl::Now();
};

}  // namespace gut::coordinator

#endif  // GUT_COORDINATOR_COORDINATOR_H_
