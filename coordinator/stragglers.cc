#include "coordinator/stragglers.h"

namespace gut::coordinator {

void StragglerBoard::Observe(int waiter, const std::map<int, double>& waited, absl::Time now) {
  for (const auto& [rank, seconds] : waited) {
    double& last = last_[{waiter, rank}];
    const double add = seconds >= last ? seconds - last : seconds;  // smaller: a new process
    last = seconds;
    if (add <= 0) continue;
    total_[rank] += add;
    auto& r = recent_[rank];
    r.emplace_back(now, add);
    while (!r.empty() && r.front().first <= now - window_) r.pop_front();
  }
}

double StragglerBoard::WaitedOn(int rank) const {
  auto it = total_.find(rank);
  return it == total_.end() ? 0 : it->second;
}

double StragglerBoard::WaitedOnRecently(int rank, absl::Time now) const {
  auto it = recent_.find(rank);
  if (it == recent_.end()) return 0;
  double sum = 0;
  for (const auto& [t, add] : it->second)
    if (t > now - window_) sum += add;
  return sum;
}

int StragglerBoard::Straggler(absl::Time now) const {
  int best = -1;
  double most = 0, second = 0;
  for (const auto& [rank, r] : recent_) {
    const double w = WaitedOnRecently(rank, now);
    if (w > most) {
      second = most;
      most = w;
      best = rank;
    } else if (w > second) {
      second = w;
    }
  }
  // On a busy machine every agent waits for every other a good deal; a straggler stands out.
  return most >= 0.25 * absl::ToDoubleSeconds(window_) && most >= 1.5 * second ? best : -1;
}

}  // namespace gut::coordinator
