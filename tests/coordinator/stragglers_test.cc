// Who the run waits for (coordinator/stragglers.h), on a fake clock: a ring of 4 where agent 2 is
// slow, a balanced ring on a busy machine, restarts of a waiter, and the window.
#include "coordinator/stragglers.h"

#include "gtest/gtest.h"

namespace gut::coordinator {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1'000'000);

// Each second, every agent of the ring 0-1-2-3-0 states its cumulative waits per neighbour.
void Ring(StragglerBoard* b, int seconds, const double per_second[4][4], double (&sum)[4][4], absl::Time t0) {
  for (int s = 1; s <= seconds; ++s) {
    for (int i = 0; i < 4; ++i) {
      std::map<int, double> w;
      for (int j : {(i + 1) % 4, (i + 3) % 4}) {
        sum[i][j] += per_second[i][j];
        w[j] = sum[i][j];
      }
      b->Observe(i, w, t0 + absl::Seconds(s));
    }
  }
}

TEST(Stragglers, TheSlowAgentIsNamedNotItsLateNeighbours) {
  StragglerBoard b;
  // Agent 2 computes slowly: 1 and 3 wait 0.6 s of every second for it; 0 waits for 1 and 3,
  // who are late because they waited, 0.3 s each; 2 hardly waits.
  const double w[4][4] = {{0, 0.3, 0, 0.3}, {0.05, 0, 0.6, 0}, {0, 0.02, 0, 0.02}, {0.05, 0, 0.6, 0}};
  double sum[4][4] = {};
  Ring(&b, 40, w, sum, kT0);
  const absl::Time now = kT0 + absl::Seconds(40);
  EXPECT_NEAR(b.WaitedOnRecently(2, now), 30 * 1.2, 1e-6) << "the last 30 s only";
  EXPECT_NEAR(b.WaitedOn(2), 40 * 1.2, 1e-6);
  EXPECT_EQ(b.Straggler(now), 2);
  EXPECT_EQ(b.Straggler(now + absl::Seconds(31)), -1) << "nothing waited for in the last window";
}

TEST(Stragglers, ABalancedRingOnABusyMachineHasNone) {
  StragglerBoard b;
  const double w[4][4] = {{0, 0.5, 0, 0.45}, {0.5, 0, 0.5, 0}, {0, 0.45, 0, 0.5}, {0.5, 0, 0.5, 0}};
  double sum[4][4] = {};
  Ring(&b, 40, w, sum, kT0);
  EXPECT_EQ(b.Straggler(kT0 + absl::Seconds(40)), -1) << "everybody waits about as much";
}

TEST(Stragglers, ARestartedWaiterStartsOverAndLittleWaitingIsNobodysFault) {
  StragglerBoard b;
  b.Observe(1, {{2, 10.0}}, kT0);
  b.Observe(1, {{2, 12.0}}, kT0 + absl::Seconds(1));
  b.Observe(1, {{2, 1.5}}, kT0 + absl::Seconds(2));  // agent 1 restarted: its count starts at 0
  EXPECT_DOUBLE_EQ(b.WaitedOn(2), 13.5);
  StragglerBoard quiet;
  quiet.Observe(1, {{2, 5.0}}, kT0);  // 5 s of 30: under a quarter of the window
  EXPECT_EQ(quiet.Straggler(kT0), -1);
}

}  // namespace
}  // namespace gut::coordinator
