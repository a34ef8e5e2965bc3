#include "services/peer_service.h"

#include <vector>

#include <spdlog/spdlog.h>

#include "services/exchange_core.h"
#include "services/peer_stream.h"

namespace gut::services {

PeerService::PeerService(StreamTuning tuning) : tuning_(tuning), sweeper_([this] { Sweep(); }) {}

PeerService::~PeerService() {
  {
    absl::MutexLock l(&mu_);
    stop_ = true;
  }
  sweeper_.join();
}

grpc::ServerBidiReactor<gut::v1::PeerFrame, gut::v1::PeerFrame>* PeerService::Exchange(
    grpc::CallbackServerContext* context) {
  return StartServerStream(this, context);
}

int64_t PeerService::pending_streams() const {
  absl::MutexLock l(&mu_);
  return static_cast<int64_t>(pending_.size());
}

absl::Status PeerService::Attach(std::shared_ptr<ExchangeCore> core) {
  absl::MutexLock l(&mu_);
  if (core_ != nullptr) return absl::FailedPreconditionError("exchange: the peer service already has an exchange");
  core_ = std::move(core);
  return absl::OkStatus();
}

void PeerService::Detach(const ExchangeCore* core) {
  absl::MutexLock l(&mu_);
  if (core_.get() == core) core_.reset();
}

bool PeerService::AdmitPending(const std::shared_ptr<PeerStream>& s) {
  absl::MutexLock l(&mu_);
  if (static_cast<int>(pending_.size()) >= tuning_.max_pending_streams) {
    CountReject(Reject::kTooManyPending);
    spdlog::warn("peer stream from {} refused: {} streams are already waiting for their hello", s->peer(),
                 pending_.size());
    return false;
  }
  pending_[s.get()] = s;
  return true;
}

std::shared_ptr<ExchangeCore> PeerService::AcceptFirstFrame(PeerStream* s) {
  absl::MutexLock l(&mu_);
  pending_.erase(s);
  if (core_ == nullptr) {
    CountReject(Reject::kNotReady);
    return nullptr;
  }
  core_->ServerStreamJoined();
  return core_;
}

void PeerService::StreamGone(PeerStream* s) {
  absl::MutexLock l(&mu_);
  pending_.erase(s);
}

void PeerService::Sweep() {
  const absl::Duration timeout = absl::Milliseconds(tuning_.hello_timeout_ms);
  for (;;) {
    std::vector<std::shared_ptr<PeerStream>> expired;
    {
      absl::MutexLock l(&mu_);
      auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_; };
      mu_.AwaitWithTimeout(absl::Condition(&stop), std::min(absl::Milliseconds(100), timeout / 4));
      if (stop_) return;
      const absl::Time now = absl::Now();
      for (auto it = pending_.begin(); it != pending_.end();) {
        auto s = it->second.lock();
        if (s != nullptr && now - s->created() < timeout) {
          ++it;
          continue;
        }
        if (s != nullptr) expired.push_back(std::move(s));
        it = pending_.erase(it);
      }
    }
    for (auto& s : expired) {
      CountReject(Reject::kHelloTimeout);
      s->MarkRefusedBeforeHello();
      spdlog::warn("peer stream from {} closed: no hello within {} ms", s->peer(), tuning_.hello_timeout_ms);
      s->Close(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "no hello in time"), PeerStream::Mode::kDiscard);
    }
  }
}

}  // namespace gut::services
