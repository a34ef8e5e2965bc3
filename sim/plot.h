// A self-contained SVG chart of a run's per-epoch metrics (test accuracy mean with the min-max band
// over agents, train loss, consensus distance), written next to metrics.csv so that a run can be
// looked at in any browser without plotting tools.
#ifndef GUT_SIM_PLOT_H_
#define GUT_SIM_PLOT_H_

#include <string>
#include <vector>

#include "sim/report.h"

namespace gut::sim {

std::string RenderSvg(const std::string& title, const std::vector<EpochRecord>& epochs);

}  // namespace gut::sim

#endif  // GUT_SIM_PLOT_H_
