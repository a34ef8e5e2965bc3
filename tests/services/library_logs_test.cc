// Protobuf's and gRPC's own log lines reach spdlog (services/library_logs.h): a garbage string
// field from a peer and a gRPC core error both come out through the process's logger, with the
// library named, instead of as bare stderr lines.
#include "services/library_logs.h"

#include <grpc/grpc.h>
#include <grpc/support/log.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "gut/v1/peer.pb.h"

namespace gut::services {
namespace {

class LibraryLogs : public ::testing::Test {
 protected:
  void SetUp() override {
    previous_ = spdlog::default_logger();
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
    auto logger = std::make_shared<spdlog::logger>("capture", sink);
    logger->set_level(spdlog::level::trace);
    logger->set_pattern("%l %v");
    spdlog::set_default_logger(logger);
    RouteLibraryLogsToSpdlog();
  }
  void TearDown() override { spdlog::set_default_logger(previous_); }

  std::ostringstream out_;
  std::shared_ptr<spdlog::logger> previous_;
};

TEST_F(LibraryLogs, ProtobufParseComplaintsGoThroughSpdlog) {
  // Hello.run_id (field 1, length-delimited) holding two bytes that are not UTF-8.
  const std::string garbage("\x0a\x02\xff\xfe", 4);
  gut::v1::Hello hello;
  EXPECT_FALSE(hello.ParseFromString(garbage));
  const std::string logged = out_.str();
  EXPECT_NE(logged.find("warning protobuf ("), std::string::npos) << logged;
  EXPECT_NE(logged.find("invalid UTF-8"), std::string::npos) << logged;
  EXPECT_NE(logged.find("gut.v1.Hello.run_id"), std::string::npos) << logged;
}

TEST_F(LibraryLogs, GrpcCoreErrorsGoThroughSpdlog) {
  grpc_init();  // gRPC reads GRPC_VERBOSITY here; before it, gpr_log prints nothing at all
  gpr_log(GPR_ERROR, "something broke: %d", 42);
  grpc_shutdown();
  const std::string logged = out_.str();
  EXPECT_NE(logged.find("error grpc ("), std::string::npos) << logged;
  EXPECT_NE(logged.find("something broke: 42"), std::string::npos) << logged;
}

}  // namespace
}  // namespace gut::services
