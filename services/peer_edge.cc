#include "services/peer_edge.h"

#include <algorithm>

namespace gut::services {

PeerEdge::PeerEdge(PeerAddress peer, bool dialer, const AssemblyLimits& limits, int initial_backoff_ms)
    : peer_(std::move(peer)), dialer_(dialer), backoff_ms_(initial_backoff_ms), in_(limits) {
  stats_.rank = peer_.rank;
}

bool PeerEdge::DialDue(absl::Time now) const {
  return dialer_ && stub_ != nullptr && stream_ == nullptr && pending_ == nullptr && now >= next_dial_;
}

void PeerEdge::SetChannel(std::shared_ptr<grpc::Channel> channel) {
  channel_ = std::move(channel);
  stub_ = std::shared_ptr<gut::v1::Peer::Stub>(gut::v1::Peer::NewStub(channel_));
}

std::shared_ptr<PeerStream> PeerEdge::Attach(std::shared_ptr<PeerStream> s, int initial_backoff_ms) {
  std::shared_ptr<PeerStream> replaced;
  if (stream_ && stream_ != s) {
    replaced = stream_;
    ++stats_.streams_replaced;
  }
  stream_ = s;
  if (pending_ == s) pending_.reset();
  backoff_ms_ = initial_backoff_ms;
  stats_.connected = true;
  stats_.left = false;
  ++stats_.connects;
  for (const auto& f : unacked_) {
    s->Enqueue(f);
    stats_.frame_bytes_sent += static_cast<int64_t>(f->ByteSizeLong());
  }
  return replaced;
}

bool PeerEdge::StreamEnded(PeerStream* s, int max_backoff_ms) {
  bool was_attached = false;
  if (stream_.get() == s) {
    stream_.reset();
    stats_.connected = false;
    down_since_ = absl::Now();
    was_attached = true;
  }
  if (pending_.get() == s) pending_.reset();
  if (dialer_ && stream_ == nullptr && pending_ == nullptr) {
    next_dial_ = absl::Now() + absl::Milliseconds(backoff_ms_);
    backoff_ms_ = std::min(2 * backoff_ms_, max_backoff_ms);
  }
  return was_attached;
}

std::shared_ptr<PeerStream> PeerEdge::Queue(const std::vector<FramePtr>& frames, int64_t payload_bytes) {
  unacked_.insert(unacked_.end(), frames.begin(), frames.end());
  stats_.payload_bytes_sent += payload_bytes;
  if (stream_ == nullptr) return nullptr;
  for (const auto& f : frames) stats_.frame_bytes_sent += static_cast<int64_t>(f->ByteSizeLong());
  return stream_;
}

void PeerEdge::Acknowledged(int64_t round, int slot) {
  unacked_.erase(std::remove_if(unacked_.begin(), unacked_.end(),
                                [&](const FramePtr& p) { return p->round().round() <= round && p->round().slot() == slot; }),
                 unacked_.end());
}

void PeerEdge::OweAck(int64_t round, int slot, absl::Time now) {
  auto [it, fresh] = owed_.emplace(slot, round);
  if (!fresh) it->second = std::max(it->second, round);
  if (owed_count_++ == 0) owed_since_ = now;
}

std::vector<FramePtr> PeerEdge::TakeOwedAcks() {
  std::vector<FramePtr> out;
  for (const auto& [slot, round] : owed_) {
    auto f = std::make_shared<gut::v1::PeerFrame>();
    f->mutable_ack()->set_round(round);
    f->mutable_ack()->set_slot(slot);
    stats_.frame_bytes_sent += static_cast<int64_t>(f->ByteSizeLong());
    out.push_back(std::move(f));
  }
  owed_.clear();
  owed_count_ = 0;
  owed_since_ = absl::InfiniteFuture();
  return out;
}

void PeerEdge::Forget() {
  unacked_.clear();
  owed_.clear();
  owed_count_ = 0;
  owed_since_ = absl::InfiniteFuture();
  in_.Clear();
}

}  // namespace gut::services
