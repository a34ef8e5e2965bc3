// What an agent takes from its coordinator, checked before anything uses it. The coordinator is
// authenticated (mutual TLS), but a compromised or impostor one, or a bug, must not make an agent
// index out of bounds, mix with NaN weights or dial itself: every field is checked against its
// range and the error names the field (a JoinResponse with rank -5 once corrupted the heap).
#ifndef GUT_AGENT_COORDINATOR_CHECKS_H_
#define GUT_AGENT_COORDINATOR_CHECKS_H_

#include <vector>

#include "absl/status/status.h"
#include "gut/v1/coordinator.pb.h"
#include "services/peer_edge.h"

namespace gut::agent {

// A topology for agent `rank` of `world`: neighbours in range, not itself, each once, with an
// address, finite positive weights and (under TLS) an identity; a self weight in [0, 1]; the
// weights summing to 1; dropped ranks in range.
absl::Status CheckTopology(const gut::v1::Topology& t, int rank, int world, bool tls);

// A JoinResponse: rank and world size, the command (generation, restore round, topology), the
// neighbour list, counters and the model announcement.
absl::Status CheckJoinResponse(const gut::v1::JoinResponse& r, bool tls);

// The JoinResponse's world size against the agents.count of the manifest it carries.
absl::Status CheckWorldSize(const gut::v1::JoinResponse& r, int manifest_agents);

// A checked topology's neighbours as the exchange takes them, in the coordinator's order.
std::vector<services::PeerAddress> PeerAddresses(const gut::v1::Topology& t);

// A RunCommand from a heartbeat (a FAIL carries only its reason).
absl::Status CheckCommand(const gut::v1::RunCommand& c, int rank, int world, bool tls);

}  // namespace gut::agent

#endif  // GUT_AGENT_COORDINATOR_CHECKS_H_
