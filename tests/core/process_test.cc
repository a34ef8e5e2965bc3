// The daemons raise their open-file soft limit to the hard limit at start-up (a stranger's idle
// connections exhaust the default 1024 first).
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "core/common/process.h"
#include "gtest/gtest.h"

namespace gut::core {
namespace {

TEST(Process, RaiseFileLimitLiftsTheSoftLimitToTheHardOne) {
  rlimit before{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &before), 0);
  rlimit low = before;
  low.rlim_cur = std::min<rlim_t>(64, before.rlim_max);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  EXPECT_EQ(RaiseFileLimit(), static_cast<long>(before.rlim_max));
  rlimit after{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &after), 0);
  EXPECT_EQ(after.rlim_cur, before.rlim_max);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &before), 0);
}

TEST(Process, RestrictFileModesLeavesNothingForOthers) {
  const mode_t before = umask(022);
  EXPECT_EQ(RestrictFileModes(), 027u);
  const std::string dir = ::testing::TempDir() + "/gut-modes-" + std::to_string(getpid());
  ASSERT_EQ(mkdir(dir.c_str(), 0777), 0);
  const std::string file = dir + "/f";
  std::fclose(std::fopen(file.c_str(), "w"));
  struct stat d{}, f{};
  ASSERT_EQ(stat(dir.c_str(), &d), 0);
  ASSERT_EQ(stat(file.c_str(), &f), 0);
  EXPECT_EQ(d.st_mode & 0777, 0750u);
  EXPECT_EQ(f.st_mode & 0777, 0640u);
  umask(077);
  EXPECT_EQ(RestrictFileModes(), 077u) << "a stricter umask stays";
  std::remove(file.c_str());
  rmdir(dir.c_str());
  umask(before);
}

}  // namespace
}  // namespace gut::core
