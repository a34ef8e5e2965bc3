#include "agent/agent.h"

#include <malloc.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <mutex>
#include <optional>
#include <thread>

#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <spdlog/spdlog.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "agent/agent_data.h"
#include "agent/agent_metrics.h"
#include "agent/coordinator_checks.h"
#include "agent/startup_watch.h"
#include "agent/agent_participant.h"
#include "core/checkpoint/checkpoint_store.h"
#include "core/common/atomic_file.h"
#include "core/config/exchange_settings.h"
#include "core/config/manifest.h"
#include "core/data/dataset.h"
#include "core/data/partition.h"
#include "core/models/model.h"
#include "core/train/epoch_driver.h"
#include "core/train/trainer.h"
#include "services/coordinator_client.h"
#include "services/grpc_exchange.h"
#include "services/health_server.h"
#include "services/library_logs.h"
#include "services/metrics.h"
#include "services/restarting_server.h"
#include "services/tls.h"
#include "core/common/cli.h"
#include "core/common/log_context.h"
#include "core/common/numerics.h"

namespace gut::agent {
namespace {

constexpr char kVersion[] = "0.1.0";

std::string DefaultName() {
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  return absl::StrCat(host, "-", getpid());
}

class Agent {
 public:
  Agent(const AgentOptions& o, const std::atomic<bool>* stop) : o_(o), stop_(stop) {}
  ~Agent() { Shutdown(); }
  int Run();

 private:
  absl::Status LoadIdentity();  // TLS material and name, then the coordinator client
  absl::Status EnterRunNumerics() { return agent::EnterRunNumerics(client_.get(), o_, stop_); }
  absl::Status Serve();
  absl::Status Join();
  absl::Status Prepare();
  absl::Status StartFrom(const gut::v1::RunCommand& c, bool first);
  int Train();
  void OnCommand(const gut::v1::RunCommand& c);
  gut::v1::HeartbeatRequest HeartbeatState();
  void Leave(bool failed, bool planned, const std::string& reason);
  void Finish(const std::string& status);
  void Shutdown();
  bool stopping() const { return stop_ != nullptr && stop_->load(); }

  AgentOptions o_;
  const std::atomic<bool>* stop_;
  services::PeerService peer_service_{o_.fast_failure_detection ? services::StreamTuning::ForTests()
                                                                : services::StreamTuning()};
  std::unique_ptr<services::RestartingServer> server_;
  std::unique_ptr<services::HealthServer> health_server_;  // --health-listen
  std::optional<services::TlsMaterial> tls_;
  std::unique_ptr<services::MetricsEndpoint> endpoint_;
  std::unique_ptr<services::CoordinatorClient> client_;
  gut::v1::JoinResponse join_;
  core::RunConfig config_;
  core::ModelInfo model_;
  core::TrainTest data_;
  core::Dataset shard_;
  std::unique_ptr<core::Trainer> trainer_;
  std::optional<core::CheckpointStore> store_;
  std::unique_ptr<AgentMetrics> metrics_;
  std::unique_ptr<AgentParticipant> participant_;
  core::RunPlan plan_;
  int64_t rounds_per_epoch_ = 0;
  bool shut_down_ = false;

  // Shared with the heartbeat thread.
  // Lock order: mu_, then AgentParticipant::progress_mu_ or ExchangeCore::mu_ (never the reverse).
  std::mutex mu_;
  std::unique_ptr<services::GrpcExchange> exchange_;  // set once, under mu_
  std::optional<gut::v1::RunCommand> pending_;        // a command not applied yet
  std::atomic<uint64_t> generation_{0};
  absl::Time stop_seen_ = absl::InfiniteFuture();
};

absl::Status Agent::LoadIdentity() {
  const services::TlsFiles files{o_.tls_ca, o_.tls_cert, o_.tls_key};
  if (files.enabled()) {
    auto m = services::LoadTls(files, services::Role::kAgent);
    if (!m.ok()) return m.status();
    tls_ = std::move(*m);
    if (o_.name.empty()) o_.name = tls_->identity;
    if (o_.name != tls_->identity) {
      return absl::InvalidArgumentError(absl::StrCat("--name '", o_.name, "' is not the name in --tls-cert ('",
                                                     tls_->identity, "'): the certificate names the agent"));
    }
  }
  if (o_.name.empty()) o_.name = DefaultName();
  core::SetLogName(o_.name);
  client_ = std::make_unique<services::CoordinatorClient>(o_.coordinator, tls_ ? &*tls_ : nullptr);
  return absl::OkStatus();
}

absl::Status Agent::Serve() {
  if (auto s = services::RequireSecureListen("--listen", o_.listen, tls_.has_value(), o_.insecure); !s.ok()) return s;
  if (!services::IsLoopback(o_.listen) && o_.advertise.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--listen ", o_.listen, " is not a loopback address: give --advertise "
                                                   "HOST:PORT, the address the neighbours can reach"));
  }
  grpc::EnableDefaultHealthCheckService(true);
  const auto tuning = o_.fast_failure_detection ? services::StreamTuning::ForTests() : services::StreamTuning();
  auto server = services::RestartingServer::Start(o_.listen, services::ServerCredentials(tls_ ? &*tls_ : nullptr),
                                                  [this, tuning](grpc::ServerBuilder* b) {
                                                    tuning.ApplyToServer(b, /*peer_port=*/true);
                                                    b->RegisterService(&peer_service_);
                                                  });
  if (!server.ok()) return server.status();
  server_ = std::move(*server);
  const int port = server_->port();
  // "" (liveness) serves from now on; gut.v1.Peer (readiness) once the neighbours are connected.
  server_->SetServing("gut.v1.Peer", false);
  if (!o_.health_listen.empty()) {
    // Kubernetes' gRPC probes: "" alive, gut.v1.Peer ready, in plaintext on a port of their own.
    auto h = services::HealthServer::Start(o_.health_listen);
    if (!h.ok()) return h.status();
    health_server_ = std::move(*h);
    health_server_->SetServing("gut.v1.Peer", false);
    spdlog::info("health service on port {}", health_server_->port());
  }
  if (o_.advertise.empty()) {
    const std::string host = o_.listen.substr(0, o_.listen.rfind(':'));
    o_.advertise = absl::StrCat(host == "0.0.0.0" || host.empty() ? "127.0.0.1" : host, ":", port);
  }
  if (!o_.metrics_address.empty()) {
    auto m = StartMetricsEndpoint(o_.metrics_address, &peer_service_, &o_.metrics_advertise);
    if (!m.ok()) return m.status();
    endpoint_ = std::move(*m);  // peer_service_ outlives endpoint_
  }
  spdlog::info("agent '{}': peer service on port {} (advertised {}){}", o_.name, port, o_.advertise,
               endpoint_ ? absl::StrCat(", metrics on ", o_.metrics_advertise, " (bound to ",
                                        o_.metrics_address.substr(0, o_.metrics_address.rfind(':')), ":",
                                        endpoint_->port(), ")")
                         : "");
  return absl::OkStatus();
}

absl::Status Agent::Join() {
  gut::v1::JoinRequest req;
  req.set_numerics(core::NumericsName(core::CurrentNumerics()));
  req.set_agent_name(o_.name);
  req.set_advertised_address(o_.advertise);
  req.set_protocol_version(gut::v1::PROTOCOL_VERSION_1);
  req.set_build_version(kVersion);
  req.set_requested_rank(o_.rank);
  req.set_metrics_address(o_.metrics_advertise);
  if (!o_.join_token_file.empty()) {
    auto token = core::ReadWholeFile(o_.join_token_file);
    if (!token.ok()) return absl::InvalidArgumentError(absl::StrCat("--join-token-file: ", token.status().message()));
    req.set_join_token(token->substr(0, token->find_first_of("\r\n")));
  }
  if (o_.local_data) {
    auto n = LocalSampleCount(o_.data_dir);
    if (!n.ok()) return n.status();
    req.set_local_samples(*n);
  }
  if (!o_.checkpoint_dir.empty()) {
    auto store = core::CheckpointStore::Open(o_.checkpoint_dir + "/checkpoints", {});
    if (!store.ok()) return store.status();
    std::vector<std::string> skipped;
    auto [run_id, rounds] = store->Inventory(&skipped);
    for (const auto& why : skipped) spdlog::warn("skipping a checkpoint: {}", why);
    req.set_checkpoint_run_id(run_id);
    for (int64_t r : rounds) req.add_checkpoints(r);
    if (!rounds.empty()) spdlog::info("holding {} checkpoint(s) of run {}, newest round {}", rounds.size(), run_id, rounds[0]);
  }
  auto resp = client_->Join(req, absl::Seconds(o_.join_timeout_s), stop_);
  if (!resp.ok()) return resp.status();
  if (auto s = CheckJoinResponse(*resp, tls_.has_value()); !s.ok()) return s;
  join_ = std::move(*resp);
  core::SetLogName(absl::StrCat(o_.name, "/rank-", join_.rank()));
  core::SetLogRunId(join_.run_id());
  core::SetLogRank(join_.rank());
  spdlog::info("{} run {} as rank {} of {} (incarnation {}): generation {}, starting at round {}",
               join_.incarnation() > 1 ? "rejoined" : "joined", join_.run_id(), join_.rank(), join_.world_size(),
               join_.incarnation(), join_.command().generation(), join_.command().restore_round());
  // The join's command is this agent's first; a heartbeat repeating it must not look new.
  generation_ = join_.command().generation();
  client_->StartReporting(join_.run_id());
  client_->StartHeartbeats(absl::Seconds(o_.heartbeat_s), [this] { return HeartbeatState(); },
                           [this](const gut::v1::RunCommand& c) { OnCommand(c); },
                           [this](const grpc::Status& s) {
                             gut::v1::RunCommand fail;
                             fail.set_action(gut::v1::RunCommand::FAIL);
                             fail.set_reason(absl::StrCat("the coordinator refused this agent: ", s.error_message()));
                             OnCommand(fail);
                           });
  return absl::OkStatus();
}

absl::Status Agent::Prepare() {
  // The coordinator's data.path means nothing here when this agent brings its own (--data-dir).
  std::vector<std::string> overrides;
  // A YAML single-quoted scalar: the path is taken as it is, whatever characters it holds.
  if (!o_.data_dir.empty()) overrides.push_back("data.path='" + absl::StrReplaceAll(o_.data_dir, {{"'", "''"}}) + "'");
  auto c = core::ParseManifest(join_.manifest_yaml(), "the coordinator's manifest", overrides);
  if (!c.ok()) return c.status();
  config_ = std::move(*c);
  if (auto s = CheckWorldSize(join_, config_.num_agents); !s.ok()) return s;
  if (auto s = CheckNumerics(config_, &o_.threads); !s.ok()) return s;
  std::optional<core::ModelFile> file;
  if (config_.model == "torchscript") {
    auto f = RunModelFile(o_, join_, client_.get());
    if (!f.ok()) return f.status();
    file = std::move(*f);
  }
  const int rank = join_.rank();
  auto loaded = LoadAgentData(config_, o_, rank, file ? &*file : nullptr);
  if (!loaded.ok()) return loaded.status();
  file.reset();
  data_ = std::move(loaded->data);
  model_ = std::move(loaded->model);
  // Keep only this agent's samples (edge devices: the full training set is not needed after the
  // partition).
  shard_ = core::Subset(data_.train, loaded->shard);
  data_.train = core::Dataset();
  malloc_trim(0);
  std::vector<int64_t> local(shard_.size());
  for (int64_t k = 0; k < shard_.size(); ++k) local[k] = k;
  core::SetComputeThreads(o_.threads);
  auto t = core::Trainer::Create(model_, &shard_, std::move(local), config_.batch_size,
                                 core::SampleOrder{config_.shuffle, config_.seed, rank});
  if (!t.ok()) return t.status();
  trainer_ = std::move(*t);
  rounds_per_epoch_ = join_.rounds_per_epoch() > 0 ? join_.rounds_per_epoch() : trainer_->batches_per_epoch();
  plan_.epochs = config_.epochs;
  plan_.rounds_per_epoch = rounds_per_epoch_;
  plan_.final_gossip_rounds = config_.final_gossip_rounds;
  plan_.eval_every = config_.eval_every;
  plan_.schedule = config_.schedule;
  if (!o_.checkpoint_dir.empty()) {
    auto store = core::CheckpointStore::Open(o_.checkpoint_dir + "/checkpoints", {join_.run_id(), model_.identity_hash()});
    if (!store.ok()) return store.status();
    store_.emplace(std::move(*store));
    plan_.checkpoint_every_rounds = core::CheckpointInterval(config_, rounds_per_epoch_);
  }

  const gut::v1::RunCommand& cmd = join_.command();
  services::GrpcExchangeOptions xo;
  xo.run_id = join_.run_id();
  xo.rank = rank;
  xo.self_weight = cmd.topology().self_weight();
  xo.neighbours = PeerAddresses(cmd.topology());
  xo.layout_hash = model_.layout_hash();
  xo.layout = model_.LayoutDescription();
  xo.numerics = config_.numerics;
  if (model_.is_script()) xo.model_sha256 = model_.script->sha256;
  xo.num_params = model_.num_params();
  xo.codec = core::CodecForRun(config_, model_);
  xo.codec_seed = config_.seed;
  xo.deadline = absl::Seconds(config_.deadline_s);
  // The coordinator decides about a lost neighbour within its rejoin timeout (plus detection);
  // waiting a little longer than that only matters when the coordinator itself is gone.
  xo.peer_loss_grace = absl::Seconds(config_.rejoin_timeout_s + 20);
  xo.tuning = o_.fast_failure_detection ? services::StreamTuning::ForTests() : services::StreamTuning();
  xo.incarnation = join_.incarnation();
  xo.generation = cmd.generation();
  xo.start_round = cmd.restore_round(); xo.forge = o_.forge;
  if (tls_) xo.channel_credentials = services::ChannelCredentials(&*tls_);
  auto ex = services::GrpcExchange::Create(xo, &peer_service_);
  if (!ex.ok()) return ex.status();
  std::vector<int> peers;
  for (const auto& n : xo.neighbours) peers.push_back(n.rank);
  if (endpoint_) {
    metrics_ = std::make_unique<AgentMetrics>(endpoint_->registry(), config_,
                                              AgentIdentity{join_.run_id(), o_.name, kVersion, rank}, peers,
                                              rounds_per_epoch_);
    metrics_->SetGeneration(cmd.generation());
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    exchange_ = std::move(*ex);
  }
  // Every agent starts from the same x0 with the manifest graph's weight (topology version 1); a
  // changed topology is applied by Rebase.
  auto base = core::BuildMixingMatrix(config_);
  if (!base.ok()) return base.status();
  const double base_self_weight = base->self_weight(rank);
  core::Hyperparameters hyper = config_.hyper;
  hyper.tensor_sizes = model_.tensor_sizes();
  auto x0 = core::InitialModel(model_, config_.init, config_.seed);
  if (!x0.ok()) return x0.status();
  ParticipantParts parts;
  parts.config = &config_;
  parts.rank = rank;
  parts.rounds_per_epoch = rounds_per_epoch_;
  parts.trainer = trainer_.get();
  parts.test = &data_.test;
  parts.exchange = exchange_.get();
  parts.client = client_.get();
  parts.metrics = metrics_.get();
  parts.store = store_ ? &*store_ : nullptr;
  parts.out_dir = o_.checkpoint_dir;
  parts.make_algorithm = [hyper, x0 = std::move(*x0), base_self_weight]() {
    return core::CreateAlgorithm<float>(hyper, x0, base_self_weight);
  };
  parts.stop = stop_;
  participant_ = std::make_unique<AgentParticipant>(std::move(parts));
  spdlog::info("rank {}: {} samples, {} rounds per epoch, {} parameters, {} ({}), codec {}, checkpoints every {} rounds",
               rank, shard_.size(), rounds_per_epoch_, model_.num_params(), config_.hyper.algorithm, config_.graph,
               core::CodecName(config_.codec.kind), plan_.checkpoint_every_rounds);
  return absl::OkStatus();
}

// Puts the agent where the command says: the restore round's state, the command's generation and
// topology. On the first start the exchange was built with them already.
absl::Status Agent::StartFrom(const gut::v1::RunCommand& c, bool first) {
  const int64_t r = c.restore_round();
  uint32_t version = 1;
  if (r == 0) {
    if (auto s = participant_->RestoreInitial(); !s.ok()) return s;
  } else {
    auto v = participant_->Restore(r);
    if (!v.ok()) {
      return absl::Status(v.status().code(), absl::StrCat("cannot restore round ", r, " as the coordinator orders: ",
                                                          v.status().message()));
    }
    version = *v;
  }
  if (!first) {
    exchange_->Reset(c.generation(), PeerAddresses(c.topology()), c.topology().self_weight(), r);
    if (metrics_) metrics_->Recovery(c.generation());
    spdlog::info("rank {}: generation {}: restored round {}{}", join_.rank(), c.generation(), r,
                 c.topology().dropped_size() > 0 ? absl::StrCat(", ", c.topology().dropped_size(), " rank(s) dropped") : "");
  }
  generation_ = c.generation();
  {
    // A command that arrived while this one was applied must not be lost (Reset cleared the
    // exchange's interrupt).
    std::lock_guard<std::mutex> l(mu_);
    participant_->SetPending(pending_.has_value());
    if (pending_) exchange_->Interrupt(absl::AbortedError("a newer recovery command is waiting"));
  }
  if (version != c.topology().version()) {
    // The graph changed since this state was saved: re-base the method on the new neighbourhood.
    if (auto s = participant_->algorithm().Rebase(r, exchange_.get()); !s.ok()) return s;
    participant_->set_topology_version(c.topology().version());
  }
  return absl::OkStatus();
}

void Agent::OnCommand(const gut::v1::RunCommand& command) {
  gut::v1::RunCommand c = command;
  if (auto s = CheckCommand(c, join_.rank(), join_.world_size(), tls_.has_value()); !s.ok()) {
    c.Clear();  // an invalid command is not followed: the agent stops, saying why
    c.set_action(gut::v1::RunCommand::FAIL);
    c.set_reason(std::string(s.message()));
  }
  std::lock_guard<std::mutex> l(mu_);
  // With every answer, not only new commands; an answer stays fresh for a few heartbeats.
  if (participant_) participant_->Standing(c.hold_round(), c.stop_round());
  if (exchange_) {
    exchange_->CoordinatorJudging({c.missing().begin(), c.missing().end()},
                                  absl::Now() + absl::Seconds(4 * o_.heartbeat_s + 1));
  }
  const bool fail = c.action() == gut::v1::RunCommand::FAIL;
  if (!fail && c.generation() <= generation_.load()) return;
  if (pending_ && pending_->action() == gut::v1::RunCommand::FAIL) return;  // a failure is final
  if (pending_ && !fail && pending_->generation() >= c.generation()) return;
  pending_ = c;
  if (participant_) participant_->SetPending(true);
  if (exchange_) {
    exchange_->Interrupt(fail ? absl::AbortedError(absl::StrCat("run failed: ", c.reason()))
                              : absl::AbortedError(absl::StrCat("recovery: generation ", c.generation(),
                                                                " restores round ", c.restore_round())));
  }
}

gut::v1::HeartbeatRequest Agent::HeartbeatState() {
  gut::v1::HeartbeatRequest h;
  h.set_run_id(join_.run_id());
  h.set_rank(join_.rank());
  h.set_incarnation(join_.incarnation());
  h.set_generation(generation_.load());
  h.set_rounds_per_epoch(rounds_per_epoch_);
  std::lock_guard<std::mutex> l(mu_);
  if (participant_) {
    const AgentProgress p = participant_->Progress();
    h.set_round(p.round);
    h.set_epoch(p.epoch);
    h.set_loss(p.loss);
    h.set_accuracy(p.accuracy);
    for (int64_t c : p.checkpoints) h.add_checkpoints(c);
    h.set_holding(participant_->holding());
  }
  if (exchange_) {
    services::AddPeerState(exchange_->Stats().peers, &h);
    services::AddRefusals(exchange_->Refusals(), &h);
    h.set_stopping(stopping());
    // SIGTERM: the rounds up to the agreed stop round (else the current one) may finish; then waits end.
    if (stopping()) {
      if (stop_seen_ == absl::InfiniteFuture()) stop_seen_ = absl::Now();
      const double after = participant_ && participant_->stop_round() > 0 ? 0.75 * o_.stop_timeout_s
                                                                          : std::max(2.5, o_.stop_timeout_s / 4);
      if (absl::Now() - stop_seen_ > absl::Seconds(after)) {
        exchange_->Interrupt(absl::CancelledError("stop requested"));
      }
    }
  }
  return h;
}

void Agent::Leave(bool failed, bool planned, const std::string& reason) {
  if (!client_ || join_.run_id().empty()) return;
  gut::v1::LeaveRequest req;
  req.set_run_id(join_.run_id());
  req.set_rank(join_.rank());
  req.set_reason(reason);
  req.set_failed(failed);
  req.set_planned(planned);
  req.set_round(participant_ ? participant_->rounds() : 0);
  req.set_incarnation(join_.incarnation());
  const auto s = client_->Leave(req, std::min(absl::Seconds(2), absl::Seconds(o_.stop_timeout_s) / 4));
  if (!s.ok()) spdlog::info("leave not delivered: {}", s.error_message());
}

int Agent::Train() {
  const absl::Duration connect = absl::Seconds(o_.join_timeout_s);
  gut::v1::RunCommand command = join_.command();
  bool first = true;
  for (;;) {
    if (command.action() == gut::v1::RunCommand::FAIL) {
      core::LogEvent(spdlog::level::err, "run_failed", {}, absl::StrCat("rank ", join_.rank(), ": ", command.reason()));
      Finish("failed");
      return 1;
    }
    absl::Status st = StartFrom(command, first);
    if (st.ok() && first) {
      if (auto s = exchange_->WaitConnected(connect); !s.ok()) {
        st = s;
      } else {
        server_->SetServing("gut.v1.Peer", true);
        if (health_server_) health_server_->SetServing("gut.v1.Peer", true);
        spdlog::info("rank {}: connected to all {} neighbours; training {} epochs from round {}", join_.rank(),
                     join_.neighbours_size(), config_.epochs, participant_->rounds());
        // The training thread yields to the gRPC threads: a neighbour's message is on everyone's
        // critical path, so its reader must not queue behind a long compute slice.
        if (o_.compute_nice != 0) setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), o_.compute_nice);
      }
    }
    first = false;
    if (st.ok()) st = core::DriveRun(plan_, participant_->rounds(), participant_.get());
    if (st.ok()) {
      if (auto s = exchange_->Flush(absl::Seconds(std::max(1.0, config_.deadline_s))); !s.ok()) {
        spdlog::warn("{}", std::string(s.message()));
      }
      if (!client_->FlushReports(o_.report_flush_s)) {
        spdlog::warn("{} report(s) not delivered: the coordinator is unreachable; this agent's metrics are in {}",
                     client_->pending_reports(),
                     o_.checkpoint_dir.empty() ? "its log" : o_.checkpoint_dir + "/metrics.csv");
      }
      Leave(false, false, "finished");
      Finish("finished");
      return 0;
    }
    {
      std::lock_guard<std::mutex> l(mu_);
      if (pending_) {
        command = *pending_;
        pending_.reset();
        // From here on a heartbeat repeating this command is old news (applying a generation twice
        // would throw away messages the neighbours already had acknowledged).
        if (command.action() != gut::v1::RunCommand::FAIL) generation_ = command.generation();
        if (command.action() != gut::v1::RunCommand::FAIL) {
          spdlog::info("rank {}: stopping round {} for the coordinator's recovery (generation {})", join_.rank(),
                       participant_->rounds(), command.generation());
        }
        continue;
      }
    }
    if (stopping()) {
      // At a round boundary the state is whole: keep it, so that a restart loses nothing.
      if (st.code() == absl::StatusCode::kCancelled && absl::StrContains(st.message(), "stopped at round")) {
        if (auto s = participant_->SaveStop(); !s.ok()) spdlog::warn("stop checkpoint not written: {}", s.ToString());
      }
      spdlog::info("rank {}: stop requested: {} (at round {})", join_.rank(), std::string(st.message()),
                   participant_->rounds());
      exchange_->SayGoodbye("stop requested", participant_->rounds());
      Leave(false, true, "stop requested");
      Finish("stopped");
      return 0;
    }
    core::LogEvent(spdlog::level::err, "agent_failed", {}, absl::StrCat("rank ", join_.rank(), ": ", st.message()));
    Leave(true, false, std::string(st.message()));
    Finish("failed");
    return 1;
  }
}

// Writes the last /metrics page (kept for post-mortems, and checked by promtool in the tests).
void Agent::Finish(const std::string& status) {
  if (metrics_) {
    metrics_->SetStatus(status);
    participant_->SyncMetrics();
  }
  if (endpoint_ && !o_.checkpoint_dir.empty()) {
    (void)core::AtomicWrite(o_.checkpoint_dir + "/metrics.prom", endpoint_->Render(), core::Durability::kRename);
  }
}

void Agent::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  const absl::Duration budget = absl::Seconds(o_.stop_timeout_s);
  if (client_) client_->StopHeartbeats();
  if (server_) server_->SetServing("gut.v1.Peer", false);
  if (health_server_) health_server_->SetServing("gut.v1.Peer", false);
  if (exchange_) exchange_->Shutdown(budget / 2);
  if (server_) server_->Shutdown(absl::Now() + budget / 4);
  if (health_server_) health_server_->Shutdown();
}

int Agent::Run() {
  if (o_.coordinator.empty()) {
    spdlog::error("--coordinator is required");
    return 2;
  }
  if (o_.local_data && o_.data_dir.empty()) {
    spdlog::error("--local-data needs --data-dir");
    return 2;
  }
  if (!o_.checkpoint_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(o_.checkpoint_dir, ec);
    if (ec) {
      spdlog::error("cannot create checkpoint directory '{}': {}", o_.checkpoint_dir, ec.message());
      return 2;
    }
  }
  // Before anything listens or loads: this process may restart into the run's numerics mode.
  for (auto step : {&Agent::LoadIdentity, &Agent::EnterRunNumerics, &Agent::Serve}) {
    if (auto s = (this->*step)(); !s.ok()) {
      if (stopping() || s.code() == absl::StatusCode::kAlreadyExists) return 0;  // kAlreadyExists: finished run
      spdlog::error("{}", std::string(s.message()));
      return 2;
    }
  }
  StartupWatch watch(stop_, o_.stop_timeout_s);  // joining and loading check no stop flag
  auto end_startup = [&] { watch.End(); };
  if (auto s = Join(); !s.ok()) {
    end_startup();
    if (stopping()) {
      spdlog::info("stop requested before the run started");
      return 0;
    }
    spdlog::error("{}", std::string(s.message()));
    return s.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  const absl::Status ready = Prepare();
  end_startup();
  if (!ready.ok()) {
    spdlog::error("rank {}: {}", join_.rank(), std::string(ready.message()));
    Leave(true, false, std::string(ready.message()));
    return 2;
  }
  const int code = Train();
  Shutdown();
  return code;
}

}  // namespace

int RunAgent(const AgentOptions& options, const std::atomic<bool>* stop) {
  Agent agent(options, stop);
  return agent.Run();
}

}  // namespace gut::agent
