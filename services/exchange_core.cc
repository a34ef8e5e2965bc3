#include "services/exchange_core.h"

#include <algorithm>

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>
#include <spdlog/spdlog.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/common/random.h"
#include "services/peer_service.h"

namespace gut::services {

using gut::v1::PeerFrame;

namespace {
using core::kMaxSlots;
// How often a wait re-checks whether its missing neighbours are connected (which decides the
// deadline that applies).
constexpr absl::Duration kWaitSlice = absl::Milliseconds(250);

}  // namespace

ExchangeCore::ExchangeCore(GrpcExchangeOptions o, PeerService* service)
    : opt_(std::move(o)),
      service_(service),
      wire_codec_(WireCodec(opt_.codec.kind)),
      framing_(opt_.codec.zstd ? gut::v1::FRAMING_ZSTD : gut::v1::FRAMING_NONE),
      codec_(opt_.codec, core::DeriveSeed(opt_.codec_seed, opt_.rank, core::SeedPurpose::kCodec)) {
  limits_.codec = wire_codec_;
  limits_.framing = framing_;
  limits_.chunk_bytes = static_cast<uint64_t>(opt_.tuning.chunk_bytes);
  limits_.max_message_bytes = static_cast<uint64_t>(opt_.num_params) * 8 + (1 << 16);
  limits_.max_elements = static_cast<uint64_t>(opt_.num_params);
  limits_.max_slots = kMaxSlots;
  limits_.max_buffered_bytes = 16 * limits_.max_message_bytes;
  absl::MutexLock l(&mu_);
  generation_ = opt_.generation;
  base_round_ = opt_.start_round - 1;
  BuildEdges(opt_.neighbours);
}

ExchangeCore::~ExchangeCore() {
  if (dialer_.joinable()) {
    // Only reachable when the owner never called Shutdown; the dial thread must not outlive us.
    {
      absl::MutexLock l(&mu_);
      shutting_down_ = true;
    }
    dialer_.join();
  }
}

void ExchangeCore::BuildEdges(const std::vector<PeerAddress>& neighbours) {
  std::vector<PeerEdge> next;
  infos_.clear();
  for (const auto& p : neighbours) {
    infos_.push_back({p.rank, p.weight});
    PeerEdge e(p, opt_.rank < p.rank, limits_, opt_.tuning.initial_backoff_ms);
    if (e.dialer()) {
      // Keep a channel to the same address (its connection may be up already).
      std::shared_ptr<grpc::Channel> channel;
      for (const auto& old : edges_)
        if (old.peer().rank == p.rank && old.peer().address == p.address) channel = old.channel();
      if (channel == nullptr) {
        grpc::ChannelArguments args;
        opt_.tuning.ApplyToChannel(&args);
        // Under TLS the listener must hold the neighbour's certificate (its name as a DNS SAN):
        // checked in the handshake, before the hello tells it the run id and the layout.
        if (!p.identity.empty()) args.SetSslTargetNameOverride(p.identity);
        channel = grpc::CreateCustomChannel(
            p.address, opt_.channel_credentials ? opt_.channel_credentials : grpc::InsecureChannelCredentials(), args);
      }
      e.SetChannel(std::move(channel));
    }
    next.push_back(std::move(e));
  }
  edges_ = std::move(next);
  decoded_.resize(edges_.size());
  kept_.resize(edges_.size());
  views_.resize(edges_.size());
}

void ExchangeCore::StartDialing() { dialer_ = std::thread([this] { DialLoop(); }); }

std::string ExchangeCore::EdgeAddress(int edge) const {
  absl::MutexLock l(&mu_);
  return edge >= 0 && edge < static_cast<int>(edges_.size()) ? edges_[edge].peer().address : std::string();
}

int ExchangeCore::EdgeOf(int rank) const {
  for (size_t k = 0; k < edges_.size(); ++k)
    if (edges_[k].peer().rank == rank) return static_cast<int>(k);
  return -1;
}

PeerFrame ExchangeCore::MakeHello() const {
  PeerFrame f;
  auto* h = f.mutable_hello();
  h->set_run_id(opt_.run_id);
  h->set_sender_rank(opt_.rank);
  h->set_protocol_version(gut::v1::PROTOCOL_VERSION_1);
  h->set_layout_hash(opt_.layout_hash);
  h->set_codec(wire_codec_);
  h->set_incarnation(opt_.incarnation);
  h->set_generation(generation_);
  for (const auto& t : opt_.layout) h->add_layout(t);
  h->set_model_sha256(opt_.model_sha256);
  h->set_numerics(opt_.numerics);
  return f;
}

StreamActions ExchangeCore::Refuse(PeerStream* s, Reject why, grpc::StatusCode code, const std::string& msg) {
  service_->CountReject(why);
  // A model mismatch is a configuration error that redialling cannot cure: an error, not a warning.
  if (why == Reject::kLayout) {
    spdlog::error("agent {}: refused stream from {} ({}): {}", opt_.rank, s->peer(), RejectName(why), msg);
  } else {
    spdlog::warn("agent {}: refused stream from {} ({}): {}", opt_.rank, s->peer(), RejectName(why), msg);
  }
  StreamActions a;
  a.refuse = true;
  // What the other side learns: the reason's name, never a value of ours.
  a.refusal = grpc::Status(code, absl::StrCat("refused: ", RejectName(why)));
  return a;
}

StreamActions ExchangeCore::HandleFrame(PeerStream* s, PeerFrame& f) {
  absl::MutexLock l(&mu_);
  if (f.has_hello()) return HandleHello(s, f.hello());
  // Frames count only on the stream attached to their edge (a stream replaced by a reconnect, or
  // one from before a Reset, may still deliver a few).
  if (s->edge < 0 || s->edge >= static_cast<int>(edges_.size()) || edges_[s->edge].stream().get() != s) {
    if (s->edge < 0) {
      return Refuse(s, Reject::kProtocol, grpc::StatusCode::FAILED_PRECONDITION, "the first frame must be a hello");
    }
    return {};
  }
  PeerEdge& e = edges_[s->edge];
  e.CountReceived(static_cast<int64_t>(f.ByteSizeLong()));
  if (f.has_round()) return HandleRound(s, e, f.mutable_round());
  if (f.has_ack()) {
    e.Acknowledged(f.ack().round(), f.ack().slot());
    return {};
  }
  if (f.has_goodbye()) {
    e.SaidGoodbye();
    spdlog::info("agent {}: agent {} is leaving after round {} ({}); waiting for the coordinator's decision",
                 opt_.rank, e.peer().rank, f.goodbye().round(), f.goodbye().reason());
    return {};
  }
  return Refuse(s, Reject::kProtocol, grpc::StatusCode::UNIMPLEMENTED, "frame kind not part of protocol version 1");
}

StreamActions ExchangeCore::HandleHello(PeerStream* s, const gut::v1::Hello& h) {
  if (s->hello_seen) {
    return Refuse(s, Reject::kProtocol, grpc::StatusCode::FAILED_PRECONDITION, "second hello on one stream");
  }
  s->hello_seen = true;
  if (h.protocol_version() != gut::v1::PROTOCOL_VERSION_1) {
    return Refuse(s, Reject::kVersion, grpc::StatusCode::FAILED_PRECONDITION,
                  absl::StrCat("protocol version ", h.protocol_version(), ", expected 1"));
  }
  if (h.run_id() != opt_.run_id) {
    return Refuse(s, Reject::kRunId, grpc::StatusCode::FAILED_PRECONDITION,
                  absl::StrCat("hello for run '", h.run_id(), "', another run"));
  }
  if (auto m = CompareComputation(h, {opt_.layout_hash, &opt_.layout, opt_.model_sha256, opt_.numerics, wire_codec_})) {
    return Refuse(s, m->why, grpc::StatusCode::FAILED_PRECONDITION, m->message);
  }
  if (shutting_down_) return Refuse(s, Reject::kNotReady, grpc::StatusCode::UNAVAILABLE, "agent is shutting down");
  const int k = EdgeOf(h.sender_rank());
  if (k < 0 || (s->is_client() ? k != s->expected_edge || edges_[k].pending().get() != s : edges_[k].dialer())) {
    return Refuse(s, Reject::kNotNeighbour, grpc::StatusCode::PERMISSION_DENIED,
                  absl::StrCat("agent ", h.sender_rank(), " is not a neighbour that dials agent ", opt_.rank));
  }
  PeerEdge& e = edges_[k];
  if (!e.peer().identity.empty()) {
    const std::string id = s->PeerIdentity();
    if (id != e.peer().identity) {
      return Refuse(s, Reject::kIdentity, grpc::StatusCode::PERMISSION_DENIED,
                    absl::StrCat("a stream claiming agent ", h.sender_rank(), " presented TLS identity '", id,
                                 "', not the identity bound to that rank"));
    }
  }
  if (h.generation() != generation_) {
    // Both sides retry until the coordinator's latest decision has reached them both.
    return Refuse(s, Reject::kGeneration, grpc::StatusCode::UNAVAILABLE,
                  absl::StrCat("agent ", h.sender_rank(), " is in recovery generation ", h.generation(),
                               ", this agent in ", generation_));
  }
  // The acceptor's hello goes out first: queued under the lock before the resends Attach queues
  // and before anything the agent thread sends after this attach.
  if (!s->is_client()) s->Enqueue(std::make_shared<PeerFrame>(MakeHello()));
  StreamActions a;
  a.close_other = e.Attach(s->self(), opt_.tuning.initial_backoff_ms);
  if (a.close_other) {
    spdlog::warn("agent {}: a new stream for agent {} from {} replaces its live stream from {} (a reconnect after a "
                 "break, or another holder of its certificate)", opt_.rank, e.peer().rank, s->peer(),
                 a.close_other->peer());
  }
  s->edge = k;
  a.kick = true;
  spdlog::info("agent {}: {} agent {} ({}){}", opt_.rank, s->is_client() ? "connected to" : "accepted", e.peer().rank,
               s->peer(), e.unacknowledged() == 0 ? "" : absl::StrCat(", resending ", e.unacknowledged(), " frame(s)"));
  return a;
}

StreamActions ExchangeCore::HandleRound(PeerStream* s, PeerEdge& e, gut::v1::Round* r) {
  const int64_t round = r->round();
  const int slot = r->slot();
  auto it = taken_.find(slot);
  const int64_t last = it == taken_.end() ? base_round_ : it->second;
  const MessageAssembler::Verdict v = e.in().Add(r, last);
  if (v.outcome == MessageAssembler::Outcome::kRefused) {
    return Refuse(s, v.reason, grpc::StatusCode::INVALID_ARGUMENT,
                  absl::StrCat("from agent ", e.peer().rank, ": ", v.detail));
  }
  if (v.outcome != MessageAssembler::Outcome::kPartial && v.outcome != MessageAssembler::Outcome::kComplete) {
    service_->CountReject(v.reason);
  }
  StreamActions a;
  if (v.ack()) {
    e.OweAck(round, slot, absl::Now());
    // A resend (stale or duplicate) is acknowledged at once: the sender is catching up after a
    // reconnect. Otherwise every ack_every-th message, or the dial loop after ack_delay_ms.
    if (v.outcome != MessageAssembler::Outcome::kComplete || e.owed_acks() >= opt_.tuning.ack_every) a.send = e.TakeOwedAcks();
  }
  return a;
}

void ExchangeCore::ClientStreamStarted(int edge, std::shared_ptr<PeerStream> s) {
  absl::MutexLock l(&mu_);
  ++live_;
  edges_[edge].SetPending(std::move(s));
}

void ExchangeCore::ServerStreamJoined() {
  absl::MutexLock l(&mu_);
  ++live_;
}

void ExchangeCore::StreamDone(PeerStream* s, const grpc::Status& st) {
  absl::MutexLock l(&mu_);
  const int k = s->edge >= 0 ? s->edge : s->expected_edge;
  if (k >= 0 && k < static_cast<int>(edges_.size())) {
    PeerEdge& e = edges_[k];
    const bool attached = e.stream().get() == s;
    const bool was_pending = e.pending().get() == s;
    if (attached || was_pending) {
      e.StreamEnded(s, opt_.tuning.max_backoff_ms);
      if (attached && !shutting_down_) {
        if (e.stats().left) {
          spdlog::info("agent {}: agent {} closed its stream after its goodbye", opt_.rank, e.peer().rank);
        } else if (st.ok()) {
          spdlog::info("agent {}: agent {} closed its stream", opt_.rank, e.peer().rank);
        } else {
          spdlog::warn("agent {}: agent {} {}", opt_.rank, e.peer().rank,
                       StreamEndCause(static_cast<int>(st.error_code()), st.error_message()));
        }
      } else if (was_pending && !shutting_down_) {
        // A model mismatch does not go away by redialling: say so where the operator looks.
        if (absl::StartsWith(st.error_message(), "refused: layout")) {
          spdlog::error("agent {}: agent {} refused this agent's stream: it runs another model (its log names the "
                        "first tensor that differs)", opt_.rank, e.peer().rank);
        } else {
          spdlog::debug("agent {}: dial to agent {} failed: {}", opt_.rank, e.peer().rank, st.error_message());
        }
      }
    }
  }
  --live_;
}

void ExchangeCore::DialLoop() {
  for (;;) {
    {
      // Sleep without dial_mu_, so that Reset is never kept waiting by this loop.
      absl::MutexLock l(&mu_);
      absl::Time wake = absl::Now() + absl::Milliseconds(50);
      for (const auto& e : edges_) {
        if (e.dialer() && !e.has_stream() && e.pending() == nullptr) wake = std::min(wake, e.next_dial());
        if (e.has_stream()) wake = std::min(wake, e.owed_since() + absl::Milliseconds(opt_.tuning.ack_delay_ms));
      }
      auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return shutting_down_; };
      mu_.AwaitWithDeadline(absl::Condition(&stop), std::max(wake, absl::Now() + absl::Milliseconds(1)));
      if (shutting_down_) return;
    }
    SendOwedAcks(absl::Milliseconds(opt_.tuning.ack_delay_ms));
    absl::MutexLock dial(&dial_mu_);
    std::vector<std::pair<int, std::shared_ptr<gut::v1::Peer::Stub>>> due;
    PeerFrame hello;
    {
      absl::MutexLock l(&mu_);
      if (shutting_down_) return;
      const absl::Time now = absl::Now();
      for (size_t k = 0; k < edges_.size(); ++k)
        if (edges_[k].DialDue(now)) due.emplace_back(static_cast<int>(k), edges_[k].stub());
      hello = MakeHello();
    }
    // Streams start outside mu_ (StartCall may run reactions inline) but under dial_mu_, so the
    // edges cannot be rebuilt in between.
    for (auto& [k, stub] : due) StartClientStream(shared_from_this(), k, stub, hello);
  }
}

void ExchangeCore::SendOwedAcks(absl::Duration older_than) {
  std::vector<std::pair<std::shared_ptr<PeerStream>, std::vector<FramePtr>>> out;
  {
    absl::MutexLock l(&mu_);
    const absl::Time cutoff = absl::Now() - older_than;
    for (auto& e : edges_)
      if (e.has_stream() && e.owed_acks() > 0 && e.owed_since() <= cutoff) out.emplace_back(e.stream(), e.TakeOwedAcks());
  }
  for (auto& [s, frames] : out)
    for (auto& f : frames) s->Send(std::move(f));
}

absl::Status ExchangeCore::Send(int64_t round, int slot, int target, absl::Span<float> message) {
  if (slot < 0 || slot >= kMaxSlots) {
    return absl::InvalidArgumentError(absl::StrCat("agent ", opt_.rank, ": slot ", slot, " out of range"));
  }
  std::vector<int> targets;
  if (target < 0) {
    for (size_t k = 0; k < infos_.size(); ++k) targets.push_back(static_cast<int>(k));
  } else {
    targets.push_back(target);
  }
  {
    absl::MutexLock l(&mu_);
    for (int k : targets) {
      if (sent_.count({round, slot, k})) {
        return absl::AlreadyExistsError(absl::StrCat("agent ", opt_.rank, " already sent round ", round, " slot ", slot,
                                                     " to agent ", edges_[k].peer().rank));
      }
    }
  }
  codec_.Encode(message, &wire_, core::MessageTag{round, slot, target});
  const int64_t payload = static_cast<int64_t>(wire_.size());
  RoundHeader h;
  h.round = round;
  h.slot = slot;
  h.sequence = ++sequence_;
  h.codec = wire_codec_;
  h.framing = framing_;
  h.elements = message.size();
  const auto frames = CutIntoFrames(h, &wire_, static_cast<size_t>(opt_.tuning.chunk_bytes));
  std::vector<std::shared_ptr<PeerStream>> streams;
  {
    absl::MutexLock l(&mu_);
    for (int k : targets) {
      sent_.insert({round, slot, k});
      if (auto s = edges_[k].Queue(frames, payload)) streams.push_back(std::move(s));
    }
    // Forget sends far in the past (the receiver refuses those as stale anyway).
    max_sent_round_ = std::max(max_sent_round_, round);
    while (!sent_.empty() && std::get<0>(*sent_.begin()) < max_sent_round_ - 16) sent_.erase(sent_.begin());
  }
  for (auto& s : streams)
    for (const auto& f : frames) s->Send(f);
  payload_sent += payload * static_cast<int64_t>(targets.size());
  raw_sent += static_cast<int64_t>(message.size() * sizeof(float) * targets.size());
  return absl::OkStatus();
}

std::string ExchangeCore::MissingDescription(int64_t round, int slot) const {
  std::vector<std::string> missing;
  for (const auto& e : edges_) {
    if (e.in().Ready(round, slot)) continue;
    missing.push_back(absl::StrCat(e.peer().rank, e.stats().left ? " (said goodbye)" : e.has_stream() ? "" : " (not connected)"));
  }
  return absl::StrJoin(missing, ", ");
}

absl::Status ExchangeCore::Collect(int64_t round, int slot, size_t n) {
  std::vector<CompleteMessage> got(edges_.size());
  const absl::Time t0 = absl::Now();
  {
    absl::MutexLock l(&mu_);
    auto last = taken_.find(slot);
    if (last != taken_.end() && round <= last->second) {
      return absl::FailedPreconditionError(absl::StrCat("agent ", opt_.rank, ": round ", round, " slot ", slot,
                                                        " was already received"));
    }
    auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (shutting_down_ || !interrupted_.ok()) return true;
      for (auto& e : edges_)
        if (!e.in().Ready(round, slot)) return false;
      return true;
    };
    // Time this process did not run (SIGSTOP, a throttled container, a suspended laptop: the whole
    // cluster freezes together) is not held against the neighbours: a slice that took much longer
    // than asked was such a stall, and the deadline moves by it. Nor is time while the coordinator
    // judges a missing rank (CoordinatorJudging): the deadline starts afresh when it has decided.
    absl::Duration frozen;
    for (;;) {
      if (ready()) break;
      const bool judged = !judged_.empty() && absl::Now() < judged_until_;
      // A neighbour that is connected gets the deadline; one that is down or said goodbye gets
      // the grace of a restart (the coordinator decides what happens long before it ends).
      bool lost = false;
      for (auto& e : edges_)
        if (!e.in().Ready(round, slot) && !e.up()) lost = true;
      const absl::Duration limit = lost ? std::max(opt_.deadline, opt_.peer_loss_grace) : opt_.deadline;
      const absl::Duration waited = absl::Now() - t0 - frozen;
      if (waited >= limit && !judged) {
        wait_ns += absl::ToInt64Nanoseconds(waited);
        return absl::DeadlineExceededError(absl::StrCat("agent ", opt_.rank, ": round ", round, " slot ", slot,
                                                        ": no message from agent(s) ", MissingDescription(round, slot),
                                                        " within ", absl::FormatDuration(limit)));
      }
      const absl::Duration slice = judged ? kWaitSlice : std::min(kWaitSlice, limit - waited);
      const absl::Time before = absl::Now();
      if (!mu_.AwaitWithTimeout(absl::Condition(&ready), slice)) {
        const absl::Duration over = absl::Now() - before - slice;
        if (judged) frozen += absl::Now() - before;
        else if (over > absl::Seconds(1)) frozen += over;
      }
    }
    if (!interrupted_.ok()) return interrupted_;
    if (shutting_down_) return absl::CancelledError(absl::StrCat("agent ", opt_.rank, ": exchange shut down"));
    for (size_t k = 0; k < edges_.size(); ++k) {
      got[k] = edges_[k].in().Take(round, slot);
      edges_[k].CountPayloadReceived(static_cast<int64_t>(got[k].bytes.size()));
      edges_[k].AddWait(std::max(0.0, absl::ToDoubleSeconds(got[k].arrived - t0)));
    }
    taken_[slot] = round;
  }
  wait_ns += absl::ToInt64Nanoseconds(absl::Now() - t0);
  // Plain fp32 without zstd: the payload already is the message, so it is viewed in place
  // instead of being copied out (one copy of every message less on the receive path).
  const bool in_place = opt_.codec.kind == core::CodecKind::kFp32 && !opt_.codec.zstd;
  for (size_t k = 0; k < got.size(); ++k) {
    payload_received += static_cast<int64_t>(got[k].bytes.size());
    if (n != 0 && got[k].elements != n) {
      return absl::InvalidArgumentError(absl::StrCat("agent ", opt_.rank, ": message from agent ", infos_[k].rank,
                                                     " has ", got[k].elements, " elements, expected ", n));
    }
    const auto error = [&](absl::string_view what) {
      return absl::DataLossError(absl::StrCat("agent ", opt_.rank, ": round ", round, " slot ", slot, " from agent ",
                                              infos_[k].rank, ": ", what));
    };
    if (in_place) {
      if (got[k].bytes.size() != 4 * got[k].elements) {
        return error(absl::StrCat("fp32 payload has ", got[k].bytes.size(), " bytes, expected ", 4 * got[k].elements));
      }
      kept_[k] = std::move(got[k].bytes);
      views_[k] = absl::MakeConstSpan(reinterpret_cast<const float*>(kept_[k].data()), got[k].elements);
    } else {
      auto& d = decoded_[k];
      d.resize(got[k].elements);
      const uint64_t sender_seed = core::DeriveSeed(opt_.codec_seed, infos_[k].rank, core::SeedPurpose::kCodec);
      if (auto s = codec_.Decode(got[k].bytes, absl::MakeSpan(d), sender_seed, core::MessageTag{round, slot, -1}); !s.ok()) {
        return error(s.message());
      }
      views_[k] = absl::MakeConstSpan(d);
    }
  }
  return absl::OkStatus();
}

absl::Status ExchangeCore::WaitConnected(absl::Duration timeout) {
  absl::MutexLock l(&mu_);
  auto all = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!interrupted_.ok()) return true;
    for (const auto& e : edges_)
      if (!e.has_stream()) return false;
    return true;
  };
  const bool in = mu_.AwaitWithTimeout(absl::Condition(&all), timeout);
  if (!interrupted_.ok()) return interrupted_;
  if (in) return absl::OkStatus();
  std::vector<int> missing;
  for (const auto& e : edges_)
    if (!e.has_stream()) missing.push_back(e.peer().rank);
  return absl::DeadlineExceededError(absl::StrCat("agent ", opt_.rank, ": no connection to agent(s) ",
                                                  absl::StrJoin(missing, ", "), " within ",
                                                  absl::FormatDuration(timeout)));
}

absl::Status ExchangeCore::Flush(absl::Duration timeout) {
  SendOwedAcks(absl::ZeroDuration());  // the neighbour may be flushing too
  absl::MutexLock l(&mu_);
  auto acked = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!interrupted_.ok()) return true;
    for (const auto& e : edges_)
      if (e.unacknowledged() != 0 && !e.stats().left) return false;
    return true;
  };
  if (mu_.AwaitWithTimeout(absl::Condition(&acked), timeout) && interrupted_.ok()) return absl::OkStatus();
  if (!interrupted_.ok()) return interrupted_;
  std::vector<int> missing;
  for (const auto& e : edges_)
    if (e.unacknowledged() != 0) missing.push_back(e.peer().rank);
  return absl::DeadlineExceededError(absl::StrCat("agent ", opt_.rank, ": agent(s) ", absl::StrJoin(missing, ", "),
                                                  " did not acknowledge every message within ",
                                                  absl::FormatDuration(timeout)));
}

void ExchangeCore::SayGoodbye(const std::string& reason, int64_t rounds) {
  SendOwedAcks(absl::ZeroDuration());
  auto f = std::make_shared<PeerFrame>();
  f->mutable_goodbye()->set_reason(reason);
  f->mutable_goodbye()->set_round(rounds);
  std::vector<std::shared_ptr<PeerStream>> streams;
  {
    absl::MutexLock l(&mu_);
    for (const auto& e : edges_)
      if (e.has_stream()) streams.push_back(e.stream());
  }
  for (auto& s : streams) s->Send(f);
}

void ExchangeCore::Interrupt(absl::Status why) {
  absl::MutexLock l(&mu_);
  if (interrupted_.ok()) interrupted_ = std::move(why);
}

void ExchangeCore::CoordinatorJudging(std::vector<int> missing, absl::Time fresh_until) {
  absl::MutexLock l(&mu_);
  judged_ = std::move(missing);
  judged_until_ = fresh_until;
}

void ExchangeCore::Reset(uint64_t generation, std::vector<PeerAddress> neighbours, double self_weight,
                         int64_t next_round) {
  std::vector<std::shared_ptr<PeerStream>> streams;
  {
    absl::MutexLock dial(&dial_mu_);
    absl::MutexLock l(&mu_);
    for (auto& e : edges_) {
      if (e.has_stream()) streams.push_back(e.stream());
      if (e.pending()) streams.push_back(e.pending());
    }
    generation_ = generation;
    opt_.neighbours = std::move(neighbours);
    opt_.self_weight = self_weight;
    BuildEdges(opt_.neighbours);
    taken_.clear();
    base_round_ = next_round - 1;
    sent_.clear();
    max_sent_round_ = -1;
    interrupted_ = absl::OkStatus();
  }
  // The old streams are not attached to any edge any more: whatever they still deliver is ignored.
  for (auto& s : streams) s->Close(grpc::Status(grpc::StatusCode::CANCELLED, "recovery: new generation"));
}

void ExchangeCore::Shutdown(absl::Duration timeout) {
  service_->Detach(this);
  std::vector<std::shared_ptr<PeerStream>> streams;
  {
    absl::MutexLock l(&mu_);
    if (stopped_) return;
    stopped_ = true;
    shutting_down_ = true;  // from here no hello attaches a stream
  }
  if (dialer_.joinable()) dialer_.join();  // no dial is being started any more either
  {
    absl::MutexLock l(&mu_);
    for (auto& e : edges_) {
      if (e.has_stream()) streams.push_back(e.stream());
      if (e.pending()) streams.push_back(e.pending());
    }
  }
  // Graceful first (queued frames drain), then cancel whatever is still open.
  for (auto& s : streams) s->Close(grpc::Status::OK);
  auto none = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return live_ == 0; };
  // A graceful close normally takes milliseconds; a half-closed client stream whose server never
  // answers has been seen to wait forever (gRPC 1.51, loaded machine), so cancel after a second.
  const absl::Duration graceful = std::min(timeout / 2, absl::Seconds(1));
  absl::MutexLock l(&mu_);
  if (mu_.AwaitWithTimeout(absl::Condition(&none), graceful)) return;
  mu_.Unlock();
  for (auto& s : streams) s->Close(grpc::Status(grpc::StatusCode::CANCELLED, "agent shutting down"));
  mu_.Lock();
  if (!mu_.AwaitWithTimeout(absl::Condition(&none), timeout)) {
    // They still hold this core, so nothing they touch goes away; log for the post-mortem.
    spdlog::error("agent {}: {} peer stream(s) did not end after cancellation", opt_.rank, live_);
  }
}

ExchangeStats ExchangeCore::Stats() const {
  absl::MutexLock l(&mu_);
  ExchangeStats s;
  for (const auto& e : edges_) {
    s.peers.push_back(e.stats());
    s.unacknowledged += static_cast<int64_t>(e.unacknowledged());
  }
  return s;
}

}  // namespace gut::services
