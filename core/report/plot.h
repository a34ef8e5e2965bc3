// A self-contained SVG chart of a run's per-epoch metrics (test accuracy mean with the min-max band
// over agents, train loss, consensus distance), written next to metrics.csv so that a run can be
// looked at in any browser without plotting tools.
#ifndef GUT_CORE_REPORT_PLOT_H_
#define GUT_CORE_REPORT_PLOT_H_

#include <string>
#include <vector>

#include "core/report/run_report.h"

namespace gut::report {

// `label`: the test metric's name on its panel; `fraction`: the metric lies in [0, 1] (accuracy).
std::string RenderSvg(const std::string& title, const std::vector<EpochRecord>& epochs,
                      const std::string& label = "test accuracy", bool fraction = true);

// A line chart of several series over a shared x axis (e.g. accuracy per epoch, one line per
// method), with an optional band per series (e.g. min-max over seeds) and a legend.
struct Series {
  std::string name;
  std::vector<double> x, y;
  std::vector<double> lo, hi;  // empty, or the band around y at each x
};
std::string RenderLineChart(const std::string& title, const std::string& x_label, const std::string& y_label,
                            const std::vector<Series>& series);

}  // namespace gut::report

#endif  // GUT_CORE_REPORT_PLOT_H_
