#include "coordinator/coordinator_metrics.h"

#include <algorithm>
#include <cmath>

#include "core/codec/codec.h"
#include "services/metrics.h"

namespace gut::coordinator {
namespace {

using services::MakeCounterFamily;
using services::MakeGauge;
using services::MakeGaugeFamily;

std::string MetricFamily(const core::RunConfig& c) {
  return core::MetricName(c) == "rmse" ? "gut_coordinator_test_rmse" : "gut_coordinator_test_accuracy_ratio";
}

}  // namespace

CoordinatorMetrics::CoordinatorMetrics(prometheus::Registry& r, const core::RunConfig& c, const std::string& run_id,
                                       const std::string& version)
    : registry_(r),
      config_(c),
      joined_(MakeGauge(r, "gut_coordinator_agents_joined", "Agents that have joined the run.")),
      expected_(MakeGauge(r, "gut_coordinator_agents_expected", "Agents the manifest asks for.")),
      active_(MakeGauge(r, "gut_coordinator_agents_active", "Agents still part of the run (not dropped).")),
      left_(MakeGauge(r, "gut_coordinator_agents_left", "Agents that have finished, failed or stopped.")),
      epoch_(MakeGauge(r, "gut_coordinator_epoch", "Last epoch every active agent has reported.")),
      epochs_(MakeGauge(r, "gut_coordinator_epochs", "Epochs the run trains for (run.epochs).")),
      progress_(MakeGauge(r, "gut_coordinator_progress_ratio", "Share of the run's rounds the slowest active agent has completed, 0 to 1.")),
      generation_(MakeGauge(r, "gut_coordinator_recovery_generation",
                            "Recovery generation: increases with every rollback or dropped rank.")),
      dropped_(MakeGauge(r, "gut_coordinator_agents_dropped",
                         "Ranks removed from the run (fault.on_peer_loss: drop).")),
      rounds_per_epoch_(MakeGaugeFamily(r, "gut_coordinator_rounds_per_epoch", "Training rounds in one epoch.")),
      eta_(MakeGaugeFamily(r, "gut_coordinator_eta_seconds", "Estimated seconds until the run ends, from the agents' heartbeat rounds (NaN when stalled or over).")),
      // The test metric under its own name (model.loss): accuracy, or a regression's RMSE.
      acc_mean_(MakeGaugeFamily(r, MetricFamily(c),
                                core::MetricName(c) == "rmse"
                                    ? "Test RMSE over agents at the last evaluated epoch (stat = mean, min, max)."
                                    : "Test accuracy over agents at the last evaluated epoch (stat = mean, min, max)."),
                {{"stat", "mean"}}),
      acc_min_(MakeGaugeFamily(r, MetricFamily(c), ""), {{"stat", "min"}}),
      acc_max_(MakeGaugeFamily(r, MetricFamily(c), ""), {{"stat", "max"}}),
      loss_(MakeGaugeFamily(r, "gut_coordinator_train_loss", "Mean train loss over agents at the last epoch.")),
      consensus_(MakeGaugeFamily(r, "gut_coordinator_consensus_distance",
                                 "Consensus distance estimated from the agents' parameter sketches at the last "
                                 "epoch.")),
      rps_(MakeGaugeFamily(r, "gut_coordinator_rounds_per_second", "Rounds per second of the slowest active agent over the last 30 s (0 while stalled).")),
      agent_up_(MakeGaugeFamily(r, "gut_coordinator_agent_up",
                                "1 while the agent of this rank sends heartbeats (or has finished).")),
      agent_round_(MakeGaugeFamily(r, "gut_coordinator_agent_round",
                                   "Rounds the agent of this rank has completed (last heartbeat).")),
      waited_on_(MakeCounterFamily(r, "gut_coordinator_agent_waited_on_seconds_total",
                                   "Seconds the neighbours of this rank waited for its messages (from their "
                                   "heartbeats): the rank the run waits for grows fastest.")) {
  auto& status = MakeGaugeFamily(r, "gut_coordinator_run_status",
                                 "1 for the run's current status (joining, running, finished, failed, stopped).");
  for (const char* s : {"joining", "running", "finished", "failed", "stopped"}) status_[s] = &status.Add({{"status", s}});
  auto& refused = MakeCounterFamily(r, "gut_coordinator_requests_refused_total",
                                    "Calls the coordinator refused, by reason.");
  for (int k = 0; k < static_cast<int>(Refusal::kCount); ++k) {
    refused_.push_back(&refused.Add({{"reason", RefusalName(static_cast<Refusal>(k))}}));
  }
  MakeGaugeFamily(r, "gut_run_info", "The run this coordinator serves (always 1).")
      .Add({{"run_id", run_id}, {"algorithm", c.hyper.algorithm}, {"codec", core::CodecName(c.codec.kind)},
            {"graph", c.graph}, {"agents", std::to_string(c.num_agents)}, {"version", version},
            {"model", c.model}, {"metric", core::MetricName(c)}})
      .Set(1);
  expected_.Set(c.num_agents);
  epochs_.Set(c.epochs);
  status_["joining"]->Set(1);
}

void CoordinatorMetrics::Update(const CoordinatorView& v) {
  joined_.Set(v.joined);
  active_.Set(v.active);
  left_.Set(v.left);
  epoch_.Set(v.epoch);
  generation_.Set(static_cast<double>(v.generation));
  dropped_.Set(static_cast<double>(v.dropped.size()));
  if (v.rounds_per_epoch > 0) rounds_per_epoch_.Set(static_cast<double>(v.rounds_per_epoch));
  // From the agents' heartbeat rounds once their pace is known (within the first epoch), else epochs.
  progress_.Set(v.progress.total > 0 ? v.progress.fraction() : static_cast<double>(v.epoch) / std::max(1, config_.epochs));
  if (v.status != "running" || v.progress.stalled || std::isfinite(v.progress.eta_s)) eta_.Set(v.progress.eta_s);
  if (std::isfinite(v.progress.rounds_per_s)) rps_.Set(v.progress.rounds_per_s);
  for (auto& [name, g] : status_) g->Set(name == v.status ? 1 : 0);
  for (const auto& [rank, a] : v.agents) {
    const std::string label = std::to_string(rank);
    if (!up_.count(rank)) {
      up_[rank] = &agent_up_.Add({{"rank", label}});
      round_[rank] = &agent_round_.Add({{"rank", label}});
    }
    up_[rank]->Set(a.present() ? 1 : 0);
    round_[rank]->Set(static_cast<double>(a.round));
    if (!waited_.count(rank)) waited_[rank] = &waited_on_.Add({{"rank", label}});
    const auto w = v.waited_on.find(rank);
    if (w != v.waited_on.end() && w->second > waited_[rank]->Value()) waited_[rank]->Increment(w->second - waited_[rank]->Value());
  }
  for (size_t k = 0; k < refused_.size(); ++k) {
    const double d = static_cast<double>(v.refused[k]) - refused_[k]->Value();
    if (d > 0) refused_[k]->Increment(d);
  }
  if (v.has_last) {
    // Gauges are only created with a value once one exists: no placeholder before the first epoch.
    if (v.last.evaluated) {
      acc_mean_.Set(v.last.acc_mean);
      acc_min_.Set(v.last.acc_min);
      acc_max_.Set(v.last.acc_max);
    }
    loss_.Set(v.last.train_loss);
    consensus_.Set(v.last.consensus);
  }
}

}  // namespace gut::coordinator
