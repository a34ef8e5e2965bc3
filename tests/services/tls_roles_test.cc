// Roles in certificates (issue 20, scope 1): the URI SAN grammar, and the roles make-certs.sh
// writes, read back from real openssl-made certificates.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "gtest/gtest.h"
#include "services/tls.h"

namespace gut::services {
namespace {

namespace fs = std::filesystem;

TEST(CertificateRoles, TheUriGrammarIsStrict) {
  EXPECT_EQ(ParseRoleUri("spiffe://gut/coordinator").role, Role::kCoordinator);
  EXPECT_EQ(ParseRoleUri("spiffe://gut/agent").role, Role::kAgent);
  EXPECT_EQ(ParseRoleUri("spiffe://gut/agent").rank, -1);
  const CertificateRole bound = ParseRoleUri("spiffe://gut/agent/rank/12");
  EXPECT_EQ(bound.role, Role::kAgent);
  EXPECT_EQ(bound.rank, 12);
  EXPECT_EQ(ParseRoleUri("spiffe://gut/agent/rank/0").rank, 0);
  // Two spellings of one rank, signs, spaces, overflow, other trust domains and prefixes: no role.
  for (const char* bad : {"spiffe://gut/agent/rank/03", "spiffe://gut/agent/rank/+3", "spiffe://gut/agent/rank/ 3",
                          "spiffe://gut/agent/rank/", "spiffe://gut/agent/rank/9999999999", "spiffe://gut/agent/rank/-1",
                          "spiffe://other/agent", "spiffe://gut/coordinator/x", "spiffe://gut/agents", "https://gut/agent",
                          "SPIFFE://gut/agent", ""}) {
    EXPECT_EQ(ParseRoleUri(bad).role, Role::kNone) << bad;
  }
  EXPECT_EQ(DescribeRole(bound), "the agent role bound to rank 12");
  EXPECT_EQ(DescribeRole({}), "no gut role (no spiffe://gut/... URI)");
}

std::string Read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(CertificateRoles, MakeCertsWritesTheRoleEachDaemonNeeds) {
  if (std::system("command -v openssl >/dev/null 2>&1") != 0) GTEST_SKIP() << "openssl not installed";
  const fs::path dir = fs::temp_directory_path() / ("gut-roles-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  ASSERT_EQ(std::system(("bash " + std::string(GUT_SOURCE_DIR) + "/deploy/local/make-certs.sh " + dir.string() +
                         " gut-coordinator agent-7 edge-box >/dev/null")
                            .c_str()),
            0);
  EXPECT_EQ(RoleOfPem(Read(dir / "gut-coordinator.pem")).role, Role::kCoordinator);
  EXPECT_EQ(RoleOfPem(Read(dir / "agent-7.pem")).rank, 7);
  EXPECT_EQ(RoleOfPem(Read(dir / "edge-box.pem")).role, Role::kAgent);
  EXPECT_EQ(RoleOfPem(Read(dir / "edge-box.pem")).rank, -1);
  EXPECT_EQ(RoleOfPem(Read(dir / "ca.pem")).role, Role::kNone) << "the CA has no URI";
  // A daemon refuses to start with the other daemon's certificate, naming the file and the fix.
  auto files = [&](const std::string& name) {
    return TlsFiles{(dir / "ca.pem").string(), (dir / (name + ".pem")).string(), (dir / (name + ".key")).string()};
  };
  auto agent_with_coordinator_cert = LoadTls(files("gut-coordinator"), Role::kAgent);
  ASSERT_FALSE(agent_with_coordinator_cert.ok());
  EXPECT_NE(agent_with_coordinator_cert.status().message().find(
                "gut-coordinator.pem has the coordinator role; this daemon needs a certificate with the agent role"),
            std::string::npos)
      << agent_with_coordinator_cert.status();
  EXPECT_FALSE(LoadTls(files("agent-7"), Role::kCoordinator).ok());
  EXPECT_TRUE(LoadTls(files("agent-7"), Role::kAgent).ok());
  EXPECT_TRUE(LoadTls(files("gut-coordinator"), Role::kCoordinator).ok());
  fs::remove_all(dir);
}

}  // namespace
}  // namespace gut::services
