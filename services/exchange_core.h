// ExchangeCore: the state behind one agent's GrpcExchange: one PeerEdge per neighbour, the rounds
// already taken, the byte and wait counters, the recovery generation, and the thread that dials the
// neighbours with a higher rank. Stream reactions hand it frames (HandleFrame never blocks: one
// short lock, no I/O); the agent thread sends, waits for and takes messages through GrpcExchange.
//
// Lock order (the only locks on the peer path):
//   PeerService::mu_  ->  ExchangeCore::mu_  ->  PeerStream::smu_
//   ExchangeCore::dial_mu_  ->  ExchangeCore::mu_
// Code holding a later lock never takes an earlier one. dial_mu_ is held by the dial thread
// from choosing an edge to dial until the stream has started, and by Reset while it rebuilds
// the edges, so that no stream is ever started on an edge that no longer exists. Calls into gRPC (StartWrite, Finish,
// TryCancel, StartCall) are made with no lock held, except PeerStream::Enqueue, which only queues.
//
// Lifetime: shared by the GrpcExchange and every live stream (each stream holds it until its last
// reaction), so a late reaction never touches freed memory. Shutdown() joins the dial thread and
// ends every stream; the object then goes away with its last owner.
#ifndef GUT_SERVICES_EXCHANGE_CORE_H_
#define GUT_SERVICES_EXCHANGE_CORE_H_

#include <atomic>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "core/codec/codec.h"
#include "core/exchange/forgery.h"
#include "core/exchange/neighbourhood.h"
#include "services/grpc_options.h"
#include "services/peer_edge.h"

namespace gut::services {

class PeerService;

using core::Forgery;  // the drill (core/exchange/forgery.h)

struct GrpcExchangeOptions {
  std::string run_id;
  int rank = 0;
  double self_weight = 0;
  std::vector<PeerAddress> neighbours;  // the order fixes the summation order
  uint64_t layout_hash = 0;
  // The layout as text (ModelInfo::LayoutDescription), sent in the hello so that a peer with
  // another layout can name the first tensor that differs; and the TorchScript model file's SHA-256
  // (empty for a built-in model): peers running other model files refuse each other.
  std::vector<std::string> layout;
  std::string model_sha256;
  std::string numerics = "native";  // run.numerics: peers in another mode are refused
  int64_t num_params = 0;  // bounds the size of an incoming message
  core::CodecOptions codec;
  uint64_t codec_seed = 0;  // the run seed; each agent's stream is derived as in InProcessExchange
  // Longest wait for a message from a neighbour that is connected.
  absl::Duration deadline = absl::Seconds(60);
  // Longest wait for a neighbour whose stream is down or who said goodbye: its restart and the
  // coordinator's rollback (or fault policy) normally come well before this.
  absl::Duration peer_loss_grace = absl::Seconds(75);
  StreamTuning tuning;
  uint32_t incarnation = 0;
  uint64_t generation = 0;  // the run's recovery generation (hello field; frames never cross it)
  int64_t start_round = 0;  // the first round this exchange will carry (a resumed run's)
  Forgery forge;  // empty mode: none (the default; only the drill flag sets it)
  // Credentials of the channels to the neighbours; null: plaintext.
  std::shared_ptr<grpc::ChannelCredentials> channel_credentials;
};

struct ExchangeStats {
  std::vector<PeerStats> peers;  // neighbour order
  int64_t unacknowledged = 0;    // frames kept for resending
};

class ExchangeCore : public std::enable_shared_from_this<ExchangeCore> {
 public:
  ExchangeCore(GrpcExchangeOptions o, PeerService* service);
  ~ExchangeCore();

  // ---- stream reactions (any gRPC thread; never block) ----
  StreamActions HandleFrame(PeerStream* s, gut::v1::PeerFrame& f) ABSL_LOCKS_EXCLUDED(mu_);
  void ClientStreamStarted(int edge, std::shared_ptr<PeerStream> s) ABSL_LOCKS_EXCLUDED(mu_);
  // An accepted stream belongs to this core from its first frame on (PeerService).
  void ServerStreamJoined() ABSL_LOCKS_EXCLUDED(mu_);
  void StreamDone(PeerStream* s, const grpc::Status& st) ABSL_LOCKS_EXCLUDED(mu_);
  PeerService* service() const { return service_; }
  std::string EdgeAddress(int edge) const ABSL_LOCKS_EXCLUDED(mu_);

  // ---- the agent thread (through GrpcExchange) ----
  void StartDialing();
  const std::vector<core::NeighbourInfo>& infos() const { return infos_; }
  int rank() const { return opt_.rank; }
  const Forgery& forge() const { return opt_.forge; }
  double self_weight() const { return opt_.self_weight; }
  // target -1: every neighbour (one encode); else neighbour index `target` only.
  absl::Status Send(int64_t round, int slot, int target, absl::Span<float> message) ABSL_LOCKS_EXCLUDED(mu_);
  // Waits for every neighbour's (round, slot) message and decodes each (decoded(k)). `n`, if not
  // zero, is the element count the caller expects.
  absl::Status Collect(int64_t round, int slot, size_t n) ABSL_LOCKS_EXCLUDED(mu_);
  absl::Span<const float> decoded(int k) const { return views_[k]; }
  absl::Status WaitConnected(absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Flush(absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_);
  // Sends a Goodbye on every connected stream (a planned stop).
  void SayGoodbye(const std::string& reason, int64_t rounds) ABSL_LOCKS_EXCLUDED(mu_);
  // Any thread: every wait returns `why` (e.g. ABORTED for a rollback) until Reset.
  void Interrupt(absl::Status why) ABSL_LOCKS_EXCLUDED(mu_);
  // Any thread: the coordinator says it is judging missing ranks (`missing`, empty: none) in an
  // answer that stays fresh until `fresh_until`. While it does, a round wait does not count
  // against exchange.deadline_s: an agent blocked behind a missing rank, directly or through its
  // neighbours, waits for the coordinator's decision (drop or fail) instead of blaming whom it waits for.
  void CoordinatorJudging(std::vector<int> missing, absl::Time fresh_until) ABSL_LOCKS_EXCLUDED(mu_);
  // Between rounds: a new recovery generation (and possibly new neighbours, addresses, weights).
  // Closes every stream and forgets every frame; the neighbours are dialed again.
  // `next_round` is the first round the agent will send again (the restored checkpoint's).
  void Reset(uint64_t generation, std::vector<PeerAddress> neighbours, double self_weight, int64_t next_round)
      ABSL_LOCKS_EXCLUDED(mu_);
  void Shutdown(absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_);
  ExchangeStats Stats() const ABSL_LOCKS_EXCLUDED(mu_);

  std::atomic<int64_t> payload_sent{0}, payload_received{0};
  std::atomic<int64_t> raw_sent{0};  // the same messages as plain fp32 (the compression ratio's denominator)
  std::atomic<int64_t> wait_ns{0};

 private:
  StreamActions Refuse(PeerStream* s, Reject why, grpc::StatusCode code, const std::string& msg)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  StreamActions HandleHello(PeerStream* s, const gut::v1::Hello& h) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  StreamActions HandleRound(PeerStream* s, PeerEdge& e, gut::v1::Round* r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  gut::v1::PeerFrame MakeHello() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void BuildEdges(const std::vector<PeerAddress>& neighbours) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int EdgeOf(int rank) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DialLoop();
  // Sends the acks owed on every connected edge for at least `older_than` (zero: all of them).
  void SendOwedAcks(absl::Duration older_than) ABSL_LOCKS_EXCLUDED(mu_);
  std::string MissingDescription(int64_t round, int slot) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  GrpcExchangeOptions opt_;  // neighbours and generation change only in Reset
  PeerService* const service_;
  const gut::v1::Codec wire_codec_;
  const gut::v1::Framing framing_;
  AssemblyLimits limits_;

  // The agent thread only (Send, Collect, Reset run there).
  core::Codec codec_;
  std::vector<core::NeighbourInfo> infos_;
  std::vector<std::vector<float>> decoded_;
  std::vector<std::string> kept_;               // plain fp32: the payloads themselves
  std::vector<absl::Span<const float>> views_;  // neighbour k's message: into decoded_ or kept_
  uint64_t sequence_ = 0;
  std::string wire_;

  absl::Mutex dial_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  mutable absl::Mutex mu_;
  std::vector<PeerEdge> edges_ ABSL_GUARDED_BY(mu_);
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<int, int64_t> taken_ ABSL_GUARDED_BY(mu_);                 // slot -> last round taken
  int64_t base_round_ ABSL_GUARDED_BY(mu_) = -1;                       // "taken" for a slot not in taken_
  std::set<std::tuple<int64_t, int, int>> sent_ ABSL_GUARDED_BY(mu_);  // (round, slot, edge)
  int64_t max_sent_round_ ABSL_GUARDED_BY(mu_) = -1;
  int live_ ABSL_GUARDED_BY(mu_) = 0;  // streams of this core that have not had their last reaction
  absl::Status interrupted_ ABSL_GUARDED_BY(mu_);
  std::vector<int> judged_ ABSL_GUARDED_BY(mu_);  // CoordinatorJudging's ranks, fresh until judged_until_
  absl::Time judged_until_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::thread dialer_;
};

}  // namespace gut::services

#endif  // GUT_SERVICES_EXCHANGE_CORE_H_
