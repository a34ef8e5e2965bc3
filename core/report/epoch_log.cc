#include "core/report/epoch_log.h"

#include <limits>
#include <string>

#include "core/common/log_context.h"

namespace gut::report {

void LogEpochLine(const EpochRecord& r, const Metric& metric) {
  core::SetLogEpoch(r.epoch);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const std::string mean = "test_" + metric.key + "_mean", lo = "test_" + metric.key + "_min",
                    hi = "test_" + metric.key + "_max";
  core::LogEvent(spdlog::level::info, "epoch",
                 {{"epochs", static_cast<double>(r.epochs)},
                  {"rounds", static_cast<double>(r.rounds)},
                  {"lr", r.lr},
                  {"train_loss", r.train_loss},
                  {mean.c_str(), r.evaluated ? r.acc_mean : nan},
                  {lo.c_str(), r.evaluated ? r.acc_min : nan},
                  {hi.c_str(), r.evaluated ? r.acc_max : nan},
                  {"consensus_distance", r.consensus},
                  {"rounds_per_s", r.rounds_per_s},
                  {"eta_s", r.eta_s},
                  {"wall_s", r.wall_s}},
                 FormatProgress(r, metric));
}

}  // namespace gut::report
