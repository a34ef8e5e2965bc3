// A real gut-agentd against a hostile coordinator (a gRPC server of the test's own that answers
// Join and Heartbeat with what the test says): a rank out of range, an absurd world size, NaN or
// out-of-range neighbours, a world size that is not the manifest's, and a later command with a bad
// topology. The agent must refuse each naming the field, and exit with an error, never crash (a
// JoinResponse with rank -5 once corrupted its heap).
#include <grpcpp/grpcpp.h>

#include <signal.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <functional>
#include <thread>
#include <limits>

#include "agent/coordinator_checks.h"
#include "gut/v1/coordinator.grpc.pb.h"
#include "tests/integration/cluster_fixture.h"

namespace gut {
namespace {

class FakeCoordinator final : public gut::v1::Coordinator::Service {
 public:
  std::function<void(gut::v1::JoinResponse*)> join;
  std::function<void(gut::v1::RunCommand*)> heartbeat;  // null: repeat the join's command

  std::function<void()> on_join;  // called for every Join that arrives

  grpc::Status Join(grpc::ServerContext*, const gut::v1::JoinRequest*, gut::v1::JoinResponse* r) override {
    if (on_join) on_join();
    join(r);
    last_ = r->command();
    return grpc::Status::OK;
  }
  grpc::Status Heartbeat(grpc::ServerContext*, const gut::v1::HeartbeatRequest*, gut::v1::HeartbeatResponse* r) override {
    *r->mutable_command() = last_;
    if (heartbeat) heartbeat(r->mutable_command());
    return grpc::Status::OK;
  }
  grpc::Status Status(grpc::ServerContext*, const gut::v1::StatusRequest*, gut::v1::StatusResponse* r) override {
    r->set_numerics("native");
    return grpc::Status::OK;
  }
  grpc::Status Report(grpc::ServerContext*, const gut::v1::ReportRequest*, gut::v1::ReportResponse*) override {
    return grpc::Status::OK;
  }
  grpc::Status Leave(grpc::ServerContext*, const gut::v1::LeaveRequest*, gut::v1::LeaveResponse*) override {
    return grpc::Status::OK;
  }

 private:
  gut::v1::RunCommand last_;
};

// What a real coordinator would answer rank 0 of a 4-ring.
void Honest(gut::v1::JoinResponse* r, const std::string& manifest) {
  r->set_run_id("fake-run");
  r->set_rank(0);
  r->set_world_size(4);
  r->set_incarnation(1);
  r->set_manifest_yaml(manifest);
  auto* c = r->mutable_command();
  c->set_generation(1);
  auto* t = c->mutable_topology();
  t->set_version(1);
  t->set_self_weight(1.0 / 3);
  for (int nb : {1, 3}) {
    auto* n = t->add_neighbours();
    n->set_rank(nb);
    n->set_address("127.0.0.1:9");
    n->set_weight(1.0 / 3);
  }
}

class FakeCoordinatorTest : public Cluster {
 protected:
  // Runs gut-agentd against `fake`; returns its exit code and log.
  std::pair<int, std::string> RunAgent(FakeCoordinator* fake, const std::string& name) {
    grpc::ServerBuilder b;
    int port = 0;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(fake);
    auto server = b.BuildAndStart();
    const std::string log = (dir_ / (name + ".log")).string();
    const pid_t agent = Spawn({GUT_AGENTD, "--coordinator", "127.0.0.1:" + std::to_string(port), "--rank", "0",
                               "--join-timeout-s", "20", "--stop-timeout-s", "4"},
                              log);
    const int rc = Wait(agent, 60);
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    return {rc, Read(log)};
  }
  std::string manifest_;
  void SetUp() override {
    Cluster::SetUp();
    manifest_ = Manifest((dir_ / "data").string(), 1, "fp32");
  }
};

TEST_F(FakeCoordinatorTest, HostileJoinResponsesAreRefusedNamingTheField) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const std::vector<std::pair<std::string, std::function<void(gut::v1::JoinResponse*)>>> cases = {
      {"rank -5 is not in [0, 4)", [](auto* r) { r->set_rank(-5); }},
      {"world_size is 2147483647", [](auto* r) { r->set_world_size(2147483647); }},
      {"topology.neighbours[0].weight is nan", [nan](auto* r) { r->mutable_command()->mutable_topology()->mutable_neighbours(0)->set_weight(nan); }},
      {"topology.neighbours[1].rank 99 is not in [0, 4)", [](auto* r) { r->mutable_command()->mutable_topology()->mutable_neighbours(1)->set_rank(99); }},
      {"topology.neighbours[0].rank 0 is this agent's own rank", [](auto* r) { r->mutable_command()->mutable_topology()->mutable_neighbours(0)->set_rank(0); }},
      {"topology.self_weight is -1", [](auto* r) { r->mutable_command()->mutable_topology()->set_self_weight(-1); }},
      {"world_size 5 is not its manifest's agents.count, 4", [](auto* r) {
         r->set_world_size(5);
       }},
  };
  int k = 0;
  for (const auto& [want, hostile] : cases) {
    SCOPED_TRACE(want);
    FakeCoordinator fake;
    fake.join = [&, hostile = hostile](gut::v1::JoinResponse* r) {
      Honest(r, manifest_);
      hostile(r);
    };
    auto [rc, log] = RunAgent(&fake, "case-" + std::to_string(k++));
    EXPECT_EQ(rc, 2) << log;
    EXPECT_NE(log.find("the coordinator's answer is invalid: " + want), std::string::npos) << log;
  }
}

TEST_F(FakeCoordinatorTest, AnInvalidLaterCommandStopsTheAgentSayingWhy) {
  FakeCoordinator fake;
  fake.join = [&](gut::v1::JoinResponse* r) { Honest(r, manifest_); };
  fake.heartbeat = [](gut::v1::RunCommand* c) {
    c->set_generation(2);
    c->mutable_topology()->mutable_neighbours(0)->set_weight(1e30);
  };
  auto [rc, log] = RunAgent(&fake, "later");
  EXPECT_EQ(rc, 1) << log;
  EXPECT_NE(log.find("topology.neighbours[0].weight is 1e+30, not in (0, 1]"), std::string::npos) << log;
}

// A listener that counts the peer streams and hellos that reach it.
class FakePeer final : public gut::v1::Peer::Service {
 public:
  std::atomic<int> streams{0}, hellos{0};
  grpc::Status Exchange(grpc::ServerContext*, grpc::ServerReaderWriter<gut::v1::PeerFrame, gut::v1::PeerFrame>* s) override {
    ++streams;
    gut::v1::PeerFrame f;
    while (s->Read(&f)) hellos += f.has_hello() ? 1 : 0;
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "fake");
  }
};

std::shared_ptr<grpc::ServerCredentials> TlsServer(const fs::path& tls, const std::string& name) {
  grpc::SslServerCredentialsOptions o(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  o.pem_root_certs = Read(tls / "ca.pem");
  o.pem_key_cert_pairs.push_back({Read(tls / (name + ".key")), Read(tls / (name + ".pem"))});
  return grpc::SslServerCredentials(o);
}

// Roles (issue 20, scope 1): gut-agentd takes answers only from a certificate with the coordinator
// role, and its dial to a neighbour fails in the TLS handshake, before its hello (run id, layout)
// is sent, unless the listener holds that neighbour's certificate. Each half has a control that
// shows the same set-up succeeds with the right certificate.
TEST_F(FakeCoordinatorTest, AnAgentTrustsOnlyTheCoordinatorRoleAndSendsItsHelloOnlyToTheNamedNeighbour) {
  if (std::system("command -v openssl >/dev/null 2>&1") != 0) GTEST_SKIP() << "openssl not installed";
  const fs::path tls = dir_ / "tls";
  ASSERT_EQ(std::system(("bash " + std::string(GUT_SOURCE_DIR) + "/deploy/local/make-certs.sh " + tls.string() +
                         " gut-coordinator agent-0 agent-1 agent-3 agent-9 >/dev/null")
                            .c_str()),
            0);
  auto run = [&](const std::string& coordinator_cert, const std::string& peer_cert, FakeCoordinator* fake,
                 FakePeer* peer, const std::string& name) {
    grpc::ServerBuilder pb;
    int peer_port = 0;
    pb.AddListeningPort("127.0.0.1:0", TlsServer(tls, peer_cert), &peer_port);
    pb.RegisterService(peer);
    auto peer_server = pb.BuildAndStart();
    fake->join = [&, peer_port](gut::v1::JoinResponse* r) {
      Honest(r, manifest_);
      for (auto& n : *r->mutable_command()->mutable_topology()->mutable_neighbours()) {
        n.set_address("127.0.0.1:" + std::to_string(peer_port));
        n.set_identity("agent-" + std::to_string(n.rank()));
      }
    };
    grpc::ServerBuilder b;
    int port = 0;
    b.AddListeningPort("127.0.0.1:0", TlsServer(tls, coordinator_cert), &port);
    b.RegisterService(fake);
    auto server = b.BuildAndStart();
    const std::string log = (dir_ / (name + ".log")).string();
    const pid_t agent = Spawn({GUT_AGENTD, "--coordinator", "127.0.0.1:" + std::to_string(port), "--rank", "0",
                               "--join-timeout-s", "10", "--stop-timeout-s", "2", "--tls-ca", (tls / "ca.pem").string(),
                               "--tls-cert", (tls / "agent-0.pem").string(), "--tls-key", (tls / "agent-0.key").string()},
                              log);
    // Long enough for several dials (the first is immediate, retries back off from 200 ms).
    for (int i = 0; i < 40 && peer->hellos == 0 && kill(agent, 0) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    kill(agent, SIGTERM);
    const int rc = Wait(agent, 30);
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    peer_server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    return std::make_pair(rc, Read(log));
  };
  std::atomic<int> joins{0};
  {
    // An agent's certificate (agent-9, same CA) poses as the coordinator: nothing is taken from it
    // and the Join (with the agent's token, if any) is never sent.
    FakeCoordinator fake;
    FakePeer peer;
    fake.on_join = [&] { ++joins; };
    auto [rc, log] = run("agent-9", "agent-1", &fake, &peer, "wrong-coordinator");
    EXPECT_NE(rc, 0) << log;
    EXPECT_NE(log.find("presents certificate 'agent-9' with the agent role bound to rank 9, not the coordinator role"),
              std::string::npos) << log;
    EXPECT_EQ(joins, 0);
    EXPECT_EQ(peer.streams, 0);
  }
  {
    // The right coordinator, but the listener at neighbour 1's address holds agent-9's certificate.
    FakeCoordinator fake;
    FakePeer peer;
    fake.on_join = [&] { ++joins; };
    auto [rc, log] = run("gut-coordinator", "agent-9", &fake, &peer, "wrong-listener");
    EXPECT_EQ(joins, 1) << log;
    EXPECT_EQ(peer.streams, 0) << "a stream reached a listener that is not the neighbour";
    EXPECT_EQ(peer.hellos, 0);
  }
  {
    // Control: the listener holds agent-1's certificate, and the hello arrives.
    FakeCoordinator fake;
    FakePeer peer;
    auto [rc, log] = run("gut-coordinator", "agent-1", &fake, &peer, "right-listener");
    EXPECT_GE(peer.hellos, 1) << log;
  }
}

TEST(CoordinatorChecks, IdentitiesMustBeThereUnderTls) {
  gut::v1::JoinResponse r;
  Honest(&r, "");
  EXPECT_TRUE(agent::CheckJoinResponse(r, /*tls=*/false).ok());
  auto s = agent::CheckJoinResponse(r, /*tls=*/true);
  EXPECT_NE(s.message().find("topology.neighbours[0].identity is empty under TLS"), std::string::npos) << s;
  r.mutable_command()->mutable_topology()->mutable_neighbours(0)->set_weight(0.5);
  s = agent::CheckJoinResponse(r, false);
  EXPECT_NE(s.message().find("topology weights sum to 1.1666"), std::string::npos) << s;
  gut::v1::RunCommand fail;
  fail.set_action(gut::v1::RunCommand::FAIL);
  EXPECT_TRUE(agent::CheckCommand(fail, 0, 4, true).ok()) << "a failure needs no topology";
}

}  // namespace
}  // namespace gut
