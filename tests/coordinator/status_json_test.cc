// The status page's facts (coordinator/status_page.h) from a CoordinatorView: ranks that have not
// joined are "joining" with pending links (not lost ones), the last state of a run that is over
// shows nobody live, and status.html carries its state inside the page where no text can break out.
#include "coordinator/status_page.h"

#include <nlohmann/json.hpp>

#include "gtest/gtest.h"

namespace gut::coordinator {
namespace {

CoordinatorView Ring4(const std::string& status, const std::map<int, AgentState>& joined) {
  CoordinatorView v;
  v.run_id = "r";
  v.status = status;
  v.expected = 4;
  v.now = absl::FromUnixSeconds(1'000'000);
  for (const auto& [rank, state] : joined) {
    AgentRecord a;
    a.name = "a" + std::to_string(rank);
    a.state = state;
    a.last_seen = v.now - absl::Seconds(rank + 1);
    v.agents[rank] = a;
  }
  v.edges = {{0, 1}, {1, 2}, {2, 3}, {0, 3}};
  return v;
}

std::map<std::string, std::string> LinkStates(const nlohmann::json& j) {
  std::map<std::string, std::string> out;
  for (const auto& l : j["links"]) out[std::to_string(l["a"].get<int>()) + "-" + std::to_string(l["b"].get<int>())] = l["state"];
  return out;
}

TEST(StatusJson, RanksThatHaveNotJoinedAreJoiningAndTheirLinksPending) {
  const auto j = nlohmann::json::parse(StatusJson(Ring4("joining", {{0, AgentState::kAlive}, {1, AgentState::kAlive}})));
  ASSERT_EQ(j["agents"].size(), 4u);
  EXPECT_EQ(j["agents"][0]["state"], "alive");
  EXPECT_DOUBLE_EQ(j["agents"][1]["last_heard_s"].get<double>(), 2.0);
  EXPECT_EQ(j["agents"][2]["state"], "joining");
  EXPECT_TRUE(j["agents"][2]["last_heard_s"].is_null());
  EXPECT_EQ(LinkStates(j), (std::map<std::string, std::string>{{"0-1", "up"}, {"1-2", "pending"}, {"2-3", "pending"},
                                                               {"0-3", "pending"}}));
  EXPECT_TRUE(j["eta_seconds"].is_null());
}

TEST(StatusJson, ALostRankDownsItsLinksAndAStallIsStated) {
  CoordinatorView v = Ring4("running", {{0, AgentState::kAlive}, {1, AgentState::kAlive}, {2, AgentState::kLost},
                                        {3, AgentState::kAlive}});
  v.progress.round = 40;
  v.progress.total = 100;
  v.progress.stalled = true;
  v.progress.stalled_since = v.now - absl::Seconds(12);
  const auto j = nlohmann::json::parse(StatusJson(v));
  EXPECT_EQ(LinkStates(j), (std::map<std::string, std::string>{{"0-1", "up"}, {"1-2", "down"}, {"2-3", "down"},
                                                               {"0-3", "up"}}));
  EXPECT_DOUBLE_EQ(j["stalled_for_s"].get<double>(), 12.0);
  EXPECT_EQ(j["stalled_since"], "1970-01-12T13:46:28Z");
  EXPECT_DOUBLE_EQ(j["progress"].get<double>(), 0.4);
  EXPECT_TRUE(j["eta_seconds"].is_null());
}

TEST(StatusJson, ARunThatIsOverShowsNobodyLive) {
  const auto j = nlohmann::json::parse(StatusJson(Ring4("failed", {{0, AgentState::kAlive}, {1, AgentState::kFailed},
                                                                   {2, AgentState::kLost}, {3, AgentState::kFinished}})));
  std::vector<std::string> states;
  for (const auto& a : j["agents"]) states.push_back(a["state"]);
  EXPECT_EQ(states, (std::vector<std::string>{"stopped", "failed", "lost", "finished"}));
  for (const auto& [link, state] : LinkStates(j)) EXPECT_EQ(state, "ended") << link;
}

TEST(StatusJson, TheSavedPageCarriesItsStateAndNoTextBreaksOutOfIt) {
  CoordinatorView v = Ring4("failed", {{0, AgentState::kAlive}});
  v.failure = "agent 1 said </script><script>alert(1)</script>";
  v.agents[0].name = "<img src=x>";
  const std::string page = StatusPageFile(v);
  const std::string open = "<script type=\"application/json\" id=\"final-state\">";
  const size_t a = page.find(open);
  ASSERT_NE(a, std::string::npos);
  const size_t b = page.find("</script>", a);
  const std::string data = page.substr(a + open.size(), b - a - open.size());
  EXPECT_EQ(data.find('<'), std::string::npos) << data;
  const auto j = nlohmann::json::parse(data);
  EXPECT_EQ(j["failure"], v.failure) << "the same text once parsed";
  EXPECT_EQ(j["agents"][0]["name"], "<img src=x>");
  EXPECT_EQ(page.find("<script", b), page.find("<script>")) << "the page's own script comes next";
  EXPECT_NE(StatusPageHtml().find("<script>"), std::string::npos);
  EXPECT_EQ(StatusPageHtml().find("final-state\">"), std::string::npos) << "the live page fetches its state";
}

}  // namespace
}  // namespace gut::coordinator
