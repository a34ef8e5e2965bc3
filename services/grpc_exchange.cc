#include "services/grpc_exchange.h"

#include <set>

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
  return core_->Send(round, slot, -1, message);
}

absl::Status GrpcExchange::SendTo(int64_t round, int slot, int neighbour_index, absl::Span<float> message) {
  if (neighbour_index < 0 || neighbour_index >= degree()) {
    return absl::InvalidArgumentError(absl::StrCat("agent ", rank(), ": neighbour index ", neighbour_index,
                                                   " out of range"));
  }
  return core_->Send(round, slot, neighbour_index, message);
}

absl::Status GrpcExchange::ReceiveWeightedSum(int64_t round, int slot, absl::Span<float> out) {
  if (auto s = core_->Collect(round, slot, out.size()); !s.ok()) return s;
  std::vector<const float*> m(core_->infos().size());
  for (size_t k = 0; k < m.size(); ++k) m[k] = core_->decoded(static_cast<int>(k)).data();
  core::WeightedSum<float>(core_->infos(), m, out);
  return absl::OkStatus();
}

absl::Status GrpcExchange::ReceiveEach(int64_t round, int slot,
                                       const std::function<void(int, absl::Span<const float>)>& fn) {
  if (auto s = core_->Collect(round, slot, 0); !s.ok()) return s;
  for (size_t k = 0; k < core_->infos().size(); ++k) {
    fn(static_cast<int>(k), absl::MakeConstSpan(core_->decoded(static_cast<int>(k))));
  }
  return absl::OkStatus();
}

absl::Status GrpcExchange::WaitConnected(absl::Duration timeout) { return core_->WaitConnected(timeout); }
absl::Status GrpcExchange::Flush(absl::Duration timeout) { return core_->Flush(timeout); }
void GrpcExchange::SayGoodbye(const std::string& reason, int64_t rounds) { core_->SayGoodbye(reason, rounds); }
void GrpcExchange::Interrupt(absl::Status why) { core_->Interrupt(std::move(why)); }
void GrpcExchange::Reset(uint64_t generation, std::vector<PeerAddress> neighbours, double self_weight,
                         int64_t next_round) {
  core_->Reset(generation, std::move(neighbours), self_weight, next_round);
}
void GrpcExchange::Shutdown(absl::Duration timeout) { core_->Shutdown(timeout); }
ExchangeStats GrpcExchange::Stats() const { return core_->Stats(); }

}  // namespace gut::services
