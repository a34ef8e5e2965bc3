// Strangers failing the TLS handshake (plaintext on the TLS port, a client without a certificate)
// are counted in gut_coordinator_tls_handshake_failures_total, and the log gets at most one line
// per 10 s about them instead of one per attempt (2,000 attempts once wrote 2,000 lines).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "tests/integration/cluster_fixture.h"

namespace gut {
namespace {

void Garbage(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) {
    const std::string req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    (void)!send(fd, req.data(), req.size(), MSG_NOSIGNAL);
    char buf[512];
    while (recv(fd, buf, sizeof(buf), 0) > 0) {
    }
  }
  close(fd);
}

TEST_F(Cluster, FailedTlsHandshakesAreCountedNotLoggedEachTime) {
  if (access("/usr/bin/openssl", X_OK) != 0) GTEST_SKIP() << "openssl not installed (deploy/install-deps.sh --with-test-tools)";
  const fs::path tls = dir_ / "tls";
  ASSERT_EQ(std::system(("bash " + std::string(GUT_SOURCE_DIR) + "/deploy/local/make-certs.sh " + tls.string() +
                         " gut-coordinator > /dev/null 2>&1").c_str()),
            0);
  const std::string manifest = WriteManifest(Manifest((dir_ / "data").string(), 1, "fp32"));
  const pid_t c = Spawn({GUT_COORDINATOR, "--manifest", manifest, "--out", (dir_ / "out").string(), "--listen",
                         "127.0.0.1:0", "--port-file", (dir_ / "port").string(), "--metrics", "127.0.0.1:0", "--tls-ca",
                         (tls / "ca.pem").string(), "--tls-cert", (tls / "gut-coordinator.pem").string(), "--tls-key",
                         (tls / "gut-coordinator.key").string()},
                        (dir_ / "coordinator.log").string());
  ASSERT_TRUE(WaitForFile(dir_ / "port", 20));
  std::ifstream(dir_ / "port") >> port_;
  for (int k = 0; k < 40; ++k) Garbage(std::stoi(port_));
  kill(c, SIGTERM);
  EXPECT_NE(Wait(c, 20), -1) << "the coordinator did not stop";
  const std::string log = Read(dir_ / "coordinator.log"), page = Read(dir_ / "out" / "metrics.prom");
  int lines = 0;
  for (size_t at = log.find("TLS handshake failed"); at != std::string::npos; at = log.find("TLS handshake failed", at + 1)) ++lines;
  EXPECT_LE(lines, 2) << log;
  EXPECT_GE(lines, 1) << "the first failure is said";
  EXPECT_EQ(log.find("grpc (./src/core/tsi/ssl_transport_security.cc"), std::string::npos) << "one raw line per attempt";
  EXPECT_NE(page.find("gut_coordinator_tls_handshake_failures_total 40"), std::string::npos) << page;
}

}  // namespace
}  // namespace gut
