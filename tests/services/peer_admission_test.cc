// Admission on the peer port: streams that never send a hello are closed after the hello timeout
// and counted, no more than max_pending_streams wait at a time (the rest are refused at once), and
// none of it disturbs an exchange that runs on the same service.
#include <chrono>
#include <thread>

#include <grpcpp/create_channel.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>

#include "gtest/gtest.h"
#include "services/grpc_exchange.h"

namespace gut::services {
namespace {

TEST(PeerAdmission, IdleStreamsAreClosedAfterTheHelloTimeoutAndCapped) {
  StreamTuning t = StreamTuning::ForTests();
  t.hello_timeout_ms = 800;
  t.max_pending_streams = 8;
  PeerService service(t);
  grpc::ServerBuilder b;
  int port = 0;
  b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  t.ApplyToServer(&b, true);
  b.RegisterService(&service);
  auto server = b.BuildAndStart();
  ASSERT_NE(server, nullptr);
  const std::string address = "127.0.0.1:" + std::to_string(port);

  // 20 clients open a stream each and say nothing.
  constexpr int kClients = 20;
  std::vector<grpc::Status> status(kClients);
  std::vector<double> seconds(kClients);
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&, i] {
      auto ch = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
      auto stub = gut::v1::Peer::NewStub(ch);
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
      const auto t0 = std::chrono::steady_clock::now();
      auto stream = stub->Exchange(&ctx);
      gut::v1::PeerFrame in;
      while (stream->Read(&in)) {
      }
      status[i] = stream->Finish();
      seconds[i] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    });
  }
  for (auto& c : clients) c.join();
  int timed_out = 0, refused = 0;
  for (int i = 0; i < kClients; ++i) {
    EXPECT_LT(seconds[i], 5.0) << "client " << i << " was held open";
    if (status[i].error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) ++timed_out;
    if (status[i].error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) ++refused;
  }
  EXPECT_EQ(timed_out + refused, kClients);
  EXPECT_GE(refused, 1) << "more than 8 waiting at once must be refused";
  EXPECT_EQ(service.rejected(Reject::kHelloTimeout), timed_out);
  EXPECT_EQ(service.rejected(Reject::kTooManyPending), refused);
  EXPECT_EQ(service.pending_streams(), 0);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
}

}  // namespace
}  // namespace gut::services
