// The Neighbourhood contract (core/exchange/neighbourhood.h), parameterised over implementations:
// the in-process exchange of gut-sim and the gRPC exchange of gut-agentd (n agents on loopback,
// each with its own server) pass this suite unchanged.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <functional>
#include <thread>

#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>

#include "core/exchange/in_process_exchange.h"
#include "gtest/gtest.h"
#include "services/grpc_exchange.h"

namespace gut::core {
namespace {

// A group of n endpoints wired by a mixing matrix.
class ExchangeGroup {
 public:
  virtual ~ExchangeGroup() = default;
  virtual Neighbourhood<float>& At(int rank) = 0;
};

using Factory = std::function<std::unique_ptr<ExchangeGroup>(const MixingMatrix&, absl::Duration)>;

class InProcessGroup final : public ExchangeGroup {
 public:
  InProcessGroup(const MixingMatrix& w, absl::Duration d) : ex_(w, d) {}
  Neighbourhood<float>& At(int rank) override { return ex_.Endpoint(rank); }

 private:
  InProcessExchange<float> ex_;
};

// n GrpcExchanges on 127.0.0.1, each behind its own server, wired by the mixing matrix.
class GrpcGroup final : public ExchangeGroup {
 public:
  GrpcGroup(const MixingMatrix& w, absl::Duration d) {
    const int n = w.size();
    std::vector<std::string> addr(n);
    for (int i = 0; i < n; ++i) {
      services_.push_back(std::make_unique<services::PeerService>());
      grpc::ServerBuilder b;
      int port = 0;
      b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
      services::StreamTuning::ForTests().ApplyToServer(&b, true);
      b.RegisterService(services_.back().get());
      servers_.push_back(b.BuildAndStart());
      addr[i] = "127.0.0.1:" + std::to_string(port);
    }
    for (int i = 0; i < n; ++i) {
      services::GrpcExchangeOptions o;
      o.run_id = "conformance";
      o.rank = i;
      o.self_weight = w.self_weight(i);
      const auto& nb = w.graph().neighbours(i);
      for (size_t k = 0; k < nb.size(); ++k) o.neighbours.push_back({nb[k], w.weight(i, k), addr[nb[k]], ""});
      o.layout_hash = 42;
      o.num_params = 1024;
      o.deadline = d;
      o.tuning = services::StreamTuning::ForTests();
      auto ex = services::GrpcExchange::Create(o, services_[i].get());
      EXPECT_TRUE(ex.ok()) << ex.status();
      exchanges_.push_back(std::move(*ex));
    }
    for (auto& ex : exchanges_) EXPECT_TRUE(ex->WaitConnected(absl::Seconds(20)).ok());
  }
  ~GrpcGroup() override {
    for (auto& ex : exchanges_) ex->Shutdown(absl::Seconds(5));
    for (auto& s : servers_) s->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  }
  Neighbourhood<float>& At(int rank) override { return *exchanges_[rank]; }

 private:
  std::vector<std::unique_ptr<services::PeerService>> services_;
  std::vector<std::unique_ptr<grpc::Server>> servers_;
  std::vector<std::unique_ptr<services::GrpcExchange>> exchanges_;
};

struct Impl {
  std::string name;
  Factory make;
};
void PrintTo(const Impl& impl, std::ostream* os) { *os << impl.name; }

class NeighbourhoodConformance : public ::testing::TestWithParam<Impl> {
 protected:
  void Build(const Graph& g, absl::Duration deadline = absl::Seconds(5)) {
    w_ = std::make_unique<MixingMatrix>(MixingMatrix::Build(g, WeightRule::kMetropolisHastings));
    group_ = GetParam().make(*w_, deadline);
  }
  std::unique_ptr<MixingMatrix> w_;
  std::unique_ptr<ExchangeGroup> group_;
};

std::vector<float> Msg(int sender, int round, size_t n = 5) {
  std::vector<float> m(n);
  for (size_t k = 0; k < n; ++k) m[k] = static_cast<float>(sender * 100 + round * 10 + k);
  return m;
}

TEST_P(NeighbourhoodConformance, DeliversTheWeightedSumInNeighbourOrder) {
  Build(*MakeChain(4));  // irregular: weights differ per edge
  for (int i = 0; i < 4; ++i) {
    auto m = Msg(i, 0);
    ASSERT_TRUE(group_->At(i).Broadcast(0, 0, absl::MakeSpan(m)).ok());
  }
  for (int i = 0; i < 4; ++i) {
    std::vector<float> out(5);
    ASSERT_TRUE(group_->At(i).ReceiveWeightedSum(0, 0, absl::MakeSpan(out)).ok());
    for (size_t k = 0; k < 5; ++k) {
      float expect = 0;
      bool first = true;
      for (const auto& nb : group_->At(i).neighbours()) {
        const float term = static_cast<float>(nb.weight) * Msg(nb.rank, 0)[k];
        expect = first ? term : expect + term;
        first = false;
      }
      EXPECT_EQ(out[k], expect) << "agent " << i << " element " << k;
    }
  }
  EXPECT_EQ(group_->At(0).neighbours()[0].rank, 1);
  EXPECT_DOUBLE_EQ(group_->At(1).self_weight(), w_->self_weight(1));
}

TEST_P(NeighbourhoodConformance, BuffersFutureRoundsAndSlots) {
  Build(*MakeRing(3));
  for (int r : {2, 1, 0})
    for (int i = 0; i < 3; ++i)
      for (int slot : {1, 0}) {
        auto m = Msg(i, r + slot);
        ASSERT_TRUE(group_->At(i).Broadcast(r, slot, absl::MakeSpan(m)).ok());
      }
  for (int r = 0; r < 3; ++r)
    for (int slot : {0, 1}) {
      std::vector<std::pair<int, float>> got;
      ASSERT_TRUE(group_->At(0).ReceiveEach(r, slot, [&](int idx, absl::Span<const float> m) {
        got.emplace_back(idx, m[0]);
      }).ok());
      ASSERT_EQ(got.size(), 2u);
      EXPECT_EQ(got[0].first, 0);
      EXPECT_EQ(got[1].first, 1);
      EXPECT_EQ(got[0].second, Msg(group_->At(0).neighbours()[0].rank, r + slot)[0]);
    }
}

TEST_P(NeighbourhoodConformance, SendToDeliversPerNeighbourMessages) {
  Build(*MakeRing(4));
  // Each agent sends neighbour j the value 100 * sender + receiver (cross-gradient style).
  for (int i = 0; i < 4; ++i) {
    const auto& nb = group_->At(i).neighbours();
    for (size_t k = 0; k < nb.size(); ++k) {
      std::vector<float> m(3, static_cast<float>(100 * i + nb[k].rank));
      ASSERT_TRUE(group_->At(i).SendTo(7, 1, static_cast<int>(k), absl::MakeSpan(m)).ok());
    }
  }
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(group_->At(i).ReceiveEach(7, 1, [&](int idx, absl::Span<const float> m) {
      EXPECT_EQ(m[0], static_cast<float>(100 * group_->At(i).neighbours()[idx].rank + i));
    }).ok());
  }
  std::vector<float> m(3);
  EXPECT_FALSE(group_->At(0).SendTo(7, 1, 5, absl::MakeSpan(m)).ok()) << "no such neighbour";
}

TEST_P(NeighbourhoodConformance, DeadlineNamesTheMissingNeighbour) {
  Build(*MakeRing(4), absl::Milliseconds(50));
  auto m = Msg(1, 0);
  ASSERT_TRUE(group_->At(1).Broadcast(0, 0, absl::MakeSpan(m)).ok());
  std::vector<float> out(5);
  absl::Status s = group_->At(0).ReceiveWeightedSum(0, 0, absl::MakeSpan(out));
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_NE(s.message().find("no message from agent(s) 3"), std::string::npos) << s;
}

TEST_P(NeighbourhoodConformance, RejectsDuplicateAndStaleMessages) {
  Build(*MakeRing(3));
  auto m = Msg(0, 0);
  ASSERT_TRUE(group_->At(0).Broadcast(0, 0, absl::MakeSpan(m)).ok());
  EXPECT_FALSE(group_->At(0).Broadcast(0, 0, absl::MakeSpan(m)).ok()) << "duplicate";
  auto m2 = Msg(2, 0);
  ASSERT_TRUE(group_->At(2).Broadcast(0, 0, absl::MakeSpan(m2)).ok());
  std::vector<float> out(5);
  ASSERT_TRUE(group_->At(1).ReceiveWeightedSum(0, 0, absl::MakeSpan(out)).ok());
  EXPECT_FALSE(group_->At(1).ReceiveWeightedSum(0, 0, absl::MakeSpan(out)).ok()) << "received twice";
}

TEST_P(NeighbourhoodConformance, ConcurrentAgentsAndByteCounts) {
  const int n = 8, rounds = 200;
  Build(*MakeRing(n));
  std::vector<std::thread> threads;
  std::atomic<int> errors{0};
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      std::vector<float> out(64);
      for (int r = 0; r < rounds; ++r) {
        auto m = Msg(i, r % 7, 64);
        if (!group_->At(i).Broadcast(r, 0, absl::MakeSpan(m)).ok()) ++errors;
        if (!group_->At(i).ReceiveWeightedSum(r, 0, absl::MakeSpan(out)).ok()) ++errors;
        const auto& nb = group_->At(i).neighbours();
        const float expect = static_cast<float>(nb[0].weight) * Msg(nb[0].rank, r % 7, 64)[3] +
                             static_cast<float>(nb[1].weight) * Msg(nb[1].rank, r % 7, 64)[3];
        if (out[3] != expect) ++errors;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors.load(), 0);
  for (int i = 0; i < n; ++i) {
    EXPECT_EQ(group_->At(i).bytes_sent(), int64_t{rounds} * 2 * 64 * 4);
    EXPECT_EQ(group_->At(i).bytes_received(), int64_t{rounds} * 2 * 64 * 4);
  }
}

// With a lossy codec the sender's message is replaced by its decoded value, and that is exactly
// what every receiver gets: replicas stay bit-identical. Bytes are the encoded sizes.
TEST(InProcessCodec, SenderKeepsWhatReceiversDecode) {
  for (CodecKind kind : {CodecKind::kBf16, CodecKind::kInt8, CodecKind::kInt4, CodecKind::kInt2, CodecKind::kTopK, CodecKind::kRandK,
                         CodecKind::kSign, CodecKind::kLowRank}) {
    CodecOptions o;
    o.kind = kind;
    o.topk_fraction = 0.25;
    o.tensors = {{10, 100}};
    MixingMatrix w = MixingMatrix::Build(*MakeRing(3), WeightRule::kUniform);
    InProcessExchange<float> ex(w, absl::Seconds(5), o, 12);
    std::vector<std::vector<float>> sent(3);
    int64_t per_message = 0;  // agent 0's message, encoded by a codec with its seed
    for (int i = 0; i < 3; ++i) {
      sent[i].resize(1000);
      for (size_t k = 0; k < 1000; ++k) sent[i][k] = std::sin(0.37f * k + i) * 0.01f;
      const auto original = sent[i];
      if (i == 0) {
        auto copy = original;
        std::string wire;
        Codec(o, DeriveSeed(12, 0, SeedPurpose::kCodec)).Encode(absl::MakeSpan(copy), &wire, MessageTag{0, 0, -1});
        per_message = static_cast<int64_t>(wire.size());
      }
      ASSERT_TRUE(ex.Endpoint(i).Broadcast(0, 0, absl::MakeSpan(sent[i])).ok());
      EXPECT_NE(sent[i], original) << CodecName(kind) << " is lossy";
    }
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(ex.Endpoint(i).ReceiveEach(0, 0, [&](int idx, absl::Span<const float> m) {
        const int from = ex.Endpoint(i).neighbours()[idx].rank;
        EXPECT_TRUE(std::equal(m.begin(), m.end(), sent[from].begin())) << CodecName(kind);
      }).ok());
    }
    const int64_t expected = kind == CodecKind::kBf16 ? 2000 : kind == CodecKind::kInt8 ? 1004
                             : kind == CodecKind::kInt4 ? 504 : kind == CodecKind::kInt2 ? 254
                             : kind == CodecKind::kRandK ? 4 * 250 : kind == CodecKind::kSign ? 4 + 125
                             : kind == CodecKind::kLowRank ? 4 * (10 + 100) : per_message;
    EXPECT_EQ(per_message, expected) << CodecName(kind);
    EXPECT_EQ(ex.Endpoint(0).bytes_sent(), 2 * per_message) << CodecName(kind);
    EXPECT_EQ(ex.Endpoint(0).bytes_received(), 2 * per_message) << CodecName(kind);
    EXPECT_EQ(ex.Endpoint(0).raw_bytes_sent(), 2 * 4000) << CodecName(kind);
  }
}

INSTANTIATE_TEST_SUITE_P(Implementations, NeighbourhoodConformance,
                         ::testing::Values(Impl{"InProcess",
                                                [](const MixingMatrix& w, absl::Duration d) {
                                                  return std::unique_ptr<ExchangeGroup>(new InProcessGroup(w, d));
                                                }},
                                           Impl{"Grpc",
                                                [](const MixingMatrix& w, absl::Duration d) {
                                                  return std::unique_ptr<ExchangeGroup>(new GrpcGroup(w, d));
                                                }}),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace gut::core
