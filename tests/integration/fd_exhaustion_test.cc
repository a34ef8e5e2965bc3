// A stranger who holds enough idle connections to exhaust a daemon's file descriptors must not
// silence it for good. gRPC 1.51 gives a listening port up after "Failed accept4: Too many open
// files" (services/restarting_server.h); before the fix, a coordinator with 64 descriptors still
// timed out 40 s after the 300 connections were closed. Here a real gut-coordinator runs under
// `prlimit --nofile=64:64`, the test holds 300 TCP connections to its port for 3 s and lets go, and
// a Status call must then succeed within 5 s; the log says the port was listened on again.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <grpcpp/grpcpp.h>

#include "gut/v1/coordinator.grpc.pb.h"
#include "tests/integration/cluster_fixture.h"

namespace gut {
namespace {

bool StatusAnswers(gut::v1::Coordinator::Stub* stub) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
  gut::v1::StatusResponse r;
  return stub->Status(&ctx, gut::v1::StatusRequest(), &r).ok();
}

TEST_F(Cluster, ACoordinatorListensAgainAfterAConnectionFloodExhaustedItsDescriptors) {
  if (!fs::exists("/usr/bin/prlimit")) GTEST_SKIP() << "prlimit (util-linux) not installed";
  const std::string manifest = WriteManifest(Manifest((dir_ / "data").string(), 1, "fp32"));
  Spawn({"/usr/bin/prlimit", "--nofile=64:64", GUT_COORDINATOR, "--manifest", manifest, "--out",
         (dir_ / "out").string(), "--listen", "127.0.0.1:0", "--port-file", (dir_ / "port").string(),
         "--join-timeout-s", "120"},
        (dir_ / "coordinator.log").string());
  ASSERT_TRUE(WaitForFile(dir_ / "port", 20));
  std::ifstream(dir_ / "port") >> port_;
  auto channel = [&] { return grpc::CreateChannel("127.0.0.1:" + port_, grpc::InsecureChannelCredentials()); };
  ASSERT_TRUE(StatusAnswers(gut::v1::Coordinator::NewStub(channel()).get()));

  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::stoi(port_)));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  std::vector<int> held;
  for (int k = 0; k < 300; ++k) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      close(fd);
      break;
    }
    held.push_back(fd);
  }
  ASSERT_GT(held.size(), 64u) << "the flood did not get past the descriptor limit";
  std::this_thread::sleep_for(std::chrono::seconds(3));
  ASSERT_TRUE(WaitForLog(dir_ / "coordinator.log", "Failed accept4", 5)) << "the limit was never reached";
  for (int fd : held) close(fd);

  const auto released = std::chrono::steady_clock::now();
  bool answered = false;
  while (!answered && std::chrono::steady_clock::now() - released < std::chrono::seconds(5)) {
    answered = StatusAnswers(gut::v1::Coordinator::NewStub(channel()).get());  // a new connection each time
  }
  EXPECT_TRUE(answered) << Read(dir_ / "coordinator.log");
  EXPECT_NE(Read(dir_ / "coordinator.log").find("listening again"), std::string::npos);
}

}  // namespace
}  // namespace gut
