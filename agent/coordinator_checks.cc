#include "agent/coordinator_checks.h"

#include <cmath>
#include <set>

#include "absl/strings/str_cat.h"

namespace gut::agent {
namespace {

// The manifest's own limit (core/config/manifest.cc): no run has more agents.
constexpr int kMaxWorld = 4096;
// Far beyond any run (a million epochs of a thousand rounds), low enough to stay clear of overflow.
constexpr int64_t kMaxRound = int64_t{1} << 40;

absl::Status Bad(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("the coordinator's answer is invalid: ", field, " ", what));
}

}  // namespace

absl::Status CheckTopology(const gut::v1::Topology& t, int rank, int world, bool tls) {
  if (!std::isfinite(t.self_weight()) || t.self_weight() < 0 || t.self_weight() > 1) {
    return Bad("topology.self_weight", absl::StrCat("is ", t.self_weight(), ", not in [0, 1]"));
  }
  if (t.neighbours_size() == 0 || t.neighbours_size() >= world) {
    return Bad("topology.neighbours", absl::StrCat("has ", t.neighbours_size(), " entries for a run of ", world));
  }
  double sum = t.self_weight();
  std::set<int> seen;
  for (int k = 0; k < t.neighbours_size(); ++k) {
    const auto& n = t.neighbours(k);
    const std::string f = absl::StrCat("topology.neighbours[", k, "]");
    if (n.rank() < 0 || n.rank() >= world) return Bad(f + ".rank", absl::StrCat(n.rank(), " is not in [0, ", world, ")"));
    if (n.rank() == rank) return Bad(f + ".rank", absl::StrCat(n.rank(), " is this agent's own rank"));
    if (!seen.insert(n.rank()).second) return Bad(f + ".rank", absl::StrCat(n.rank(), " appears twice"));
    if (!std::isfinite(n.weight()) || n.weight() <= 0 || n.weight() > 1) {
      return Bad(f + ".weight", absl::StrCat("is ", n.weight(), ", not in (0, 1]"));
    }
    if (n.address().empty() || n.address().size() > 1024) return Bad(f + ".address", "is empty or too long");
    // Under TLS an empty identity would switch the peer's certificate check off.
    if (tls && n.identity().empty()) return Bad(f + ".identity", "is empty under TLS");
    sum += n.weight();
  }
  if (std::abs(sum - 1.0) > 1e-6) return Bad("topology weights", absl::StrCat("sum to ", sum, ", not 1"));
  for (int d : t.dropped()) {
    if (d < 0 || d >= world || d == rank) return Bad("topology.dropped", absl::StrCat("holds rank ", d));
  }
  return absl::OkStatus();
}

absl::Status CheckCommand(const gut::v1::RunCommand& c, int rank, int world, bool tls) {
  if (c.action() == gut::v1::RunCommand::FAIL) return absl::OkStatus();
  if (c.action() != gut::v1::RunCommand::CONTINUE) return Bad("command.action", absl::StrCat("is ", c.action()));
  if (c.restore_round() < 0 || c.restore_round() > kMaxRound) {
    return Bad("command.restore_round", absl::StrCat("is ", c.restore_round()));
  }
  for (int m : c.missing()) {
    if (m < 0 || m >= world || c.missing_size() > world) return Bad("command.missing", absl::StrCat("holds rank ", m));
  }
  return CheckTopology(c.topology(), rank, world, tls);
}

absl::Status CheckJoinResponse(const gut::v1::JoinResponse& r, bool tls) {
  if (r.world_size() < 2 || r.world_size() > kMaxWorld) {
    return Bad("world_size", absl::StrCat("is ", r.world_size(), ", not in [2, ", kMaxWorld, "]"));
  }
  if (r.rank() < 0 || r.rank() >= r.world_size()) {
    return Bad("rank", absl::StrCat(r.rank(), " is not in [0, ", r.world_size(), ")"));
  }
  if (r.run_id().empty() || r.run_id().size() > 256) return Bad("run_id", "is empty or too long");
  if (r.incarnation() < 1) return Bad("incarnation", "is 0");
  if (r.rounds_per_epoch() < 0 || r.rounds_per_epoch() > kMaxRound) {
    return Bad("rounds_per_epoch", absl::StrCat("is ", r.rounds_per_epoch()));
  }
  if (r.model_size() < 0) return Bad("model_size", absl::StrCat("is ", r.model_size()));
  return CheckCommand(r.command(), r.rank(), r.world_size(), tls);
}

absl::Status CheckWorldSize(const gut::v1::JoinResponse& r, int manifest_agents) {
  if (r.world_size() == manifest_agents) return absl::OkStatus();
  return Bad("world_size", absl::StrCat(r.world_size(), " is not its manifest's agents.count, ", manifest_agents));
}

std::vector<services::PeerAddress> PeerAddresses(const gut::v1::Topology& t) {
  std::vector<services::PeerAddress> out;
  for (const auto& n : t.neighbours()) out.push_back({n.rank(), n.weight(), n.address(), n.identity()});
  return out;
}

}  // namespace gut::agent
