// The plaintext health port (--health-listen): grpc.health.v1 alone on an address of its own, for
// Kubernetes' gRPC probes, which speak neither TLS nor gut's protocol. "" answers SERVING while the
// process lives; other service names follow SetServingStatus on the returned server.
#ifndef GUT_SERVICES_HEALTH_SERVER_H_
#define GUT_SERVICES_HEALTH_SERVER_H_

#include <memory>
#include <string>

#include <grpcpp/server.h>

#include "absl/status/statusor.h"

namespace gut::services {

class HealthServer {
 public:
  // Listens on `address` (host:port; port 0 picks one). UNAVAILABLE naming the address when it
  // cannot.
  static absl::StatusOr<std::unique_ptr<HealthServer>> Start(const std::string& address);
  ~HealthServer();

  int port() const { return port_; }
  void SetServing(const std::string& service, bool serving);
  void Shutdown();

 private:
  HealthServer() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace gut::services

#endif  // GUT_SERVICES_HEALTH_SERVER_H_
