#include "services/library_logs.h"

#include <google/protobuf/stubs/logging.h>
#include <grpc/support/log.h>
#include <spdlog/spdlog.h>

#include <string>

namespace gut::services {
namespace {

void OnProtobufLog(google::protobuf::LogLevel level, const char* file, int line, const std::string& message) {
  const spdlog::level::level_enum to =
      level == google::protobuf::LOGLEVEL_INFO ? spdlog::level::debug : spdlog::level::warn;
  spdlog::log(to, "protobuf ({}:{}): {}", file, line, message);
}

void OnGrpcLog(gpr_log_func_args* args) {
  spdlog::level::level_enum to = spdlog::level::err;
  if (args->severity == GPR_LOG_SEVERITY_DEBUG) to = spdlog::level::debug;
  if (args->severity == GPR_LOG_SEVERITY_INFO) to = spdlog::level::info;
  spdlog::log(to, "grpc ({}:{}): {}", args->file, args->line, args->message);
}

}  // namespace

void RouteLibraryLogsToSpdlog() {
  google::protobuf::SetLogHandler(&OnProtobufLog);
  gpr_set_log_function(&OnGrpcLog);
}

}  // namespace gut::services
