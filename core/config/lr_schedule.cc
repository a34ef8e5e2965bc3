#include "core/config/lr_schedule.h"

namespace gut::core {

double LrSchedule::At(int epoch) const {
  double lr = lr0;
  for (double m : milestones) {
    const int at = static_cast<int>(m * epochs);
    // A decay before the first epoch (short runs) would only shrink the initial rate: skip it.
    if (at >= 1 && epoch >= at) lr *= gamma;
  }
  return lr;
}

}  // namespace gut::core
