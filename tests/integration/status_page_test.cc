// The coordinator's live status page in a real browser (Debian's chromium, headless) during a
// 4-agent run: the page renders the right number of agents and links from /status.json, the
// agents' rounds move between two looks, and a screenshot is written next to the test's outputs.
// A regression run (model.loss: mse) names its metric RMSE on the page and in /metrics. An agent
// name with HTML in it is shown as text, the page comes with a Content-Security-Policy, and a
// client that sends its request a byte at a time does not hold up a scrape.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <thread>

#include <nlohmann/json.hpp>

#include "tests/integration/cluster_fixture.h"
#include "tests/testing/script_models.h"

namespace gut {
namespace {

// The page without its <script>s (whose source mentions the same class names and texts).
std::string Body(std::string dom) {
  for (size_t a; (a = dom.find("<script")) != std::string::npos;) {
    const size_t b = dom.find("</script>", a);
    if (b == std::string::npos) break;
    dom.erase(a, b + 9 - a);
  }
  return dom;
}

// GET http://127.0.0.1:PORT/path: the whole response, or "" after `seconds`.
std::string HttpGet(int port, const std::string& path, double seconds) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{static_cast<time_t>(seconds), static_cast<suseconds_t>((seconds - static_cast<time_t>(seconds)) * 1e6)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  std::string out;
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) {
    const std::string req = "GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n";
    (void)!send(fd, req.data(), req.size(), MSG_NOSIGNAL);
    char buf[4096];
    for (ssize_t n; (n = recv(fd, buf, sizeof(buf), 0)) > 0;) out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

int Count(const std::string& s, const std::string& what) {
  int k = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++k;
  return k;
}

// The rounds shown in the table, in row order.
std::vector<long> Rounds(const std::string& dom) {
  std::vector<long> out;
  const std::string key = "class=\"round\">";
  for (size_t at = dom.find(key); at != std::string::npos; at = dom.find(key, at + 1)) {
    out.push_back(std::stol(dom.substr(at + key.size())));
  }
  return out;
}

const char* Browser() {
  for (const char* b : {"/usr/bin/chromium", "/usr/bin/chromium-browser"})
    if (access(b, X_OK) == 0) return b;
  return nullptr;
}

// Headless chromium on `url`, `extra` flags (--dump-dom writes the page to `out`); its exit code.
int Browse(const char* browser, const fs::path& profile, const std::string& url, const std::string& extra,
           const fs::path& out) {
  const std::string cmd = std::string(browser) + " --headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
                          "--disable-background-networking --disable-component-update --disable-sync "
                          "--user-data-dir=" + profile.string() + " --virtual-time-budget=4000 " + extra + " " + url +
                          " > " + out.string() + " 2> " + out.string() + ".err";
  return std::system(cmd.c_str());
}

// The status page's URL, from the coordinator's "metrics on http://HOST:PORT/metrics" line.
class PageCluster : public Cluster {
 protected:
  std::string PageUrl() {
    if (!WaitForLog(dir_ / "coordinator.log", "metrics on http://", 20)) return "";
    const std::string log = Read(dir_ / "coordinator.log");
    const size_t at = log.find("metrics on http://") + std::strlen("metrics on http://");
    return "http://" + log.substr(at, log.find("/metrics", at) - at) + "/";
  }
};

TEST_F(PageCluster, StatusPageShowsTheRunInABrowser) {
  const char* browser = Browser();
  if (browser == nullptr) GTEST_SKIP() << "chromium not installed (deploy/install-deps.sh --with-test-tools)";
  pid_t coordinator;
  const std::string manifest = WriteManifest(Manifest((dir_ / "data").string(), 200, "fp32"));
  coordinator_args_ = {GUT_COORDINATOR, "--manifest", manifest, "--out", (dir_ / "out").string(), "--listen",
                       "127.0.0.1:0", "--port-file", (dir_ / "port").string(), "--linger-s", "0", "--metrics", "127.0.0.1:0"};
  coordinator = Spawn(coordinator_args_, (dir_ / "coordinator.log").string());
  ASSERT_TRUE(WaitForFile(dir_ / "port", 20));
  std::ifstream(dir_ / "port") >> port_;
  std::vector<pid_t> agents;
  for (int r = 0; r < 4; ++r) {
    agents.push_back(Spawn({GUT_AGENTD, "--coordinator", "127.0.0.1:" + port_, "--rank", std::to_string(r),
                            "--fast-failure-detection", "--stop-timeout-s", "4"},
                           AgentLog(r)));
  }
  const std::string url = PageUrl();
  ASSERT_FALSE(url.empty()) << Read(dir_ / "coordinator.log");
  ASSERT_TRUE(WaitForLog(dir_ / "coordinator.log", "epoch   2/", 120)) << Read(dir_ / "coordinator.log");

  const fs::path profile = dir_ / "chromium-profile";
  auto browse = [&](const std::string& extra, const fs::path& out) { return Browse(browser, profile, url, extra, out); };
  ASSERT_EQ(browse("--dump-dom", dir_ / "dom1.html"), 0) << Read(dir_ / "dom1.html.err");
  std::this_thread::sleep_for(std::chrono::seconds(3));
  ASSERT_EQ(browse("--dump-dom", dir_ / "dom2.html"), 0);
  const std::string dom1 = Body(Read(dir_ / "dom1.html")), dom2 = Body(Read(dir_ / "dom2.html"));
  EXPECT_EQ(Count(dom2, "class=\"agent-row\""), 4) << dom2;
  EXPECT_EQ(Count(dom2, "class=\"agent\""), 4) << "agents drawn in the graph";
  EXPECT_EQ(Count(dom2, "class=\"link\""), 4) << "a 4-ring has four links";
  EXPECT_EQ(Count(dom2, "data-up=\"true\""), 4) << "every link is healthy";
  EXPECT_EQ(Count(dom2, "data-state=\"alive\""), 4);
  EXPECT_NE(dom2.find(">running<"), std::string::npos);
  const auto r1 = Rounds(dom1), r2 = Rounds(dom2);
  ASSERT_EQ(r1.size(), 4u);
  ASSERT_EQ(r2.size(), 4u);
  for (size_t k = 0; k < 4; ++k) EXPECT_GT(r2[k], r1[k]) << "agent " << k << "'s round did not move";
  ASSERT_EQ(browse("--screenshot=" + (dir_ / "status-page.png").string() + " --window-size=1100,560",
                   dir_ / "shot.log"),
            0);
  EXPECT_GT(fs::file_size(dir_ / "status-page.png"), 10000u);
  fs::copy_file(dir_ / "status-page.png", fs::path(GUT_BUILD_DIR) / "status-page.png", fs::copy_options::overwrite_existing);

  for (pid_t a : agents) kill(a, SIGTERM);
  for (pid_t a : agents) EXPECT_EQ(Wait(a, 10), 0);
  kill(coordinator, SIGTERM);
  EXPECT_EQ(Wait(coordinator, 10), 0);
}

TEST_F(PageCluster, ARegressionNamesItsMetricRmseOnThePageAndInMetrics) {
  const char* browser = Browser();
  if (browser == nullptr) GTEST_SKIP() << "chromium not installed (deploy/install-deps.sh --with-test-tools)";
  testing::WriteNpyImages(dir_ / "targets", 320, 60, /*regression=*/true);
  std::string text = Manifest((dir_ / "targets").string(), 200, "fp32");
  text.replace(text.find("data: {path:"), 12, "data: {dataset: npy, path:");
  text.replace(text.find("partition: dirichlet"), 20, "partition: iid");
  text.replace(text.find("model: {name: lenet5, init: gut}"), 32, "model: {name: lenet5, init: gut, loss: mse}");
  const std::string manifest = WriteManifest(text);
  coordinator_args_ = {GUT_COORDINATOR, "--manifest", manifest, "--out", (dir_ / "out").string(), "--listen",
                       "127.0.0.1:0", "--port-file", (dir_ / "port").string(), "--linger-s", "0", "--metrics", "127.0.0.1:0"};
  const pid_t coordinator = Spawn(coordinator_args_, (dir_ / "coordinator.log").string());
  ASSERT_TRUE(WaitForFile(dir_ / "port", 20));
  std::ifstream(dir_ / "port") >> port_;
  std::vector<pid_t> agents;
  for (int r = 0; r < 4; ++r) {
    // Agent 2's name is markup: the page must show it, not run it.
    const std::string name = r == 2 ? "<img src=x onerror=document.title='owned'>" : "agent" + std::to_string(r);
    agents.push_back(Spawn({GUT_AGENTD, "--coordinator", "127.0.0.1:" + port_, "--rank", std::to_string(r), "--name",
                            name, "--checkpoint-dir", (dir_ / ("rank-" + std::to_string(r))).string(), "--metrics",
                            "127.0.0.1:0", "--fast-failure-detection", "--stop-timeout-s", "4"},
                           AgentLog(r)));
  }
  const std::string url = PageUrl();
  ASSERT_FALSE(url.empty()) << Read(dir_ / "coordinator.log");
  ASSERT_TRUE(WaitForLog(dir_ / "coordinator.log", "epoch   2/", 120)) << Read(dir_ / "coordinator.log");
  EXPECT_NE(Read(dir_ / "coordinator.log").find("  rmse "), std::string::npos) << "the epoch line names the metric";
  ASSERT_EQ(Browse(browser, dir_ / "chromium-profile", url, "--dump-dom", dir_ / "dom.html"), 0);
  const std::string dom = Body(Read(dir_ / "dom.html"));
  EXPECT_NE(dom.find("id=\"metric-label\">test RMSE<"), std::string::npos) << dom;
  EXPECT_NE(dom.find("id=\"metric-col\">RMSE<"), std::string::npos) << dom;
  const size_t acc = dom.find("id=\"acc\">");
  ASSERT_NE(acc, std::string::npos);
  EXPECT_EQ(dom.substr(acc, dom.find('<', acc + 9) - acc).find('%'), std::string::npos) << "an RMSE is no percentage";
  EXPECT_NE(dom.find("&lt;img src=x onerror=document.title='owned'&gt;"), std::string::npos) << dom;
  EXPECT_EQ(dom.find("<img"), std::string::npos) << "an agent's name became markup";
  EXPECT_EQ(dom.find("owned</title>"), std::string::npos);
  // The page's headers, and a scrape while a client sends its request a byte every 0.5 s.
  const int port = std::stoi(url.substr(url.rfind(':') + 1));
  const std::string page = HttpGet(port, "/", 5);
  EXPECT_NE(page.find("Content-Security-Policy: default-src 'none'; script-src 'sha256-"), std::string::npos) << page;
  EXPECT_NE(page.find("X-Content-Type-Options: nosniff"), std::string::npos);
  std::atomic<bool> done{false};
  std::thread slow([&] {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) {
      for (const char* b = "GET /metrics HTTP/1.1\r\n"; *b != 0 && !done; ++b) {
        (void)!send(fd, b, 1, MSG_NOSIGNAL);
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
      }
    }
    close(fd);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  const auto t0 = std::chrono::steady_clock::now();
  const std::string scrape = HttpGet(port, "/metrics", 5);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  done = true;
  slow.join();
  EXPECT_NE(scrape.find("gut_coordinator_test_rmse"), std::string::npos);
  EXPECT_LT(took, 2.0) << "a scrape waited for a slow client";
  for (pid_t a : agents) kill(a, SIGTERM);
  for (pid_t a : agents) EXPECT_EQ(Wait(a, 10), 0);
  kill(coordinator, SIGTERM);
  EXPECT_EQ(Wait(coordinator, 10), 0);
  // The last /metrics pages: the RMSE series, not the accuracy ones.
  const std::string coord = Read(dir_ / "out" / "metrics.prom"), agent = Read(dir_ / "rank-0" / "metrics.prom");
  EXPECT_NE(coord.find("gut_coordinator_test_rmse{"), std::string::npos) << coord;
  EXPECT_EQ(coord.find("gut_coordinator_test_accuracy_ratio"), std::string::npos);
  EXPECT_NE(coord.find("metric=\"rmse\""), std::string::npos) << "gut_run_info names the metric";
  EXPECT_NE(agent.find("\ngut_agent_test_rmse"), std::string::npos) << agent;
  EXPECT_EQ(agent.find("gut_agent_test_accuracy_ratio"), std::string::npos);
}

// Issue 21: the page tells the truth in time. While agents join, the missing ones are grey and
// their links pending (not red "lost"); while the ring stalls (one agent stopped) there is no ETA,
// a "stalled since" line, and the agent is named as not heard from; after the run, status.html
// next to summary.json shows the final state: finished, no ETA, nobody live. Screenshots of the
// three go to the build directory (docs/images/ holds copies).
TEST_F(PageCluster, ThePageTellsJoiningAStallAndTheEnd) {
  const char* browser = Browser();
  if (browser == nullptr) GTEST_SKIP() << "chromium not installed (deploy/install-deps.sh --with-test-tools)";
  const std::string manifest = WriteManifest(Manifest((dir_ / "data").string(), 10, "fp32"));
  coordinator_args_ = {GUT_COORDINATOR, "--manifest", manifest, "--out", (dir_ / "out").string(), "--listen",
                       "127.0.0.1:0", "--port-file", (dir_ / "port").string(), "--linger-s", "0", "--metrics",
                       "127.0.0.1:0", "--heartbeat-timeout-s", "3"};
  const pid_t coordinator = Spawn(coordinator_args_, (dir_ / "coordinator.log").string());
  ASSERT_TRUE(WaitForFile(dir_ / "port", 20));
  std::ifstream(dir_ / "port") >> port_;
  std::vector<pid_t> agents;
  auto start = [&](int r) {
    agents.push_back(Spawn({GUT_AGENTD, "--coordinator", "127.0.0.1:" + port_, "--rank", std::to_string(r), "--name",
                            "a" + std::to_string(r), "--fast-failure-detection", "--stop-timeout-s", "4"},
                           AgentLog(r)));
  };
  start(0);
  start(1);
  const std::string url = PageUrl();
  ASSERT_FALSE(url.empty()) << Read(dir_ / "coordinator.log");
  ASSERT_TRUE(WaitForLog(dir_ / "coordinator.log", "2/4 in", 30)) << Read(dir_ / "coordinator.log");
  const fs::path profile = dir_ / "chromium-profile";
  auto look = [&](const std::string& at, const std::string& name) {
    EXPECT_EQ(Browse(browser, profile, at, "--dump-dom", dir_ / (name + ".html")), 0);
    EXPECT_EQ(Browse(browser, profile, at, "--screenshot=" + (dir_ / (name + ".png")).string() + " --window-size=1100,560",
                     dir_ / (name + ".log")),
              0);
    if (fs::exists(dir_ / (name + ".png"))) {
      fs::copy_file(dir_ / (name + ".png"), fs::path(GUT_BUILD_DIR) / (name + ".png"), fs::copy_options::overwrite_existing);
    }
    return Body(Read(dir_ / (name + ".html")));
  };

  const std::string joining = look(url, "status-joining");
  EXPECT_NE(joining.find(">joining<"), std::string::npos) << joining;
  EXPECT_EQ(Count(joining, "class=\"agent\" data-rank"), 4) << joining;
  EXPECT_EQ(Count(joining, "data-state=\"joining\""), 2) << "ranks 2 and 3 have not joined";
  EXPECT_EQ(Count(joining, "data-state=\"pending\""), 3) << "the links to them are pending";
  EXPECT_EQ(Count(joining, "data-state=\"down\""), 0) << "no link is drawn lost while agents join";
  EXPECT_NE(joining.find("2 not joined yet"), std::string::npos) << joining;

  start(2);
  start(3);
  ASSERT_TRUE(WaitForLog(dir_ / "coordinator.log", "epoch   2/", 120)) << Read(dir_ / "coordinator.log");
  ASSERT_EQ(kill(agents[2], SIGSTOP), 0);
  std::this_thread::sleep_for(std::chrono::seconds(14));  // a stall: no round for 10 s (and 10 rounds' time)
  const std::string stalled = look(url, "status-stalled");
  EXPECT_NE(stalled.find("stalled since"), std::string::npos) << stalled;
  EXPECT_NE(stalled.find("id=\"eta\">-<"), std::string::npos) << "no ETA while nothing moves";
  EXPECT_NE(stalled.find("not heard from: 2"), std::string::npos) << stalled;
  EXPECT_GE(Count(stalled, "data-state=\"down\""), 2) << "agent 2's links";
  ASSERT_EQ(kill(agents[2], SIGCONT), 0);

  for (pid_t a : agents) EXPECT_EQ(Wait(a, 120), 0);
  EXPECT_EQ(Wait(coordinator, 30), 0) << Read(dir_ / "coordinator.log");
  ASSERT_TRUE(fs::exists(dir_ / "out" / "status.html"));
  const std::string end = look("file://" + (dir_ / "out" / "status.html").string(), "status-final");
  EXPECT_NE(end.find("id=\"status\">finished<"), std::string::npos) << end;
  EXPECT_NE(end.find("id=\"eta\">-<"), std::string::npos) << end;
  EXPECT_NE(end.find("id=\"percent\">100.0%<"), std::string::npos) << end;
  EXPECT_EQ(Count(end, "data-state=\"finished\""), 4) << end;
  EXPECT_EQ(Count(end, "data-state=\"alive\""), 0) << "nobody is live after the run";
  EXPECT_NE(end.find("the run's final state, saved at"), std::string::npos) << end;
  EXPECT_EQ(end.find("stalled since"), std::string::npos);
}

}  // namespace
}  // namespace gut
