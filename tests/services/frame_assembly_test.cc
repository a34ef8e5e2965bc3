// Framing without gRPC: a message cut into chunks reassembles to the same bytes in any chunk
// order; stale, duplicate and out-of-bounds frames get the verdict the exchange acts on; the
// assembler never buffers more than its limits.
#include "services/frame_assembly.h"

#include <algorithm>
#include <random>

#include "gtest/gtest.h"

namespace gut::services {
namespace {

using Outcome = MessageAssembler::Outcome;

AssemblyLimits Limits() {
  AssemblyLimits l;
  l.chunk_bytes = 1024;
  l.max_message_bytes = 10000;
  l.max_elements = 2500;
  l.max_buffered_bytes = 30000;
  l.max_buffered_messages = 4;
  l.max_rounds_ahead = 8;
  return l;
}

std::vector<gut::v1::Round> Frames(int64_t round, int slot, const std::string& bytes, uint64_t elements = 100) {
  RoundHeader h;
  h.round = round;
  h.slot = slot;
  h.elements = elements;
  std::string b = bytes;
  std::vector<gut::v1::Round> out;
  for (const auto& f : CutIntoFrames(h, &b, 1024)) out.push_back(f->round());
  return out;
}

std::string Bytes(size_t n, int seed) {
  std::mt19937 g(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(g());
  return s;
}

TEST(FrameAssembly, ChunksReassembleInAnyOrder) {
  const std::string msg = Bytes(5000, 1);
  auto frames = Frames(3, 1, msg);
  ASSERT_EQ(frames.size(), 5u);
  EXPECT_EQ(frames[4].payload().size(), 5000u - 4 * 1024);
  std::reverse(frames.begin(), frames.end());
  MessageAssembler a(Limits());
  for (size_t k = 0; k + 1 < frames.size(); ++k) {
    EXPECT_EQ(a.Add(&frames[k], -1).outcome, Outcome::kPartial);
    EXPECT_FALSE(a.Ready(3, 1));
  }
  const auto v = a.Add(&frames.back(), -1);
  EXPECT_EQ(v.outcome, Outcome::kComplete);
  EXPECT_TRUE(v.ack());
  ASSERT_TRUE(a.Ready(3, 1));
  const CompleteMessage m = a.Take(3, 1);
  EXPECT_EQ(m.bytes, msg);
  EXPECT_EQ(m.elements, 100u);
  EXPECT_EQ(a.buffered_bytes(), 0u);
  EXPECT_EQ(a.buffered_messages(), 0u);
}

TEST(FrameAssembly, StaleAndDuplicateFramesAreAcknowledgedOrDropped) {
  MessageAssembler a(Limits());
  auto f = Frames(5, 0, Bytes(100, 2));
  EXPECT_EQ(a.Add(&f[0], 4).outcome, Outcome::kComplete);
  f = Frames(5, 0, Bytes(100, 2));
  auto dup = a.Add(&f[0], 4);
  EXPECT_EQ(dup.outcome, Outcome::kDuplicateMessage);
  EXPECT_TRUE(dup.ack());
  EXPECT_EQ(dup.reason, Reject::kDuplicate);
  a.Take(5, 0);
  f = Frames(5, 0, Bytes(100, 2));
  auto stale = a.Add(&f[0], 5);
  EXPECT_EQ(stale.outcome, Outcome::kStale);
  EXPECT_TRUE(stale.ack()) << "a resend after a reconnect: the sender may drop it";
  auto chunks = Frames(6, 0, Bytes(3000, 3));
  auto again = chunks[1];
  EXPECT_EQ(a.Add(&chunks[1], 5).outcome, Outcome::kPartial);
  auto d = a.Add(&again, 5);
  EXPECT_EQ(d.outcome, Outcome::kDuplicateChunk);
  EXPECT_FALSE(d.ack());
}

TEST(FrameAssembly, RefusesWhatDoesNotFitTheBounds) {
  MessageAssembler a(Limits());
  auto expect_refused = [&](gut::v1::Round r, Reject why, const std::string& says) {
    const auto v = a.Add(&r, -1);
    EXPECT_EQ(v.outcome, Outcome::kRefused) << says;
    EXPECT_EQ(v.reason, why) << v.detail;
    EXPECT_NE(v.detail.find(says), std::string::npos) << v.detail;
  };
  auto ok = Frames(0, 0, Bytes(2000, 4))[0];
  {
    auto r = ok;
    r.set_checksum(r.checksum() ^ 1);
    expect_refused(r, Reject::kChecksum, "checksum");
  }
  {
    auto r = ok;
    r.set_total_bytes(20000);
    expect_refused(r, Reject::kSize, "exceeds the bound");
  }
  {
    auto r = ok;
    r.set_chunk_index(2);
    expect_refused(r, Reject::kSize, "does not fit");
  }
  {
    auto r = ok;
    r.set_slot(9);
    expect_refused(r, Reject::kProtocol, "slot out of range");
  }
  {
    auto r = ok;
    r.set_codec(gut::v1::CODEC_INT8);
    expect_refused(r, Reject::kCodec, "codec");
  }
  {
    auto r = Frames(0, 0, Bytes(100, 5), 9999)[0];
    expect_refused(r, Reject::kSize, "more than the model's");
  }
  {
    auto r = Frames(20, 0, Bytes(100, 5))[0];
    expect_refused(r, Reject::kOverflow, "rounds ahead");
  }
  // Two chunks of one message disagreeing on its size.
  auto parts = Frames(1, 0, Bytes(3000, 6));
  EXPECT_EQ(a.Add(&parts[0], -1).outcome, Outcome::kPartial);
  parts[1].set_elements(7);
  EXPECT_EQ(a.Add(&parts[1], -1).reason, Reject::kProtocol);
}

TEST(FrameAssembly, BufferingAheadIsBounded) {
  MessageAssembler a(Limits());
  for (int64_t r = 0; r < 4; ++r) {
    auto f = Frames(r, 0, Bytes(2000, 7))[0];  // first chunk only: partial, 2000 bytes reserved
    EXPECT_EQ(a.Add(&f, -1).outcome, Outcome::kPartial);
  }
  auto f = Frames(4, 0, Bytes(2000, 7))[0];
  const auto v = a.Add(&f, -1);
  EXPECT_EQ(v.outcome, Outcome::kRefused);
  EXPECT_EQ(v.reason, Reject::kOverflow);
  EXPECT_LE(a.buffered_bytes(), Limits().max_buffered_bytes);
  a.Clear();
  EXPECT_EQ(a.buffered_messages(), 0u);
}

}  // namespace
}  // namespace gut::services
