#include "coordinator/progress.h"

#include <algorithm>
#include <cmath>

namespace gut::coordinator {

void ProgressTracker::Observe(int64_t round, int64_t total, absl::Time now) {
  total_ = total;
  if (samples_.empty() || round < samples_.back().second) {
    samples_.clear();  // the first sample, or a rollback (recovery): the pace starts over
    samples_.emplace_back(now, round);
    return;
  }
  if (round == samples_.back().second) return;
  samples_.emplace_back(now, round);
  // Keep one sample at or before the window's start as the anchor of the rate.
  while (samples_.size() > 2 && samples_[1].first <= now - window_) samples_.pop_front();
  const double seconds = absl::ToDoubleSeconds(samples_.back().first - samples_.front().first);
  if (seconds > 0) rate_ = static_cast<double>(samples_.back().second - samples_.front().second) / seconds;
}

void ProgressTracker::Forgive(absl::Duration gap) {
  for (auto& s : samples_) s.first += gap;
}

ProgressEstimate ProgressTracker::Estimate(absl::Time now) const {
  ProgressEstimate e;
  e.total = total_;
  if (samples_.empty()) return e;
  e.round = samples_.back().second;
  if (!(rate_ > 0)) return e;  // no pace yet: neither an ETA nor a stall can be told
  const absl::Time advanced = samples_.back().first;
  const absl::Duration threshold = std::max(stall_after_, absl::Seconds(10 / rate_));
  if (now - advanced > threshold && (total_ == 0 || e.round < total_)) {
    e.stalled = true;
    e.stalled_since = advanced;
    e.rounds_per_s = 0;
    return e;
  }
  e.rounds_per_s = rate_;
  if (total_ > 0) e.eta_s = std::max<int64_t>(0, total_ - e.round) / rate_;
  return e;
}

}  // namespace gut::coordinator
