// Transport security for every gRPC channel of a run: mutual TLS with one certificate per agent
// (its common name is the agent's name, and so its identity), all signed by the run's CA. The
// coordinator binds each name to a rank at Join; the peer streams and the coordinator then accept
// a rank's traffic only from that identity. docs/operations/edge.md ("Certificates") shows how to
// make the files.
//
// Without TLS files everything is plaintext, which the binaries allow only on loopback unless
// --insecure is given (RequireSecureListen).
#ifndef GUT_SERVICES_TLS_H_
#define GUT_SERVICES_TLS_H_

#include <memory>
#include <string>

#include <grpcpp/security/auth_context.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include "absl/status/statusor.h"

namespace gut::services {

struct TlsFiles {
  std::string ca;    // PEM: the run's CA certificate (verifies the other side)
  std::string cert;  // PEM: this process's certificate (server and client auth)
  std::string key;   // PEM: its private key
  bool enabled() const { return !ca.empty() || !cert.empty() || !key.empty(); }
};

// The PEM contents, read once. Errors name the flag and the file, never the contents.
// What a certificate may do in a run, from its URI subject alternative name (SPIFFE-style):
//   spiffe://gut/coordinator      the coordinator
//   spiffe://gut/agent            an agent that may take any free rank
//   spiffe://gut/agent/rank/K     an agent bound to rank K (no other certificate can take K)
// deploy/local/make-certs.sh writes them: "coordinator" in a name makes a coordinator certificate,
// agent-K an agent bound to rank K, any other name an unbound agent. A certificate without one of
// these URIs has no role and is refused by both daemons.
enum class Role { kNone, kAgent, kCoordinator };
struct CertificateRole {
  Role role = Role::kNone;
  int rank = -1;  // kAgent bound to a rank; -1: any
};
const char* RoleName(Role r);
// One URI SAN ("spiffe://gut/agent/rank/3"); kNone for anything else, including malformed ranks.
CertificateRole ParseRoleUri(const std::string& uri);
// The first gut role among a PEM certificate's URI SANs (kNone if it has none).
CertificateRole RoleOfPem(const std::string& pem);
// The role of the other side of an authenticated call (kNone without TLS or a certificate).
CertificateRole RoleOfPeer(const grpc::AuthContext* auth);
// "the coordinator", "an agent bound to rank 3", "no gut role" (for refusal texts).
std::string DescribeRole(const CertificateRole& r);

struct TlsMaterial {
  std::string ca, cert, key;
  std::string identity;  // the common name of `cert`
  CertificateRole role;  // from `cert`'s URI SAN
};
// A daemon's own certificate must carry its role: gut-agentd an agent's, gut-coordinator the
// coordinator's (the error names `cert_path` and how to make one).
absl::Status RequireOwnRole(const TlsMaterial& tls, Role want, const std::string& cert_path);
// `role`: the role the certificate must carry (RequireOwnRole); kNone accepts any (benchmarks).
absl::StatusOr<TlsMaterial> LoadTls(const TlsFiles& files, Role role);

// Mutual TLS: the server asks for and verifies a client certificate.
std::shared_ptr<grpc::ServerCredentials> ServerCredentials(const TlsMaterial* tls);
// The client presents its own certificate and verifies the server's against the CA (and its
// address against the certificate's subject alternative names; a peer channel checks the
// neighbour's name instead, ssl_target_name_override, so the TLS handshake fails before anything is
// sent to a listener that is not the neighbour the coordinator named).
std::shared_ptr<grpc::ChannelCredentials> ChannelCredentials(const TlsMaterial* tls);

// "host:port" names a loopback address (127.0.0.0/8, ::1, localhost).
bool IsLoopback(const std::string& address);
// A listener on a non-loopback address needs TLS, or --insecure (which says so in the log).
absl::Status RequireSecureListen(const std::string& flag, const std::string& address, bool tls, bool insecure);
// --metrics and --health-listen have no authentication: a non-loopback address for either (empty:
// off) needs --public-metrics, so that nobody exposes a run's metrics, names and status by accident.
absl::Status RequirePublicFlag(const std::string& metrics, const std::string& health_listen, bool public_metrics);

// The common name in a PEM certificate ("" if there is none).
std::string CommonName(const std::string& pem);

}  // namespace gut::services

#endif  // GUT_SERVICES_TLS_H_
