#include "agent/agent_metrics.h"

#include "core/codec/codec.h"
#include "absl/strings/str_cat.h"
#include "services/library_logs.h"
#include "services/metrics.h"

namespace gut::agent {
namespace {

using services::MakeCounter;
using services::MakeCounterFamily;
using services::MakeGauge;
using services::MakeGaugeFamily;
using services::MakeHistogram;

class Rejections final : public prometheus::Collectable {
 public:
  explicit Rejections(const services::PeerService* svc) : svc_(svc) {}
  std::vector<prometheus::MetricFamily> Collect() const override {
    prometheus::MetricFamily f;
    f.name = "gut_agent_frames_rejected_total";
    f.help = "Frames or streams refused on the peer port, by reason.";
    f.type = prometheus::MetricType::Counter;
    for (int k = 0; k < static_cast<int>(services::Reject::kCount); ++k) {
      const auto reason = static_cast<services::Reject>(k);
      prometheus::ClientMetric m;
      m.label.push_back({"reason", services::RejectName(reason)});
      m.counter.value = static_cast<double>(svc_->rejected(reason));
      f.metric.push_back(std::move(m));
    }
    return {std::move(f)};
  }

 private:
  const services::PeerService* svc_;
};

}  // namespace

std::shared_ptr<prometheus::Collectable> RejectionCollector(const services::PeerService* svc) {
  return std::make_shared<Rejections>(svc);
}

AgentMetrics::AgentMetrics(prometheus::Registry& r, const core::RunConfig& c, const AgentIdentity& id,
                           const std::vector<int>& peers, int64_t rounds_per_epoch)
    : round_(MakeGauge(r, "gut_agent_round", "Training and gossip rounds completed.")),
      epoch_(MakeGauge(r, "gut_agent_epoch", "Epochs completed.")),
      rounds_(MakeCounter(r, "gut_agent_rounds_completed_total",
                          "Training rounds completed (replays after a rollback count again).")),
      round_seconds_(MakeHistogram(r, "gut_agent_round_duration_seconds", "Wall time of one training round.")),
      compute_seconds_(MakeHistogram(r, "gut_agent_round_compute_seconds",
                                     "Time of one round spent computing (round time minus waiting).")),
      wait_seconds_(MakeHistogram(r, "gut_agent_round_wait_seconds",
                                  "Time of one round spent waiting for neighbours' messages.")),
      checkpoint_seconds_(MakeHistogram(r, "gut_agent_checkpoint_duration_seconds",
                                        "Time to write one checkpoint durably.")),
      checkpoints_(MakeCounter(r, "gut_agent_checkpoints_total", "Checkpoints written.")),
      checkpoint_failures_(MakeCounter(r, "gut_agent_checkpoint_failures_total",
                                       "Scheduled checkpoints that could not be written (training went on).")),
      last_checkpoint_round_(MakeGauge(r, "gut_agent_last_checkpoint_round",
                                       "Round of the newest durable checkpoint.")),
      recoveries_(MakeCounter(r, "gut_agent_recoveries_total",
                              "Rollbacks to a checkpoint ordered by the coordinator.")),
      generation_(MakeGauge(r, "gut_agent_recovery_generation", "The recovery generation the agent runs in.")),
      unacked_(MakeGauge(r, "gut_agent_unacknowledged_frames",
                         "Frames kept for resending until neighbours acknowledge them.")),
      solver_fallbacks_(MakeCounter(r, "gut_agent_solver_fallbacks_total",
                                    "Per-round subproblems the method could not solve and answered with a fallback "
                                    "(CGA: a tensor's QP had non-finite data; the previous weights were reused).")),
      lr_(MakeGaugeFamily(r, "gut_agent_learning_rate", "Learning rate of the current epoch.")),
      progress_(MakeGaugeFamily(r, "gut_agent_progress_ratio", "Share of the run's rounds completed, 0 to 1.")),
      eta_(MakeGaugeFamily(r, "gut_agent_eta_seconds", "Estimated seconds until the agent's last round.")),
      train_loss_(MakeGaugeFamily(r, "gut_agent_train_loss", "Mean minibatch loss over the last epoch.")),
      // The test metric under its own name (model.loss): accuracy, or a regression's RMSE.
      test_accuracy_(core::MetricName(c) == "rmse"
                         ? MakeGaugeFamily(r, "gut_agent_test_rmse",
                                           "Test RMSE (root mean squared error) of this agent's model at the last "
                                           "evaluation.")
                         : MakeGaugeFamily(r, "gut_agent_test_accuracy_ratio",
                                           "Test accuracy of this agent's model at the last evaluation.")),
      test_loss_(MakeGaugeFamily(r, "gut_agent_test_loss", "Test loss of this agent's model at the last evaluation.")),
      consensus_(MakeGaugeFamily(r, "gut_agent_consensus_distance_estimate",
                                 "Run-wide consensus distance, estimated by the coordinator from parameter sketches at "
                                 "the last complete epoch.")),
      compression_(MakeGaugeFamily(r, "gut_agent_compression_ratio",
                                   "Bytes this agent sent divided by what the same messages take as plain fp32 (1 for "
                                   "fp32; 0.25 for int8).")),
      replica_error_(MakeGaugeFamily(r, "gut_agent_replica_error_ratio",
                                     "||x - x_hat|| / ||x|| at the last epoch: how far the public copy the neighbours "
                                     "hold trails the model; a value that grows means compression is losing "
                                     "information.")) {
  MakeGauge(r, "gut_agent_epochs", "Epochs the run trains for (run.epochs).").Set(c.epochs);
  MakeGauge(r, "gut_agent_rounds_per_epoch",
            "Training rounds in one epoch.").Set(static_cast<double>(rounds_per_epoch));
  MakeGaugeFamily(r, "gut_agent_info",
                  "Who this agent is (always 1): join other series on instance to get run and rank.")
      .Add({{"run_id", id.run_id}, {"rank", std::to_string(id.rank)}, {"name", id.name},
            {"algorithm", c.hyper.algorithm}, {"codec", core::CodecName(c.codec.kind)}, {"model", c.model},
            {"metric", core::MetricName(c)}, {"numerics", c.numerics}})
      .Set(1);
  MakeGaugeFamily(r, "gut_build_info",
                  "Version of the running binary (always 1).").Add({{"version", id.version}}).Set(1);
  auto& status = MakeGaugeFamily(r, "gut_agent_status",
                                 "1 for the agent's current status (running, finished, failed, stopped).");
  for (const char* s : {"running", "finished", "failed", "stopped"}) status_[s] = &status.Add({{"status", s}});
  status_["running"]->Set(1);
  auto& sent = MakeCounterFamily(r, "gut_agent_peer_sent_bytes_total",
                                 "Bytes of frames sent to a neighbour (payload and headers).");
  auto& recv = MakeCounterFamily(r, "gut_agent_peer_received_bytes_total",
                                 "Bytes of frames received from a neighbour (payload and headers).");
  auto& up = MakeGaugeFamily(r, "gut_agent_peer_up", "1 while the stream to a neighbour is established.");
  auto& connects = MakeCounterFamily(r, "gut_agent_peer_connects_total",
                                     "Handshakes completed with a neighbour (first connection and reconnects).");
  auto& wait = MakeCounterFamily(r, "gut_agent_peer_wait_seconds_total",
                                 "Time the agent waited for this neighbour's messages (the neighbour it waits on "
                                 "grows fastest).");
  auto& refused = MakeCounterFamily(r, "gut_agent_peer_messages_refused_total",
                                    "This neighbour's messages refused as implausible (NaN or infinity, all zeros, "
                                    "implausibly large) and replaced by the agent's own; not zero means the neighbour "
                                    "is broken or hostile.");
  auto& replaced = MakeCounterFamily(r, "gut_agent_peer_streams_replaced_total",
                                     "Live streams of this neighbour replaced by a newer one (a reconnect after a break "
                                     "the old stream had not noticed, or another holder of its certificate).");
  for (int p : peers) {
    const std::map<std::string, std::string> label = {{"peer", std::to_string(p)}};
    peers_.emplace(p, PeerSeries{RunningTotal(&sent.Add(label)), RunningTotal(&recv.Add(label)),
                                 RunningTotal(&connects.Add(label)), RunningTotal(&wait.Add(label)),
                                 RunningTotal(&refused.Add(label)), RunningTotal(&replaced.Add(label)),
                                 &up.Add(label)});
  }
}

void AgentMetrics::Round(int64_t rounds_done, double seconds, double wait, double lr, double progress, double eta_s) {
  round_.Set(static_cast<double>(rounds_done));
  rounds_.Increment();
  round_seconds_.Observe(seconds);
  wait_seconds_.Observe(wait);
  compute_seconds_.Observe(seconds - wait);
  lr_.Set(lr);
  progress_.Set(progress);
  eta_.Set(eta_s);
}

void AgentMetrics::Epoch(int epoch, const double* train_loss, const double* accuracy, const double* test_loss,
                         double consensus) {
  epoch_.Set(epoch);
  if (train_loss != nullptr) train_loss_.Set(*train_loss);
  if (accuracy != nullptr) test_accuracy_.Set(*accuracy);
  if (test_loss != nullptr) test_loss_.Set(*test_loss);
  if (consensus >= 0) consensus_.Set(consensus);
}

void AgentMetrics::Compression(int64_t bytes_sent, int64_t raw_bytes_sent, double replica_error) {
  if (raw_bytes_sent > 0) compression_.Set(static_cast<double>(bytes_sent) / static_cast<double>(raw_bytes_sent));
  if (replica_error >= 0) replica_error_.Set(replica_error);
}

void AgentMetrics::Checkpoint(int64_t round, double seconds) {
  checkpoints_.Increment();
  checkpoint_seconds_.Observe(seconds);
  last_checkpoint_round_.Set(static_cast<double>(round));
}

void AgentMetrics::Recovery(uint64_t generation) {
  recoveries_.Increment();
  generation_.Set(static_cast<double>(generation));
}

void AgentMetrics::Sync(const services::ExchangeStats& s, int64_t fallbacks) {
  Bump(&solver_fallbacks_, static_cast<double>(fallbacks));
  std::map<int, bool> seen;
  for (const auto& p : s.peers) {
    auto it = peers_.find(p.rank);
    if (it == peers_.end()) continue;
    it->second.sent.Update(static_cast<double>(p.frame_bytes_sent));
    it->second.received.Update(static_cast<double>(p.frame_bytes_received));
    it->second.connects.Update(static_cast<double>(p.connects));
    it->second.wait.Update(p.wait_seconds);
    it->second.refused.Update(static_cast<double>(p.messages_refused));
    it->second.replaced.Update(static_cast<double>(p.streams_replaced));
    it->second.up->Set(p.connected ? 1 : 0);
    seen[p.rank] = true;
  }
  for (auto& [rank, series] : peers_)
    if (!seen.count(rank)) series.up->Set(0);  // no longer a neighbour (dropped)
  unacked_.Set(static_cast<double>(s.unacknowledged));
}

void AgentMetrics::SetStatus(const std::string& status) {
  if (status == "finished") progress_.Set(1);
  for (auto& [name, g] : status_) g->Set(name == status ? 1 : 0);
}

absl::StatusOr<std::unique_ptr<services::MetricsEndpoint>> StartMetricsEndpoint(const std::string& address,
                                                                                const services::PeerService* svc,
                                                                                std::string* advertise) {
  auto m = services::MetricsEndpoint::Start(address);
  if (!m.ok()) return m.status();
  (*m)->AddCollectable(RejectionCollector(svc));
  (*m)->AddCollectable(services::CounterCollector(
      "gut_agent_tls_handshake_failures_total", "TLS handshakes that failed on this agent's gRPC ports.",
      [] { return static_cast<double>(services::TlsHandshakeFailures()); }));
  if (advertise->empty()) {
    const std::string host = address.substr(0, address.rfind(':'));
    *advertise = absl::StrCat(host == "0.0.0.0" || host.empty() ? "127.0.0.1" : host, ":", (*m)->port());
  }
  return m;
}

}  // namespace gut::agent
