// The agent's Prometheus metrics (prefix gut_agent_, base units; peer = the neighbour's rank).
// gut_agent_info{run_id, rank, name, ...} = 1 carries the identity every other series can be
// joined on. Gauges that have no meaningful value before the first measurement (loss, accuracy,
// consensus distance, learning rate, ETA) appear only once they have one: no placeholder zeros or
// -1s for avg() to trip over.
// Thread-safety: prometheus-cpp's metrics are thread-safe; Sync and the setters may be called from
// the training thread while the endpoint renders.
#ifndef GUT_AGENT_AGENT_METRICS_H_
#define GUT_AGENT_AGENT_METRICS_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "absl/status/statusor.h"
#include "core/config/manifest.h"
#include "services/grpc_exchange.h"
#include "services/metrics.h"
#include "services/peer_service.h"

namespace gut::agent {

struct AgentIdentity {
  std::string run_id, name, version;
  int rank = 0;
};

// A counter fed with totals from a source that can start over (an exchange's per-neighbour
// counters restart with every recovery generation): it keeps counting up across restarts.
class RunningTotal {
 public:
  explicit RunningTotal(prometheus::Counter* c) : c_(c) {}
  void Update(double total) {
    if (total < last_) base_ += last_;
    last_ = total;
    const double d = base_ + total - c_->Value();
    if (d > 0) c_->Increment(d);
  }

 private:
  prometheus::Counter* c_;
  double base_ = 0, last_ = 0;
};

// gut_agent_frames_rejected_total{reason}, read from the peer service at every scrape: refusals
// happen on gRPC threads at any time (also before the agent has joined a run, when no training
// loop syncs anything), and a scrape right after an attack must already count all of it.
// `svc` must outlive the endpoint the collector is added to.
std::shared_ptr<prometheus::Collectable> RejectionCollector(const services::PeerService* svc);

// The agent's /metrics endpoint on `address`, with the peer service's rejections and the TLS
// handshake failures. `advertise`, if empty, becomes the endpoint's reachable address.
absl::StatusOr<std::unique_ptr<services::MetricsEndpoint>> StartMetricsEndpoint(const std::string& address,
                                                                                const services::PeerService* svc,
                                                                                std::string* advertise);

class AgentMetrics {
 public:
  AgentMetrics(prometheus::Registry& r, const core::RunConfig& c, const AgentIdentity& id,
               const std::vector<int>& peers, int64_t rounds_per_epoch);

  // After every training round.
  void Round(int64_t rounds_done, double seconds, double wait_seconds, double lr, double progress, double eta_s);
  // After every epoch (train_loss null after the final gossip rounds, which train nothing).
  void Epoch(int epoch, const double* train_loss, const double* accuracy, const double* test_loss, double consensus);
  // After every epoch: the exchange's bytes so far against plain fp32, and the replica error
  // (Algorithm::replica_error; negative: the method keeps no public copy, no series).
  void Compression(int64_t bytes_sent, int64_t raw_bytes_sent, double replica_error);
  void Checkpoint(int64_t round, double seconds);
  void CheckpointFailed() { checkpoint_failures_.Increment(); }
  void Recovery(uint64_t generation);
  // The generation the agent starts in (1 for a fresh run, as the coordinator counts).
  void SetGeneration(uint64_t generation) { generation_.Set(static_cast<double>(generation)); }
  // Brings the counters up to the exchange's and the algorithm's totals.
  void Sync(const services::ExchangeStats& s, int64_t solver_fallbacks);
  // running, finished, failed, stopped; "finished" also sets the progress to 1 (the final gossip
  // rounds are in the denominator but are not training rounds).
  void SetStatus(const std::string& status);

 private:
  static void Bump(prometheus::Counter* c, double total) {
    const double d = total - c->Value();
    if (d > 0) c->Increment(d);
  }

  prometheus::Gauge& round_;
  prometheus::Gauge& epoch_;
  prometheus::Counter& rounds_;
  prometheus::Histogram& round_seconds_;
  prometheus::Histogram& compute_seconds_;
  prometheus::Histogram& wait_seconds_;
  prometheus::Histogram& checkpoint_seconds_;
  prometheus::Counter& checkpoints_;
  prometheus::Counter& checkpoint_failures_;
  prometheus::Gauge& last_checkpoint_round_;
  prometheus::Counter& recoveries_;
  prometheus::Gauge& generation_;
  prometheus::Gauge& unacked_;
  prometheus::Counter& solver_fallbacks_;
  services::LazyGauge lr_, progress_, eta_, train_loss_, test_accuracy_, test_loss_, consensus_;
  services::LazyGauge compression_, replica_error_;
  struct PeerSeries {
    RunningTotal sent, received, connects, wait, refused, replaced;
    prometheus::Gauge* up;
  };
  std::map<int, PeerSeries> peers_;  // by the neighbour's rank
  std::map<std::string, prometheus::Gauge*> status_;
};

}  // namespace gut::agent

#endif  // GUT_AGENT_AGENT_METRICS_H_
