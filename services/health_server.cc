#include "services/health_server.h"

#include <chrono>

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include "absl/strings/str_cat.h"

namespace gut::services {

// gRPC builds its default health service into a server only next to some other service (a server
// with no method at all refuses to start: "at least one of the completion queues must be
// frequently polled"). A callback generic service that answers UNIMPLEMENTED to anything but the
// health methods is that other service.
struct HealthServer::Impl {
  class Unimplemented final : public grpc::CallbackGenericService {
    grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext*) override {
      class Refuse final : public grpc::ServerGenericBidiReactor {
       public:
        Refuse() { Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "only grpc.health.v1 on this port")); }
        void OnDone() override { delete this; }
      };
      return new Refuse();
    }
  };
  Unimplemented generic;
  std::unique_ptr<grpc::Server> server;
};

absl::StatusOr<std::unique_ptr<HealthServer>> HealthServer::Start(const std::string& address) {
  grpc::EnableDefaultHealthCheckService(true);
  std::unique_ptr<HealthServer> h(new HealthServer());
  h->impl_ = std::make_unique<Impl>();
  grpc::ServerBuilder b;
  b.AddListeningPort(address, grpc::InsecureServerCredentials(), &h->port_);
  b.RegisterCallbackGenericService(&h->impl_->generic);
  h->impl_->server = b.BuildAndStart();
  if (!h->impl_->server || h->port_ == 0 || h->impl_->server->GetHealthCheckService() == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot listen on --health-listen '", address, "'"));
  }
  return h;
}

HealthServer::~HealthServer() { Shutdown(); }

void HealthServer::SetServing(const std::string& service, bool serving) {
  if (impl_->server) impl_->server->GetHealthCheckService()->SetServingStatus(service, serving);
}

void HealthServer::Shutdown() {
  if (impl_ && impl_->server) {
    impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
    impl_->server->Wait();
    impl_->server.reset();
  }
}

}  // namespace gut::services
