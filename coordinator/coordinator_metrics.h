// The coordinator's Prometheus metrics (prefix gut_coordinator_, base units), built once and
// brought up to date from a CoordinatorView after every change. Run-level series (progress, ETA,
// status) live here; per-agent training series are on the agents' own pages.
#ifndef GUT_COORDINATOR_COORDINATOR_METRICS_H_
#define GUT_COORDINATOR_COORDINATOR_METRICS_H_

#include <map>
#include <string>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include "coordinator/coordinator_service.h"
#include "core/config/manifest.h"
#include "services/metrics.h"

namespace gut::coordinator {

class CoordinatorMetrics {
 public:
  CoordinatorMetrics(prometheus::Registry& registry, const core::RunConfig& config, const std::string& run_id,
                     const std::string& version);
  void Update(const CoordinatorView& v);

 private:
  prometheus::Registry& registry_;
  const core::RunConfig config_;
  prometheus::Gauge &joined_, &expected_, &active_, &left_, &epoch_, &epochs_, &progress_, &generation_, &dropped_;
  services::LazyGauge rounds_per_epoch_, eta_, acc_mean_, acc_min_, acc_max_, loss_, consensus_, rps_;
  std::map<std::string, prometheus::Gauge*> status_;
  prometheus::Family<prometheus::Gauge>& agent_up_;
  prometheus::Family<prometheus::Gauge>& agent_round_;
  prometheus::Family<prometheus::Counter>& waited_on_;
  std::map<int, prometheus::Gauge*> up_, round_;
  std::map<int, prometheus::Counter*> waited_;
  std::vector<prometheus::Counter*> refused_;
};

}  // namespace gut::coordinator

#endif  // GUT_COORDINATOR_COORDINATOR_METRICS_H_
