// What the coordinator takes from an agent's Report, checked before it is stored, journalled or
// aggregated. An agent is authenticated, but a broken or hostile one must not make the run's
// summary say 189.91 % accuracy or fill the disk with megabyte sketches: every number must be
// finite and in its range, the sketch exactly kSketchSize values. The error names the field.
#ifndef GUT_COORDINATOR_REPORT_CHECKS_H_
#define GUT_COORDINATOR_REPORT_CHECKS_H_

#include "absl/status/status.h"
#include "core/config/manifest.h"
#include "gut/v1/common.pb.h"

namespace gut::coordinator {

absl::Status CheckReport(const gut::v1::EpochMetrics& m, const core::RunConfig& config);

}  // namespace gut::coordinator

#endif  // GUT_COORDINATOR_REPORT_CHECKS_H_
