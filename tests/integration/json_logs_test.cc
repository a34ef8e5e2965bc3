// Issue 21: under --log-format json every line a daemon writes is one JSON object that a log
// shipper can use without parsing text: ts, level, name, round, run_id, rank, epoch, event and
// msg, and the epoch line's numbers as fields (core/common/log_context.h).
#include <nlohmann/json.hpp>

#include "tests/integration/cluster_fixture.h"

namespace gut {
namespace {

class JsonLogs : public Cluster {};

std::vector<nlohmann::json> Lines(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::istringstream in(Read(path));
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    EXPECT_FALSE(j.is_discarded()) << path << ": not JSON: " << line;
    if (!j.is_discarded()) out.push_back(j);
  }
  return out;
}

TEST_F(JsonLogs, EveryLineIsJsonWithRunRankEpochEventAndTheEpochNumbers) {
  coordinator_extra_ = {"--log-format", "json"};
  pid_t coordinator;
  auto agents = StartByHand(WriteManifest(Manifest((dir_ / "data").string(), 3, "fp32")), &coordinator,
                            {"--log-format", "json"});
  for (int r = 0; r < 4; ++r) EXPECT_EQ(Wait(agents[r], 120), 0) << Read(AgentLog(r));
  EXPECT_EQ(Wait(coordinator, 30), 0) << Read(dir_ / "coordinator.log");
  const std::string run_id = nlohmann::json::parse(Read(dir_ / "out" / "coordinator-state.json"))["run_id"];
  ASSERT_FALSE(run_id.empty());

  const std::vector<std::string> fields = {"ts", "level", "name", "round", "run_id", "rank", "epoch", "event", "msg"};
  auto check_fields = [&](const std::vector<nlohmann::json>& lines, const std::string& who) {
    ASSERT_FALSE(lines.empty()) << who;
    for (const auto& j : lines)
      for (const auto& f : fields) EXPECT_TRUE(j.contains(f)) << who << " line without '" << f << "': " << j.dump();
  };
  const auto coord = Lines((dir_ / "coordinator.log").string());
  check_fields(coord, "coordinator");
  int epochs = 0;
  for (const auto& j : coord) {
    EXPECT_EQ(j["run_id"], run_id) << j.dump();
    EXPECT_TRUE(j["rank"].is_null()) << j.dump();
    if (j["event"] != "epoch") continue;
    ++epochs;
    EXPECT_EQ(j["epoch"], epochs) << j.dump();
    for (const char* k : {"train_loss", "consensus_distance", "rounds_per_s", "eta_s", "rounds", "lr"})
      EXPECT_TRUE(j[k].is_number()) << k << ": " << j.dump();
    EXPECT_TRUE(j.contains("test_acc_mean")) << j.dump();
  }
  EXPECT_EQ(epochs, 3);
  bool complete = false;
  for (const auto& j : coord) complete = complete || (j["event"] == "run_complete" && j["test_acc_mean"].is_number());
  EXPECT_TRUE(complete) << "the run's end as an event with its final metric";

  for (int r = 0; r < 4; ++r) {
    const auto lines = Lines(AgentLog(r));
    check_fields(lines, "agent " + std::to_string(r));
    int agent_epochs = 0;
    bool joined = false;
    for (const auto& j : lines) {
      joined = joined || !j["run_id"].is_null();
      if (!joined) continue;  // lines before the join know neither run nor rank
      EXPECT_EQ(j["run_id"], run_id) << j.dump();
      EXPECT_EQ(j["rank"], r) << j.dump();
      if (j["event"] != "epoch") continue;
      ++agent_epochs;
      EXPECT_EQ(j["epoch"], agent_epochs) << j.dump();
      for (const char* k : {"train_loss", "rounds_per_s", "wait_fraction", "eta_s", "rounds"})
        EXPECT_TRUE(j[k].is_number()) << k << ": " << j.dump();
    }
    EXPECT_EQ(agent_epochs, 3) << "agent " << r;
  }
}

}  // namespace
}  // namespace gut
