#include "coordinator/report_checks.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/common/sketch.h"

namespace gut::coordinator {
namespace {

// Beyond any real run (three years; a petabyte), low enough that a forged value cannot dominate a
// sum or an ETA.
constexpr double kMaxSeconds = 1e8;
constexpr double kMaxBytes = 1e15;
constexpr double kMaxParams = 1e11;

absl::Status Bad(const char* field, double v, const std::string& want) {
  return absl::InvalidArgumentError(absl::StrCat("report field ", field, " is ", v, "; it must be ", want));
}

// NaN fails every comparison, so each range check below also refuses NaN.
bool In(double v, double lo, double hi) { return v >= lo && v <= hi; }

}  // namespace

absl::Status CheckReport(const gut::v1::EpochMetrics& m, const core::RunConfig& c) {
  const double max_rounds = (static_cast<double>(c.epochs) + 1) * 1e7 + c.final_gossip_rounds;
  if (!In(static_cast<double>(m.round()), 0, max_rounds)) return Bad("round", m.round(), "a round count >= 0");
  if (!In(m.lr(), 0, 1e6)) return Bad("lr", m.lr(), "a finite learning rate >= 0");
  if (!In(m.train_loss(), 0, 1e30)) return Bad("train_loss", m.train_loss(), "finite and >= 0");
  if (m.evaluated()) {
    const bool rmse = core::MetricName(c) == "rmse";
    if (!In(m.test_accuracy(), 0, rmse ? 1e30 : 1)) {
      return Bad("test_accuracy", m.test_accuracy(), rmse ? "an RMSE: finite and >= 0" : "an accuracy in [0, 1]");
    }
    if (!In(m.test_loss(), 0, 1e30)) return Bad("test_loss", m.test_loss(), "finite and >= 0");
  }
  if (!(m.consensus_distance_estimate() == -1 || In(m.consensus_distance_estimate(), 0, 1e30))) {
    return Bad("consensus_distance_estimate", m.consensus_distance_estimate(), "-1 or finite and >= 0");
  }
  if (!(m.replica_error() == -1 || In(m.replica_error(), 0, 1e30))) {
    return Bad("replica_error", m.replica_error(), "-1 or finite and >= 0");
  }
  for (auto [name, v] : {std::pair<const char*, double>{"compute_seconds", m.compute_seconds()},
                         {"wait_seconds", m.wait_seconds()},
                         {"train_seconds", m.train_seconds()},
                         {"wall_seconds", m.wall_seconds()}}) {
    if (!In(v, 0, kMaxSeconds)) return Bad(name, v, absl::StrCat("a duration in [0, ", kMaxSeconds, "] s"));
  }
  for (auto [name, v] : {std::pair<const char*, double>{"bytes_sent", static_cast<double>(m.bytes_sent())},
                         {"bytes_received", static_cast<double>(m.bytes_received())},
                         {"raw_bytes_sent", static_cast<double>(m.raw_bytes_sent())}}) {
    if (!In(v, 0, kMaxBytes)) return Bad(name, v, "a byte count >= 0");
  }
  if (!In(static_cast<double>(m.rounds_per_epoch()), 0, 1e7)) return Bad("rounds_per_epoch", m.rounds_per_epoch(), "in [0, 1e7]");
  if (!In(static_cast<double>(m.num_params()), 1, kMaxParams)) return Bad("num_params", m.num_params(), "a parameter count >= 1");
  if (m.sketch_size() != core::kSketchSize) {
    return Bad("sketch (length)", m.sketch_size(), absl::StrCat("exactly ", core::kSketchSize, " values"));
  }
  for (float v : m.sketch()) {
    if (!In(v, -1e30, 1e30)) return Bad("sketch", v, "finite values (|v| <= 1e30)");
  }
  return absl::OkStatus();
}

}  // namespace gut::coordinator
