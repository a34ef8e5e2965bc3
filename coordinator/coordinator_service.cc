#include "coordinator/coordinator_service.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <random>

#include <grpcpp/security/auth_context.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "coordinator/report_checks.h"
#include "core/common/atomic_file.h"
#include "core/common/log_context.h"
#include "core/common/redact.h"
#include "services/peer_wire.h"
#include "services/tls.h"

namespace gut::coordinator {

const char* RefusalName(Refusal r) {
  switch (r) {
    case Refusal::kRunId: return "run_id";
    case Refusal::kVersion: return "version";
    case Refusal::kToken: return "token";
    case Refusal::kIdentity: return "identity";
    case Refusal::kRank: return "rank";
    case Refusal::kBadRequest: return "bad_request";
    case Refusal::kCount: break;
  }
  return "unknown";
}

// Constant-time comparison: a wrong token takes as long as a right one.
bool SameSecret(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t k = 0; k < std::max(a.size(), b.size()); ++k) {
    diff |= static_cast<unsigned char>((k < a.size() ? a[k] : 0) ^ (k < b.size() ? b[k] : 0));
  }
  return diff == 0;
}

absl::StatusOr<std::unique_ptr<CoordinatorService>> CoordinatorService::Create(core::RunConfig config,
                                                                               CoordinatorOptions options) {
  auto w = core::BuildMixingMatrix(config);
  if (!w.ok()) return w.status();
  if (options.out_dir.empty()) return absl::InvalidArgumentError("coordinator: --out is required");
  std::error_code ec;
  std::filesystem::create_directories(options.out_dir, ec);
  if (ec) {
    return absl::PermissionDeniedError(absl::StrCat("cannot create output directory '", options.out_dir, "': ",
                                                    ec.message()));
  }
  // The model file every agent will run: read once, hashed, handed over by FetchModel.
  std::shared_ptr<const core::ModelFile> model;
  if (config.model == "torchscript") {
    auto f = core::ReadModelFile(config.model_path);
    if (!f.ok()) return f.status();
    model = std::make_shared<const core::ModelFile>(std::move(*f));
  }
  const std::string state_path = options.out_dir + "/coordinator-state.json";
  nlohmann::json saved;
  std::vector<std::string> rebuild;  // outputs of a finished run that are missing
  if (options.resume) {
    auto text = core::ReadWholeFile(state_path);
    if (!text.ok()) {
      return absl::NotFoundError(absl::StrCat("--resume: no saved run in ", options.out_dir, " (", text.status().message(), ")"));
    }
    saved = nlohmann::json::parse(*text, nullptr, false);
    if (saved.is_discarded() || !saved.contains("run_id") || !saved.contains("membership")) {
      return absl::DataLossError(absl::StrCat("--resume: ", state_path, " is not a coordinator state file"));
    }
    if (saved.value("manifest_yaml", "") != core::ToYaml(config)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "--resume: the manifest differs from the one the saved run in ", options.out_dir, " was started with"));
    }
    if (saved.value("model_sha256", "") != (model ? model->sha256 : "")) {
      return absl::FailedPreconditionError(absl::StrCat(
          "--resume: model.path ", config.model_path, " is not the model file the saved run in ", options.out_dir,
          " was started with (its SHA-256 differs); restore that file or start a new run"));
    }
    if (saved.value("finished", false)) {
      // A restarted container (Kubernetes restarts exited ones) must not turn a finished run's
      // results into a failed one: nothing to carry on. Outputs that are missing (the disk was
      // full when the run ended) are written again from the journal of reports.
      for (const char* f : {"metrics.csv", "metrics.svg", "summary.json"})
        if (!std::filesystem::exists(options.out_dir + "/" + f)) rebuild.push_back(f);
      if (rebuild.empty()) {
        return absl::AlreadyExistsError(absl::StrCat("--resume: the run in ", options.out_dir,
                                                     " has finished; its results are there (nothing to do)"));
      }
    }
    options.run_id = saved["run_id"].get<std::string>();
  }
  auto svc = std::unique_ptr<CoordinatorService>(new CoordinatorService(std::move(config), std::move(options), std::move(*w)));
  svc->model_ = std::move(model);
  if (svc->model_) svc->aggregator_.set_model_sha256(svc->model_->sha256);
  {
    absl::MutexLock l(&svc->mu_);
    if (svc->options_.resume) {
      if (auto s = svc->members_.FromJson(saved["membership"], absl::Now()); !s.ok()) return s;
      if (!svc->members_.resumed_failure().empty()) {
        spdlog::warn("--resume: the saved run had failed ({}); carrying on from the newest checkpoint every agent "
                     "holds", svc->members_.resumed_failure());
      }
      svc->rounds_per_epoch_ = saved.value("local_rounds_per_epoch", int64_t{-1});
    }
    if (auto s = svc->aggregator_.Open(svc->options_.resume, svc->members_); !s.ok()) return s;
    if (!rebuild.empty()) {
      const auto failed = svc->aggregator_.WriteOutputs(svc->members_, "finished", "");
      if (!failed.empty()) {
        return absl::ResourceExhaustedError(absl::StrCat("--resume: the run in ", svc->options_.out_dir,
                                                         " has finished, but ", absl::StrJoin(failed, ", "),
                                                         " still cannot be written (reasons above)"));
      }
      return absl::AlreadyExistsError(absl::StrCat("--resume: the run in ", svc->options_.out_dir, " has finished; ",
                                                   absl::StrJoin(rebuild, ", "),
                                                   " written again from its reports (nothing else to do)"));
    }
    svc->Persist();
  }
  svc->monitor_ = std::thread([s = svc.get()] { s->Monitor(); });
  return svc;
}

CoordinatorService::CoordinatorService(core::RunConfig config, CoordinatorOptions options, core::MixingMatrix w)
    : config_(std::move(config)),
      options_(std::move(options)),
      w_(std::move(w)),
      members_(config_, w_, options_.heartbeat_timeout),
      aggregator_(config_, options_.out_dir) {
  run_id_ = options_.run_id;
  if (run_id_.empty()) {
    std::random_device rd;
    run_id_ = absl::StrFormat("%s-%08x", config_.name, rd());
  }
  manifest_yaml_ = core::ToYaml(config_);
}

CoordinatorService::~CoordinatorService() {
  {
    absl::MutexLock l(&mu_);
    stop_ = true;
  }
  if (monitor_.joinable()) monitor_.join();
}

std::string CoordinatorService::IdentityOf(const grpc::ServerContext* ctx) const {
  auto auth = ctx->auth_context();
  if (auth == nullptr || !auth->IsPeerAuthenticated()) return "";
  for (const auto& v : auth->FindPropertyValues("x509_common_name")) return std::string(v.data(), v.size());
  return "";
}

grpc::Status CoordinatorService::Refuse(Refusal why, grpc::StatusCode code, const std::string& log,
                                        const std::string& answer) {
  ++refused_[static_cast<int>(why)];
  spdlog::warn("refused a call ({}): {}", RefusalName(why), log);
  Changed();
  return grpc::Status(code, answer);
}

void CoordinatorService::Persist() {
  nlohmann::json j = {{"run_id", run_id_},
                      {"manifest_yaml", manifest_yaml_},
                      {"local_rounds_per_epoch", rounds_per_epoch_},
                      {"finished", finished_},
                      {"model_sha256", model_ ? model_->sha256 : ""},
                      {"membership", members_.ToJson()}};
  if (auto s = core::AtomicWrite(options_.out_dir + "/coordinator-state.json", j.dump(2) + "\n"); !s.ok()) {
    spdlog::error("{}", s.ToString());
  }
}

void CoordinatorService::SetMetricsAddress(const std::string& address) {
  absl::MutexLock l(&mu_);
  metrics_address_ = address;
  if (members_.begun()) WriteAgents();
}

// agents.json (who is who) and prometheus-targets.json (Prometheus file_sd_configs format: the
// coordinator's /metrics and every agent's, labelled with job, rank and name).
void CoordinatorService::WriteAgents() {
  nlohmann::json agents = nlohmann::json::array();
  nlohmann::json targets = nlohmann::json::array();
  if (!metrics_address_.empty()) {
    targets.push_back({{"targets", {metrics_address_}}, {"labels", {{"job", "gut-coordinator"}, {"run_id", run_id_}}}});
  }
  for (const auto& [rank, a] : members_.agents()) {
    agents.push_back({{"rank", rank}, {"name", a.name}, {"address", a.address}, {"metrics_address", a.metrics_address},
                      {"incarnation", a.incarnation}});
    // A dropped rank is gone for good: no target, so nothing alerts on it being down.
    if (!a.metrics_address.empty() && a.state != AgentState::kDropped) {
      targets.push_back({{"targets", {a.metrics_address}},
                         {"labels", {{"job", "gut-agent"}, {"run_id", run_id_}, {"rank", std::to_string(rank)},
                                     {"name", a.name}}}});
    }
  }
  const std::string dir = options_.out_dir;
  for (const auto& [file, j] : {std::pair<std::string, nlohmann::json>{"agents.json", agents},
                                {"prometheus-targets.json", targets}}) {
    if (auto s = core::AtomicWrite(dir + "/" + file, j.dump(2) + "\n"); !s.ok()) spdlog::error("{}", s.ToString());
  }
}

CoordinatorView CoordinatorService::ViewLocked() const {
  CoordinatorView v;
  v.run_id = run_id_;
  v.metric = core::MetricName(config_);
  v.failure = members_.failure();
  v.status = !v.failure.empty() ? "failed"
             : finished_       ? "finished"
             : stopped_        ? "stopped"
             : members_.begun() ? "running"
                                : "joining";
  v.joined = members_.joined();
  v.expected = config_.num_agents;
  v.active = members_.active_agents();
  for (const auto& [r, a] : members_.agents()) {
    v.left += (a.state == AgentState::kFinished || a.state == AgentState::kFailed || a.state == AgentState::kAway) ? 1 : 0;
  }
  v.generation = members_.generation();
  v.rounds_per_epoch = members_.rounds_per_epoch();
  v.epoch = aggregator_.last_epoch();
  v.epochs = config_.epochs;
  v.has_last = !aggregator_.epochs().empty();
  if (v.has_last) v.last = aggregator_.epochs().back();
  v.agents = members_.agents();
  const core::Graph& g = members_.graph();
  for (int i = 0; i < g.size(); ++i)
    for (int j : g.neighbours(i))
      if (i < j) v.edges.emplace_back(i, j);
  v.dropped = members_.dropped();
  v.now = absl::Now();
  v.progress = progress_.Estimate(v.now);
  for (const auto& [r, a] : v.agents) {
    v.waited_on[r] = stragglers_.WaitedOn(r);
    v.waited_on_recent[r] = stragglers_.WaitedOnRecently(r, v.now);
  }
  if (v.status == "running") v.straggler = stragglers_.Straggler(v.now);
  // The round itself as of now (the tracker samples it five times a second; the last rounds of a
  // run can pass between two samples).
  if (members_.begun()) v.progress.round = std::max<int64_t>(0, SlowestRound());
  if (finished_) {
    // Every active agent's final report is in: each has run every round, though its goodbye and
    // its last heartbeat's round may still be on the way.
    v.progress.round = std::max(v.progress.round, v.progress.total);
    for (auto& [r, a] : v.agents) {
      if (!a.active()) continue;
      a.state = AgentState::kFinished;
      a.round = std::max(a.round, v.progress.total);
      a.epoch = std::max(a.epoch, config_.epochs);
    }
  }
  if (v.status != "running") {  // over, or not begun: nothing to wait for
    v.progress.eta_s = std::numeric_limits<double>::quiet_NaN();
    v.progress.stalled = false;
  }
  for (int k = 0; k < static_cast<int>(Refusal::kCount); ++k) v.refused[k] = refused_[k];
  return v;
}

CoordinatorView CoordinatorService::View() const {
  absl::MutexLock l(&mu_);
  return ViewLocked();
}

void CoordinatorService::Changed() {
  if (on_change_) on_change_(ViewLocked());
}

void CoordinatorService::AfterRecovery(uint64_t before) {
  if (members_.generation() == before) return;
  aggregator_.Rewind(members_.restore_round(), members_.rounds_per_epoch());
  spdlog::info("recovery: generation {}: every agent restores round {}", members_.generation(),
               members_.restore_round());
  Persist();
  Changed();
}

void CoordinatorService::FillJoinResponse(int rank, uint32_t incarnation, gut::v1::JoinResponse* resp) const {
  resp->set_run_id(run_id_);
  resp->set_rank(rank);
  resp->set_world_size(config_.num_agents);
  *resp->mutable_command() = members_.CommandFor(rank);
  for (const auto& nb : resp->command().topology().neighbours()) *resp->add_neighbours() = nb;
  resp->set_self_weight(resp->command().topology().self_weight());
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
  resp->set_start_round(resp->command().restore_round());
  resp->set_manifest_yaml(manifest_yaml_);
  resp->set_rounds_per_epoch(std::max<int64_t>(0, rounds_per_epoch_));
  resp->set_incarnation(incarnation);
  if (model_) {
    resp->set_model_sha256(model_->sha256);
    resp->set_model_size(static_cast<int64_t>(model_->bytes.size()));
  }
}

grpc::Status CoordinatorService::Join(grpc::ServerContext* ctx, const gut::v1::JoinRequest* req,
                                      gut::v1::JoinResponse* resp) {
  const int n = config_.num_agents;
  const std::string identity = IdentityOf(ctx);
  absl::MutexLock l(&mu_);
  if (req->protocol_version() != gut::v1::PROTOCOL_VERSION_1) {
    return Refuse(Refusal::kVersion, grpc::StatusCode::FAILED_PRECONDITION,
                  absl::StrCat("join with protocol version ", req->protocol_version(), " from ", ctx->peer()),
                  "protocol version not supported (this coordinator speaks 1)");
  }
  if (!options_.join_token.empty() && !SameSecret(req->join_token(), options_.join_token)) {
    return Refuse(Refusal::kToken, grpc::StatusCode::UNAUTHENTICATED,
                  absl::StrCat("join from ", ctx->peer(), " without the right join token"), "join token missing or wrong");
  }
  if (options_.require_identity && identity.empty()) {
    return Refuse(Refusal::kIdentity, grpc::StatusCode::UNAUTHENTICATED,
                  absl::StrCat("join from ", ctx->peer(), " without a client certificate"), "a client certificate is required");
  }
  int requested_rank = req->requested_rank();
  if (options_.require_identity) {
    // Roles and rank binding: only an agent certificate joins, and one bound to rank K takes K.
    const services::CertificateRole role = services::RoleOfPeer(ctx->auth_context().get());
    if (role.role != services::Role::kAgent) {
      return Refuse(Refusal::kIdentity, grpc::StatusCode::PERMISSION_DENIED,
                    absl::StrCat("join of '", identity, "' from ", ctx->peer(), " with ", services::DescribeRole(role)),
                    absl::StrCat("joining needs a certificate with the agent role; this one has ",
                                 services::DescribeRole(role)));
    }
    if (role.rank >= 0 && requested_rank >= 0 && requested_rank != role.rank) {
      return Refuse(Refusal::kRank, grpc::StatusCode::PERMISSION_DENIED,
                    absl::StrCat("join of '", identity, "' from ", ctx->peer(), " asking for rank ", requested_rank,
                                 " with a certificate bound to rank ", role.rank),
                    absl::StrCat("this certificate is bound to rank ", role.rank, ", not ", requested_rank));
    }
    if (role.rank < 0 && options_.require_rank_binding) {
      return Refuse(Refusal::kRank, grpc::StatusCode::PERMISSION_DENIED,
                    absl::StrCat("join of '", identity, "' from ", ctx->peer(), " with a certificate bound to no rank"),
                    "this run admits only certificates bound to a rank (spiffe://gut/agent/rank/K)");
    }
    if (role.rank >= 0) requested_rank = role.rank;
  }
  if ((req->numerics().empty() ? "native" : req->numerics()) != config_.numerics) {
    return Refuse(Refusal::kBadRequest, grpc::StatusCode::FAILED_PRECONDITION,
                  absl::StrCat("join of '", req->agent_name(), "' computing in ", req->numerics(), " mode"),
                  absl::StrCat("this run computes in run.numerics ", config_.numerics, " mode; the agent in ",
                               req->numerics().empty() ? "native" : req->numerics()));
  }
  if (req->agent_name().empty() || req->advertised_address().empty()) {
    return Refuse(Refusal::kBadRequest, grpc::StatusCode::INVALID_ARGUMENT, "join without a name or address",
                  "join needs an agent name and an advertised address");
  }
  if (finished_ || !members_.failure().empty()) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        finished_ ? "the run has finished" : absl::StrCat("the run has failed: ", members_.failure()));
  }
  JoinInfo j;
  j.name = req->agent_name();
  j.address = req->advertised_address();
  j.metrics_address = req->metrics_address();
  j.nonce = req->process_nonce();
  j.identity = identity;
  j.requested_rank = requested_rank;
  j.local_samples = req->local_samples();
  if (req->checkpoint_run_id() == run_id_) j.checkpoints.assign(req->checkpoints().begin(), req->checkpoints().end());
  auto joined = members_.Join(j, absl::Now());
  if (!joined.ok()) {
    const bool identity_problem = joined.status().code() == absl::StatusCode::kPermissionDenied;
    return Refuse(identity_problem ? Refusal::kIdentity : Refusal::kRank, static_cast<grpc::StatusCode>(joined.status().code()),
                  absl::StrCat("join of '", j.name, "' from ", ctx->peer(), ": ", joined.status().message()),
                  std::string(joined.status().message()));
  }
  const JoinOutcome out = *joined;
  core::LogEvent(spdlog::level::info, out.rejoin && !out.retry ? "agent_rejoined" : "agent_joined",
                 {{"agent_rank", double(out.rank)}, {"incarnation", double(out.incarnation)}},
                 absl::StrFormat("agent '%s' %s rank %d (%s), incarnation %d, %d/%d in", j.name,
                                 out.retry ? "asked again (the same process) for" : out.rejoin ? "rejoined as" : "joined as",
                                 out.rank, j.address, out.incarnation, members_.joined(), n));
  Persist();
  Changed();

  if (out.rejoin) {
    // A restarted agent: roll everyone back to the newest round all of them hold, once nobody
    // else is missing (several agents restarting together need one rollback, not several).
    members_.RequestRecovery();
    auto settled = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !members_.waiting_for_agents() || !members_.failure().empty() || stop_;
    };
    mu_.AwaitWithDeadline(absl::Condition(&settled), absl::Now() + absl::Seconds(config_.rejoin_timeout_s));
    const uint64_t before = members_.generation();
    if (members_.TakeRecoveryRequest()) members_.Recover(absl::StrCat("agent ", out.rank, " rejoined"), absl::Now());
    AfterRecovery(before);
    FillJoinResponse(out.rank, out.incarnation, resp);
    return grpc::Status::OK;
  }

  absl::Time deadline = start_ + options_.join_timeout;
  if (ctx->deadline() < std::chrono::system_clock::time_point::max()) {
    deadline = std::min(deadline, absl::FromChrono(ctx->deadline()));
  }
  auto all_in = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return members_.all_joined() || finished_ || stop_; };
  if (!mu_.AwaitWithDeadline(absl::Condition(&all_in), deadline)) {
    return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                        absl::StrCat("only ", members_.joined(), " of ", n, " agents joined in time; waiting for rank(s) ",
                                     absl::StrJoin(members_.unjoined(), ", ")));
  }
  if (!members_.begun()) {
    if (rounds_per_epoch_ < 0) {
      int local = 0;
      int64_t smallest = INT64_MAX;
      for (const auto& [r, a] : members_.agents()) {
        if (a.local_samples > 0) {
          ++local;
          smallest = std::min(smallest, a.local_samples);
        }
      }
      rounds_per_epoch_ = 0;
      if (local > 0 && local < n) {
        join_error_ = absl::StrCat(local, " of ", n, " agents train on local data and the rest on the manifest's partition; "
                                   "a run needs one or the other");
      } else if (local == n) {
        rounds_per_epoch_ = smallest / config_.batch_size;
        if (rounds_per_epoch_ == 0) {
          join_error_ = absl::StrCat("the smallest local data set has ", smallest, " samples, fewer than one batch of ",
                                     config_.batch_size);
        }
      }
    }
    members_.Begin(absl::Now());
    WriteAgents();
    Persist();
    spdlog::info("all {} agents in: generation {}, starting at round {}", n, members_.generation(),
                 members_.restore_round());
    Changed();
  }
  if (!join_error_.empty()) return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, join_error_);
  FillJoinResponse(out.rank, out.incarnation, resp);
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::Report(grpc::ServerContext* ctx, const gut::v1::ReportRequest* req,
                                        gut::v1::ReportResponse* resp) {
  const std::string identity = IdentityOf(ctx);
  const auto& m = req->metrics();
  absl::MutexLock l(&mu_);
  if (req->run_id() != run_id_) {
    return Refuse(Refusal::kRunId, grpc::StatusCode::FAILED_PRECONDITION,
                  absl::StrCat("report for another run from ", ctx->peer()), "report for another run");
  }
  if (m.rank() < 0 || m.rank() >= config_.num_agents || m.epoch() < 1 || m.epoch() > config_.epochs) {
    return Refuse(Refusal::kBadRequest, grpc::StatusCode::INVALID_ARGUMENT,
                  absl::StrCat("report of rank ", m.rank(), " epoch ", m.epoch(), " from ", ctx->peer()),
                  absl::StrCat("rank must be in 0..", config_.num_agents - 1, " and epoch in 1..", config_.epochs));
  }
  if (auto s = members_.CheckIdentity(m.rank(), identity); !s.ok()) {
    return Refuse(Refusal::kIdentity, grpc::StatusCode::PERMISSION_DENIED,
                  absl::StrCat("report for rank ", m.rank(), " from ", ctx->peer(), " ('", identity, "'): ", s.message()),
                  std::string(s.message()));
  }
  if (auto s = CheckReport(m, config_); !s.ok()) {
    return Refuse(Refusal::kBadRequest, grpc::StatusCode::INVALID_ARGUMENT,
                  absl::StrCat("report of rank ", m.rank(), " epoch ", m.epoch(), ": ", s.message()),
                  std::string(s.message()));
  }
  if (!members_.IsActive(m.rank())) return grpc::Status::OK;  // a dropped rank's late report
  if (members_.rounds_per_epoch() == 0 && m.rounds_per_epoch() > 0) members_.set_rounds_per_epoch(m.rounds_per_epoch());
  for (const auto& rec : aggregator_.Add(m, members_)) {
    const report::Metric metric = report::Metric::For(config_);
    if (auto s = report::WriteMetricsCsv(options_.out_dir + "/metrics.csv", aggregator_.epochs(), core::Durability::kRename,
                                         metric);
        !s.ok()) {
      spdlog::error("{}", s.ToString());
    }
    if (auto s = report::WritePlot(options_.out_dir + "/metrics.svg", config_.name, aggregator_.epochs(),
                                   core::Durability::kRename, metric);
        !s.ok()) {
      spdlog::error("{}", s.ToString());
    }
    if (on_epoch_) on_epoch_(rec);
    Changed();
  }
  if (!finished_ && members_.failure().empty() && aggregator_.complete(members_)) {
    unwritten_ = aggregator_.WriteOutputs(members_, "finished", "");
    const auto sum = aggregator_.Summarise(members_);
    const report::Metric metric = report::Metric::For(config_);
    const std::string key = "test_" + metric.key + "_mean";
    core::LogEvent(spdlog::level::info, "run_complete", {{key.c_str(), sum.final_acc_mean}, {"agents", double(sum.agents)}},
                   absl::StrFormat("run %s finished: final mean %s %s [min %s, max %s] over %d agents", run_id_,
                                   metric.label, metric.Format(sum.final_acc_mean), metric.Format(sum.final_acc_min),
                                   metric.Format(sum.final_acc_max), sum.agents));
    finished_ = true;
    Persist();
    Changed();
  }
  resp->set_consensus_distance_estimate(aggregator_.last_consensus());
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::Heartbeat(grpc::ServerContext* ctx, const gut::v1::HeartbeatRequest* req,
                                           gut::v1::HeartbeatResponse* resp) {
  const std::string identity = IdentityOf(ctx);
  absl::MutexLock l(&mu_);
  if (req->run_id() != run_id_) {
    return Refuse(Refusal::kRunId, grpc::StatusCode::FAILED_PRECONDITION,
                  absl::StrCat("heartbeat for another run from ", ctx->peer()), "heartbeat for another run");
  }
  if (auto s = members_.Heartbeat(*req, identity, absl::Now()); !s.ok()) {
    if (s.code() == absl::StatusCode::kPermissionDenied || s.code() == absl::StatusCode::kNotFound) {
      return Refuse(Refusal::kIdentity, grpc::StatusCode::PERMISSION_DENIED,
                    absl::StrCat("heartbeat for rank ", req->rank(), " from ", ctx->peer(), ": ", s.message()),
                    std::string(s.message()));
    }
    return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
  }
  // Waits count only for the sender's current neighbours, and only plausible ones: an agent can
  // say it waited for its own neighbours, nobody else.
  std::map<int, double> waits;
  const std::vector<int>& nb = members_.graph().neighbours(req->rank());
  for (const auto& w : req->waits()) {
    if (std::isfinite(w.seconds()) && w.seconds() >= 0 && std::find(nb.begin(), nb.end(), w.rank()) != nb.end()) {
      waits[w.rank()] = w.seconds();
    }
  }
  stragglers_.Observe(req->rank(), waits, absl::Now());
  *resp->mutable_command() = members_.CommandFor(req->rank());
  Changed();
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::Status(grpc::ServerContext*, const gut::v1::StatusRequest*,
                                        gut::v1::StatusResponse* resp) {
  absl::MutexLock l(&mu_);
  const CoordinatorView v = ViewLocked();
  resp->set_joined(v.joined);
  resp->set_world_size(v.expected);
  resp->set_epoch(v.epoch);
  resp->set_finished(finished_);
  resp->set_left(v.left);
  resp->set_failure(core::RedactPaths(v.failure));  // any certificate holder may ask
  resp->set_numerics(config_.numerics);
  return grpc::Status::OK;
}

grpc::Status CoordinatorService::Leave(grpc::ServerContext* ctx, const gut::v1::LeaveRequest* req,
                                       gut::v1::LeaveResponse*) {
  const std::string identity = IdentityOf(ctx);
  absl::MutexLock l(&mu_);
  if (req->run_id() != run_id_) {
    return Refuse(Refusal::kRunId, grpc::StatusCode::FAILED_PRECONDITION,
                  absl::StrCat("leave for another run from ", ctx->peer()), "leave for another run");
  }
  if (auto s = members_.Leave(*req, identity, absl::Now()); !s.ok()) {
    return Refuse(Refusal::kIdentity, grpc::StatusCode::PERMISSION_DENIED,
                  absl::StrCat("leave for rank ", req->rank(), " from ", ctx->peer(), ": ", s.message()),
                  std::string(s.message()));
  }
  if (req->failed()) {
    core::LogEvent(spdlog::level::err, "agent_failed", {{"agent_rank", double(req->rank())}},
                   absl::StrCat("agent ", req->rank(), " failed: ", req->reason()));
  } else if (req->planned()) {
    core::LogEvent(spdlog::level::info, "agent_stopped", {{"agent_rank", double(req->rank())}, {"round", double(req->round())}},
                   absl::StrCat("agent ", req->rank(), " stopped after round ", req->round(), " (", req->reason(),
                                "); waiting up to ", config_.rejoin_timeout_s, " s for it to come back"));
  } else {
    spdlog::info("agent {} left: {}", req->rank(), req->reason());
  }
  Persist();
  Changed();
  return grpc::Status::OK;
}

}  // namespace gut::coordinator
