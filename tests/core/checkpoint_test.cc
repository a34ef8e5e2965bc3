// Checkpoint files: a state bundle round-trips bit for bit; a torn, truncated or corrupted newest
// file is detected and the previous one used; files of another run or another model are refused;
// retention keeps the newest two scheduled checkpoints and the newest stop checkpoint; a rollback
// discards what came after it.
#include <filesystem>
#include <fstream>

#include "core/algorithm/algorithm.h"
#include "core/checkpoint/checkpoint_store.h"
#include "gtest/gtest.h"

namespace gut::core {
namespace {

namespace fs = std::filesystem;

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("gut_ckpt_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  CheckpointStore Open(const std::string& run = "run-a", uint64_t layout = 7) {
    auto s = CheckpointStore::Open(dir_.string(), {run, layout});
    EXPECT_TRUE(s.ok()) << s.status();
    return std::move(*s);
  }
  static StateBundle Bundle(float x) {
    StateBundle b;
    StateSaver<float> v(&b);
    std::vector<float> values = {x, -x, 1e-30f};
    int64_t n = 3;
    double d = 0.25;
    bool f = true;
    std::string t = "rows\nof text";
    v.Values("values", &values);
    v.Integer("n", &n);
    v.Double("d", &d);
    v.Flag("f", &f);
    v.Text("t", &t);
    return b;
  }
  fs::path dir_;
};

TEST_F(CheckpointTest, AMethodsStateRoundTripsBitForBit) {
  Hyperparameters h;
  h.algorithm = "qg-gutm";
  h.momentum = 0.9;
  h.mu = 0.05;
  std::vector<float> x0 = {0.5f, -1.25f, 3.0f};
  auto a = CreateAlgorithm<float>(h, x0, 1.0 / 3);
  auto b = CreateAlgorithm<float>(h, std::vector<float>{0, 0, 0}, 1.0 / 3);
  ASSERT_TRUE(a.ok() && b.ok());
  StateBundle saved;
  StateSaver<float> saver(&saved);
  (*a)->VisitState(&saver);
  StateBundle parsed;
  ASSERT_TRUE(StateBundle::Parse(saved.Serialize(), &parsed).ok());
  StateLoader<float> loader(&parsed);
  (*b)->VisitState(&loader);
  ASSERT_TRUE(loader.status().ok()) << loader.status();
  EXPECT_EQ(std::vector<float>((*b)->params().begin(), (*b)->params().end()), x0);
  StateBundle again;
  StateSaver<float> saver2(&again);
  (*b)->VisitState(&saver2);
  EXPECT_EQ(again.Serialize(), saved.Serialize());
}

TEST_F(CheckpointTest, LoadingADifferentShapeOrKindIsAnErrorNamingTheItem) {
  StateBundle b = Bundle(1);
  b.items["n"].kind = 'f';
  StateLoader<float> v(&b);
  int64_t n = 0;
  v.Integer("n", &n);
  EXPECT_EQ(v.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(v.status().message().find("'n'"), std::string::npos) << v.status();
  StateLoader<float> w(&b);
  double missing = 0;
  w.Double("nothing", &missing);
  EXPECT_NE(w.status().message().find("no item 'nothing'"), std::string::npos) << w.status();
}

TEST_F(CheckpointTest, ATornNewestFileFallsBackToThePreviousOne) {
  auto store = Open();
  ASSERT_TRUE(store.Write(10, Bundle(1), true).ok());
  ASSERT_TRUE(store.Write(20, Bundle(2), true).ok());
  const fs::path newest = dir_ / "ckpt-000000000020.gutckpt";
  ASSERT_TRUE(fs::exists(newest));
  EXPECT_EQ(store.Rounds(), (std::vector<int64_t>{20, 10}));
  // Torn: the file ends half-way.
  fs::resize_file(newest, fs::file_size(newest) / 2);
  std::vector<std::string> skipped;
  auto c = store.LoadNewest(&skipped);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->round, 10);
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_NE(skipped[0].find("ckpt-000000000020"), std::string::npos) << skipped[0];
  EXPECT_EQ(store.Rounds(), (std::vector<int64_t>{10}));
  // Corrupt: one flipped bit in the middle.
  ASSERT_TRUE(store.Write(30, Bundle(3), true).ok());
  {
    std::fstream f(dir_ / "ckpt-000000000030.gutckpt", std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(40);
    char ch;
    f.get(ch);
    f.seekp(40);
    f.put(static_cast<char>(ch ^ 0x10));
  }
  auto d = store.Load(30);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(d.status().message().find("checksum"), std::string::npos) << d.status();
  auto e = store.LoadNewest();
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->round, 10);
  const float* v = reinterpret_cast<const float*>(e->state.items.at("values").bytes.data());
  EXPECT_EQ(v[0], 1.0f);
}

TEST_F(CheckpointTest, FilesOfAnotherRunOrModelAreNotUsed) {
  ASSERT_TRUE(Open("run-a", 7).Write(5, Bundle(1), true).ok());
  EXPECT_TRUE(Open("run-b", 7).Rounds().empty());
  auto other_model = Open("run-a", 8).Load(5);
  EXPECT_EQ(other_model.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(other_model.status().message().find("parameter layout"), std::string::npos) << other_model.status();
  auto [run, rounds] = Open("", 0).Inventory();
  EXPECT_EQ(run, "run-a");
  EXPECT_EQ(rounds, (std::vector<int64_t>{5}));
}

// What a restarting agent announces leaves a damaged file out, and says which and why.
TEST_F(CheckpointTest, InventoryNamesTheFilesItSkips) {
  auto store = Open();
  for (int64_t r : {10, 20}) ASSERT_TRUE(store.Write(r, Bundle(r), true).ok());
  const fs::path newest = dir_ / "ckpt-000000000020.gutckpt";
  ASSERT_TRUE(fs::exists(newest));
  fs::resize_file(newest, fs::file_size(newest) / 2);
  std::vector<std::string> skipped;
  auto [run, rounds] = store.Inventory(&skipped);
  EXPECT_EQ(rounds, (std::vector<int64_t>{10}));
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_EQ(skipped[0].rfind(newest.string() + ": ", 0), 0u) << skipped[0];
}

TEST_F(CheckpointTest, RetentionKeepsTwoScheduledAndTheNewestStop) {
  auto store = Open();
  for (int64_t r : {10, 20, 30}) ASSERT_TRUE(store.Write(r, Bundle(r), true).ok());
  ASSERT_TRUE(store.Write(33, Bundle(33), false).ok());
  EXPECT_EQ(store.Rounds(), (std::vector<int64_t>{33, 30, 20}));
  ASSERT_TRUE(store.Write(40, Bundle(40), true).ok());
  EXPECT_EQ(store.Rounds(), (std::vector<int64_t>{40, 30})) << "a stop checkpoint older than the newest is moot";
  EXPECT_FALSE(fs::exists(dir_ / "ckpt-000000000040.gutckpt.tmp"));
  store.DiscardAfter(30);
  EXPECT_EQ(store.Rounds(), (std::vector<int64_t>{30}));
}

TEST_F(CheckpointTest, APinnedRoundOutlivesRetentionUntilUnpinned) {
  auto store = Open("run", 7);
  for (int64_t r : {10, 20}) ASSERT_TRUE(store.Write(r, Bundle(r), true).ok());
  store.Pin(10);  // the coordinator prepares a restore of round 10 (RunCommand.hold_round)
  for (int64_t r : {30, 40, 50}) ASSERT_TRUE(store.Write(r, Bundle(r), true).ok());
  EXPECT_EQ(store.Rounds(), (std::vector<int64_t>{50, 40, 10}));
  EXPECT_TRUE(store.Load(10).ok());
  store.Pin(0);
  ASSERT_TRUE(store.Write(60, Bundle(60), true).ok());
  EXPECT_EQ(store.Rounds(), (std::vector<int64_t>{60, 50}));
}

TEST_F(CheckpointTest, NotACheckpointIsRefusedWithAClearError) {
  auto c = DecodeCheckpoint("hello, world", {});
  EXPECT_EQ(c.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(c.status().message().find("not a gut checkpoint"), std::string::npos) << c.status();
}

}  // namespace
}  // namespace gut::core
