// absl::Status <-> grpc::Status, in one place (the codes have the same numbers).
#ifndef GUT_SERVICES_STATUS_H_
#define GUT_SERVICES_STATUS_H_

#include <string>

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace gut::services {

inline grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

// `what` names the call and where it went ("join at the coordinator 127.0.0.1:7000"); the gRPC
// status name follows the server's text.
inline absl::Status FromGrpc(const grpc::Status& s, const std::string& what) {
  if (s.ok()) return absl::OkStatus();
  const auto code = static_cast<absl::StatusCode>(s.error_code());
  return absl::Status(code, absl::StrCat(what, ": ", s.error_message(), " (gRPC status ", absl::StatusCodeToString(code), ")"));
}

}  // namespace gut::services

#endif  // GUT_SERVICES_STATUS_H_
