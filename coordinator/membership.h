// Membership: who is in a run and what every agent must do now. The coordinator's control state,
// with no gRPC in it (the service is glue around it; tests drive it with a fake clock).
//
// It binds agent names to ranks (and, with TLS, to the certificate identity that joined), counts
// each rank's incarnations, tracks liveness from heartbeats, and owns the run's command: the
// recovery generation, the round every agent restores, the topology, and the action.
//
// Recovery (docs/protocol.md "Recovery"): every agent checkpoints at the same round boundaries and
// reports the rounds it holds. When an agent comes back (a Join under a name already bound), the
// coordinator waits until no other agent is missing (or the rejoin timeout ends that wait), then
// starts a new generation that restores the newest round every active agent holds; all agents
// roll back to it, so the run ends bit-identical to an undisturbed one. An agent silent for
// longer than the heartbeat timeout is lost; one that said goodbye (a planned stop) is away. If
// either stays gone for fault.rejoin_timeout_s, the policy applies: `fail` fails the run naming
// the rank, `drop` removes it (the survivors must stay connected; Metropolis weights on the rest)
// and starts a new generation with the new topology. An agent whose model messages a majority of
// its neighbours refuse as implausible (they say so in their heartbeats) is dropped the same way
// from a round before the first refusal, or fails the run (fault.on_refused_peer).
//
// Not thread-safe: the service calls it under its own mutex.
#ifndef GUT_COORDINATOR_MEMBERSHIP_H_
#define GUT_COORDINATOR_MEMBERSHIP_H_

#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/config/manifest.h"
#include "core/topology/mixing.h"
#include "gut/v1/coordinator.pb.h"

namespace gut::coordinator {

enum class AgentState {
  kAlive,     // heartbeats arrive
  kUnknown,   // known from before a coordinator restart, not heard from since
  kLost,      // silent for longer than the heartbeat timeout
  kAway,      // stopped on purpose (goodbye), may come back
  kFinished,  // sent its final report and left
  kFailed,    // left with an error
  kDropped,   // removed from the run (fault.on_peer_loss: drop)
};
const char* AgentStateName(AgentState s);

// What an agent says of itself when it joins; the coordinator keeps it in the agent's record.
struct AgentHello {
  std::string name, address, metrics_address;
  std::string identity;  // the caller's TLS identity ("" without TLS)
  int64_t local_samples = 0;
  std::vector<int64_t> checkpoints;  // durable rounds of this run, newest first
  uint64_t nonce = 0;                 // JoinRequest.process_nonce (0: unknown)
};

struct AgentRecord : AgentHello {
  uint32_t incarnation = 0;
  AgentState state = AgentState::kAlive;
  absl::Time last_seen = absl::InfinitePast();
  absl::Time gone_since = absl::InfinitePast();  // kLost / kAway
  int64_t round = 0;
  int epoch = 0;
  double loss = std::numeric_limits<double>::quiet_NaN();
  double accuracy = std::numeric_limits<double>::quiet_NaN();
  uint64_t generation = 0;           // the generation it last said it runs in
  std::vector<int> peers_down;
  int64_t holding = 0;               // the hold_round it says it keeps
  bool stopping = false;             // asked to stop, waiting for (or heading to) the stop round
  bool active() const { return state != AgentState::kDropped; }
  bool present() const { return state == AgentState::kAlive || state == AgentState::kFinished; }
};

struct JoinInfo : AgentHello {
  int requested_rank = -1;
};

struct JoinOutcome {
  int rank = -1;
  uint32_t incarnation = 0;
  bool rejoin = false;  // the name was bound before: a restarted agent
  bool retry = false;   // the same process asking again (same nonce): nothing changes
};

struct DroppedRank {
  int rank = 0;
  int64_t round = 0;  // the round the survivors restored when it was dropped
};

class Membership {
 public:
  Membership(const core::RunConfig& config, const core::MixingMatrix& w, absl::Duration heartbeat_timeout);

  // ---- joins ----
  // Binds the name to a rank (a requested one, a free one, or the one the name already has). A
  // name that is bound already is accepted only from the identity that bound it.
  absl::StatusOr<JoinOutcome> Join(const JoinInfo& j, absl::Time now);
  bool all_joined() const;
  std::vector<int> unjoined() const;
  int joined() const { return static_cast<int>(agents_.size()); }

  // ---- the command ----
  // The first generation, once every agent has joined: from the start (0), or, when the run is
  // being resumed, from the newest round every agent holds.
  void Begin(absl::Time now);
  bool begun() const { return command_.generation() > 0; }
  // A new generation restoring the newest round every active agent holds.
  void Recover(const std::string& why, absl::Time now);
  // A rejoin asks for a recovery; the first caller to find nobody missing any more performs it.
  void RequestRecovery() { recovery_requested_ = true; }
  bool TakeRecoveryRequest() {
    const bool r = recovery_requested_;
    recovery_requested_ = false;
    return r;
  }
  // True while some active agent is lost, away or not heard from: a recovery waits for them.
  bool waiting_for_agents() const;
  // Some agent that still sends heartbeats has been asked to stop and has not left yet.
  bool agents_stopping() const {
    for (const auto& [r, a] : agents_)
      if (a.state == AgentState::kAlive && a.stopping) return true;
    return false;
  }
  gut::v1::RunCommand CommandFor(int rank) const;
  // The graph the run uses now (the manifest's, or what is left after drops).
  const core::Graph& graph() const { return current_ ? current_->graph() : base_.graph(); }
  uint64_t generation() const { return command_.generation(); }
  int64_t restore_round() const { return command_.restore_round(); }

  // ---- liveness ----
  // NOT_FOUND for a rank that never joined; PERMISSION_DENIED for an identity that is not the
  // rank's (the caller counts and logs it).
  absl::Status Heartbeat(const gut::v1::HeartbeatRequest& h, const std::string& identity, absl::Time now);
  absl::Status Leave(const gut::v1::LeaveRequest& l, const std::string& identity, absl::Time now);
  // Is `identity` allowed to speak for `rank` (Report)?
  absl::Status CheckIdentity(int rank, const std::string& identity) const;
  // Marks silent agents lost and applies the fault policy to those gone for longer than the
  // rejoin timeout. Returns a line for the log when it changed the command.
  std::string Tick(absl::Time now);
  // The coordinator itself did not run for `gap` (SIGSTOP, a throttled container, a paused VM, a
  // suspended laptop): that time is not held against any agent. Every silence and absence clock
  // moves forward by it, so an agent is judged lost only on time the coordinator observed.
  // Clocks already set after the stall (a heartbeat handled before this call) stay at most `now`.
  void ForgiveStall(absl::Duration gap, absl::Time now);

  // ---- the run ----
  const std::string& failure() const { return failure_; }
  void Fail(const std::string& why);
  const std::vector<DroppedRank>& dropped() const { return dropped_; }
  int active_agents() const;
  bool IsActive(int rank) const;
  const std::map<int, AgentRecord>& agents() const { return agents_; }
  int64_t rounds_per_epoch() const { return rounds_per_epoch_; }
  void set_rounds_per_epoch(int64_t r) { rounds_per_epoch_ = r; }

  // ---- persistence (coordinator-state.json) ----
  nlohmann::json ToJson() const;
  // Restores a saved state; every agent starts kUnknown (it has to be heard from again). A saved
  // failure is not restored (resumed_failure() tells it): the resumed run carries on.
  absl::Status FromJson(const nlohmann::json& j, absl::Time now);
  const std::string& resumed_failure() const { return resumed_failure_; }

 private:
  // The newest round every active agent but `exclude` holds, among rounds <= at_most (0 if none).
  int64_t CommonCheckpoint(int64_t at_most = std::numeric_limits<int64_t>::max(), int exclude = -1) const;
  void NewGeneration(int64_t restore, absl::Time now);
  void ApplyPolicy(int rank, absl::Time now, std::string* log);
  // fault.on_refused_peer: a rank whose messages a majority of its neighbours refused is dropped
  // (restoring a round before the first refusal) or fails the run.
  void ApplyAccusations(absl::Time now, std::string* log);
  // Restores the survivors' newest common round <= at_most.
  void DropRank(int rank, int64_t at_most, const std::string& what, absl::Time now, std::string* log);

  const core::RunConfig config_;
  core::MixingMatrix base_;                      // the manifest's graph and weights
  std::unique_ptr<core::MixingMatrix> current_;  // after drops (Metropolis), else null
  const absl::Duration heartbeat_timeout_;
  std::map<int, AgentRecord> agents_;
  gut::v1::RunCommand command_;  // generation 0 until Begin
  uint32_t topology_version_ = 1;
  std::vector<DroppedRank> dropped_;
  std::string failure_;
  int64_t rounds_per_epoch_ = 0;
  bool resumed_ = false;  // restored from a saved state: Begin restores the common checkpoint
  bool recovery_requested_ = false;
  std::string resumed_failure_;  // the failure of the saved run FromJson read ("" if none)
  // Refused senders, from the heartbeats of the current generation: sender -> accuser -> the
  // round of the accuser's first refusal. Cleared by every new generation.
  std::map<int, std::map<int, int64_t>> accused_;
  std::set<int> accusations_noted_;  // logged once after the run's end made them moot
  // The round every agent asked to stop stops at (RunCommand.stop_round; 0: none yet). Decided a
  // moment after the first agent says it is stopping, when the others asked at the same time
  // (Ctrl-C) have said so too and wait at their round boundaries or inside a round: one past the
  // highest round any active agent has completed (an agent that completed r rounds may already
  // be inside round r, so its next boundary is r + 1), which all of them can reach. A new
  // generation starts over.
  int64_t stop_round_ = 0;
  absl::Time stop_asked_ = absl::InfinitePast();
  int64_t hold_ = 0;  // the round a prepared drop will restore: every agent keeps its checkpoint
};

}  // namespace gut::coordinator

#endif  // GUT_COORDINATOR_MEMBERSHIP_H_
