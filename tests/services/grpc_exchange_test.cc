// The gRPC exchange beyond the shared contract: refusing bad or foreign peers while the run goes
// on, surviving broken connections (reconnect + resend), wire sizes per codec, lossy-codec replica
// consistency over the wire, and the keepalive invariant of StreamTuning.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <mutex>
#include <sstream>
#include <thread>

#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include "core/topology/graph.h"
#include "core/topology/mixing.h"

#include "gtest/gtest.h"
#include "services/grpc_exchange.h"

namespace gut::services {
namespace {

using gut::v1::PeerFrame;

struct Node {
  std::unique_ptr<PeerService> service = std::make_unique<PeerService>();
  std::unique_ptr<grpc::Server> server;
  std::string address;
  std::unique_ptr<GrpcExchange> exchange;
};

// n agents on a ring; `dial_override[i]`, if set, is the address others use to reach agent i.
class Ring {
 public:
  explicit Ring(int n, core::CodecOptions codec = {}, int64_t num_params = 1024, bool connect = true)
      : nodes_(n), codec_(codec), num_params_(num_params) {
    for (auto& nd : nodes_) {
      grpc::ServerBuilder b;
      int port = 0;
      b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
      StreamTuning::ForTests().ApplyToServer(&b, true);
      b.RegisterService(nd.service.get());
      nd.server = b.BuildAndStart();
      nd.address = "127.0.0.1:" + std::to_string(port);
    }
    w_ = std::make_unique<core::MixingMatrix>(core::MixingMatrix::Build(*core::MakeRing(n), core::WeightRule::kUniform));
    if (connect) Connect();
  }
  // Creates the exchanges; `dial_override[j]` is the address the others use to reach agent j.
  void Connect(std::map<int, std::string> dial_override = {}) {
    const int n = size();
    for (int i = 0; i < n; ++i) {
      GrpcExchangeOptions o;
      o.run_id = "run-a";
      o.rank = i;
      o.self_weight = w_->self_weight(i);
      const auto& nb = w_->graph().neighbours(i);
      for (size_t k = 0; k < nb.size(); ++k) {
        const std::string addr = dial_override.count(nb[k]) ? dial_override[nb[k]] : nodes_[nb[k]].address;
        o.neighbours.push_back({nb[k], w_->weight(i, k), addr, ""});  // "": any identity
      }
      o.layout_hash = 77;
      o.layout = layout;
      o.model_sha256 = model_sha256;
      o.num_params = num_params_;
      o.codec = codec_;
      o.codec_seed = 5;
      o.deadline = deadline;
      o.tuning = tuning;
      if (i == 0) o.forge = forge;
      auto ex = GrpcExchange::Create(o, nodes_[i].service.get());
      EXPECT_TRUE(ex.ok()) << ex.status();
      nodes_[i].exchange = std::move(*ex);
    }
  }
  ~Ring() {
    for (auto& nd : nodes_) nd.exchange->Shutdown(absl::Seconds(5));
    for (auto& nd : nodes_) nd.server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  }
  Node& operator[](int i) { return nodes_[i]; }
  int size() const { return static_cast<int>(nodes_.size()); }
  double weight(int i, int k) const { return w_->weight(i, k); }

  // One round on every agent (each from its own thread); checks the weighted sums.
  void Round(int64_t r, size_t len = 64) {
    std::vector<std::thread> ts;
    std::atomic<int> bad{0};
    for (int i = 0; i < size(); ++i) {
      ts.emplace_back([&, i] {
        std::vector<float> m(len, static_cast<float>(i + 1 + r)), out(len);
        if (!nodes_[i].exchange->Broadcast(r, 0, absl::MakeSpan(m)).ok()) ++bad;
        if (!nodes_[i].exchange->ReceiveWeightedSum(r, 0, absl::MakeSpan(out)).ok()) ++bad;
        float expect = 0;
        bool first = true;
        for (const auto& nb : nodes_[i].exchange->neighbours()) {
          const float t = static_cast<float>(nb.weight) * static_cast<float>(nb.rank + 1 + r);
          expect = first ? t : expect + t;
          first = false;
        }
        if (out[len - 1] != expect) ++bad;
      });
    }
    for (auto& t : ts) t.join();
    EXPECT_EQ(bad.load(), 0) << "round " << r;
  }

 private:
  std::vector<Node> nodes_;

 public:
  StreamTuning tuning = StreamTuning::ForTests();  // the exchanges' (set before Connect)
  absl::Duration deadline = absl::Seconds(20);       // exchange.deadline_s (set before Connect)
  std::vector<std::string> layout;                  // the hello's layout description
  std::string model_sha256;
  Forgery forge;  // agent 0's drill (set before Connect)

 private:
  core::CodecOptions codec_;
  int64_t num_params_;
  std::unique_ptr<core::MixingMatrix> w_;
};

// A foreign client: opens a stream to `address`, sends `frames`, returns the final status.
grpc::Status Impose(const std::string& address, const std::vector<PeerFrame>& frames) {
  auto ch = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  auto stub = gut::v1::Peer::NewStub(ch);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto stream = stub->Exchange(&ctx);
  for (const auto& f : frames) stream->Write(f);
  stream->WritesDone();
  PeerFrame in;
  while (stream->Read(&in)) {
  }
  return stream->Finish();
}

PeerFrame Hello(const std::string& run, int rank, uint64_t layout) {
  PeerFrame f;
  f.mutable_hello()->set_run_id(run);
  f.mutable_hello()->set_sender_rank(rank);
  f.mutable_hello()->set_protocol_version(gut::v1::PROTOCOL_VERSION_1);
  f.mutable_hello()->set_layout_hash(layout);
  f.mutable_hello()->set_codec(gut::v1::CODEC_FP32);
  return f;
}

TEST(GrpcExchange, RefusesBadAndForeignPeersWhileTheRunGoesOn) {
  Ring ring(4);
  ring.Round(0);
  const std::string target = ring[2].address;
  PeerService& svc = *ring[2].service;

  // A refusal names its reason and nothing of the refusing side: not its run id ("run-a"), not its
  // layout hash (77 = 0x4d).
  auto reveals_nothing = [](const grpc::Status& st) {
    const std::string m = st.error_message();
    return m.find("run-a") == std::string::npos && m.find("77") == std::string::npos &&
           m.find("4d") == std::string::npos && m.find("4D") == std::string::npos;
  };
  grpc::Status s = Impose(target, {Hello("other-run", 1, 77)});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(s.error_message(), "refused: run_id");
  EXPECT_EQ(svc.rejected(Reject::kRunId), 1);

  s = Impose(target, {Hello("run-a", 1, 12345)});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(s.error_message(), "refused: layout");
  EXPECT_TRUE(reveals_nothing(s)) << s.error_message();
  EXPECT_EQ(svc.rejected(Reject::kLayout), 1);

  s = Impose(target, {Hello("run-a", 0, 77)});  // 0 is not a neighbour of 2 on a 4-ring
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(s.error_message(), "refused: not_neighbour");
  EXPECT_TRUE(reveals_nothing(s)) << s.error_message();
  EXPECT_EQ(svc.rejected(Reject::kNotNeighbour), 1);

  PeerFrame round;
  round.mutable_round()->set_round(1);
  s = Impose(target, {round});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(s.error_message(), "refused: protocol");

  // Garbage: bytes that do not parse as a PeerFrame.
  {
    auto ch = grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
    grpc::GenericStub generic(ch);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    grpc::CompletionQueue cq;
    auto call = generic.PrepareCall(&ctx, "/gut.v1.Peer/Exchange", &cq);
    void* tag;
    bool ok;
    call->StartCall(reinterpret_cast<void*>(1));
    cq.Next(&tag, &ok);
    const std::string junk = "\xff\xff\xff\xff garbage that is not protobuf";
    grpc::Slice slice(junk);
    grpc::ByteBuffer bb(&slice, 1);
    call->Write(bb, reinterpret_cast<void*>(2));
    cq.Next(&tag, &ok);
    grpc::Status st;
    call->Finish(&st, reinterpret_cast<void*>(3));
    while (cq.Next(&tag, &ok) && tag != reinterpret_cast<void*>(3)) {
    }
    EXPECT_FALSE(st.ok());
    cq.Shutdown();
    while (cq.Next(&tag, &ok)) {
    }
  }
  // Oversized: one frame above the receive cap.
  PeerFrame big = Hello("run-a", 1, 77);
  big.mutable_hello()->set_run_id(std::string(StreamTuning::ForTests().max_frame_bytes + 10, 'x'));
  s = Impose(target, {big});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();

  // Garbage and the oversized frame never produced a hello: both counted as protocol errors
  // (together with the round-before-hello).
  for (int i = 0; i < 50 && svc.rejected(Reject::kProtocol) < 3; ++i) absl::SleepFor(absl::Milliseconds(20));
  EXPECT_EQ(svc.rejected(Reject::kProtocol), 3);
  // And the real neighbours never noticed.
  for (int r = 1; r < 5; ++r) ring.Round(r);
  EXPECT_EQ(ring[2].exchange->Stats().peers[0].connects, 1);
}

// A TCP relay that can drop every connection on demand (a network blip between two agents).
class Relay {
 public:
  explicit Relay(std::string target) : target_(std::move(target)) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    listen(fd_, 8);
    socklen_t len = sizeof(a);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { Accept(); });
  }
  ~Relay() {
    stop_ = true;
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
    Break();
    for (auto& t : pumps_) t.join();
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  void Break() {
    std::lock_guard<std::mutex> l(mu_);
    for (int s : socks_) shutdown(s, SHUT_RDWR);
    ++breaks_;
  }

 private:
  void Accept() {
    while (!stop_) {
      const int c = accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      const int u = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(static_cast<uint16_t>(std::stoi(target_.substr(target_.rfind(':') + 1))));
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (connect(u, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
        close(c);
        close(u);
        continue;
      }
      std::lock_guard<std::mutex> l(mu_);
      socks_.push_back(c);
      socks_.push_back(u);
      pumps_.emplace_back([c, u] { Pump(c, u); });
      pumps_.emplace_back([c, u] { Pump(u, c); });
    }
  }
  static void Pump(int from, int to) {
    char buf[65536];
    for (;;) {
      const ssize_t n = read(from, buf, sizeof(buf));
      if (n <= 0 || send(to, buf, static_cast<size_t>(n), MSG_NOSIGNAL) != n) break;
    }
    shutdown(from, SHUT_RDWR);
    shutdown(to, SHUT_RDWR);
  }
  std::string target_;
  int fd_ = -1, port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::vector<int> socks_;
  std::vector<std::thread> pumps_;
  int breaks_ = 0;
};

// Another model at the hello: refused as `layout`, the other side learns nothing of ours, and the
// refusing agent's log names the first tensor that differs, or the two model files; another
// run.numerics mode is refused as `numerics`.
TEST(GrpcExchange, AnotherModelIsRefusedAndTheLogNamesTheFirstTensorThatDiffers) {
  std::ostringstream log;
  auto previous = spdlog::default_logger();
  auto capture = std::make_shared<spdlog::logger>("capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(log));
  capture->set_pattern("%l %v");
  spdlog::set_default_logger(capture);
  {
    Ring ring(4, {}, 1024, /*connect=*/false);
    ring.layout = {"parameter a [2,3] float32", "parameter b [3] float32", "buffer c [] int64"};
    ring.model_sha256 = std::string(64, 'a');
    ring.Connect();
    ring.Round(0);
    PeerFrame h = Hello("run-a", 1, 12345);
    for (const char* t : {"parameter a [2,3] float32", "parameter b [4] float32", "buffer c [] int64"})
      h.mutable_hello()->add_layout(t);
    grpc::Status s = Impose(ring[2].address, {h});
    EXPECT_EQ(s.error_message(), "refused: layout");
    EXPECT_NE(log.str().find("error agent 2: refused stream from"), std::string::npos) << log.str();
    EXPECT_NE(log.str().find("agent 1 runs another model (layout hash 3039): tensor 1 differs: here 'parameter b [3] "
                             "float32', the peer 'parameter b [4] float32'"),
              std::string::npos)
        << log.str();
    PeerFrame same_layout_other_file = Hello("run-a", 1, 77);
    same_layout_other_file.mutable_hello()->set_model_sha256(std::string(64, 'b'));
    s = Impose(ring[2].address, {same_layout_other_file});
    EXPECT_EQ(s.error_message(), "refused: layout");
    EXPECT_NE(log.str().find("agent 1 runs model file sha256 'bbbb"), std::string::npos) << log.str();
    EXPECT_EQ(ring[2].service->rejected(Reject::kLayout), 2);
    // The same model computed in another run.numerics mode would give other bits.
    PeerFrame other_numerics = Hello("run-a", 1, 77);
    other_numerics.mutable_hello()->set_model_sha256(std::string(64, 'a'));
    other_numerics.mutable_hello()->set_numerics("portable");
    s = Impose(ring[2].address, {other_numerics});
    EXPECT_EQ(s.error_message(), "refused: numerics");
    EXPECT_NE(log.str().find("agent 1 computes in run.numerics portable mode, this agent in native"), std::string::npos)
        << log.str();
    EXPECT_EQ(ring[2].service->rejected(Reject::kNumerics), 1);
    ring.Round(1);  // the run goes on
  }
  spdlog::set_default_logger(previous);
  EXPECT_EQ(LayoutDifference({"x", "y"}, {"x"}), "tensor 1 differs: here 'y', the peer nothing");
  EXPECT_EQ(LayoutDifference({"x"}, {"x"}), "the layouts read alike but hash differently (a peer of another gut version?)");
}

TEST(GrpcExchange, ReconnectsAndResendsAfterTheConnectionDrops) {
  // Agent 0 reaches agent 1 through a relay; dropping it loses whatever was in flight.
  Ring ring(3, {}, 1024, /*connect=*/false);
  Relay relay(ring[1].address);
  ring.Connect({{1, relay.address()}});
  for (int r = 0; r < 5; ++r) ring.Round(r);
  relay.Break();
  for (int r = 5; r < 10; ++r) ring.Round(r, 1024);  // the first of these races the reconnect
  std::atomic<bool> done{false};
  std::thread breaker([&] {
    for (int k = 0; k < 3 && !done; ++k) {
      absl::SleepFor(absl::Milliseconds(30));
      relay.Break();
    }
  });
  for (int r = 10; r < 40; ++r) ring.Round(r, 1024);
  done = true;
  breaker.join();
  const auto stats = ring[0].exchange->Stats();
  EXPECT_EQ(stats.peers[0].rank, 1);
  EXPECT_GE(stats.peers[0].connects, 2) << "agent 0 reconnected to agent 1";
  EXPECT_EQ(stats.peers[1].connects, 1) << "the direct link to agent 2 was never broken";
}

// Issue 21: while the coordinator judges a missing rank, a round wait does not count against the
// deadline (an agent two hops from the missing rank would otherwise blame a live neighbour);
// once it no longer does, the whole deadline applies afresh.
TEST(GrpcExchange, ARoundWaitDoesNotCountTheTimeTheCoordinatorJudges) {
  Ring ring(3, {}, 1024, /*connect=*/false);
  ring.deadline = absl::Seconds(1);
  ring.Connect();
  ring.Round(0);
  std::vector<float> m(64, 1.f), out(64);
  ASSERT_TRUE(ring[0].exchange->Broadcast(1, 0, absl::MakeSpan(m)).ok());
  ASSERT_TRUE(ring[2].exchange->Broadcast(1, 0, absl::MakeSpan(m)).ok());  // agent 1 sends nothing
  std::atomic<bool> judging{true};
  ring[0].exchange->CoordinatorJudging({1}, absl::Now() + absl::Milliseconds(500));  // before the wait starts
  std::thread coordinator([&] {  // heartbeat answers naming rank 1, each fresh for 0.5 s, for 3 s
    while (judging) {
      ring[0].exchange->CoordinatorJudging({1}, absl::Now() + absl::Milliseconds(500));
      absl::SleepFor(absl::Milliseconds(100));
    }
    ring[0].exchange->CoordinatorJudging({}, absl::Now() + absl::Milliseconds(500));
  });
  const absl::Time t0 = absl::Now();
  std::thread stop([&] {
    absl::SleepFor(absl::Seconds(3));
    judging = false;
  });
  const absl::Status s = ring[0].exchange->ReceiveWeightedSum(1, 0, absl::MakeSpan(out));
  const double waited = absl::ToDoubleSeconds(absl::Now() - t0);
  stop.join();
  coordinator.join();
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_NE(s.message().find("no message from agent(s) 1 within 1s"), absl::string_view::npos) << s;
  EXPECT_GE(waited, 3.9) << "the deadline counts only after the judgement (3 s) ends";
  EXPECT_LT(waited, 6) << s;
}

TEST(GrpcExchange, WireBytesPerCodec) {
  const int64_t p = 61706;  // LeNet-5
  for (auto [kind, bound] : {std::pair{core::CodecKind::kFp32, 1.02}, std::pair{core::CodecKind::kBf16, 0.52},
                             std::pair{core::CodecKind::kInt8, 0.27}}) {
    core::CodecOptions o;
    o.kind = kind;
    Ring ring(3, o, p);
    for (auto& i : {0, 1, 2}) ASSERT_TRUE(ring[i].exchange->WaitConnected(absl::Seconds(10)).ok());
    const auto before = ring[0].exchange->Stats().peers[0].frame_bytes_sent;
    std::vector<std::thread> ts;
    for (int i = 0; i < 3; ++i) {
      ts.emplace_back([&, i] {
        std::vector<float> m(p), out(p);
        for (int64_t k = 0; k < p; ++k) m[k] = std::sin(0.1f * k + i) * 0.05f;
        EXPECT_TRUE(ring[i].exchange->Broadcast(0, 0, absl::MakeSpan(m)).ok());
        EXPECT_TRUE(ring[i].exchange->ReceiveWeightedSum(0, 0, absl::MakeSpan(out)).ok());
      });
    }
    for (auto& t : ts) t.join();
    ASSERT_TRUE(ring[0].exchange->Flush(absl::Seconds(10)).ok());
    // One message to one neighbour, with every header, plus the acknowledgement we sent back.
    const double bytes = static_cast<double>(ring[0].exchange->Stats().peers[0].frame_bytes_sent - before);
    EXPECT_LE(bytes, bound * 4 * p) << core::CodecName(kind);
    EXPECT_GT(bytes, (bound - 0.1) * 4 * p) << core::CodecName(kind);
  }
}

// Acks are batched (every ack_every-th message, or after ack_delay_ms): what a sender keeps for
// resending stays bounded during a run, and Flush still ends with nothing unacknowledged, soon.
// The delay is set out of reach here, so only the count sends acks during the rounds (a loaded
// machine cannot make the timer do it) and Flush, on every agent at once, sends the rest.
TEST(GrpcExchange, BatchedAcksBoundWhatIsKeptAndFlushEmptiesIt) {
  Ring ring(3, {}, 1024, /*connect=*/false);
  ring.tuning.ack_delay_ms = 600000;
  ring.Connect();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(ring[i].exchange->WaitConnected(absl::Seconds(10)).ok());
  const int every = ring.tuning.ack_every;
  int64_t most = 0;
  for (int64_t r = 0; r < 4 * every; ++r) {
    ring.Round(r);
    for (int i = 0; i < 3; ++i) most = std::max(most, ring[i].exchange->Stats().unacknowledged);
  }
  // Two neighbours each; an ack covers every message before it on its slot.
  EXPECT_LE(most, 2 * every);
  EXPECT_GE(most, 2 * (every - 1)) << "acks are batched, not sent per message";
  const absl::Time t0 = absl::Now();
  std::vector<std::thread> ts;
  for (int i = 0; i < 3; ++i) ts.emplace_back([&, i] { EXPECT_TRUE(ring[i].exchange->Flush(absl::Seconds(10)).ok()); });
  for (auto& t : ts) t.join();
  EXPECT_LT(absl::Now() - t0, absl::Seconds(5));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(ring[i].exchange->Stats().unacknowledged, 0);
}

// A message holding NaN or infinity, one a hundred times the receiver's model and an all-zero one
// are refused by the receiver (core/exchange/message_guard.h): it uses its own message instead,
// counts the refusal under its reason and against the sender, and the round goes on. The lossless
// codec (viewed in place, not decoded) and bf16 (decoded) alike; the forgeries come from agent 0's
// drill (--inject-forged-updates), which leaves its own state honest.
TEST(GrpcExchange, ImplausibleMessagesAreReplacedCountedAndTheSenderNamed) {
  struct Case {
    std::string mode;  // "" : a NaN in an honest broadcast
    Reject reason;
  };
  for (auto kind : {core::CodecKind::kFp32, core::CodecKind::kBf16}) {
    for (const Case& c : {Case{"", Reject::kNonFinite}, Case{"huge", Reject::kImplausible},
                          Case{"zeros", Reject::kZeroMessage}}) {
      core::CodecOptions o;
      o.kind = kind;
      Ring ring(3, o, 1024, /*connect=*/false);
      ring.forge = {c.mode, 1, 2};  // rounds 1 and 2
      ring.Connect();
      std::vector<std::vector<std::vector<float>>> out(3, std::vector<std::vector<float>>(4));
      std::vector<std::thread> ts;
      for (int i = 0; i < 3; ++i) {
        ts.emplace_back([&, i] {
          for (int64_t r = 0; r < 4; ++r) {
            std::vector<float> m(64, static_cast<float>(i + 1)), sum(64);
            if (i == 0 && c.mode.empty() && r >= 1 && r < 3) m[17] = std::nanf("");
            ring[i].exchange->NoteModelNorm(10.0);
            EXPECT_TRUE(ring[i].exchange->Broadcast(r, 0, absl::MakeSpan(m)).ok());
            const absl::Status st = ring[i].exchange->ReceiveWeightedSum(r, 0, absl::MakeSpan(sum));
            EXPECT_TRUE(st.ok()) << st;
            out[i][r] = sum;
          }
        });
      }
      for (auto& t : ts) t.join();
      const std::string what = std::string(core::CodecName(kind)) + " " + RejectName(c.reason);
      for (int i : {1, 2}) {
        // Uniform weights: the order of the two terms does not change the float sum.
        const float w = static_cast<float>(ring.weight(i, 0));
        const float own = static_cast<float>(i + 1), other = static_cast<float>(i == 1 ? 3 : 2);
        for (int64_t r = 0; r < 4; ++r) {
          const bool forged = r >= 1 && r < 3;
          const float from0 = forged ? own : 1.0f;
          const float want = w * from0 + w * other;
          EXPECT_EQ(out[i][r][5], want) << what << ": agent " << i << " round " << r;
        }
        EXPECT_EQ(ring[i].service->rejected(c.reason), 2) << what;
        int64_t refused_from0 = -1, refused_other = -1;
        for (const auto& p : ring[i].exchange->Stats().peers) (p.rank == 0 ? refused_from0 : refused_other) = p.messages_refused;
        EXPECT_EQ(refused_from0, 2) << what << ": agent " << i;
        EXPECT_EQ(refused_other, 0) << what << ": agent " << i;
      }
      EXPECT_EQ(ring[0].service->rejected(c.reason), 0) << what;
    }
  }
}

TEST(GrpcExchange, LossyCodecsKeepReplicasIdenticalOverTheWire) {
  for (core::CodecKind kind : {core::CodecKind::kBf16, core::CodecKind::kInt8, core::CodecKind::kTopK}) {
    core::CodecOptions o;
    o.kind = kind;
    o.topk_fraction = 0.1;
    o.zstd = kind == core::CodecKind::kInt8;  // framing too
    Ring ring(3, o, 5000);
    std::vector<std::vector<float>> sent(3);
    std::vector<std::thread> ts;
    std::atomic<int> bad{0};
    for (int i = 0; i < 3; ++i) {
      sent[i].resize(5000);
      for (size_t k = 0; k < 5000; ++k) sent[i][k] = std::cos(0.3f * k + i) * 0.02f;
    }
    for (int i = 0; i < 3; ++i) {
      ts.emplace_back([&, i] {
        if (!ring[i].exchange->Broadcast(0, 0, absl::MakeSpan(sent[i])).ok()) ++bad;
      });
    }
    for (auto& t : ts) t.join();
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(ring[i].exchange->ReceiveEach(0, 0, [&](int idx, absl::Span<const float> m) {
        const int from = ring[i].exchange->neighbours()[idx].rank;
        if (!std::equal(m.begin(), m.end(), sent[from].begin(), sent[from].end())) ++bad;
      }).ok());
    }
    EXPECT_EQ(bad.load(), 0) << core::CodecName(kind);
  }
}

TEST(StreamTuning, KeepaliveNeverBelowWhatTheServerPermits) {
  EXPECT_TRUE(StreamTuning().Validate().ok());
  EXPECT_TRUE(StreamTuning::ForTests().Validate().ok());
  StreamTuning t;
  t.server_min_ping_interval_ms = t.keepalive_time_ms + 1;
  const absl::Status s = t.Validate();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("too_many_pings"), std::string::npos) << s;
  t = StreamTuning();
  t.max_frame_bytes = t.chunk_bytes;
  EXPECT_FALSE(t.Validate().ok());
}

}  // namespace
}  // namespace gut::services
