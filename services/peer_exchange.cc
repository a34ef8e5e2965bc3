#include "services/peer_exchange.h"

#include <zlib.h>

#include <algorithm>
#include <deque>
#include <set>
#include <thread>
#include <tuple>

#include <grpcpp/channel.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>
#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/common/random.h"

namespace gut::services {

using gut::v1::PeerFrame;
using FramePtr = std::shared_ptr<const PeerFrame>;

gut::v1::Codec WireCodec(core::CodecKind k) {
  switch (k) {
    case core::CodecKind::kFp32: return gut::v1::CODEC_FP32;
    case core::CodecKind::kBf16: return gut::v1::CODEC_BF16;
    case core::CodecKind::kInt8: return gut::v1::CODEC_INT8;
    case core::CodecKind::kTopK: return gut::v1::CODEC_TOPK;
  }
  return gut::v1::CODEC_UNSPECIFIED;
}

const char* RejectName(Reject r) {
  switch (r) {
    case Reject::kRunId: return "run_id";
    case Reject::kVersion: return "version";
    case Reject::kLayout: return "layout";
    case Reject::kCodec: return "codec";
    case Reject::kNotNeighbour: return "not_neighbour";
    case Reject::kProtocol: return "protocol";
    case Reject::kChecksum: return "checksum";
    case Reject::kSize: return "size";
    case Reject::kStale: return "stale";
    case Reject::kDuplicate: return "duplicate";
    case Reject::kOverflow: return "future_overflow";
    case Reject::kNotReady: return "not_ready";
    case Reject::kCount: break;
  }
  return "unknown";
}

namespace {

uint32_t Crc32(const std::string& s) {
  return static_cast<uint32_t>(
      crc32(0L, reinterpret_cast<const Bytef*>(s.data()), static_cast<uInt>(s.size())));
}

// Frames a peer may have buffered ahead of us (per edge); a correct peer is at most a couple of
// rounds ahead in a synchronous protocol.
constexpr size_t kMaxBufferedMessages = 64;
constexpr uint64_t kMaxBufferedMessagesBytes = 16;  // x the largest possible message
constexpr int64_t kMaxRoundsAhead = 64;
constexpr int kMaxSlots = 8;

}  // namespace

// ---------------------------------------------------------------------------------------------
// PeerStream: one live Exchange stream (client or server side). Owns its write queue and enforces
// the callback-API rules: one write in flight, Finish/RemoveHold exactly once and only when no
// write is pending and no Start* call is being issued, never a Start* after that.
class PeerStream {
 public:
  virtual ~PeerStream() = default;

  // Queues a frame (any thread, never blocks). Dropped once the stream is closing: unacknowledged
  // round frames stay with the edge and are resent on the next stream.
  void Send(FramePtr f) {
    Enqueue(std::move(f));
    Kick();
  }
  // Queues without touching gRPC (safe under the exchange's mutex, which fixes the order of
  // frames: a server's hello goes out before anything the agent thread sends after the attach).
  void Enqueue(FramePtr f) {
    absl::MutexLock l(&smu_);
    if (!closing_) queue_.push_back(std::move(f));
  }
  // Starts writing the queue if no write is in flight.
  void Kick() {
    FramePtr f;
    {
      absl::MutexLock l(&smu_);
      if (closing_ || writing_ || queue_.empty()) return;
      writing_ = true;
      current_ = std::move(queue_.front());
      queue_.pop_front();
      f = current_;
      ++in_call_;
    }
    DoWrite(f.get());
    EndCall();
  }

  // Ends the stream. kDrain sends what is queued first, then finishes with `why`; kDiscard drops
  // the queue and finishes with `why` (a server's refusal reaches the client this way); kCancel
  // also cancels the call (a client's only way to refuse; a stuck peer), even one already draining.
  enum class Mode { kDrain, kDiscard, kCancel };
  void Close(const grpc::Status& why, Mode mode) {
    const bool cancel = mode == Mode::kCancel;
    bool cancel_finished_client = false;
    {
      absl::MutexLock l(&smu_);
      // A client that already half-closed waits for the server's status; cancelling is its only
      // way out if that never comes (its context lives as long as this object). A finished
      // server stream needs nothing: its OnDone follows Finish.
      if (finished_) {
        if (!(cancel && client_)) return;
        cancel_finished_client = true;
      } else if (!closing_) {
        closing_ = true;
        close_status_ = why;
      } else if (!cancel) {
        return;
      }
      if (mode != Mode::kDrain) queue_.clear();
      if (cancel && !finished_) ++in_call_;  // no Finish while the cancel is being issued
    }
    if (cancel_finished_client) return DoCancel();
    if (cancel) {
      DoCancel();
      EndCall();
    } else {
      EndCall(/*entered=*/false);
    }
  }
  void Close(const grpc::Status& why) { Close(why, why.ok() ? Mode::kDrain : Mode::kCancel); }

  bool is_client() const { return client_; }
  const std::string& peer() const { return peer_; }
  std::string DebugState() {
    absl::MutexLock l(&smu_);
    return absl::StrCat(client_ ? "client" : "server", " to ", peer_, ": closing=", closing_, " writing=", writing_,
                        " in_call=", in_call_, " finished=", finished_, " read_failed=", read_failed_,
                        " queued=", queue_.size());
  }

  // Guarded by ExchangeCore::mu_.
  int edge = -1;            // attached edge, once the hellos are exchanged
  int expected_edge = -1;   // client streams: the edge this stream dialed
  bool hello_seen = false;

 protected:
  explicit PeerStream(bool client, PeerService* service) : client_(client), service_(service) {}

  virtual void DoWrite(const PeerFrame* f) = 0;
  virtual void DoRead() = 0;
  virtual void DoFinish(const grpc::Status& s, bool graceful) = 0;
  virtual void DoCancel() = 0;

  void ReadNext() {
    {
      absl::MutexLock l(&smu_);
      if (closing_ || read_failed_) return;
      ++in_call_;
    }
    DoRead();
    EndCall();
  }

  void WriteDone(bool ok) {
    FramePtr next;
    {
      absl::MutexLock l(&smu_);
      current_.reset();
      if (!ok) {
        closing_ = true;
        queue_.clear();
      }
      if (!queue_.empty()) {
        current_ = std::move(queue_.front());
        queue_.pop_front();
        next = current_;
        ++in_call_;
      } else {
        writing_ = false;
      }
    }
    if (next) {
      DoWrite(next.get());
      EndCall();
    } else {
      EndCall(/*entered=*/false);
    }
  }

  void ReadFailed() {
    {
      absl::MutexLock l(&smu_);
      read_failed_ = true;
    }
    Close(grpc::Status::OK);
  }

  bool read_failed() {
    absl::MutexLock l(&smu_);
    return read_failed_;
  }

  // Leaves a Start* call (or just re-checks) and finishes the stream if it is time.
  void EndCall(bool entered = true) {
    grpc::Status status;
    bool graceful = false;
    {
      absl::MutexLock l(&smu_);
      if (entered) --in_call_;
      if (!closing_ || writing_ || in_call_ > 0 || finished_) return;
      finished_ = true;
      status = close_status_;
      graceful = close_status_.ok() && !read_failed_;
    }
    DoFinish(status, graceful);
  }

  // The last reaction: detach from the exchange, then let go of ourselves.
  void Done(const grpc::Status& s);
  // Server streams: the exchange attached to the service (counted live), or null.
  ExchangeCore* RegisterWithService();

  const bool client_;
  PeerService* const service_;
  std::string peer_;
  PeerFrame in_;
  ExchangeCore* core_ = nullptr;  // set once registered with an exchange
  std::shared_ptr<PeerStream> self_;

 private:
  friend class ExchangeCore;
  absl::Mutex smu_;
  std::deque<FramePtr> queue_ ABSL_GUARDED_BY(smu_);
  FramePtr current_;  // the frame being written (alive until OnWriteDone)
  bool writing_ ABSL_GUARDED_BY(smu_) = false;
  bool closing_ ABSL_GUARDED_BY(smu_) = false;
  bool finished_ ABSL_GUARDED_BY(smu_) = false;
  bool read_failed_ ABSL_GUARDED_BY(smu_) = false;
  int in_call_ ABSL_GUARDED_BY(smu_) = 0;
  grpc::Status close_status_ ABSL_GUARDED_BY(smu_);
};

// ---------------------------------------------------------------------------------------------
class ExchangeCore {
 public:
  struct Assembly {
    std::string bytes;
    uint64_t elements = 0;
    std::vector<bool> have;
    uint32_t got = 0;
  };
  using Key = std::pair<int64_t, int>;  // (round, slot)

  struct Edge {
    PeerAddress peer;
    bool dialer = false;  // we have the lower rank
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<gut::v1::Peer::Stub> stub;
    std::shared_ptr<PeerStream> stream;  // attached
    std::shared_ptr<PeerStream> pending;  // a client stream dialing, not yet attached
    absl::Time next_dial = absl::InfinitePast();
    int backoff_ms = 0;
    std::deque<FramePtr> unacked;
    std::map<Key, Assembly> partial;
    std::map<Key, Assembly> ready;  // complete messages
    uint64_t buffered_bytes = 0;     // of partial and ready
    std::vector<float> decoded;
    PeerStats stats;
  };

  ExchangeCore(GrpcExchangeOptions o, PeerService* service)
      : opt(std::move(o)),
        service(service),
        codec(opt.codec, core::DeriveSeed(opt.codec_seed, opt.rank, core::SeedPurpose::kCodec)),
        wire_codec(WireCodec(opt.codec.kind)),
        framing(opt.codec.zstd ? gut::v1::FRAMING_ZSTD : gut::v1::FRAMING_NONE),
        max_message_bytes(static_cast<uint64_t>(opt.num_params) * 8 + (1 << 16)) {
    for (const auto& p : opt.neighbours) {
      infos.push_back({p.rank, p.weight});
      Edge e;
      e.peer = p;
      e.dialer = opt.rank < p.rank;
      e.backoff_ms = opt.tuning.initial_backoff_ms;
      e.stats.rank = p.rank;
      if (e.dialer) {
        grpc::ChannelArguments args;
        opt.tuning.ApplyToChannel(&args);
        e.channel = grpc::CreateCustomChannel(p.address, grpc::InsecureChannelCredentials(), args);
        e.stub = gut::v1::Peer::NewStub(e.channel);
      }
      edges.push_back(std::move(e));
    }
  }

  PeerFrame MakeHello() const {
    PeerFrame f;
    auto* h = f.mutable_hello();
    h->set_run_id(opt.run_id);
    h->set_sender_rank(opt.rank);
    h->set_protocol_version(gut::v1::PROTOCOL_VERSION_1);
    h->set_layout_hash(opt.layout_hash);
    h->set_codec(wire_codec);
    h->set_incarnation(opt.incarnation);
    return f;
  }

  int EdgeOf(int rank) const {
    for (size_t k = 0; k < edges.size(); ++k)
      if (edges[k].peer.rank == rank) return static_cast<int>(k);
    return -1;
  }

  // What a reaction must do after handling a frame (outside the lock).
  struct Actions {
    std::vector<FramePtr> send;
    bool kick = false;  // frames were queued on this stream
    std::shared_ptr<PeerStream> close_other;
    bool refuse = false;
    grpc::Status refusal;
  };

  Actions Refuse(PeerStream* s, Reject why, grpc::StatusCode code, const std::string& msg) {
    service->CountReject(why);
    spdlog::warn("agent {}: refused stream from {} ({}): {}", opt.rank, s->peer(), RejectName(why), msg);
    Actions a;
    a.refuse = true;
    a.refusal = grpc::Status(code, absl::StrCat("agent ", opt.rank, ": ", msg));
    return a;
  }

  Actions HandleFrame(PeerStream* s, PeerFrame& f) ABSL_LOCKS_EXCLUDED(mu) {
    absl::MutexLock l(&mu);
    if (f.has_hello()) return HandleHello(s, f.hello());
    if (s->edge < 0) {
      return Refuse(s, Reject::kProtocol, grpc::StatusCode::FAILED_PRECONDITION,
                    "the first frame on a stream must be a hello");
    }
    Edge& e = edges[s->edge];
    e.stats.frame_bytes_received += static_cast<int64_t>(f.ByteSizeLong());
    if (f.has_round()) return HandleRound(s, e, *f.mutable_round());
    if (f.has_ack()) {
      const Key key{f.ack().round(), f.ack().slot()};
      e.unacked.erase(std::remove_if(e.unacked.begin(), e.unacked.end(),
                                     [&](const FramePtr& p) {
                                       return Key{p->round().round(), p->round().slot()} == key;
                                     }),
                      e.unacked.end());
      return {};
    }
    return Refuse(s, Reject::kProtocol, grpc::StatusCode::UNIMPLEMENTED,
                  "frame kind not supported by protocol version 1 (resync)");
  }

  Actions HandleHello(PeerStream* s, const gut::v1::Hello& h) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (s->hello_seen) {
      return Refuse(s, Reject::kProtocol, grpc::StatusCode::FAILED_PRECONDITION, "second hello on one stream");
    }
    s->hello_seen = true;
    if (h.protocol_version() != gut::v1::PROTOCOL_VERSION_1) {
      return Refuse(s, Reject::kVersion, grpc::StatusCode::FAILED_PRECONDITION,
                    absl::StrCat("protocol version ", h.protocol_version(), ", expected 1"));
    }
    if (h.run_id() != opt.run_id) {
      return Refuse(s, Reject::kRunId, grpc::StatusCode::FAILED_PRECONDITION,
                    absl::StrCat("run id '", h.run_id(), "' is not this run ('", opt.run_id, "')"));
    }
    if (h.layout_hash() != opt.layout_hash) {
      return Refuse(s, Reject::kLayout, grpc::StatusCode::FAILED_PRECONDITION,
                    absl::StrCat("parameter layout hash ", absl::Hex(h.layout_hash()),
                                 " differs from ours (", absl::Hex(opt.layout_hash),
                                 "): a different model"));
    }
    if (h.codec() != wire_codec) {
      return Refuse(s, Reject::kCodec, grpc::StatusCode::FAILED_PRECONDITION,
                    absl::StrCat("codec ", gut::v1::Codec_Name(h.codec()), " differs from ours (",
                                 gut::v1::Codec_Name(wire_codec), ")"));
    }
    if (shutting_down) {
      return Refuse(s, Reject::kNotReady, grpc::StatusCode::UNAVAILABLE, "agent is shutting down");
    }
    const int k = EdgeOf(h.sender_rank());
    if (k < 0 || (s->is_client() ? k != s->expected_edge : edges[k].dialer)) {
      return Refuse(s, Reject::kNotNeighbour, grpc::StatusCode::PERMISSION_DENIED,
                    absl::StrCat("agent ", h.sender_rank(), " is not a neighbour that dials agent ",
                                 opt.rank));
    }
    Edge& e = edges[k];
    Actions a;
    if (e.stream && e.stream.get() != s) a.close_other = e.stream;
    e.stream = s->self_;
    if (e.pending.get() == s) e.pending.reset();
    e.backoff_ms = opt.tuning.initial_backoff_ms;
    s->edge = k;
    e.stats.connected = true;
    ++e.stats.connects;
    // Queued here, under the lock, so that nothing the agent thread sends after this attach can
    // overtake the hello; the reaction starts the writes after unlocking (Actions::kick).
    if (!s->is_client()) s->Enqueue(std::make_shared<PeerFrame>(MakeHello()));
    for (const auto& f : e.unacked) {
      s->Enqueue(f);
      e.stats.frame_bytes_sent += static_cast<int64_t>(f->ByteSizeLong());
    }
    a.kick = true;
    spdlog::info("agent {}: {} agent {} ({}){}", opt.rank, s->is_client() ? "connected to" : "accepted",
                 e.peer.rank, s->peer(),
                 e.unacked.empty() ? "" : absl::StrCat(", resending ", e.unacked.size(), " frame(s)"));
    return a;
  }

  Actions HandleRound(PeerStream* s, Edge& e, gut::v1::Round& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    auto refuse = [&](Reject why, const std::string& msg) {
      return Refuse(s, why, grpc::StatusCode::INVALID_ARGUMENT,
                    absl::StrCat("round ", r.round(), " slot ", r.slot(), " from agent ", e.peer.rank,
                                 ": ", msg));
    };
    if (r.codec() != wire_codec || r.framing() != framing) return refuse(Reject::kCodec, "codec or framing differs");
    if (r.slot() < 0 || r.slot() >= kMaxSlots) return refuse(Reject::kProtocol, "slot out of range");
    if (r.total_bytes() > max_message_bytes) {
      return refuse(Reject::kSize, absl::StrCat("message of ", r.total_bytes(), " bytes exceeds the bound of ",
                                                max_message_bytes));
    }
    const uint64_t chunk = static_cast<uint64_t>(opt.tuning.chunk_bytes);
    if (r.chunk_count() == 0 || r.chunk_index() >= r.chunk_count() ||
        r.chunk_count() > r.total_bytes() / chunk + 1 || r.byte_offset() > r.total_bytes() ||
        r.payload().size() > r.total_bytes() - r.byte_offset()) {
      return refuse(Reject::kSize, absl::StrCat("chunk ", r.chunk_index(), "/", r.chunk_count(), " at byte ",
                                                r.byte_offset(), " with ", r.payload().size(),
                                                " bytes does not fit a message of ", r.total_bytes()));
    }
    if (Crc32(r.payload()) != r.checksum()) return refuse(Reject::kChecksum, "payload checksum mismatch");
    Actions a;
    const Key key{r.round(), r.slot()};
    auto ack = [&] {
      auto f = std::make_shared<PeerFrame>();
      f->mutable_ack()->set_round(r.round());
      f->mutable_ack()->set_slot(r.slot());
      f->mutable_ack()->set_sequence(r.sequence());
      e.stats.frame_bytes_sent += static_cast<int64_t>(f->ByteSizeLong());
      a.send.push_back(std::move(f));
    };
    const int64_t last = consumed.count(r.slot()) ? consumed[r.slot()] : -1;
    if (r.round() <= last) {
      service->CountReject(Reject::kStale);
      ack();  // a resend after a reconnect: the sender may drop it
      return a;
    }
    if (e.ready.count(key)) {
      service->CountReject(Reject::kDuplicate);
      ack();
      return a;
    }
    if (r.elements() > static_cast<uint64_t>(opt.num_params)) {
      return refuse(Reject::kSize, absl::StrCat(r.elements(), " elements, more than the model's ", opt.num_params));
    }
    if (r.chunk_count() == 1 && r.payload().size() != r.total_bytes()) {
      return refuse(Reject::kSize, "single chunk is not the whole message");
    }
    auto it = e.partial.find(key);
    if (it == e.partial.end()) {
      // A correct peer is at most a few rounds ahead; memory for messages is bounded in count
      // and in bytes.
      if (r.round() > last + kMaxRoundsAhead) {
        return refuse(Reject::kOverflow, absl::StrCat("more than ", kMaxRoundsAhead, " rounds ahead"));
      }
      if (e.partial.size() + e.ready.size() >= kMaxBufferedMessages ||
          e.buffered_bytes + r.total_bytes() > kMaxBufferedMessagesBytes * max_message_bytes) {
        return refuse(Reject::kOverflow, absl::StrCat("more than ", kMaxBufferedMessages,
                                                      " messages or ", e.buffered_bytes, " bytes buffered ahead"));
      }
      it = e.partial.emplace(key, Assembly()).first;
      it->second.have.assign(r.chunk_count(), false);
      it->second.elements = r.elements();
      if (r.chunk_count() > 1) it->second.bytes.resize(r.total_bytes());
      e.buffered_bytes += r.total_bytes();
    }
    Assembly& m = it->second;
    if (m.have.size() != r.chunk_count() || m.elements != r.elements() ||
        (r.chunk_count() > 1 && m.bytes.size() != r.total_bytes())) {
      return refuse(Reject::kProtocol, "chunks disagree on the message size");
    }
    if (m.have[r.chunk_index()]) {
      service->CountReject(Reject::kDuplicate);
      return a;
    }
    m.have[r.chunk_index()] = true;
    ++m.got;
    if (r.chunk_count() == 1) {
      m.bytes.swap(*r.mutable_payload());
    } else {
      std::copy(r.payload().begin(), r.payload().end(), m.bytes.begin() + static_cast<ptrdiff_t>(r.byte_offset()));
    }
    if (m.got == m.have.size()) {
      e.ready.emplace(key, std::move(m));
      e.partial.erase(it);
      ack();
    }
    return a;
  }

  // A stream ended (its last reaction). Nothing touches `this` core after the unlock.
  void StreamDone(PeerStream* s, const grpc::Status& st) ABSL_LOCKS_EXCLUDED(mu) {
    absl::MutexLock l(&mu);
    const int k = s->edge >= 0 ? s->edge : s->expected_edge;
    if (k >= 0) {
      Edge& e = edges[k];
      if (e.stream.get() == s) {
        e.stream.reset();
        e.stats.connected = false;
        if (shutting_down) {
        } else if (st.ok()) {
          spdlog::info("agent {}: agent {} closed its stream", opt.rank, e.peer.rank);
        } else {
          spdlog::warn("agent {}: stream with agent {} ended: {} (code {})", opt.rank, e.peer.rank,
                       st.error_message(), static_cast<int>(st.error_code()));
        }
      }
      if (e.pending.get() == s) e.pending.reset();
      if (s->is_client() && e.stream == nullptr && e.pending == nullptr) {
        if (s->edge < 0 && !shutting_down) {
          spdlog::debug("agent {}: dial to agent {} failed: {}", opt.rank, e.peer.rank, st.error_message());
        }
        e.next_dial = absl::Now() + absl::Milliseconds(e.backoff_ms);
        e.backoff_ms = std::min(2 * e.backoff_ms, opt.tuning.max_backoff_ms);
      }
    }
    --live;
  }

  void Register(PeerStream* s) ABSL_LOCKS_EXCLUDED(mu) {
    absl::MutexLock l(&mu);
    ++live;
  }

  void DialLoop();

  GrpcExchangeOptions opt;
  PeerService* service;
  core::Codec codec;  // the agent thread only
  const gut::v1::Codec wire_codec;
  const gut::v1::Framing framing;
  const uint64_t max_message_bytes;
  std::vector<core::NeighbourInfo> infos;

  absl::Mutex mu;
  std::vector<Edge> edges ABSL_GUARDED_BY(mu);
  std::map<int, int64_t> consumed ABSL_GUARDED_BY(mu);        // slot -> last received round
  std::set<std::tuple<int64_t, int, int>> sent ABSL_GUARDED_BY(mu);  // (round, slot, edge)
  int64_t max_sent_round ABSL_GUARDED_BY(mu) = -1;
  int live ABSL_GUARDED_BY(mu) = 0;
  bool shutting_down ABSL_GUARDED_BY(mu) = false;
  bool stopped ABSL_GUARDED_BY(mu) = false;
  std::thread dialer;

  uint64_t sequence = 0;  // the agent thread only
  std::string wire;       // the agent thread only
  std::atomic<int64_t> payload_sent{0}, payload_received{0};
  std::atomic<int64_t> wait_ns{0};
};

// ---------------------------------------------------------------------------------------------
ExchangeCore* PeerStream::RegisterWithService() {
  absl::MutexLock l(&service_->mu_);
  ExchangeCore* c = service_->exchange_;
  if (c != nullptr) c->Register(this);
  return c;
}

void PeerStream::Done(const grpc::Status& s) {
  if (core_ != nullptr) core_->StreamDone(this, s);
  auto keep = std::move(self_);  // may destroy this stream at the end of the scope
}

namespace {

class ClientStream final : public PeerStream,
                           public grpc::ClientBidiReactor<PeerFrame, PeerFrame> {
 public:
  static void Start(ExchangeCore* core, int edge, gut::v1::Peer::Stub* stub, const PeerFrame& hello) {
    auto s = std::shared_ptr<ClientStream>(new ClientStream(core, edge));
    s->self_ = s;
    s->hello_ = std::make_shared<PeerFrame>(hello);
    s->ctx_.set_wait_for_ready(true);
    stub->async()->Exchange(&s->ctx_, s.get());
    s->AddHold();
    ClientStream* raw = s.get();
    {
      absl::MutexLock l(&core->mu);
      core->edges[edge].pending = s;
      ++core->live;
    }
    s.reset();
    raw->ReadNext();
    raw->Send(raw->hello_);
    raw->StartCall();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return ReadFailed();
    auto a = core_->HandleFrame(this, in_);
    Apply(a);
    ReadNext();
  }
  void OnWriteDone(bool ok) override { WriteDone(ok); }
  void OnDone(const grpc::Status& s) override { Done(s); }

  void Apply(ExchangeCore::Actions& a) {
    if (a.close_other) a.close_other->Close(grpc::Status(grpc::StatusCode::CANCELLED, "replaced"));
    if (a.refuse) return Close(a.refusal);
    for (auto& f : a.send) Send(std::move(f));
    if (a.kick) Kick();
  }

 private:
  ClientStream(ExchangeCore* core, int edge) : PeerStream(/*client=*/true, core->service) {
    core_ = core;
    expected_edge = edge;
    peer_ = core->opt.neighbours[edge].address;
  }
  void DoWrite(const PeerFrame* f) override { StartWrite(f); }
  void DoRead() override { StartRead(&in_); }
  void DoFinish(const grpc::Status&, bool graceful) override {
    if (graceful) StartWritesDone();
    RemoveHold();
  }
  void DoCancel() override { ctx_.TryCancel(); }

  grpc::ClientContext ctx_;
  FramePtr hello_;
};

class ServerStream final : public PeerStream,
                           public grpc::ServerBidiReactor<PeerFrame, PeerFrame> {
 public:
  ServerStream(PeerService* service, grpc::CallbackServerContext* ctx)
      : PeerStream(/*client=*/false, service), ctx_(ctx) {
    peer_ = ctx->peer();
  }

  void Begin(std::shared_ptr<ServerStream> self) {
    self_ = std::move(self);
    ReadNext();
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      if (!hello_seen_) {
        service_->CountReject(Reject::kProtocol);
        spdlog::warn("peer stream from {} ended before its hello (bad bytes, oversized frame or "
                     "cancelled)", peer_);
        return Close(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                  "no hello: unreadable frame, or the stream closed first"),
                     Mode::kDiscard);
      }
      return ReadFailed();
    }
    if (core_ == nullptr) {
      hello_seen_ = true;
      ExchangeCore* c = RegisterWithService();
      if (c == nullptr) {
        service_->CountReject(Reject::kNotReady);
        return Close(grpc::Status(grpc::StatusCode::UNAVAILABLE, "agent has not joined a run yet"), Mode::kDiscard);
      }
      core_ = c;
    }
    auto a = core_->HandleFrame(this, in_);
    if (a.close_other) a.close_other->Close(grpc::Status(grpc::StatusCode::CANCELLED, "replaced"));
    if (a.refuse) return Close(a.refusal, Mode::kDiscard);
    for (auto& f : a.send) Send(std::move(f));
    if (a.kick) Kick();
    ReadNext();
  }
  void OnWriteDone(bool ok) override { WriteDone(ok); }
  void OnCancel() override { Close(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"), Mode::kDiscard); }
  void OnDone() override { Done(grpc::Status::OK); }

 private:
  void DoWrite(const PeerFrame* f) override { StartWrite(f); }
  void DoRead() override { StartRead(&in_); }
  void DoFinish(const grpc::Status& s, bool) override { Finish(s); }
  void DoCancel() override { ctx_->TryCancel(); }

  grpc::CallbackServerContext* ctx_;
  bool hello_seen_ = false;  // reactions run one at a time per stream
};

}  // namespace

void ExchangeCore::DialLoop() {
  for (;;) {
    std::vector<int> dial;
    PeerFrame hello = MakeHello();
    {
      absl::MutexLock l(&mu);
      absl::Time wake = absl::Now() + absl::Milliseconds(50);
      for (const auto& e : edges)
        if (e.dialer && !e.stream && !e.pending) wake = std::min(wake, e.next_dial);
      auto wake_up = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return shutting_down; };
      mu.AwaitWithDeadline(absl::Condition(&wake_up), wake);
      if (shutting_down) return;
      const absl::Time now = absl::Now();
      for (size_t k = 0; k < edges.size(); ++k) {
        Edge& e = edges[k];
        if (e.dialer && !e.stream && !e.pending && now >= e.next_dial) dial.push_back(static_cast<int>(k));
      }
    }
    // Streams start outside the lock: StartCall may run reactions inline.
    for (int k : dial) ClientStream::Start(this, k, edges[k].stub.get(), hello);
  }
}

grpc::ServerBidiReactor<PeerFrame, PeerFrame>* PeerService::Exchange(
    grpc::CallbackServerContext* context) {
  auto s = std::make_shared<ServerStream>(this, context);
  ServerStream* raw = s.get();
  raw->Begin(std::move(s));
  return raw;
}

// ---------------------------------------------------------------------------------------------
GrpcExchange::GrpcExchange(std::unique_ptr<ExchangeCore> core) : core_(std::move(core)) {}

absl::StatusOr<std::unique_ptr<GrpcExchange>> GrpcExchange::Create(GrpcExchangeOptions o,
                                                                   PeerService* service) {
  if (auto s = o.tuning.Validate(); !s.ok()) return s;
  if (o.num_params <= 0) return absl::InvalidArgumentError("exchange: num_params must be positive");
  if (o.run_id.empty()) return absl::InvalidArgumentError("exchange: empty run id");
  std::set<int> seen;
  for (const auto& p : o.neighbours) {
    if (p.rank == o.rank || !seen.insert(p.rank).second) {
      return absl::InvalidArgumentError(absl::StrCat("exchange: agent ", o.rank,
                                                     " has itself or a duplicate (agent ", p.rank,
                                                     ") among its neighbours"));
    }
    if (p.address.empty() && o.rank < p.rank) {
      return absl::InvalidArgumentError(absl::StrCat("exchange: no address for agent ", p.rank));
    }
  }
  auto core = std::make_unique<ExchangeCore>(std::move(o), service);
  {
    absl::MutexLock l(&service->mu_);
    if (service->exchange_ != nullptr) {
      return absl::FailedPreconditionError("exchange: the peer service already has an exchange");
    }
    service->exchange_ = core.get();
  }
  ExchangeCore* c = core.get();
  c->dialer = std::thread([c] { c->DialLoop(); });
  return std::unique_ptr<GrpcExchange>(new GrpcExchange(std::move(core)));
}

GrpcExchange::~GrpcExchange() {
  Shutdown(absl::Seconds(5));
  if (leak_core_) (void)core_.release();
}

int GrpcExchange::rank() const { return core_->opt.rank; }
double GrpcExchange::self_weight() const { return core_->opt.self_weight; }
const std::vector<core::NeighbourInfo>& GrpcExchange::neighbours() const { return core_->infos; }
int64_t GrpcExchange::bytes_sent() const { return core_->payload_sent.load(); }
int64_t GrpcExchange::bytes_received() const { return core_->payload_received.load(); }
double GrpcExchange::wait_seconds() const { return 1e-9 * static_cast<double>(core_->wait_ns.load()); }

namespace {

// Cuts an encoded message into frames of at most `chunk` bytes, each with its CRC.
std::vector<FramePtr> MakeFrames(int64_t round, int slot, uint64_t sequence, gut::v1::Codec codec,
                                 gut::v1::Framing framing, std::string* bytes, size_t elements,
                                 size_t chunk) {
  const size_t total = bytes->size();
  const uint32_t count = static_cast<uint32_t>(std::max<size_t>(1, (total + chunk - 1) / chunk));
  std::vector<FramePtr> frames;
  for (uint32_t c = 0; c < count; ++c) {
    auto f = std::make_shared<PeerFrame>();
    auto* r = f->mutable_round();
    r->set_round(round);
    r->set_slot(slot);
    r->set_sequence(sequence);
    r->set_chunk_index(c);
    r->set_chunk_count(count);
    r->set_byte_offset(c * chunk);
    r->set_total_bytes(total);
    r->set_elements(elements);
    r->set_codec(codec);
    r->set_framing(framing);
    if (count == 1) {
      r->mutable_payload()->swap(*bytes);
    } else {
      r->set_payload(bytes->substr(c * chunk, std::min(chunk, total - c * chunk)));
    }
    r->set_checksum(Crc32(r->payload()));
    frames.push_back(std::move(f));
  }
  return frames;
}

}  // namespace

// Sends to the edges in `targets` (indices); shared by Broadcast and SendTo.
static absl::Status SendToEdges(ExchangeCore* c, int64_t round, int slot,
                                const std::vector<int>& targets, int key_target, absl::Span<float> message) {
  if (slot < 0 || slot >= kMaxSlots) {
    return absl::InvalidArgumentError(absl::StrCat("agent ", c->opt.rank, ": slot ", slot, " out of range"));
  }
  {
    absl::MutexLock l(&c->mu);
    for (int k : targets) {
      if (c->sent.count({round, slot, k})) {
        return absl::AlreadyExistsError(absl::StrCat("agent ", c->opt.rank, " already sent round ", round,
                                                     " slot ", slot, " to agent ", c->edges[k].peer.rank));
      }
    }
  }
  c->codec.Encode(message, &c->wire, core::MessageKey(round, slot, key_target));
  const int64_t payload = static_cast<int64_t>(c->wire.size());
  auto frames = MakeFrames(round, slot, ++c->sequence, c->wire_codec, c->framing, &c->wire,
                           message.size(), static_cast<size_t>(c->opt.tuning.chunk_bytes));
  std::vector<std::shared_ptr<PeerStream>> streams;
  {
    absl::MutexLock l(&c->mu);
    for (int k : targets) {
      auto& e = c->edges[k];
      c->sent.insert({round, slot, k});
      e.unacked.insert(e.unacked.end(), frames.begin(), frames.end());
      e.stats.payload_bytes_sent += payload;
      if (e.stream) {
        for (const auto& f : frames) e.stats.frame_bytes_sent += static_cast<int64_t>(f->ByteSizeLong());
        streams.push_back(e.stream);
      }
    }
    // Forget sends far in the past (the receiver rejects those as stale anyway).
    c->max_sent_round = std::max(c->max_sent_round, round);
    while (!c->sent.empty() && std::get<0>(*c->sent.begin()) < c->max_sent_round - 16) c->sent.erase(c->sent.begin());
  }
  for (auto& s : streams)
    for (const auto& f : frames) s->Send(f);
  c->payload_sent += payload * static_cast<int64_t>(targets.size());
  return absl::OkStatus();
}

absl::Status GrpcExchange::Broadcast(int64_t round, int slot, absl::Span<float> message) {
  std::vector<int> all(core_->infos.size());
  for (size_t k = 0; k < all.size(); ++k) all[k] = static_cast<int>(k);
  return SendToEdges(core_.get(), round, slot, all, -1, message);
}

absl::Status GrpcExchange::SendTo(int64_t round, int slot, int neighbour_index,
                                  absl::Span<float> message) {
  if (neighbour_index < 0 || neighbour_index >= degree()) {
    return absl::InvalidArgumentError(absl::StrCat("agent ", rank(), ": neighbour index ",
                                                   neighbour_index, " out of range"));
  }
  return SendToEdges(core_.get(), round, slot, {neighbour_index}, neighbour_index, message);
}

// Waits for every neighbour's (round, slot) message and decodes each into edge.decoded. `n`, if
// not zero, is the element count the caller expects.
static absl::Status Collect(ExchangeCore* c, int64_t round, int slot, size_t n) {
  std::vector<ExchangeCore::Assembly> got(c->infos.size());
  {
    absl::MutexLock l(&c->mu);
    if (auto it = c->consumed.find(slot); it != c->consumed.end() && round <= it->second) {
      return absl::FailedPreconditionError(absl::StrCat("agent ", c->opt.rank, ": round ", round,
                                                        " slot ", slot, " was already received"));
    }
    const ExchangeCore::Key key{round, slot};
    auto all_in = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(c->mu) {
      for (const auto& e : c->edges)
        if (!e.ready.count(key)) return c->shutting_down;
      return true;
    };
    const absl::Time t0 = absl::Now();
    const bool in = c->mu.AwaitWithTimeout(absl::Condition(&all_in), c->opt.deadline);
    c->wait_ns += absl::ToInt64Nanoseconds(absl::Now() - t0);
    if (!in || c->shutting_down) {
      std::vector<int> missing;
      for (const auto& e : c->edges)
        if (!e.ready.count(key)) missing.push_back(e.peer.rank);
      if (!in) {
        return absl::DeadlineExceededError(absl::StrCat(
            "agent ", c->opt.rank, ": round ", round, " slot ", slot, ": no message from agent(s) ",
            absl::StrJoin(missing, ", "), " within ", absl::FormatDuration(c->opt.deadline)));
      }
      if (!missing.empty()) return absl::CancelledError(absl::StrCat("agent ", c->opt.rank, ": exchange shut down"));
    }
    for (size_t k = 0; k < c->edges.size(); ++k) {
      auto& e = c->edges[k];
      auto it = e.ready.find(key);
      got[k] = std::move(it->second);
      e.ready.erase(it);
      e.buffered_bytes -= std::min<uint64_t>(e.buffered_bytes, got[k].bytes.size());
      // Partial copies of rounds already received (a resend cut short) can never complete.
      for (auto p = e.partial.begin(); p != e.partial.end();) {
        if (p->first.second == slot && p->first.first <= round) {
          e.buffered_bytes -= std::min<uint64_t>(e.buffered_bytes, p->second.bytes.size());
          p = e.partial.erase(p);
        } else {
          ++p;
        }
      }
      e.stats.payload_bytes_received += static_cast<int64_t>(got[k].bytes.size());
    }
    c->consumed[slot] = round;
  }
  for (size_t k = 0; k < got.size(); ++k) {
    c->payload_received += static_cast<int64_t>(got[k].bytes.size());
    if (n != 0 && got[k].elements != n) {
      return absl::InvalidArgumentError(absl::StrCat("agent ", c->opt.rank, ": message from agent ",
                                                     c->infos[k].rank, " has ", got[k].elements,
                                                     " elements, expected ", n));
    }
    auto& d = c->edges[k].decoded;  // the agent thread only
    d.resize(got[k].elements);
    if (auto s = c->codec.Decode(got[k].bytes, absl::MakeSpan(d)); !s.ok()) {
      return absl::DataLossError(absl::StrCat("agent ", c->opt.rank, ": round ", round, " slot ", slot,
                                              " from agent ", c->infos[k].rank, ": ", s.message()));
    }
  }
  return absl::OkStatus();
}

absl::Status GrpcExchange::ReceiveWeightedSum(int64_t round, int slot, absl::Span<float> out) {
  ExchangeCore* c = core_.get();
  if (auto s = Collect(c, round, slot, out.size()); !s.ok()) return s;
  float* o = out.data();
  const size_t n = out.size();
  if (c->infos.empty()) {
    std::fill(out.begin(), out.end(), 0.0f);
    return absl::OkStatus();
  }
  // Same order and arithmetic as InProcessExchange, so that both give identical bits.
  {
    const float w = static_cast<float>(c->infos[0].weight);
    const float* m = c->edges[0].decoded.data();
    for (size_t i = 0; i < n; ++i) o[i] = w * m[i];
  }
  for (size_t k = 1; k < c->infos.size(); ++k) {
    const float w = static_cast<float>(c->infos[k].weight);
    const float* m = c->edges[k].decoded.data();
    for (size_t i = 0; i < n; ++i) o[i] += w * m[i];
  }
  return absl::OkStatus();
}

absl::Status GrpcExchange::ReceiveEach(
    int64_t round, int slot, const std::function<void(int, absl::Span<const float>)>& fn) {
  ExchangeCore* c = core_.get();
  if (auto s = Collect(c, round, slot, 0); !s.ok()) return s;
  for (size_t k = 0; k < c->infos.size(); ++k) fn(static_cast<int>(k), absl::MakeConstSpan(c->edges[k].decoded));
  return absl::OkStatus();
}

absl::Status GrpcExchange::WaitConnected(absl::Duration timeout) {
  ExchangeCore* c = core_.get();
  absl::MutexLock l(&c->mu);
  auto all = [c]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(c->mu) {
    for (const auto& e : c->edges)
      if (!e.stream) return false;
    return true;
  };
  if (c->mu.AwaitWithTimeout(absl::Condition(&all), timeout)) return absl::OkStatus();
  std::vector<int> missing;
  for (const auto& e : c->edges)
    if (!e.stream) missing.push_back(e.peer.rank);
  return absl::DeadlineExceededError(absl::StrCat("agent ", c->opt.rank, ": no connection to agent(s) ",
                                                  absl::StrJoin(missing, ", "), " within ",
                                                  absl::FormatDuration(timeout)));
}

absl::Status GrpcExchange::Flush(absl::Duration timeout) {
  ExchangeCore* c = core_.get();
  absl::MutexLock l(&c->mu);
  auto acked = [c]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(c->mu) {
    for (const auto& e : c->edges)
      if (!e.unacked.empty()) return false;
    return true;
  };
  if (c->mu.AwaitWithTimeout(absl::Condition(&acked), timeout)) return absl::OkStatus();
  std::vector<int> missing;
  for (const auto& e : c->edges)
    if (!e.unacked.empty()) missing.push_back(e.peer.rank);
  return absl::DeadlineExceededError(absl::StrCat("agent ", c->opt.rank, ": agent(s) ",
                                                  absl::StrJoin(missing, ", "),
                                                  " did not acknowledge every message within ",
                                                  absl::FormatDuration(timeout)));
}

void GrpcExchange::Shutdown(absl::Duration timeout) {
  ExchangeCore* c = core_.get();
  {
    absl::MutexLock l(&c->service->mu_);
    if (c->service->exchange_ == c) c->service->exchange_ = nullptr;
  }
  std::vector<std::shared_ptr<PeerStream>> streams;
  {
    absl::MutexLock l(&c->mu);
    if (c->stopped) return;
    c->stopped = true;
    c->shutting_down = true;  // from here no hello attaches a stream
  }
  if (c->dialer.joinable()) c->dialer.join();  // no dial is being started any more either
  {
    absl::MutexLock l(&c->mu);
    for (auto& e : c->edges) {
      if (e.stream) streams.push_back(e.stream);
      if (e.pending) streams.push_back(e.pending);
    }
  }
  // Graceful first (queued frames drain), then cancel whatever is still open.
  for (auto& s : streams) s->Close(grpc::Status::OK);
  auto none = [c]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(c->mu) { return c->live == 0; };
  // A graceful close normally takes milliseconds; a half-closed client stream whose server never
  // answers has been seen to wait forever (gRPC 1.51, loaded machine), so cancel after a second.
  const absl::Duration graceful = std::min(timeout / 2, absl::Seconds(1));
  c->mu.Lock();
  if (!c->mu.AwaitWithTimeout(absl::Condition(&none), graceful)) {
    c->mu.Unlock();
    for (auto& s : streams) {
      spdlog::debug("agent {}: stream not closed after {}: {}", c->opt.rank, absl::FormatDuration(graceful),
                    s->DebugState());
    }
    for (auto& s : streams) s->Close(grpc::Status(grpc::StatusCode::CANCELLED, "agent shutting down"));
    c->mu.Lock();
    // Cancelled streams end promptly; the core must outlive every one of them.
    if (!c->mu.AwaitWithTimeout(absl::Condition(&none), timeout)) {
      spdlog::error("agent {}: {} peer stream(s) did not end after cancellation; leaving them behind",
                    c->opt.rank, c->live);
      c->mu.Unlock();
      leak_core_ = true;  // never free what a late reaction may still touch
      return;
    }
  }
  for (auto& e : c->edges) e.stats.connected = false;
  c->mu.Unlock();
}

ExchangeStats GrpcExchange::Stats() const {
  ExchangeCore* c = core_.get();
  absl::MutexLock l(&c->mu);
  ExchangeStats s;
  for (const auto& e : c->edges) {
    s.peers.push_back(e.stats);
    s.unacknowledged += static_cast<int64_t>(e.unacked.size());
  }
  return s;
}

}  // namespace gut::services
