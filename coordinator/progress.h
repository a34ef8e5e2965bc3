// Run progress between epoch reports, from the rounds the agents state in their heartbeats: an
// epoch of a big model takes hours, and the epoch reports alone left progress and ETA at 0 for the
// whole first epoch. The run advances at the pace of its slowest active agent (a synchronous
// graph), so the tracker follows that agent's round.
//
// Not thread-safe: the coordinator feeds and reads it under its own lock. Times come from the
// caller, so tests drive it with a fake clock.
#ifndef GUT_COORDINATOR_PROGRESS_H_
#define GUT_COORDINATOR_PROGRESS_H_

#include <algorithm>
#include <cstdint>
#include <deque>
#include <limits>
#include <utility>

#include "absl/time/time.h"

namespace gut::coordinator {

struct ProgressEstimate {
  int64_t round = 0;  // rounds the slowest active agent has completed
  int64_t total = 0;  // rounds of the whole run (0: not known yet)
  double rounds_per_s = std::numeric_limits<double>::quiet_NaN();  // over the last window
  double eta_s = std::numeric_limits<double>::quiet_NaN();         // NaN: unknown, stalled or over
  bool stalled = false;
  absl::Time stalled_since = absl::InfinitePast();  // when the round last advanced (stalled only)
  double fraction() const { return total > 0 ? std::min(1.0, static_cast<double>(round) / total) : 0.0; }
};

class ProgressTracker {
 public:
  // `window`: how far back the rate looks. A round that has not advanced for `stall_after`, and
  // for ten of the run's recent rounds, is a stall.
  explicit ProgressTracker(absl::Duration window = absl::Seconds(30), absl::Duration stall_after = absl::Seconds(10))
      : window_(window), stall_after_(stall_after) {}
  // The slowest active agent's round and the run's total at `now` (called often; cheap).
  void Observe(int64_t round, int64_t total, absl::Time now);
  // The coordinator did not run for `gap` (stopped, throttled): that time is nobody's stall.
  void Forgive(absl::Duration gap);
  ProgressEstimate Estimate(absl::Time now) const;

 private:
  absl::Duration window_, stall_after_;
  std::deque<std::pair<absl::Time, int64_t>> samples_;  // (time the round was first seen, round)
  int64_t total_ = 0;
  double rate_ = std::numeric_limits<double>::quiet_NaN();  // rounds/s of the last window that advanced
};

}  // namespace gut::coordinator

#endif  // GUT_COORDINATOR_PROGRESS_H_
