// The coordinator's progress from heartbeat rounds (coordinator/progress.h): rate, ETA, stalls,
// rollbacks and the coordinator's own stalls, on a fake clock.
#include "coordinator/progress.h"

#include <cmath>

#include "gtest/gtest.h"

namespace gut::coordinator {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1'000'000);

TEST(Progress, RateAndEtaComeFromTheSlowestRoundFromTheFirstRoundsOn) {
  ProgressTracker p;
  EXPECT_EQ(p.Estimate(kT0).round, 0);
  EXPECT_TRUE(std::isnan(p.Estimate(kT0).eta_s)) << "no pace yet";
  // 4 rounds per second; 1000 rounds in the run.
  for (int k = 0; k <= 20; ++k) p.Observe(k, 1000, kT0 + absl::Milliseconds(250 * k));
  const ProgressEstimate e = p.Estimate(kT0 + absl::Seconds(5));
  EXPECT_EQ(e.round, 20);
  EXPECT_EQ(e.total, 1000);
  EXPECT_DOUBLE_EQ(e.fraction(), 0.02);
  EXPECT_NEAR(e.rounds_per_s, 4.0, 1e-9);
  EXPECT_NEAR(e.eta_s, 980 / 4.0, 1e-6);
  EXPECT_FALSE(e.stalled);
}

TEST(Progress, TheRateFollowsTheLastWindow) {
  ProgressTracker p(absl::Seconds(10));
  for (int k = 0; k <= 40; ++k) p.Observe(k, 1000, kT0 + absl::Seconds(k));  // 1 round/s for 40 s
  for (int k = 1; k <= 40; ++k) p.Observe(40 + 2 * k, 1000, kT0 + absl::Seconds(40 + k));  // then 2 rounds/s
  EXPECT_NEAR(p.Estimate(kT0 + absl::Seconds(80)).rounds_per_s, 2.0, 0.11);
}

TEST(Progress, ARoundThatStopsAdvancingIsAStallWithoutEta) {
  ProgressTracker p(absl::Seconds(30), absl::Seconds(10));
  for (int k = 0; k <= 10; ++k) p.Observe(k, 100, kT0 + absl::Seconds(k));  // 1 round/s
  // Ten rounds' time and at least 10 s without a new round is a stall.
  EXPECT_FALSE(p.Estimate(kT0 + absl::Seconds(19)).stalled);
  for (int k = 0; k < 10; ++k) p.Observe(10, 100, kT0 + absl::Seconds(11 + k));  // the same round again
  const ProgressEstimate e = p.Estimate(kT0 + absl::Seconds(25));
  EXPECT_TRUE(e.stalled);
  EXPECT_EQ(e.stalled_since, kT0 + absl::Seconds(10));
  EXPECT_TRUE(std::isnan(e.eta_s));
  EXPECT_EQ(e.rounds_per_s, 0);
  p.Observe(11, 100, kT0 + absl::Seconds(26));
  EXPECT_FALSE(p.Estimate(kT0 + absl::Seconds(26)).stalled) << "it moves again";
}

TEST(Progress, ASlowModelIsNotAStallBeforeTenOfItsRounds) {
  ProgressTracker p(absl::Seconds(600), absl::Seconds(10));
  for (int k = 0; k <= 3; ++k) p.Observe(k, 100, kT0 + absl::Seconds(60 * k));  // a minute per round
  EXPECT_FALSE(p.Estimate(kT0 + absl::Seconds(180 + 500)).stalled);
  EXPECT_TRUE(p.Estimate(kT0 + absl::Seconds(180 + 601)).stalled);
}

TEST(Progress, ARollbackMovesTheRoundBackAndTheCoordinatorsOwnStallIsForgiven) {
  ProgressTracker p;
  for (int k = 0; k <= 20; ++k) p.Observe(k, 100, kT0 + absl::Seconds(k));
  p.Observe(12, 100, kT0 + absl::Seconds(21));  // recovery: every agent restores round 12
  EXPECT_EQ(p.Estimate(kT0 + absl::Seconds(21)).round, 12);
  EXPECT_NEAR(p.Estimate(kT0 + absl::Seconds(21)).eta_s, 88, 1e-9) << "the pace before the rollback still holds";
  for (int k = 13; k <= 20; ++k) p.Observe(k, 100, kT0 + absl::Seconds(21 + k - 12));
  ASSERT_FALSE(p.Estimate(kT0 + absl::Seconds(30)).stalled);
  p.Forgive(absl::Seconds(60));  // the coordinator was stopped for a minute
  EXPECT_FALSE(p.Estimate(kT0 + absl::Seconds(90)).stalled) << "time the coordinator did not run is no stall";
  EXPECT_TRUE(p.Estimate(kT0 + absl::Seconds(110)).stalled);
}

TEST(Progress, TheEndIsNoStall) {
  ProgressTracker p;
  for (int k = 0; k <= 10; ++k) p.Observe(k, 10, kT0 + absl::Seconds(k));
  const ProgressEstimate e = p.Estimate(kT0 + absl::Seconds(100));
  EXPECT_FALSE(e.stalled);
  EXPECT_DOUBLE_EQ(e.fraction(), 1.0);
  EXPECT_EQ(e.eta_s, 0);
}

}  // namespace
}  // namespace gut::coordinator
