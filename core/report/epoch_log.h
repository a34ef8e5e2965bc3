// The epoch line of gut-sim and the coordinator, as text and as a JSON log event ("epoch", with
// the line's numbers as fields: core/common/log_context.h).
#ifndef GUT_CORE_REPORT_EPOCH_LOG_H_
#define GUT_CORE_REPORT_EPOCH_LOG_H_

#include "core/report/run_report.h"

namespace gut::report {

void LogEpochLine(const EpochRecord& r, const Metric& metric);

}  // namespace gut::report

#endif  // GUT_CORE_REPORT_EPOCH_LOG_H_
