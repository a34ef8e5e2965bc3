#include "services/library_logs.h"

#include <google/protobuf/stubs/logging.h>
#include <grpc/support/log.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <cstring>
#include <string>

namespace gut::services {
namespace {

void OnProtobufLog(google::protobuf::LogLevel level, const char* file, int line, const std::string& message) {
  const spdlog::level::level_enum to =
      level == google::protobuf::LOGLEVEL_INFO ? spdlog::level::debug : spdlog::level::warn;
  spdlog::log(to, "protobuf ({}:{}): {}", file, line, message);
}

std::atomic<int64_t> g_handshake_failures{0};
std::atomic<int64_t> g_handshake_logged{0};      // the count at the last line written
std::atomic<int64_t> g_handshake_last_ns{INT64_MIN / 2};

// One line per 10 s at most, naming how many failed since the previous line.
void OnHandshakeFailure(const char* message) {
  const int64_t n = ++g_handshake_failures;
  const int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                          std::chrono::steady_clock::now().time_since_epoch()).count();
  int64_t last = g_handshake_last_ns.load();
  if (now - last < int64_t{10'000'000'000} || !g_handshake_last_ns.compare_exchange_strong(last, now)) return;
  const int64_t since = n - g_handshake_logged.exchange(n);
  spdlog::warn("TLS handshake failed ({} since the last such line, {} in all): {}", since, n, message);
}

std::atomic<int64_t> g_accept_failures{0};

void OnGrpcLog(gpr_log_func_args* args) {
  // gRPC 1.51's accept loop gives a listening port up after this line (services/restarting_server.h).
  if (std::strncmp(args->message, "Failed accept4", 14) == 0) ++g_accept_failures;
  if (std::strncmp(args->message, "Handshake failed", 16) == 0) {
    OnHandshakeFailure(args->message);
    return;
  }
  spdlog::level::level_enum to = spdlog::level::err;
  if (args->severity == GPR_LOG_SEVERITY_DEBUG) to = spdlog::level::debug;
  if (args->severity == GPR_LOG_SEVERITY_INFO) to = spdlog::level::info;
  spdlog::log(to, "grpc ({}:{}): {}", args->file, args->line, args->message);
}

}  // namespace

int64_t TlsHandshakeFailures() { return g_handshake_failures.load(); }
int64_t AcceptFailures() { return g_accept_failures.load(); }

void RouteLibraryLogsToSpdlog() {
  google::protobuf::SetLogHandler(&OnProtobufLog);
  gpr_set_log_function(&OnGrpcLog);
}

}  // namespace gut::services
