// A real gut-coordinator and a participant that lies in its reports (a gRPC client of the test's
// own that joined as all four ranks): unbelievable values are refused naming the field and change
// no output; a report repeated a hundred times is journalled once.
#include <grpcpp/grpcpp.h>

#include <thread>

#include "core/common/sketch.h"
#include "gut/v1/coordinator.grpc.pb.h"
#include "tests/integration/cluster_fixture.h"

namespace gut {
namespace {

int Occurrences(const std::string& s, const std::string& what) {
  int k = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++k;
  return k;
}

TEST_F(Cluster, ForgedReportsAreRefusedAndRepeatsNotJournalled) {
  const std::string manifest = WriteManifest(Manifest((dir_ / "data").string(), 3, "fp32"));
  coordinator_args_ = {GUT_COORDINATOR, "--manifest", manifest, "--out", (dir_ / "out").string(), "--listen",
                       "127.0.0.1:0", "--port-file", (dir_ / "port").string()};
  Spawn(coordinator_args_, (dir_ / "coordinator.log").string());
  ASSERT_TRUE(WaitForFile(dir_ / "port", 20));
  std::ifstream(dir_ / "port") >> port_;
  auto stub = gut::v1::Coordinator::NewStub(grpc::CreateChannel("127.0.0.1:" + port_, grpc::InsecureChannelCredentials()));
  std::vector<gut::v1::JoinResponse> joined(4);
  std::vector<std::thread> ts;
  for (int r = 0; r < 4; ++r) {
    ts.emplace_back([&, r] {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
      EXPECT_TRUE(stub->Join(&ctx, AgentJoin("liar" + std::to_string(r), r), &joined[r]).ok());
    });
  }
  for (auto& t : ts) t.join();
  auto report = [&](const gut::v1::EpochMetrics& m) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    gut::v1::ReportRequest req;
    req.set_run_id(joined[0].run_id());
    *req.mutable_metrics() = m;
    gut::v1::ReportResponse resp;
    return stub->Report(&ctx, req, &resp);
  };
  gut::v1::EpochMetrics m;
  m.set_rank(0);
  m.set_epoch(1);
  m.set_round(20);
  m.set_lr(0.05);
  m.set_train_loss(0.9);
  m.set_evaluated(true);
  m.set_test_accuracy(0.7);
  m.set_test_loss(0.8);
  m.set_consensus_distance_estimate(-1);
  m.set_replica_error(-1);
  m.set_num_params(61706);
  for (int k = 0; k < core::kSketchSize; ++k) m.add_sketch(0.5f);
  for (int k = 0; k < 100; ++k) ASSERT_TRUE(report(m).ok());
  gut::v1::EpochMetrics forged = m;
  forged.set_test_accuracy(5.0);
  grpc::Status s = report(forged);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("report field test_accuracy is 5"), std::string::npos) << s.error_message();
  forged = m;
  forged.mutable_sketch()->Resize(250000, 1e30f);
  s = report(forged);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("sketch (length) is 250000"), std::string::npos) << s.error_message();
  const std::string journal = Read(dir_ / "out" / "reports.jsonl");
  EXPECT_EQ(Occurrences(journal, "\"report\""), 1) << "one report, however often it was sent";
  EXPECT_LT(journal.size(), 20000u);
}

}  // namespace
}  // namespace gut
