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
struct TlsMaterial {
  std::string ca, cert, key;
  std::string identity;  // the common name of `cert`
};
absl::StatusOr<TlsMaterial> LoadTls(const TlsFiles& files);

// Mutual TLS: the server asks for and verifies a client certificate.
std::shared_ptr<grpc::ServerCredentials> ServerCredentials(const TlsMaterial* tls);
// The client presents its own certificate and verifies the server's against the CA (and its
// address against the certificate's subject alternative names).
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
