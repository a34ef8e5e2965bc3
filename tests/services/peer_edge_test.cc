// PeerEdge's bookkeeping of acknowledgements, both ways: acks received are cumulative per slot
// (they drop every earlier frame of that slot and nothing of another slot), and acks owed are
// batched into one frame per slot carrying the latest round.
#include "gtest/gtest.h"
#include "services/frame_assembly.h"
#include "services/peer_edge.h"

namespace gut::services {
namespace {

std::vector<FramePtr> Message(int64_t round, int slot) {
  RoundHeader h;
  h.round = round;
  h.slot = slot;
  h.elements = 4;
  std::string bytes(16, 'x');
  return CutIntoFrames(h, &bytes, 1024);
}

TEST(PeerEdge, AcksAreCumulativePerSlot) {
  PeerEdge e({1, 0.5, "127.0.0.1:1", ""}, true, AssemblyLimits{}, 100);
  for (int64_t r = 0; r < 5; ++r) {
    e.Queue(Message(r, 0), 16);
    e.Queue(Message(r, 1), 16);
  }
  EXPECT_EQ(e.unacknowledged(), 10u);
  e.Acknowledged(2, 0);  // rounds 0, 1, 2 of slot 0
  EXPECT_EQ(e.unacknowledged(), 7u);
  e.Acknowledged(1, 0);  // an older ack arriving late changes nothing
  EXPECT_EQ(e.unacknowledged(), 7u);
  e.Acknowledged(4, 1);
  EXPECT_EQ(e.unacknowledged(), 2u) << "slot 0's rounds 3 and 4 stay";
  e.Acknowledged(4, 0);
  EXPECT_EQ(e.unacknowledged(), 0u);
}

TEST(PeerEdge, OwedAcksGoOutAsOneFramePerSlotWithTheLatestRound) {
  PeerEdge e({1, 0.5, "127.0.0.1:1", ""}, true, AssemblyLimits{}, 100);
  EXPECT_EQ(e.owed_acks(), 0);
  EXPECT_EQ(e.owed_since(), absl::InfiniteFuture());
  const absl::Time t0 = absl::Now();
  e.OweAck(3, 0, t0);
  e.OweAck(4, 0, t0 + absl::Milliseconds(5));
  e.OweAck(4, 1, t0 + absl::Milliseconds(6));
  EXPECT_EQ(e.owed_acks(), 3);
  EXPECT_EQ(e.owed_since(), t0) << "the oldest owed message sets the deadline";
  const auto frames = e.TakeOwedAcks();
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0]->ack().round(), 4);
  EXPECT_EQ(frames[0]->ack().slot(), 0);
  EXPECT_EQ(frames[1]->ack().round(), 4);
  EXPECT_EQ(frames[1]->ack().slot(), 1);
  EXPECT_GT(e.stats().frame_bytes_sent, 0) << "ack bytes are counted";
  EXPECT_EQ(e.owed_acks(), 0);
  EXPECT_TRUE(e.TakeOwedAcks().empty());
}

}  // namespace
}  // namespace gut::services

namespace gut::services {
namespace {

// A stream that does nothing: PeerEdge only queues on it.
class IdleStream final : public PeerStream {
 public:
  IdleStream() : PeerStream(/*client=*/false, nullptr) {}

 private:
  void DoWrite(const gut::v1::PeerFrame*) override {}
  void DoRead() override {}
  void DoFinish(const grpc::Status&, bool) override {}
  void DoCancel() override {}
  const grpc::AuthContext* Auth() const override { return nullptr; }
};

// A second hello for a neighbour whose stream is live replaces that stream and is counted (the
// operator's sign of a silent break, or of someone else holding the neighbour's certificate); a
// reconnect after the old stream ended is not.
TEST(PeerEdge, ALiveStreamReplacedIsCounted) {
  PeerEdge e({3, 0.5, "127.0.0.1:1", ""}, /*dialer=*/false, AssemblyLimits(), 10);
  auto first = std::make_shared<IdleStream>(), second = std::make_shared<IdleStream>();
  EXPECT_EQ(e.Attach(first, 10), nullptr);
  EXPECT_EQ(e.Attach(second, 10), first);
  EXPECT_EQ(e.stats().streams_replaced, 1);
  EXPECT_TRUE(e.StreamEnded(second.get(), 100));
  EXPECT_EQ(e.Attach(std::make_shared<IdleStream>(), 10), nullptr);
  EXPECT_EQ(e.stats().streams_replaced, 1);
  EXPECT_EQ(e.stats().connects, 3);
}

}  // namespace
}  // namespace gut::services
