#include "coordinator/coordinator.h"

#include <algorithm>
#include <filesystem>
#include <random>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/common/sketch.h"
#include "services/peer_wire.h"
#include "services/status.h"

namespace gut::coordinator {

namespace {

grpc::Status Error(grpc::StatusCode code, const std::string& msg) { return grpc::Status(code, msg); }

}  // namespace

absl::StatusOr<std::unique_ptr<CoordinatorService>> CoordinatorService::Create(
    core::RunConfig config, CoordinatorOptions options) {
  auto w = core::BuildMixingMatrix(config);
  if (!w.ok()) return w.status();
  if (options.out_dir.empty()) return absl::InvalidArgumentError("coordinator: --out is required");
  std::error_code ec;
  std::filesystem::create_directories(options.out_dir, ec);
  if (ec) {
    return absl::PermissionDeniedError(absl::StrCat("cannot create output directory '", options.out_dir,
                                                    "': ", ec.message()));
  }
  return std::unique_ptr<CoordinatorService>(
      new CoordinatorService(std::move(config), std::move(options), std::move(*w)));
}

CoordinatorService::CoordinatorService(core::RunConfig config, CoordinatorOptions options,
                                       core::MixingMatrix w)
    : config_(std::move(config)), options_(std::move(options)), w_(std::move(w)) {
  run_id_ = options_.run_id;
  if (run_id_.empty()) {
    std::random_device rd;
    run_id_ = absl::StrFormat("%s-%08x", config_.name, rd());
  }
  manifest_yaml_ = core::ToYaml(config_);
}

gut::v1::StatusResponse CoordinatorService::StatusLocked() const {
  gut::v1::StatusResponse r;
  r.set_run_id(run_id_);
  r.set_joined(static_cast<int>(agents_.size()));
  r.set_world_size(config_.num_agents);
  r.set_epoch(last_epoch_);
  r.set_finished(finished_);
  int left = 0;
  for (const auto& [rank, a] : agents_) left += a.left ? 1 : 0;
  r.set_left(left);
  r.set_failure(failure_);
  return r;
}

grpc::Status CoordinatorService::Join(grpc::ServerContext* ctx, const gut::v1::JoinRequest* req,
                                      gut::v1::JoinResponse* resp) {
  const int n = config_.num_agents;
  if (req->protocol_version() != gut::v1::PROTOCOL_VERSION_1) {
    return Error(grpc::StatusCode::FAILED_PRECONDITION,
                 absl::StrCat("protocol version ", req->protocol_version(), " is not supported (1)"));
  }
  if (req->agent_name().empty() || req->advertised_address().empty()) {
    return Error(grpc::StatusCode::INVALID_ARGUMENT, "join needs an agent name and an advertised address");
  }
  absl::MutexLock l(&mu_);
  int rank = -1;
  for (const auto& [r, a] : agents_)
    if (a.name == req->agent_name()) rank = r;  // a retried or repeated join keeps its rank
  if (rank < 0) {
    if (req->requested_rank() >= 0) {
      rank = req->requested_rank();
      if (rank >= n) {
        return Error(grpc::StatusCode::INVALID_ARGUMENT,
                     absl::StrCat("requested rank ", rank, " but the run has ", n, " agents (0..", n - 1, ")"));
      }
      if (agents_.count(rank)) {
        return Error(grpc::StatusCode::ALREADY_EXISTS,
                     absl::StrCat("rank ", rank, " is already taken by agent '", agents_[rank].name, "'"));
      }
    } else {
      for (int r = 0; r < n && rank < 0; ++r)
        if (!agents_.count(r)) rank = r;
      if (rank < 0) {
        return Error(grpc::StatusCode::RESOURCE_EXHAUSTED,
                     absl::StrCat("the run already has its ", n, " agents"));
      }
    }
  }
  Agent& a = agents_[rank];
  a.name = req->agent_name();
  a.address = req->advertised_address();
  a.metrics_address = req->metrics_address();
  a.local_samples = req->local_samples();
  spdlog::info("agent '{}' joined as rank {} ({}), {}/{} in", a.name, rank, a.address, agents_.size(), n);
  if (on_change) on_change(StatusLocked(), nullptr);

  absl::Time deadline = start_ + options_.join_timeout;
  if (ctx->deadline() < std::chrono::system_clock::time_point::max()) {
    deadline = std::min(deadline, absl::FromChrono(ctx->deadline()));
  }
  auto all_in = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return static_cast<int>(agents_.size()) == n || finished_;
  };
  if (!mu_.AwaitWithDeadline(absl::Condition(&all_in), deadline)) {
    std::vector<int> missing;
    for (int r = 0; r < n; ++r)
      if (!agents_.count(r)) missing.push_back(r);
    return Error(grpc::StatusCode::DEADLINE_EXCEEDED,
                 absl::StrCat("only ", agents_.size(), " of ", n, " agents joined in time; waiting for rank(s) ",
                              absl::StrJoin(missing, ", ")));
  }
  if (rounds_per_epoch_ < 0) {
    int local = 0;
    int64_t smallest = INT64_MAX;
    for (const auto& [r, x] : agents_) {
      if (x.local_samples > 0) {
        ++local;
        smallest = std::min(smallest, x.local_samples);
      }
    }
    if (local == 0) {
      rounds_per_epoch_ = 0;
    } else if (local < n) {
      join_error_ = absl::StrCat(local, " of ", n,
                                 " agents train on local data and the rest on the manifest's partition; "
                                 "a run needs one or the other");
      rounds_per_epoch_ = 0;
    } else {
      rounds_per_epoch_ = smallest / config_.batch_size;
      if (rounds_per_epoch_ == 0) {
        join_error_ = absl::StrCat("the smallest local data set has ", smallest,
                                   " samples, fewer than one batch of ", config_.batch_size);
      }
    }
  }
  if (!join_error_.empty()) return Error(grpc::StatusCode::FAILED_PRECONDITION, join_error_);
  if (!agents_written_) {
    agents_written_ = true;
    WriteAgents();
  }

  resp->set_run_id(run_id_);
  resp->set_rank(rank);
  resp->set_world_size(n);
  const auto& nb = w_.graph().neighbours(rank);
  for (size_t k = 0; k < nb.size(); ++k) {
    auto* x = resp->add_neighbours();
    x->set_rank(nb[k]);
    x->set_address(agents_[nb[k]].address);
    x->set_weight(w_.weight(rank, k));
  }
  resp->set_self_weight(w_.self_weight(rank));
  auto* h = resp->mutable_hyperparameters();
  h->set_algorithm(config_.hyper.algorithm);
  h->set_lr(config_.hyper.lr);
  h->set_momentum(config_.hyper.momentum);
  h->set_mu(config_.hyper.mu);
  h->set_nesterov(config_.hyper.nesterov);
  for (double m : config_.schedule.milestones) h->add_lr_milestones(m);
  h->set_lr_gamma(config_.schedule.gamma);
  h->set_epochs(config_.epochs);
  h->set_batch_size(config_.batch_size);
  h->set_final_gossip_rounds(config_.final_gossip_rounds);
  h->set_codec(services::WireCodec(config_.codec.kind));
  h->set_framing(config_.codec.zstd ? gut::v1::FRAMING_ZSTD : gut::v1::FRAMING_NONE);
  resp->set_seed(config_.seed);
  resp->set_start_round(0);
  resp->set_manifest_yaml(manifest_yaml_);
  resp->set_rounds_per_epoch(rounds_per_epoch_);
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::Report(grpc::ServerContext*, const gut::v1::ReportRequest* req,
                                        gut::v1::ReportResponse* resp) {
  if (req->run_id() != run_id_) {
    return Error(grpc::StatusCode::FAILED_PRECONDITION,
                 absl::StrCat("report for run '", req->run_id(), "', this is run '", run_id_, "'"));
  }
  const auto& m = req->metrics();
  const int n = config_.num_agents;
  if (m.rank() < 0 || m.rank() >= n) {
    return Error(grpc::StatusCode::INVALID_ARGUMENT, absl::StrCat("rank ", m.rank(), " out of range"));
  }
  if (m.epoch() < 1 || m.epoch() > config_.epochs) {
    return Error(grpc::StatusCode::INVALID_ARGUMENT,
                 absl::StrCat("epoch ", m.epoch(), " out of range 1..", config_.epochs));
  }
  absl::MutexLock l(&mu_);
  const int key = m.final() ? config_.epochs + 1 : m.epoch();
  reports_[key][m.rank()] = m;  // a retried report replaces the same entry
  while (last_epoch_ < config_.epochs && reports_.count(last_epoch_ + 1) &&
         static_cast<int>(reports_[last_epoch_ + 1].size()) == n) {
    AggregateEpoch(last_epoch_ + 1);
  }
  if (auto f = reports_.find(config_.epochs + 1);
      !finished_ && last_epoch_ == config_.epochs && f != reports_.end() && static_cast<int>(f->second.size()) == n) {
    Finish();
  }
  resp->set_consensus_distance_estimate(last_consensus_);
  return grpc::Status::OK;
}

void CoordinatorService::AggregateEpoch(int epoch) {
  const auto& rs = reports_[epoch];
  const int n = config_.num_agents;
  report::EpochRecord rec;
  rec.epoch = epoch;
  rec.epochs = config_.epochs;
  report::AgentSpread acc(n);
  std::vector<std::vector<float>> sketches;
  bool evaluated = true;
  for (const auto& [rank, m] : rs) {
    rec.rounds = std::max(rec.rounds, m.round());
    rec.lr = m.lr();
    rec.train_loss += m.train_loss() / n;
    evaluated = evaluated && m.evaluated();
    acc.Add(m.test_accuracy());
    rec.test_loss += m.test_loss() / n;
    rec.wall_s = std::max(rec.wall_s, m.wall_seconds());
    rec.train_s = std::max(rec.train_s, m.train_seconds());
    rec.bytes_sent += m.bytes_sent();
    sketches.emplace_back(m.sketch().begin(), m.sketch().end());
  }
  rec.evaluated = evaluated;
  rec.acc_mean = acc.mean;
  rec.acc_min = acc.min;
  rec.acc_max = acc.max;
  rec.consensus = core::ConsensusFromSketches(sketches);
  rec.rounds_per_s = rec.rounds / std::max(1e-9, rec.train_s);
  rec.eta_s = rec.wall_s / epoch * (config_.epochs - epoch);
  epochs_.push_back(rec);
  last_epoch_ = epoch;
  last_consensus_ = rec.consensus;
  const std::string dir = options_.out_dir;
  if (auto s = report::WriteMetricsCsv(dir + "/metrics.csv", epochs_); !s.ok()) spdlog::error("{}", s.ToString());
  if (auto s = report::WritePlot(dir + "/metrics.svg", config_.name, epochs_); !s.ok()) spdlog::error("{}", s.ToString());
  if (on_epoch_) on_epoch_(rec);
  if (on_change) on_change(StatusLocked(), &rec);
}

// agents.json (who is who) and prometheus-targets.json (Prometheus file_sd_configs format).
void CoordinatorService::WriteAgents() {
  nlohmann::json agents = nlohmann::json::array();
  nlohmann::json targets = nlohmann::json::array();
  for (const auto& [rank, a] : agents_) {
    agents.push_back({{"rank", rank}, {"name", a.name}, {"address", a.address},
                      {"metrics_address", a.metrics_address}});
    if (!a.metrics_address.empty()) {
      targets.push_back({{"targets", {a.metrics_address}},
                         {"labels", {{"run_id", run_id_}, {"rank", std::to_string(rank)}}}});
    }
  }
  const std::string dir = options_.out_dir;
  for (const auto& [file, j] : {std::pair<std::string, nlohmann::json>{"agents.json", agents},
                                {"prometheus-targets.json", targets}}) {
    if (auto s = report::AtomicWrite(dir + "/" + file, j.dump(2) + "\n"); !s.ok()) spdlog::error("{}", s.ToString());
  }
}

void CoordinatorService::Finish() {
  const auto& rs = reports_[config_.epochs + 1];
  const int n = config_.num_agents;
  report::Summary sum;
  sum.epochs = epochs_;
  report::AgentSpread acc(n);
  std::vector<std::vector<float>> sketches;
  for (const auto& [rank, m] : rs) {
    sum.final_acc.push_back(m.test_accuracy());
    acc.Add(m.test_accuracy());
    sum.wall_s = std::max(sum.wall_s, m.wall_seconds());
    sum.rounds = std::max(sum.rounds, m.round());
    sum.bytes_sent += m.bytes_sent();
    sum.num_params = m.num_params();
    sketches.emplace_back(m.sketch().begin(), m.sketch().end());
  }
  sum.final_acc_mean = acc.mean;
  sum.final_acc_min = acc.min;
  sum.final_acc_max = acc.max;
  sum.consensus_before_gossip = epochs_.empty() ? 0 : epochs_.back().consensus;
  sum.consensus_after_gossip = core::ConsensusFromSketches(sketches);
  sum.threads = n;
  const std::string dir = options_.out_dir;
  if (auto s = report::WriteSummaryJson(dir + "/summary.json", config_, sum); !s.ok()) {
    spdlog::error("{}", s.ToString());
  }
  spdlog::info("run {} finished: final mean test accuracy {:.2f}% [min {:.2f}, max {:.2f}]", run_id_,
               100 * sum.final_acc_mean, 100 * sum.final_acc_min, 100 * sum.final_acc_max);
  finished_ = true;
  if (on_change) on_change(StatusLocked(), nullptr);
}

grpc::Status CoordinatorService::Status(grpc::ServerContext*, const gut::v1::StatusRequest*,
                                        gut::v1::StatusResponse* resp) {
  absl::MutexLock l(&mu_);
  *resp = StatusLocked();
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::Leave(grpc::ServerContext*, const gut::v1::LeaveRequest* req,
                                       gut::v1::LeaveResponse*) {
  if (req->run_id() != run_id_) {
    return Error(grpc::StatusCode::FAILED_PRECONDITION,
                 absl::StrCat("leave for run '", req->run_id(), "', this is run '", run_id_, "'"));
  }
  absl::MutexLock l(&mu_);
  auto it = agents_.find(req->rank());
  if (it == agents_.end()) {
    return Error(grpc::StatusCode::NOT_FOUND, absl::StrCat("rank ", req->rank(), " never joined"));
  }
  it->second.left = true;
  if (req->failed()) {
    spdlog::error("agent {} failed: {}", req->rank(), req->reason());
    if (failure_.empty()) failure_ = absl::StrCat("agent ", req->rank(), ": ", req->reason());
  } else {
    spdlog::info("agent {} left: {}", req->rank(), req->reason());
  }
  if (on_change) on_change(StatusLocked(), nullptr);
  return grpc::Status::OK;
}

absl::Status CoordinatorService::WaitFinished(absl::Duration timeout) {
  absl::MutexLock l(&mu_);
  auto over = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || !failure_.empty()) return true;
    if (static_cast<int>(agents_.size()) < config_.num_agents) return false;
    for (const auto& [r, a] : agents_)
      if (!a.left) return false;
    return true;  // everyone left without finishing
  };
  if (!mu_.AwaitWithTimeout(absl::Condition(&over), timeout)) {
    return absl::DeadlineExceededError(absl::StrCat("run did not finish within ", absl::FormatDuration(timeout)));
  }
  if (!failure_.empty()) return absl::AbortedError(failure_);
  if (!finished_) return absl::AbortedError("every agent left before the run finished");
  return absl::OkStatus();
}

}  // namespace gut::coordinator
