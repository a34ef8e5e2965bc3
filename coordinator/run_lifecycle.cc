// CoordinatorService's run lifecycle, apart from the RPCs: the monitor thread (liveness, the
// fault policies, the join timeout, the coordinator's own stalls), waiting for the run's end, and
// the final outputs (coordinator_service.h).
#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "coordinator/coordinator_service.h"
#include "core/common/log_context.h"

namespace gut::coordinator {

void CoordinatorService::Monitor() {
  for (;;) {
    absl::MutexLock l(&mu_);
    auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_; };
    mu_.AwaitWithTimeout(absl::Condition(&stop), absl::Milliseconds(200));
    if (stop_) return;
    // This loop wakes every 200 ms; a much longer gap means this process did not run (stopped,
    // throttled, suspended), and agents must not be judged lost on time it did not observe.
    const absl::Time woke = absl::Now();
    if (last_tick_ != absl::InfinitePast() && woke - last_tick_ > absl::Seconds(1)) {
      const absl::Duration gap = woke - last_tick_ - absl::Milliseconds(200);
      members_.ForgiveStall(gap, woke);
      progress_.Forgive(gap);
      spdlog::warn("the coordinator did not run for {} (stopped, throttled or suspended): that time is not held "
                   "against any agent", absl::FormatDuration(gap));
    }
    last_tick_ = woke;
    ObserveProgress(woke);
    const uint64_t before = members_.generation();
    const bool failed_before = !members_.failure().empty();
    // The bootstrap barrier's limit counts from start-up, also when no agent ever calls Join
    // (whose own deadline was the only one before: with nobody joining, nothing ever fired).
    if (!members_.begun() && !failed_before && woke - start_ > options_.join_timeout) {
      members_.Fail(absl::StrCat("only ", members_.joined(), " of ", config_.num_agents, " agents joined within "
                                 "--join-timeout-s (", absl::FormatDuration(options_.join_timeout), ")",
                                 members_.joined() < config_.num_agents
                                     ? absl::StrCat("; missing rank(s) ", absl::StrJoin(members_.unjoined(), ", "))
                                     : ""));
      spdlog::error("run failed: {}", members_.failure());
      Persist();
      Changed();
    }
    const std::string log = members_.Tick(absl::Now());
    if (!log.empty()) {
      if (members_.failure().empty()) {
        core::LogEvent(spdlog::level::warn, "membership", {}, log);  // lost, dropped, held
      } else {
        core::LogEvent(spdlog::level::err, "run_failed", {}, log);
      }
      Persist();
      WriteAgents();  // a dropped rank leaves the scrape targets
      Changed();
    }
    AfterRecovery(before);
    if (!failed_before && !members_.failure().empty()) {
      unwritten_ = aggregator_.WriteOutputs(members_, "failed", members_.failure());
    }
  }
}

int64_t CoordinatorService::SlowestRound() const {
  int64_t slowest = -1;
  for (const auto& [r, a] : members_.agents()) {
    if (a.active()) slowest = slowest < 0 ? a.round : std::min(slowest, a.round);
  }
  return slowest;
}

void CoordinatorService::ObserveProgress(absl::Time now) {
  const int64_t slowest = SlowestRound();
  if (slowest < 0 || !members_.begun()) return;
  const int64_t rpe = members_.rounds_per_epoch();
  progress_.Observe(slowest, rpe > 0 ? config_.epochs * rpe + config_.final_gossip_rounds : 0, now);
  // Heartbeats change nothing else the gauges show: bring them (rounds, progress, ETA) up to date
  // once a second.
  if (now - last_progress_change_ >= absl::Seconds(1)) {
    last_progress_change_ = now;
    Changed();
  }
}

absl::Status CoordinatorService::WaitFinished(absl::Duration timeout) {
  absl::MutexLock l(&mu_);
  auto over = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || !members_.failure().empty()) return true;
    if (!members_.all_joined()) return false;
    for (const auto& [r, a] : members_.agents())
      if (a.active() && a.state != AgentState::kFinished && a.state != AgentState::kFailed) return false;
    return true;  // everyone left
  };
  if (!mu_.AwaitWithTimeout(absl::Condition(&over), timeout)) {
    return absl::DeadlineExceededError(absl::StrCat("run did not finish within ", absl::FormatDuration(timeout)));
  }
  if (!members_.failure().empty()) return absl::AbortedError(members_.failure());
  if (!finished_) return absl::AbortedError("every agent left before the run finished");
  return absl::OkStatus();
}

void CoordinatorService::LetStoppingAgentsLeave(absl::Duration limit) {
  const absl::Time until = absl::Now() + limit;
  // Their first "stopping" heartbeat is a heartbeat period away; then each waits for the round.
  absl::SleepFor(absl::Milliseconds(800));
  while (absl::Now() < until) {
    {
      absl::MutexLock l(&mu_);
      if (!members_.agents_stopping()) return;
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
}

bool CoordinatorService::WaitComplete(absl::Duration timeout) {
  absl::MutexLock l(&mu_);
  auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return finished_ || !members_.failure().empty(); };
  mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
  return finished_;
}

void CoordinatorService::WriteUnfinished(const std::string& status, const std::string& why) {
  absl::MutexLock l(&mu_);
  if (finished_) return;
  stopped_ = status == "stopped";
  unwritten_ = aggregator_.WriteOutputs(members_, members_.failure().empty() ? status : "failed",
                                        members_.failure().empty() ? why : members_.failure());
}

std::vector<std::string> CoordinatorService::Unwritten() const {
  absl::MutexLock l(&mu_);
  return unwritten_;
}

}  // namespace gut::coordinator
