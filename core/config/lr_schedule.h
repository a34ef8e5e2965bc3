// Learning-rate schedule: step decay by `gamma` at epochs int(m * E) for each milestone fraction m
// (docs/algorithms.md §6.1: milestones 0.5 and 0.75, gamma 0.1), applied at epoch boundaries.
// A milestone that falls on epoch 0 (int(m * E) == 0, i.e. very short runs) is ignored.
#ifndef GUT_CORE_CONFIG_LR_SCHEDULE_H_
#define GUT_CORE_CONFIG_LR_SCHEDULE_H_

#include <vector>

namespace gut::core {

struct LrSchedule {
  double lr0 = 0.1;
  std::vector<double> milestones = {0.5, 0.75};  // fractions of the total epochs
  double gamma = 0.1;
  int epochs = 100;

  // Learning rate of (0-based) epoch e.
  double At(int epoch) const;
};

}  // namespace gut::core

#endif  // GUT_CORE_CONFIG_LR_SCHEDULE_H_
