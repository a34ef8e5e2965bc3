// Issue 21: an agent's log tells a neighbour that stopped answering (a hung or paused process, a
// cut network: gRPC's keepalive fired) from one that closed its connection (its process exited or
// was killed), with gRPC's own text after the phrase.
#include "gtest/gtest.h"
#include "services/peer_wire.h"

namespace gut::services {
namespace {

TEST(StreamEndCause, NamesWhatHappenedToTheNeighbour) {
  EXPECT_EQ(StreamEndCause(14, "keepalive watchdog timeout"),
            "stopped answering: no keepalive ping answered (hung, paused, or cut off by the network): keepalive "
            "watchdog timeout (code 14)");
  EXPECT_EQ(StreamEndCause(14, "ping timeout").rfind("stopped answering", 0), 0u);
  EXPECT_EQ(StreamEndCause(14, "recvmsg:Connection reset by peer").rfind("closed its connection (its process", 0), 0u);
  EXPECT_EQ(StreamEndCause(14, "Socket closed").rfind("closed its connection", 0), 0u);
  EXPECT_EQ(StreamEndCause(1, "Cancelled").rfind("cancelled its stream: Cancelled (code 1)", 0), 0u);
  EXPECT_EQ(StreamEndCause(13, "boom"), "ended the stream with an error: boom (code 13)");
}

}  // namespace
}  // namespace gut::services
