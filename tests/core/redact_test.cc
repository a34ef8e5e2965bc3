// RedactPaths: what leaves the process keeps file names and loses the directories.
#include "core/common/redact.h"

#include "gtest/gtest.h"

namespace gut::core {
namespace {

TEST(RedactPaths, KeepsTheFileNameAndDropsTheDirectories) {
  EXPECT_EQ(RedactPaths("cannot write '/var/lib/gut/run-7/metrics.csv': No space left on device"),
            "cannot write '.../metrics.csv': No space left on device");
  EXPECT_EQ(RedactPaths("agent 3 failed: /home/alice/data/train.npy is truncated."),
            "agent 3 failed: .../train.npy is truncated.");
  EXPECT_EQ(RedactPaths("dir=/srv/ckpt/ and (/etc/gut/tls/agent.key)"), "dir=.../ckpt/ and (.../agent.key)");
  EXPECT_EQ(RedactPaths("/opt/x"), ".../x");
  EXPECT_EQ(RedactPaths("/top"), "/top");  // nothing to hide above the root
}

TEST(RedactPaths, LeavesWhatIsNotAnAbsolutePathAlone) {
  for (const std::string t : {"no message from agent(s) 2, 3 within 60s", "127.0.0.1:9100/metrics",
                              "see https://example.org/a/b", "ratio 3/4 and a/b/c relative", "loss nan // x", ""}) {
    EXPECT_EQ(RedactPaths(t), t);
  }
}

}  // namespace
}  // namespace gut::core
