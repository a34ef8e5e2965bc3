// The loopback-cluster test fixture: a temporary directory with a synthetic data set, process
// spawning and reaping (every process still running at the end is killed), waiting for files,
// log lines and exits, and a coordinator plus four agents started by hand (their command lines
// are kept, so a test can kill an agent and start the very same command again).
#ifndef GUT_TESTS_INTEGRATION_CLUSTER_FIXTURE_H_
#define GUT_TESTS_INTEGRATION_CLUSTER_FIXTURE_H_

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "gut/v1/coordinator.pb.h"
#include "tests/testing/synthetic_data.h"

extern char** environ;

namespace gut {

namespace fs = std::filesystem;

inline std::string Read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A JoinRequest as an agent would send it (tests that play agents with a gRPC client of their own).
inline gut::v1::JoinRequest AgentJoin(const std::string& name, int rank, const std::string& token = "") {
  gut::v1::JoinRequest req;
  req.set_agent_name(name);
  req.set_advertised_address("127.0.0.1:1");
  req.set_protocol_version(gut::v1::PROTOCOL_VERSION_1);
  req.set_requested_rank(rank);
  req.set_join_token(token);
  return req;
}

inline std::string Manifest(const std::string& data, int epochs, const std::string& codec, double deadline_s = 30,
                     const std::string& algorithm = "{name: qg-gutm, lr: 0.05, momentum: 0.9, mu: 0.01}",
                     const std::string& topology = "{graph: ring, weights: uniform}", const std::string& extra = "") {
  return "run: {name: it, seed: 3, epochs: " + std::to_string(epochs) +
         ", final_gossip_rounds: 3, eval_every: 2}\n"
         "agents: {count: 4}\n"
         "topology: " + topology + "\n"
         "algorithm: " + algorithm + "\n"
         "data: {path: " + data + ", partition: dirichlet, alpha: 1.0, batch_size: 16, test_batch_size: 50}\n"
         "model: {name: lenet5, init: gut}\n"
         "exchange: {codec: " + codec + ", deadline_s: " + std::to_string(deadline_s) + "}\n" + extra;
}

class Cluster : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("gut-cluster-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "data");
    testing::WriteSyntheticDataset((dir_ / "data").string(), 320, 100);
  }
  void TearDown() override {
    for (pid_t p : pids_) kill(p, SIGKILL);
    for (pid_t p : pids_) waitpid(p, nullptr, 0);
  }
  std::string WriteManifest(const std::string& text) {
    const auto p = dir_ / "manifest.yaml";
    std::ofstream(p) << text;
    return p.string();
  }
  pid_t Spawn(std::vector<std::string> args, const std::string& log, bool append = false) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = -1;
    EXPECT_EQ(posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ), 0) << args[0];
    posix_spawn_file_actions_destroy(&fa);
    pids_.push_back(pid);
    return pid;
  }
  // Exit code, or -1 if still running after `seconds`.
  int Wait(pid_t pid, double seconds) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < until) {
      int st = 0;
      if (waitpid(pid, &st, WNOHANG) == pid) {
        pids_.erase(std::remove(pids_.begin(), pids_.end(), pid), pids_.end());
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -1;
  }
  bool WaitForFile(const fs::path& p, double seconds) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < until) {
      if (fs::exists(p) && fs::file_size(p) > 0) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }
  bool WaitForLog(const fs::path& p, const std::string& text, double seconds) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < until) {
      if (Read(p).find(text) != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  // Starts a coordinator and 4 agents by hand; returns the agents' pids.
  std::vector<pid_t> StartByHand(const std::string& manifest, pid_t* coordinator,
                                 std::vector<std::string> agent_extra = {}) {
    coordinator_args_ = {GUT_COORDINATOR, "--manifest", manifest, "--out", (dir_ / "out").string(), "--listen",
                         "127.0.0.1:0", "--port-file", (dir_ / "port").string(), "--linger-s", "1",
                         "--heartbeat-timeout-s", "3"};
    coordinator_args_.insert(coordinator_args_.end(), coordinator_extra_.begin(), coordinator_extra_.end());
    *coordinator = Spawn(coordinator_args_, (dir_ / "coordinator.log").string());
    EXPECT_TRUE(WaitForFile(dir_ / "port", 20));
    std::ifstream(dir_ / "port") >> port_;
    std::vector<pid_t> agents;
    agent_args_.clear();
    for (int r = 0; r < 4; ++r) {
      std::vector<std::string> args = {GUT_AGENTD, "--coordinator", "127.0.0.1:" + port_, "--listen", "127.0.0.1:0",
                                        "--rank", std::to_string(r), "--name", "a" + std::to_string(r),
                                        "--checkpoint-dir", (dir_ / ("rank-" + std::to_string(r))).string(),
                                        "--fast-failure-detection", "--report-flush-s", report_flush_s_, "--stop-timeout-s", "4"};
      if (!fast_failure_detection_) args.erase(std::find(args.begin(), args.end(), "--fast-failure-detection"));
      args.insert(args.end(), agent_extra.begin(), agent_extra.end());
      if (rank_extra_.count(r)) args.insert(args.end(), rank_extra_[r].begin(), rank_extra_[r].end());
      agent_args_.push_back(args);
      agents.push_back(Spawn(args, AgentLog(r)));
    }
    return agents;
  }
  std::string AgentLog(int r) const { return (dir_ / ("agent-" + std::to_string(r) + ".log")).string(); }
  // Starts agent r's command again; its log continues in the same file.
  pid_t Restart(int r) { return Spawn(agent_args_[r], AgentLog(r), /*append=*/true); }
  // The coordinator again, on the port the agents know, carrying on from its output directory.
  pid_t RestartCoordinator() {
    std::vector<std::string> args = coordinator_args_;
    for (size_t k = 0; k + 1 < args.size(); ++k)
      if (args[k] == "--listen") args[k + 1] = "127.0.0.1:" + port_;
    args.push_back("--resume");
    return Spawn(args, (dir_ / "coordinator.log").string(), /*append=*/true);
  }
  std::vector<std::string> coordinator_args_;
  std::vector<std::string> coordinator_extra_;  // more coordinator flags for StartByHand
  std::map<int, std::vector<std::string>> rank_extra_;  // more flags for one rank's agent
  std::string report_flush_s_ = "2";  // how long a finished agent waits for its reports to go out
  bool fast_failure_detection_ = true;  // agents with a 1 s keepalive (false: gRPC's defaults)
  std::vector<std::vector<std::string>> agent_args_;
  std::string port_;
  fs::path dir_;
  std::vector<pid_t> pids_;
};

}  // namespace gut

#endif  // GUT_TESTS_INTEGRATION_CLUSTER_FIXTURE_H_
