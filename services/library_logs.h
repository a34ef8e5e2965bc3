// Routes the log lines of the libraries under the services (protobuf and gRPC core) into spdlog,
// so that a daemon's log has one format, one destination and one level switch (--log-level),
// instead of bare lines on stderr in two other formats.
//
// Levels: protobuf INFO -> debug, WARNING -> warn, ERROR and FATAL -> warn. Protobuf's ERROR
// lines come from parsing a peer's bytes (a string field with invalid UTF-8 in a garbage frame);
// the frame is refused, counted and logged by the exchange anyway, so they are not errors of this
// process. gRPC DEBUG/INFO/ERROR map to debug/info/error; gRPC filters by GRPC_VERBOSITY (default
// ERROR) before a line reaches us.
//
// A failed TLS handshake (a stranger without a certificate, a port scanner, plaintext on a TLS
// port) is counted, not logged each time: gRPC writes one error line per attempt, so 2,000
// attempts wrote 2,000 lines. At most one line per 10 s says how many failed since the last one.
#ifndef GUT_SERVICES_LIBRARY_LOGS_H_
#define GUT_SERVICES_LIBRARY_LOGS_H_

#include <cstdint>

namespace gut::services {

// Installs both handlers (process-wide; call once, after spdlog is set up). Idempotent.
void RouteLibraryLogsToSpdlog();

// TLS handshakes that failed on this process's gRPC ports since it started.
int64_t TlsHandshakeFailures();

// Times gRPC's accept loop failed (out of file descriptors, most likely) and gave its port up.
int64_t AcceptFailures();

}  // namespace gut::services

#endif  // GUT_SERVICES_LIBRARY_LOGS_H_
