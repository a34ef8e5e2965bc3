// PeerService: the gRPC Peer service of one agent process. It is registered with the agent's
// server before the agent knows its neighbours; an exchange attaches to it once the agent has
// joined a run (until then a hello is refused with UNAVAILABLE and the dialer retries).
//
// Admission: an accepted stream is "pending" until its first frame arrives. At most
// StreamTuning::max_pending_streams may be pending at once (more are refused at once), and one
// that has sent nothing within StreamTuning::hello_timeout_ms is closed by a sweeper thread.
// Both are counted (too_many_pending, hello_timeout), so idle or half-open connections cannot pile
// up. Every refusal of the agent's peer port is counted here, by reason.
//
// Lock order: PeerService::mu_ comes first (before ExchangeCore::mu_ and PeerStream::smu_).
// The service must outlive the grpc::Server it is registered with.
#ifndef GUT_SERVICES_PEER_SERVICE_H_
#define GUT_SERVICES_PEER_SERVICE_H_

#include <atomic>
#include <map>
#include <memory>
#include <thread>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "gut/v1/peer.grpc.pb.h"
#include "services/grpc_options.h"
#include "services/peer_wire.h"

namespace gut::services {

class ExchangeCore;
class PeerStream;

class PeerService final : public gut::v1::Peer::CallbackService {
 public:
  explicit PeerService(StreamTuning tuning = StreamTuning());
  ~PeerService() override;

  grpc::ServerBidiReactor<gut::v1::PeerFrame, gut::v1::PeerFrame>* Exchange(
      grpc::CallbackServerContext* context) override;

  void CountReject(Reject r) { rejected_[static_cast<int>(r)].fetch_add(1); }
  int64_t rejected(Reject r) const { return rejected_[static_cast<int>(r)].load(); }
  int64_t pending_streams() const ABSL_LOCKS_EXCLUDED(mu_);

  // The exchange of the run this agent is in (one at a time).
  absl::Status Attach(std::shared_ptr<ExchangeCore> core) ABSL_LOCKS_EXCLUDED(mu_);
  void Detach(const ExchangeCore* core) ABSL_LOCKS_EXCLUDED(mu_);

  // ---- server streams ----
  // A new stream; false (and counted) when too many are already waiting for their first frame.
  bool AdmitPending(const std::shared_ptr<PeerStream>& s) ABSL_LOCKS_EXCLUDED(mu_);
  // Its first frame arrived: the stream is no longer pending and now belongs to the attached
  // exchange (returned), or to none (null: not joined yet, counted not_ready).
  std::shared_ptr<ExchangeCore> AcceptFirstFrame(PeerStream* s) ABSL_LOCKS_EXCLUDED(mu_);
  void StreamGone(PeerStream* s) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Sweep();

  const StreamTuning tuning_;
  mutable absl::Mutex mu_;
  std::shared_ptr<ExchangeCore> core_ ABSL_GUARDED_BY(mu_);
  std::map<PeerStream*, std::weak_ptr<PeerStream>> pending_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<int64_t> rejected_[static_cast<int>(Reject::kCount)] = {};
  std::thread sweeper_;
};

}  // namespace gut::services

#endif  // GUT_SERVICES_PEER_SERVICE_H_
