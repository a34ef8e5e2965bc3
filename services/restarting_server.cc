#include "services/restarting_server.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>

#include <grpcpp/health_check_service_interface.h>
#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "services/library_logs.h"

namespace gut::services {
namespace {

// A restart needs a few descriptors (the listening sockets, gRPC's wakeup fds): wait until 16 can
// be opened, i.e. the flood has let go.
bool DescriptorsFree() {
  int fds[16];
  int n = 0;
  for (; n < 16; ++n) {
    fds[n] = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fds[n] < 0) break;
  }
  for (int k = 0; k < n; ++k) ::close(fds[k]);
  return n == 16;
}

std::chrono::system_clock::time_point ToChrono(absl::Time t) { return absl::ToChronoTime(t); }

}  // namespace

absl::StatusOr<std::unique_ptr<RestartingServer>> RestartingServer::Start(
    const std::string& address, std::shared_ptr<grpc::ServerCredentials> credentials, Configure configure) {
  std::unique_ptr<RestartingServer> s(new RestartingServer(address, std::move(credentials), std::move(configure)));
  int port = 0;
  auto server = s->Build(&port);
  if (server == nullptr || port == 0) return absl::UnavailableError(absl::StrCat("cannot listen on '", address, "'"));
  s->port_ = port;
  {
    absl::MutexLock l(&s->mu_);
    s->server_ = std::move(server);
  }
  s->watcher_ = std::thread([p = s.get()] { p->Watch(); });
  return s;
}

RestartingServer::~RestartingServer() { Shutdown(absl::Now() + absl::Seconds(1)); }

std::unique_ptr<grpc::Server> RestartingServer::Build(int* port) {
  std::string address = address_;
  if (port_ != 0) address = address_.substr(0, address_.rfind(':') + 1) + std::to_string(port_);
  grpc::ServerBuilder b;
  b.AddListeningPort(address, credentials_, port);
  configure_(&b);
  return b.BuildAndStart();
}

void RestartingServer::SetServing(const std::string& service, bool serving) {
  absl::MutexLock l(&mu_);
  serving_[service] = serving;
  if (server_ != nullptr && server_->GetHealthCheckService() != nullptr) {
    server_->GetHealthCheckService()->SetServingStatus(service, serving);
  }
}

void RestartingServer::Watch() {
  int64_t seen = AcceptFailures();
  absl::MutexLock l(&mu_);
  for (;;) {
    mu_.AwaitWithTimeout(absl::Condition(&stopped_), absl::Milliseconds(200));
    if (stopped_) return;
    if (AcceptFailures() == seen || !DescriptorsFree()) continue;
    seen = AcceptFailures();
    mu_.Unlock();
    const bool ok = Restart();
    mu_.Lock();
    if (!ok) seen = -1;  // try again on the next tick
  }
}

bool RestartingServer::Restart() {
  std::unique_ptr<grpc::Server> old;
  {
    absl::MutexLock l(&mu_);
    if (stopped_) return true;
    old = std::move(server_);
  }
  // The old server's port is dead but still bound: it must be gone before the new one binds, or
  // the kernel would hand half of the new connections to a socket nobody accepts on.
  if (old != nullptr) old->Shutdown(ToChrono(absl::Now() + absl::Seconds(1)));
  old.reset();
  int port = 0;
  auto fresh = Build(&port);
  absl::MutexLock l(&mu_);
  if (fresh == nullptr || port != port_) {
    spdlog::error("port {}: gRPC stopped accepting connections (out of file descriptors) and listening again "
                  "failed; retrying", port_);
    return false;
  }
  if (fresh->GetHealthCheckService() != nullptr) {
    for (const auto& [service, serving] : serving_) fresh->GetHealthCheckService()->SetServingStatus(service, serving);
  }
  server_ = std::move(fresh);
  ++restarts_;
  spdlog::warn("port {}: gRPC had stopped accepting connections after running out of file descriptors (a flood "
               "of connections?); listening again (restart {}; open streams were cut and reconnect)",
               port_, restarts_.load());
  return true;
}

void RestartingServer::Shutdown(absl::Time deadline) {
  {
    absl::MutexLock l(&mu_);
    stopped_ = true;
  }
  // A restart under way finishes first and leaves its server in server_.
  if (watcher_.joinable()) watcher_.join();
  std::unique_ptr<grpc::Server> server;
  {
    absl::MutexLock l(&mu_);
    server = std::move(server_);
  }
  if (server != nullptr) server->Shutdown(ToChrono(deadline));
}

}  // namespace gut::services
