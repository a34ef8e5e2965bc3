// The coordinator refuses reports it cannot believe, naming the field: the values a hostile agent
// sent in the trust probe (accuracy 5.0, NaN loss, a 1e30 sketch, 1e12 s of wall time, a
// megabyte sketch), and accepts what real agents send, including an RMSE above 1.
#include "coordinator/report_checks.h"

#include <cmath>
#include <functional>
#include <limits>

#include "core/common/sketch.h"
#include "gtest/gtest.h"

namespace gut::coordinator {
namespace {

gut::v1::EpochMetrics Honest() {
  gut::v1::EpochMetrics m;
  m.set_rank(1);
  m.set_epoch(2);
  m.set_round(236);
  m.set_lr(0.1);
  m.set_train_loss(0.52);
  m.set_evaluated(true);
  m.set_test_accuracy(0.83);
  m.set_test_loss(0.47);
  m.set_consensus_distance_estimate(-1);
  m.set_replica_error(-1);
  m.set_wall_seconds(12.5);
  m.set_train_seconds(10);
  m.set_compute_seconds(8);
  m.set_wait_seconds(2);
  m.set_bytes_sent(123456);
  m.set_rounds_per_epoch(118);
  m.set_num_params(61706);
  for (int k = 0; k < core::kSketchSize; ++k) m.add_sketch(0.01f * k);
  return m;
}

TEST(ReportChecks, UnbelievableReportsAreRefusedNamingTheField) {
  core::RunConfig c;
  ASSERT_TRUE(CheckReport(Honest(), c).ok()) << CheckReport(Honest(), c);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const std::vector<std::pair<std::string, std::function<void(gut::v1::EpochMetrics*)>>> cases = {
      {"test_accuracy is 5", [](auto* m) { m->set_test_accuracy(5.0); }},
      {"train_loss is nan", [nan](auto* m) { m->set_train_loss(nan); }},
      {"test_loss is -1", [](auto* m) { m->set_test_loss(-1); }},
      {"sketch is 1e+31", [](auto* m) { m->set_sketch(7, 1e31f); }},
      {"sketch (length) is 262144", [](auto* m) { m->mutable_sketch()->Resize(262144, 1.0f); }},
      {"wall_seconds is 1e+12", [](auto* m) { m->set_wall_seconds(1e12); }},
      {"bytes_sent is -5", [](auto* m) { m->set_bytes_sent(-5); }},
      {"consensus_distance_estimate is inf", [](auto* m) { m->set_consensus_distance_estimate(HUGE_VAL); }},
      {"num_params is 0", [](auto* m) { m->set_num_params(0); }},
      {"round is -3", [](auto* m) { m->set_round(-3); }},
  };
  for (const auto& [want, forge] : cases) {
    gut::v1::EpochMetrics m = Honest();
    forge(&m);
    const absl::Status s = CheckReport(m, c);
    EXPECT_FALSE(s.ok()) << want;
    EXPECT_NE(s.message().find("report field " + want), std::string::npos) << s.message();
  }
  // Not evaluated: the test fields are not read. A regression's metric is an RMSE, not a ratio.
  gut::v1::EpochMetrics m = Honest();
  m.set_evaluated(false);
  m.set_test_accuracy(7);
  EXPECT_TRUE(CheckReport(m, c).ok());
  m.set_evaluated(true);
  c.loss = "mse";
  EXPECT_TRUE(CheckReport(m, c).ok()) << "an RMSE of 7 is a plausible value";
  m.set_test_accuracy(-0.5);
  EXPECT_FALSE(CheckReport(m, c).ok());
}

}  // namespace
}  // namespace gut::coordinator
