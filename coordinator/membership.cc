#include "coordinator/membership.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/topology/drop.h"

namespace gut::coordinator {

const char* AgentStateName(AgentState s) {
  switch (s) {
    case AgentState::kAlive: return "alive";
    case AgentState::kUnknown: return "unknown";
    case AgentState::kLost: return "lost";
    case AgentState::kAway: return "away";
    case AgentState::kFinished: return "finished";
    case AgentState::kFailed: return "failed";
    case AgentState::kDropped: return "dropped";
  }
  return "?";
}

Membership::Membership(const core::RunConfig& config, const core::MixingMatrix& w, absl::Duration heartbeat_timeout)
    : config_(config), base_(w), heartbeat_timeout_(heartbeat_timeout) {}

absl::StatusOr<JoinOutcome> Membership::Join(const JoinInfo& j, absl::Time now) {
  const int n = config_.num_agents;
  if (!j.identity.empty() && j.name != j.identity) {
    return absl::PermissionDeniedError(absl::StrCat("agent name '", j.name, "' is not the name in its certificate"));
  }
  JoinOutcome out;
  for (const auto& [r, a] : agents_)
    if (a.name == j.name) out.rank = r;
  if (out.rank >= 0) {
    const AgentRecord& a = agents_[out.rank];
    if (a.identity != j.identity) {
      return absl::PermissionDeniedError(absl::StrCat("agent '", j.name, "' is bound to another identity"));
    }
    if (a.state == AgentState::kDropped) {
      return absl::FailedPreconditionError(absl::StrCat("rank ", out.rank, " ('", j.name, "') was dropped from the run"));
    }
    if (j.requested_rank >= 0 && j.requested_rank != out.rank) {
      return absl::InvalidArgumentError(absl::StrCat("agent '", j.name, "' holds rank ", out.rank, ", not ", j.requested_rank));
    }
    if (j.nonce != 0 && j.nonce == a.nonce) {  // a retry of the same process, not a restart
      agents_[out.rank].last_seen = now;
      out.incarnation = a.incarnation;
      out.retry = true;
      return out;
    }
    out.rejoin = begun();
  } else if (j.requested_rank >= 0) {
    out.rank = j.requested_rank;
    if (out.rank >= n) {
      return absl::InvalidArgumentError(absl::StrCat("requested rank ", out.rank, " but the run has ", n, " agents (0..",
                                                     n - 1, ")"));
    }
    if (agents_.count(out.rank)) {
      return absl::AlreadyExistsError(absl::StrCat("rank ", out.rank, " is already taken by another agent"));
    }
  } else {
    for (int r = 0; r < n && out.rank < 0; ++r)
      if (!agents_.count(r)) out.rank = r;
    if (out.rank < 0) return absl::ResourceExhaustedError(absl::StrCat("the run already has its ", n, " agents"));
  }
  AgentRecord& a = agents_[out.rank];
  static_cast<AgentHello&>(a) = j;  // a rejoin replaces all it said before
  a.incarnation += 1;
  a.state = AgentState::kAlive;
  a.last_seen = now;
  a.round = j.checkpoints.empty() ? 0 : j.checkpoints.front();
  out.incarnation = a.incarnation;
  return out;
}

bool Membership::all_joined() const { return static_cast<int>(agents_.size()) == config_.num_agents; }

std::vector<int> Membership::unjoined() const {
  std::vector<int> missing;
  for (int r = 0; r < config_.num_agents; ++r)
    if (!agents_.count(r)) missing.push_back(r);
  return missing;
}

int Membership::active_agents() const {
  int k = 0;
  for (const auto& [r, a] : agents_) k += a.active() ? 1 : 0;
  return k;
}

bool Membership::IsActive(int rank) const {
  auto it = agents_.find(rank);
  return it != agents_.end() && it->second.active();
}

int64_t Membership::CommonCheckpoint(int64_t at_most, int exclude) const {
  // Round 0 (the initial state) every agent can always restore.
  std::set<int64_t> common;
  bool first = true;
  for (const auto& [r, a] : agents_) {
    if (!a.active() || r == exclude) continue;
    std::set<int64_t> mine;
    for (int64_t c : a.checkpoints)
      if (c <= at_most) mine.insert(c);
    if (first) {
      common = mine;
      first = false;
    } else {
      std::set<int64_t> both;
      for (int64_t c : common)
        if (mine.count(c)) both.insert(c);
      common = std::move(both);
    }
  }
  return common.empty() ? 0 : *common.rbegin();
}

void Membership::NewGeneration(int64_t restore, absl::Time) {
  accused_.clear();  // refusals of the old generation are restored away
  hold_ = 0;
  stop_round_ = 0;
  stop_asked_ = absl::InfinitePast();
  command_.set_generation(command_.generation() + 1);
  command_.set_restore_round(restore);
}

void Membership::Begin(absl::Time now) {
  NewGeneration(resumed_ ? CommonCheckpoint() : 0, now);
}

void Membership::Recover(const std::string&, absl::Time now) { NewGeneration(CommonCheckpoint(), now); }

bool Membership::waiting_for_agents() const {
  for (const auto& [r, a] : agents_) {
    if (a.state == AgentState::kUnknown || a.state == AgentState::kLost || a.state == AgentState::kAway) return true;
  }
  return false;
}

gut::v1::RunCommand Membership::CommandFor(int rank) const {
  gut::v1::RunCommand c = command_;
  c.set_hold_round(hold_);
  c.set_stop_round(stop_round_);
  const core::MixingMatrix& w = current_ ? *current_ : base_;
  auto* t = c.mutable_topology();
  t->set_version(topology_version_);
  const auto& nb = w.graph().neighbours(rank);
  for (size_t k = 0; k < nb.size(); ++k) {
    auto* x = t->add_neighbours();
    x->set_rank(nb[k]);
    x->set_weight(w.weight(rank, k));
    if (auto it = agents_.find(nb[k]); it != agents_.end()) {
      x->set_address(it->second.address);
      x->set_identity(it->second.identity);
    }
  }
  t->set_self_weight(w.self_weight(rank));
  for (const auto& d : dropped_) t->add_dropped(d.rank);
  for (const auto& [r, a] : agents_) {
    if (a.state == AgentState::kUnknown || a.state == AgentState::kLost || a.state == AgentState::kAway) c.add_missing(r);
  }
  return c;
}

absl::Status Membership::CheckIdentity(int rank, const std::string& identity) const {
  auto it = agents_.find(rank);
  if (it == agents_.end()) return absl::NotFoundError(absl::StrCat("rank ", rank, " never joined"));
  if (it->second.identity != identity) {
    return absl::PermissionDeniedError(absl::StrCat("the caller is not the agent bound to rank ", rank));
  }
  return absl::OkStatus();
}

absl::Status Membership::Heartbeat(const gut::v1::HeartbeatRequest& h, const std::string& identity, absl::Time now) {
  if (auto s = CheckIdentity(h.rank(), identity); !s.ok()) return s;
  AgentRecord& a = agents_[h.rank()];
  if (h.incarnation() != a.incarnation) {
    return absl::FailedPreconditionError(absl::StrCat("rank ", h.rank(), " has rejoined since (incarnation ",
                                                      a.incarnation, "); this process is superseded"));
  }
  if (a.state == AgentState::kDropped) {
    return absl::FailedPreconditionError(absl::StrCat("rank ", h.rank(), " was dropped from the run"));
  }
  a.last_seen = now;
  a.round = h.round();
  a.checkpoints.assign(h.checkpoints().begin(), h.checkpoints().end());
  a.generation = h.generation();
  a.epoch = h.epoch();
  a.loss = h.loss();
  a.accuracy = h.accuracy();
  a.peers_down.assign(h.peers_down().begin(), h.peers_down().end());
  a.holding = h.holding();
  a.stopping = h.stopping();
  if (h.stopping() && stop_round_ == 0 && stop_asked_ == absl::InfinitePast()) stop_asked_ = now;
  if (h.rounds_per_epoch() > 0) rounds_per_epoch_ = h.rounds_per_epoch();
  if (a.state == AgentState::kUnknown || a.state == AgentState::kLost) a.state = AgentState::kAlive;
  // Accusations count only from the current generation and only against a current neighbour: an
  // agent cannot accuse a rank it does not hear from.
  if (h.generation() == command_.generation()) {
    const std::vector<int>& nb = graph().neighbours(h.rank());
    for (const auto& r : h.refused()) {
      if (r.count() <= 0 || std::find(nb.begin(), nb.end(), r.rank()) == nb.end()) continue;
      auto [it, fresh] = accused_[r.rank()].emplace(h.rank(), std::max<int64_t>(0, r.first_round()));
      if (!fresh) it->second = std::min(it->second, std::max<int64_t>(0, r.first_round()));
    }
  }
  return absl::OkStatus();
}

void Membership::ApplyAccusations(absl::Time now, std::string* log) {
  if (config_.on_refused_peer == "keep" || !failure_.empty()) return;
  for (const auto& [sender, accusers] : accused_) {
    if (!IsActive(sender)) continue;
    const int degree = graph().degree(sender);
    // A majority of its neighbours: one lying agent cannot have an honest neighbour removed.
    if (2 * static_cast<int>(accusers.size()) <= degree) continue;
    int64_t first = std::numeric_limits<int64_t>::max();
    std::vector<int> who;
    for (const auto& [accuser, round] : accusers) {
      first = std::min(first, round);
      who.push_back(accuser);
    }
    const std::string what = absl::StrFormat(
        "agent %d ('%s') sent model messages that %d of its %d neighbours (agent %s) refused as implausible, the first "
        "in round %d", sender, agents_[sender].name, who.size(), degree, absl::StrJoin(who, ", "), first);
    for (const auto& [r, a] : agents_) {
      if (a.state == AgentState::kFinished) {
        // Too late to roll anyone back: the run ends as it is, with the refusals on record.
        if (accusations_noted_.insert(sender).second) *log = absl::StrCat(what, "; agents have finished, so it stays");
        return;
      }
    }
    if (config_.on_refused_peer == "fail") {
      Fail(absl::StrCat(what, " (fault.on_refused_peer: fail)"));
      *log = absl::StrCat("run failed: ", failure_);
      return;
    }
    // The survivors restore a round from before the first refused message, so nothing of it (and
    // none of the replica offsets the refusals left) survives the drop. Their checkpoint lists are
    // a heartbeat old and retention may drop that round meanwhile, so the drop waits until every
    // survivor says it holds the round (hold_round, echoed as holding); if one lost it before the
    // hold reached it, an older common round is held instead (round 0 needs no file).
    const int64_t restore = CommonCheckpoint(first, sender);
    bool held = true;
    for (const auto& [r, a] : agents_) {
      const bool has = std::find(a.checkpoints.begin(), a.checkpoints.end(), restore) != a.checkpoints.end();
      if (r != sender && a.active() && !(a.holding == restore && has)) held = false;
    }
    if (restore > 0 && !held) {
      hold_ = restore;  // sent with every command; the drop happens at a later tick
      return;
    }
    DropRank(sender, restore, what, now, log);
    return;
  }
}

absl::Status Membership::Leave(const gut::v1::LeaveRequest& l, const std::string& identity, absl::Time now) {
  if (auto s = CheckIdentity(l.rank(), identity); !s.ok()) return s;
  AgentRecord& a = agents_[l.rank()];
  if (l.incarnation() != 0 && l.incarnation() != a.incarnation) return absl::OkStatus();  // an old process
  a.round = l.round();
  if (a.state == AgentState::kDropped) return absl::OkStatus();
  if (l.failed()) {
    a.state = AgentState::kFailed;
    Fail(absl::StrCat("agent ", l.rank(), ": ", l.reason()));
  } else if (l.planned()) {
    a.state = AgentState::kAway;
    a.gone_since = now;
  } else {
    a.state = AgentState::kFinished;
  }
  return absl::OkStatus();
}

void Membership::Fail(const std::string& why) {
  if (!failure_.empty()) return;
  failure_ = why;
  command_.set_action(gut::v1::RunCommand::FAIL);
  command_.set_reason(why);
}

void Membership::ApplyPolicy(int rank, absl::Time now, std::string* log) {
  AgentRecord& a = agents_[rank];
  const std::string what = absl::StrFormat(
      "agent %d ('%s') %s at round %d and did not come back within fault.rejoin_timeout_s = %g s", rank, a.name,
      a.state == AgentState::kAway ? "stopped" : "was lost", a.round, config_.rejoin_timeout_s);
  if (config_.on_peer_loss != "drop") {
    Fail(what);
    *log = absl::StrCat("run failed: ", what, " (fault.on_peer_loss: fail)");
    return;
  }
  DropRank(rank, std::numeric_limits<int64_t>::max(), what, now, log);
}

void Membership::DropRank(int rank, int64_t at_most, const std::string& what, absl::Time now, std::string* log) {
  AgentRecord& a = agents_[rank];
  std::vector<int> gone;
  for (const auto& d : dropped_) gone.push_back(d.rank);
  gone.push_back(rank);
  auto w = core::MixingWithout(base_.graph(), gone, config_.consensus_step);
  if (!w.ok()) {
    Fail(absl::StrCat(what, "; it cannot be dropped: ", w.status().message()));
    *log = absl::StrCat("run failed: ", failure_);
    return;
  }
  current_ = std::make_unique<core::MixingMatrix>(std::move(*w));
  ++topology_version_;
  a.state = AgentState::kDropped;
  NewGeneration(CommonCheckpoint(at_most), now);  // among the survivors
  dropped_.push_back({rank, command_.restore_round()});
  *log = absl::StrCat(what, "; dropped it: ", active_agents(), " agents go on from round ", command_.restore_round(),
                      " (generation ", command_.generation(), ", topology version ", topology_version_, ")");
}

void Membership::ForgiveStall(absl::Duration gap, absl::Time now) {
  for (auto& [r, a] : agents_) {
    if (a.last_seen != absl::InfinitePast()) a.last_seen = std::min(a.last_seen + gap, now);
    if (a.gone_since != absl::InfinitePast()) a.gone_since = std::min(a.gone_since + gap, now);
  }
}

std::string Membership::Tick(absl::Time now) {
  std::string log;
  if (!begun() || !failure_.empty()) return log;
  for (auto& [r, a] : agents_) {
    if ((a.state == AgentState::kAlive || a.state == AgentState::kUnknown) && now - a.last_seen > heartbeat_timeout_) {
      a.state = AgentState::kLost;
      a.gone_since = a.last_seen;
      log = absl::StrCat("agent ", r, " ('", a.name, "') is silent since round ", a.round, " (no heartbeat for ",
                         absl::FormatDuration(now - a.last_seen), ")");
    }
  }
  for (auto& [r, a] : agents_) {
    if ((a.state == AgentState::kLost || a.state == AgentState::kAway) &&
        now - a.gone_since > absl::Seconds(config_.rejoin_timeout_s)) {
      ApplyPolicy(r, now, &log);
      if (!failure_.empty()) break;
    }
  }
  if (log.empty()) ApplyAccusations(now, &log);
  if (stop_round_ == 0 && stop_asked_ != absl::InfinitePast() && now - stop_asked_ >= absl::Milliseconds(600)) {
    std::vector<int> who;
    for (const auto& [r, a] : agents_) {
      if (!a.active()) continue;
      stop_round_ = std::max(stop_round_, a.round);
      if (a.stopping) who.push_back(r);
    }
    stop_round_ += 1;  // one past the highest completed round (membership.h)
    if (log.empty()) {
      log = absl::StrCat("agent(s) ", absl::StrJoin(who, ", "), " asked to stop: each stops at round ", stop_round_,
                         " and checkpoints there");
    }
  }
  return log;
}

nlohmann::json Membership::ToJson() const {
  nlohmann::json agents = nlohmann::json::array();
  for (const auto& [r, a] : agents_) {
    agents.push_back({{"rank", r}, {"name", a.name}, {"address", a.address}, {"metrics_address", a.metrics_address},
                      {"identity", a.identity}, {"local_samples", a.local_samples}, {"incarnation", a.incarnation},
                      {"state", AgentStateName(a.state)}, {"round", a.round}, {"checkpoints", a.checkpoints}});
  }
  nlohmann::json dropped = nlohmann::json::array();
  for (const auto& d : dropped_) dropped.push_back({{"rank", d.rank}, {"round", d.round}});
  return {{"agents", agents},
          {"generation", command_.generation()},
          {"restore_round", command_.restore_round()},
          {"topology_version", topology_version_},
          {"dropped", dropped},
          {"failure", failure_},
          {"rounds_per_epoch", rounds_per_epoch_}};
}

absl::Status Membership::FromJson(const nlohmann::json& j, absl::Time now) {
  try {
    agents_.clear();
    for (const auto& x : j.at("agents")) {
      AgentRecord a;
      a.name = x.at("name").get<std::string>();
      a.address = x.at("address").get<std::string>();
      a.metrics_address = x.at("metrics_address").get<std::string>();
      a.identity = x.at("identity").get<std::string>();
      a.local_samples = x.at("local_samples").get<int64_t>();
      a.incarnation = x.at("incarnation").get<uint32_t>();
      a.round = x.at("round").get<int64_t>();
      a.checkpoints = x.at("checkpoints").get<std::vector<int64_t>>();
      a.state = x.at("state").get<std::string>() == "dropped" ? AgentState::kDropped : AgentState::kUnknown;
      a.last_seen = now;
      agents_[x.at("rank").get<int>()] = std::move(a);
    }
    command_.set_generation(j.at("generation").get<uint64_t>());
    command_.set_restore_round(j.at("restore_round").get<int64_t>());
    topology_version_ = j.at("topology_version").get<uint32_t>();
    dropped_.clear();
    std::vector<int> gone;
    for (const auto& d : j.at("dropped")) {
      dropped_.push_back({d.at("rank").get<int>(), d.at("round").get<int64_t>()});
      gone.push_back(dropped_.back().rank);
    }
    rounds_per_epoch_ = j.at("rounds_per_epoch").get<int64_t>();
    // A saved failure is not carried over: --resume of a failed run is the operator saying the
    // cause is gone (the GutRunFailed runbook), so the run goes on from the newest round every
    // agent holds, like any resumed run (issue 21). The caller logs it (resumed_failure()).
    resumed_failure_ = j.at("failure").get<std::string>();
    if (!gone.empty()) {
      auto w = core::MixingWithout(base_.graph(), gone, config_.consensus_step);
      if (!w.ok()) return w.status();
      current_ = std::make_unique<core::MixingMatrix>(std::move(*w));
    }
  } catch (const nlohmann::json::exception& e) {
    return absl::DataLossError(absl::StrCat("coordinator state: ", e.what()));
  }
  resumed_ = true;
  return absl::OkStatus();
}

}  // namespace gut::coordinator
