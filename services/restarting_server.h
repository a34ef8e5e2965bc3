// RestartingServer: a grpc::Server whose listening port comes back after gRPC gave it up.
//
// gRPC 1.51's accept loop (src/core/lib/iomgr/tcp_server_posix.cc) treats any accept4() error
// but EAGAIN and EINTR as fatal for that port: after "Failed accept4: Too many open files" the
// port is never polled again, so a stranger who holds enough idle connections to reach the fd
// limit silences the daemon for good, even once the connections are gone (measured: a coordinator
// with 64 fds, 300 connections held for 3 s and closed: Status still timed out 40 s later; later
// gRPC versions retry instead). This wrapper watches for that log line (library_logs.h) and then
// rebuilds the server on the same port with the same services: the old server is shut down
// (its streams are cut; peers reconnect and resend, callers retry) and a new one listens once
// file descriptors are free again. The health statuses set through it are set again.
//
// Thread-safety: every method may be called from any thread; `mu_` guards the current server.
#ifndef GUT_SERVICES_RESTARTING_SERVER_H_
#define GUT_SERVICES_RESTARTING_SERVER_H_

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace gut::services {

class RestartingServer {
 public:
  // Registers services and options on a builder (called again for every restart).
  using Configure = std::function<void(grpc::ServerBuilder*)>;
  // Listens on `address` (port 0: any; a restart keeps the port first bound).
  static absl::StatusOr<std::unique_ptr<RestartingServer>> Start(const std::string& address,
                                                                 std::shared_ptr<grpc::ServerCredentials> credentials,
                                                                 Configure configure);
  ~RestartingServer();  // Shutdown(now + 1 s) if not done

  int port() const { return port_; }
  // grpc.health.v1 status of `service` on this server ("" is the whole server), kept across restarts.
  void SetServing(const std::string& service, bool serving);
  void Shutdown(absl::Time deadline);
  int64_t restarts() const { return restarts_.load(); }

 private:
  RestartingServer(std::string address, std::shared_ptr<grpc::ServerCredentials> credentials, Configure configure)
      : address_(std::move(address)), credentials_(std::move(credentials)), configure_(std::move(configure)) {}
  // Builds and starts a server on address_ (with port_ once known); null on failure.
  std::unique_ptr<grpc::Server> Build(int* port);
  void Watch();
  bool Restart();

  const std::string address_;
  const std::shared_ptr<grpc::ServerCredentials> credentials_;
  const Configure configure_;
  int port_ = 0;
  std::atomic<int64_t> restarts_{0};
  absl::Mutex mu_;
  std::unique_ptr<grpc::Server> server_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, bool> serving_ ABSL_GUARDED_BY(mu_);
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::thread watcher_;
};

}  // namespace gut::services

#endif  // GUT_SERVICES_RESTARTING_SERVER_H_
