// Who the run waits for. Every agent states in its heartbeats how long it has waited for each
// neighbour's messages so far (cumulative seconds, per neighbour); the coordinator adds up, per
// rank, what its neighbours waited for it, and looks at the last window: in a synchronous graph
// the whole run moves at the pace of its slowest agent, and the fast ones' lost time shows only as
// "wait" on their own pages. The rank the others waited for most, when that is a real share of
// the window, is the straggler (a metric and a mark on the status page).
//
// Not thread-safe: the coordinator feeds and reads it under its own lock.
#ifndef GUT_COORDINATOR_STRAGGLERS_H_
#define GUT_COORDINATOR_STRAGGLERS_H_

#include <deque>
#include <map>
#include <utility>

#include "absl/time/time.h"

namespace gut::coordinator {

class StragglerBoard {
 public:
  explicit StragglerBoard(absl::Duration window = absl::Seconds(30)) : window_(window) {}
  // `waiter`'s cumulative waits per neighbour rank, as its heartbeat states them at `now`. A
  // smaller number than before (the waiter restarted) starts that pair over.
  void Observe(int waiter, const std::map<int, double>& waited, absl::Time now);
  // Seconds the neighbours of `rank` spent waiting for it: in all, and within the last window.
  double WaitedOn(int rank) const;
  double WaitedOnRecently(int rank, absl::Time now) const;
  // The rank its neighbours waited for most in the last window, if its neighbours together lost
  // at least a quarter of the window to it and that is 1.5 times what any other rank cost its
  // neighbours (in a ring, a straggler's neighbours are late too, for half as long); -1 otherwise.
  int Straggler(absl::Time now) const;

 private:
  absl::Duration window_;
  std::map<std::pair<int, int>, double> last_;  // (waiter, rank) -> cumulative seconds stated
  std::map<int, double> total_;                 // rank -> seconds waited for it
  std::map<int, std::deque<std::pair<absl::Time, double>>> recent_;  // rank -> (time, seconds added), last window
};

}  // namespace gut::coordinator

#endif  // GUT_COORDINATOR_STRAGGLERS_H_
