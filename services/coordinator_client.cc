#include "services/coordinator_client.h"

#include <grpcpp/create_channel.h>
#include <spdlog/spdlog.h>

#include <random>

#include "absl/strings/str_cat.h"
#include "services/status.h"

namespace gut::services {

void AddPeerState(const std::vector<PeerStats>& peers, gut::v1::HeartbeatRequest* h) {
  for (const auto& peer : peers) {
    if (!peer.connected) h->add_peers_down(peer.rank);
    auto* w = h->add_waits();
    w->set_rank(peer.rank);
    w->set_seconds(peer.wait_seconds);
  }
}

void AddRefusals(const core::RefusalLog& log, gut::v1::HeartbeatRequest* h) {
  for (const auto& [rank, count] : log.by_sender) {
    auto* r = h->add_refused();
    r->set_rank(rank);
    r->set_count(count);
    const auto first = log.first_round_of.find(rank);
    r->set_first_round(first == log.first_round_of.end() ? 0 : first->second);
  }
}

CoordinatorClient::CoordinatorClient(const std::string& address, const TlsMaterial* tls)
    : address_(address), tls_(tls != nullptr) {
  std::random_device rd;
  nonce_ = (uint64_t{rd()} << 32 | rd()) | 1;  // never 0 (older agents' value)
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  channel_ = grpc::CreateCustomChannel(address, ChannelCredentials(tls), args);
  stub_ = gut::v1::Coordinator::NewStub(channel_);
}

grpc::Status CoordinatorClient::CheckServer(const grpc::ClientContext& ctx) const {
  if (!tls_) return grpc::Status::OK;
  const std::shared_ptr<const grpc::AuthContext> auth = ctx.auth_context();
  const CertificateRole role = RoleOfPeer(auth.get());
  if (role.role == Role::kCoordinator) return grpc::Status::OK;
  std::string name;
  if (auth != nullptr) {
    for (const auto& v : auth->FindPropertyValues(GRPC_X509_CN_PROPERTY_NAME)) name.assign(v.data(), v.size());
  }
  return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                      absl::StrCat("the server at ", address_, " presents certificate '", name, "' with ",
                                   DescribeRole(role), ", not the coordinator role: its answer is not used"));
}

CoordinatorClient::~CoordinatorClient() {
  StopHeartbeats();
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_reports_ = true;
  }
  cv_.notify_all();
  if (reporter_.joinable()) reporter_.join();
}

absl::StatusOr<gut::v1::JoinResponse> CoordinatorClient::Join(const gut::v1::JoinRequest& req, absl::Duration timeout,
                                                               const std::atomic<bool>* stop) {
  const absl::Time until = absl::Now() + timeout;
  for (int attempt = 0;; ++attempt) {
    if (stop != nullptr && stop->load()) return absl::CancelledError("stopped while joining");
    grpc::ClientContext ctx;
    ctx.set_wait_for_ready(true);
    ctx.set_deadline(absl::ToChronoTime(std::min(until, absl::Now() + absl::Seconds(2))));
    gut::v1::JoinResponse resp;
    gut::v1::JoinRequest mine = req;
    mine.set_process_nonce(nonce_);
    grpc::Status s = stub_->Join(&ctx, mine, &resp);
    if (s.ok()) s = CheckServer(ctx);
    if (s.ok()) return resp;
    const bool retry = s.error_code() == grpc::StatusCode::UNAVAILABLE || s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
    if (!retry || absl::Now() >= until) return FromGrpc(s, "join at the coordinator " + address_);
    if (attempt % 15 == 0) spdlog::info("waiting for the run to start ({})", s.error_message());
  }
}

absl::StatusOr<gut::v1::StatusResponse> CoordinatorClient::Status(absl::Duration timeout,
                                                                 const std::atomic<bool>* stop) {
  const absl::Time until = absl::Now() + timeout;
  for (;;) {
    if (stop != nullptr && stop->load()) return absl::CancelledError("stopped while asking the coordinator");
    grpc::ClientContext ctx;
    ctx.set_wait_for_ready(true);
    ctx.set_deadline(absl::ToChronoTime(std::min(until, absl::Now() + absl::Seconds(2))));
    gut::v1::StatusResponse resp;
    grpc::Status s = stub_->Status(&ctx, gut::v1::StatusRequest(), &resp);
    if (s.ok()) s = CheckServer(ctx);
    if (s.ok()) return resp;
    const bool retry = s.error_code() == grpc::StatusCode::UNAVAILABLE || s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
    if (!retry || absl::Now() >= until) return FromGrpc(s, "status from the coordinator " + address_);
  }
}

absl::StatusOr<std::string> CoordinatorClient::FetchModel(const gut::v1::FetchModelRequest& req, int64_t size,
                                                           absl::Duration timeout) {
  const absl::Time until = absl::Now() + timeout;
  for (;;) {
    grpc::ClientContext ctx;
    ctx.set_wait_for_ready(true);
    ctx.set_deadline(absl::ToChronoTime(until));
    auto reader = stub_->FetchModel(&ctx, req);
    std::string bytes;
    gut::v1::ModelChunk c;
    absl::Status bad;
    while (reader->Read(&c)) {
      if (c.offset() != static_cast<int64_t>(bytes.size()) ||
          static_cast<int64_t>(bytes.size() + c.data().size()) > size) {
        bad = absl::DataLossError(absl::StrCat("the coordinator's model file stream does not fit the announced ",
                                               size, " bytes (chunk at ", c.offset(), " after ", bytes.size(), ")"));
        ctx.TryCancel();
        break;
      }
      bytes += c.data();
    }
    grpc::Status s = reader->Finish();
    if (!bad.ok()) return bad;
    if (s.ok()) s = CheckServer(ctx);
    if (s.ok()) {
      if (static_cast<int64_t>(bytes.size()) != size) {
        return absl::DataLossError(absl::StrCat("the coordinator sent ", bytes.size(), " bytes of the model file, not ", size));
      }
      return bytes;
    }
    if (s.error_code() != grpc::StatusCode::UNAVAILABLE || absl::Now() >= until) return FromGrpc(s, "model file from the coordinator " + address_);
    absl::SleepFor(absl::Milliseconds(200));
  }
}

void CoordinatorClient::StartReporting(const std::string& run_id) {
  std::lock_guard<std::mutex> l(mu_);
  run_id_ = run_id;
  if (!reporter_.joinable()) reporter_ = std::thread([this] { ReportLoop(); });
}

void CoordinatorClient::Report(const gut::v1::EpochMetrics& m) {
  {
    std::lock_guard<std::mutex> l(mu_);
    queue_.push_back(m);
  }
  cv_.notify_all();
}

bool CoordinatorClient::FlushReports(double seconds) {
  std::unique_lock<std::mutex> l(mu_);
  flushing_ = true;
  cv_.notify_all();
  const bool done = cv_.wait_for(l, std::chrono::duration<double>(seconds), [&] { return queue_.empty(); });
  flushing_ = false;
  return done;
}

size_t CoordinatorClient::pending_reports() {
  std::lock_guard<std::mutex> l(mu_);
  return queue_.size();
}

void CoordinatorClient::ReportLoop() {
  double backoff = 0.2;
  int failures = 0;
  for (;;) {
    gut::v1::ReportRequest req;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return stop_reports_ || !queue_.empty(); });
      if (stop_reports_) return;
      *req.mutable_metrics() = queue_.front();
      req.set_run_id(run_id_);
    }
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    gut::v1::ReportResponse resp;
    grpc::Status s = stub_->Report(&ctx, req, &resp);
    if (s.ok()) {
      // Not delivered unless the coordinator took it: kept and retried.
      if (const grpc::Status who = CheckServer(ctx); !who.ok()) {
        s = grpc::Status(grpc::StatusCode::UNAVAILABLE, who.error_message());
      }
    }
    std::unique_lock<std::mutex> l(mu_);
    const bool refused = s.error_code() == grpc::StatusCode::INVALID_ARGUMENT ||
                         s.error_code() == grpc::StatusCode::FAILED_PRECONDITION ||
                         s.error_code() == grpc::StatusCode::PERMISSION_DENIED;
    if (s.ok() || refused) {
      if (refused) spdlog::error("coordinator refused a report: {}", s.error_message());
      if (failures > 0) spdlog::info("coordinator reachable again after {} failed report(s)", failures);
      failures = 0;
      backoff = 0.2;
      if (s.ok() && resp.consensus_distance_estimate() >= 0) consensus_ = resp.consensus_distance_estimate();
      queue_.pop_front();
      cv_.notify_all();
      continue;
    }
    if (failures++ % 20 == 0) {
      spdlog::warn("report of epoch {} not delivered ({}); retrying, {} queued", req.metrics().epoch(),
                   s.error_message(), queue_.size());
    }
    cv_.wait_for(l, std::chrono::duration<double>(flushing_ ? 0.1 : backoff), [&] { return stop_reports_ || flushing_; });
    if (flushing_) cv_.wait_for(l, std::chrono::milliseconds(100), [&] { return stop_reports_; });
    backoff = std::min(5.0, backoff * 2);
  }
}

void CoordinatorClient::StartHeartbeats(absl::Duration period, std::function<gut::v1::HeartbeatRequest()> state,
                                        std::function<void(const gut::v1::RunCommand&)> on_command,
                                        std::function<void(const grpc::Status&)> on_refused) {
  std::lock_guard<std::mutex> l(mu_);
  state_ = std::move(state);
  on_command_ = std::move(on_command);
  on_refused_ = std::move(on_refused);
  stop_heartbeats_ = false;
  if (!heartbeat_.joinable()) heartbeat_ = std::thread([this, period] { HeartbeatLoop(period); });
}

void CoordinatorClient::StopHeartbeats() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_heartbeats_ = true;
  }
  cv_.notify_all();
  if (heartbeat_.joinable()) heartbeat_.join();
}

void CoordinatorClient::HeartbeatLoop(absl::Duration period) {
  int failures = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait_for(l, absl::ToChronoMilliseconds(period), [&] { return stop_heartbeats_; });
      if (stop_heartbeats_) return;
    }
    gut::v1::HeartbeatRequest req = state_();
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    gut::v1::HeartbeatResponse resp;
    const grpc::Status s = stub_->Heartbeat(&ctx, req, &resp);
    // An answer from a server without the coordinator role is not applied; it counts as unanswered.
    const grpc::Status who = s.ok() ? CheckServer(ctx) : grpc::Status::OK;
    if (!who.ok()) {
      if (failures++ % 40 == 0) spdlog::error("heartbeat answer ignored: {}", who.error_message());
    } else if (s.ok()) {
      if (failures > 0) spdlog::info("coordinator answers heartbeats again (after {} missed)", failures);
      failures = 0;
      on_command_(resp.command());
    } else if (s.error_code() == grpc::StatusCode::PERMISSION_DENIED ||
               s.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
      on_refused_(s);
    } else if (failures++ % 40 == 0) {
      spdlog::warn("heartbeat not answered ({}); training goes on", s.error_message());
    }
  }
}

grpc::Status CoordinatorClient::Leave(const gut::v1::LeaveRequest& req, absl::Duration timeout) {
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  gut::v1::LeaveResponse resp;
  return stub_->Leave(&ctx, req, &resp);
}

}  // namespace gut::services
