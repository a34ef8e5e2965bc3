#include "services/grpc_exchange.h"

#include <set>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "core/exchange/weighted_sum.h"

namespace gut::services {

absl::StatusOr<std::unique_ptr<GrpcExchange>> GrpcExchange::Create(GrpcExchangeOptions o, PeerService* service) {
  if (auto s = o.tuning.Validate(); !s.ok()) return s;
  if (o.num_params <= 0) return absl::InvalidArgumentError("exchange: num_params must be positive");
  if (o.run_id.empty()) return absl::InvalidArgumentError("exchange: empty run id");
  std::set<int> seen;
  for (const auto& p : o.neighbours) {
    if (p.rank == o.rank || !seen.insert(p.rank).second) {
      return absl::InvalidArgumentError(absl::StrCat("exchange: agent ", o.rank, " has itself or a duplicate (agent ",
                                                     p.rank, ") among its neighbours"));
    }
    if (p.address.empty() && o.rank < p.rank) {
      return absl::InvalidArgumentError(absl::StrCat("exchange: no address for agent ", p.rank));
    }
  }
  auto core = std::make_shared<ExchangeCore>(std::move(o), service);
  if (auto s = service->Attach(core); !s.ok()) return s;
  core->StartDialing();
  return std::unique_ptr<GrpcExchange>(new GrpcExchange(std::move(core)));
}

GrpcExchange::~GrpcExchange() { Shutdown(absl::Seconds(5)); }

int GrpcExchange::rank() const { return core_->rank(); }
double GrpcExchange::self_weight() const { return core_->self_weight(); }
const std::vector<core::NeighbourInfo>& GrpcExchange::neighbours() const { return core_->infos(); }
int64_t GrpcExchange::bytes_sent() const { return core_->payload_sent.load(); }
int64_t GrpcExchange::bytes_received() const { return core_->payload_received.load(); }
int64_t GrpcExchange::raw_bytes_sent() const { return core_->raw_sent.load(); }
double GrpcExchange::wait_seconds() const { return 1e-9 * static_cast<double>(core_->wait_ns.load()); }
void GrpcExchange::RestoreByteCounters(int64_t sent, int64_t received, int64_t raw_sent) {
  core_->payload_sent = sent;
  core_->payload_received = received;
  core_->raw_sent = raw_sent;
}

absl::Status GrpcExchange::Broadcast(int64_t round, int slot, absl::Span<float> message) {
  return SendMessage(round, slot, -1, message);
}

absl::Status GrpcExchange::SendMessage(int64_t round, int slot, int target, absl::Span<float> message) {
  if (const Forgery& forge = core_->forge(); forge.Active(round, slot)) {
    // The drill: the neighbours get forged values, this agent's state keeps the honest message.
    forge.Forge<float>(message, &forged_);
    if (auto s = core_->Send(round, slot, target, absl::MakeSpan(forged_)); !s.ok()) return s;
  } else if (auto s = core_->Send(round, slot, target, message); !s.ok()) {
    return s;
  }
  guard_.Sent(slot, target, message);
  return absl::OkStatus();
}

std::vector<absl::Span<const float>> GrpcExchange::Screened(int64_t round, int slot) {
  const auto& infos = core_->infos();
  std::vector<absl::Span<const float>> views(infos.size());
  for (size_t k = 0; k < views.size(); ++k) views[k] = core_->decoded(static_cast<int>(k));
  core::ScreenMessages(&guard_, slot, &views, [&](int k, const core::GuardVerdict& v) {
    const Reject why = v.why == core::Implausible::kNonFinite ? Reject::kNonFinite
                       : v.why == core::Implausible::kZero    ? Reject::kZeroMessage
                                                              : Reject::kImplausible;
    core_->service()->CountReject(why);
    const int sender = infos[k].rank;
    int64_t count = 0;
    bool log = false;
    {
      absl::MutexLock l(&refused_mu_);
      refusals_.Add(sender, round);
      count = refusals_.From(sender);
      // One line per neighbour per 10 s: a forging peer must not flood the log either.
      const absl::Time now = absl::Now();
      auto [last, fresh] = last_logged_.emplace(sender, now);
      if (fresh || now - last->second >= absl::Seconds(10)) {
        last->second = now;
        log = true;
      }
    }
    if (log) {
      spdlog::warn("agent {}: refused the round {} slot {} message from agent {}: {}; used this agent's own "
                   "message instead ({} refused from agent {} so far)",
                   core_->rank(), round, slot, sender, v.reason, count, sender);
    }
  });
  return views;
}

absl::Status GrpcExchange::SendTo(int64_t round, int slot, int neighbour_index, absl::Span<float> message) {
  if (neighbour_index < 0 || neighbour_index >= degree()) {
    return absl::InvalidArgumentError(absl::StrCat("agent ", rank(), ": neighbour index ", neighbour_index,
                                                   " out of range"));
  }
  return SendMessage(round, slot, neighbour_index, message);
}

absl::Status GrpcExchange::ReceiveWeightedSum(int64_t round, int slot, absl::Span<float> out) {
  if (auto s = core_->Collect(round, slot, out.size()); !s.ok()) return s;
  const auto views = Screened(round, slot);
  std::vector<const float*> m(views.size());
  for (size_t k = 0; k < m.size(); ++k) m[k] = views[k].data();
  core::WeightedSum<float>(core_->infos(), m, out);
  return absl::OkStatus();
}

absl::Status GrpcExchange::ReceiveEach(int64_t round, int slot,
                                       const std::function<void(int, absl::Span<const float>)>& fn) {
  if (auto s = core_->Collect(round, slot, 0); !s.ok()) return s;
  const auto views = Screened(round, slot);
  for (size_t k = 0; k < views.size(); ++k) fn(static_cast<int>(k), views[k]);
  return absl::OkStatus();
}

absl::Status GrpcExchange::WaitConnected(absl::Duration timeout) { return core_->WaitConnected(timeout); }
absl::Status GrpcExchange::Flush(absl::Duration timeout) { return core_->Flush(timeout); }
void GrpcExchange::SayGoodbye(const std::string& reason, int64_t rounds) { core_->SayGoodbye(reason, rounds); }
void GrpcExchange::Interrupt(absl::Status why) { core_->Interrupt(std::move(why)); }
void GrpcExchange::CoordinatorJudging(std::vector<int> missing, absl::Time fresh_until) {
  core_->CoordinatorJudging(std::move(missing), fresh_until);
}
void GrpcExchange::Reset(uint64_t generation, std::vector<PeerAddress> neighbours, double self_weight,
                         int64_t next_round) {
  core_->Reset(generation, std::move(neighbours), self_weight, next_round);
  guard_.Reset();
}
void GrpcExchange::Shutdown(absl::Duration timeout) { core_->Shutdown(timeout); }
ExchangeStats GrpcExchange::Stats() const {
  ExchangeStats s = core_->Stats();
  absl::MutexLock l(&refused_mu_);
  for (auto& p : s.peers) p.messages_refused = refusals_.From(p.rank);
  return s;
}

}  // namespace gut::services
