// Real processes on loopback: gut-coordinator and gut-agentd started by the launcher
// (deploy/local/run-cluster.sh) or one by one. Checks that a cluster computes exactly what gut-sim
// computes (bit for bit, lossless and lossy codec), that training survives the coordinator, that
// SIGTERM stops an agent cleanly and its neighbours fail with a clear error instead of hanging,
// and that every /metrics page passes promtool when it is available.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>

#include "core/config/manifest.h"
#include "gtest/gtest.h"
#include "sim/simulation.h"
#include "tests/testing/synthetic_data.h"

extern char** environ;

namespace gut {
namespace {

namespace fs = std::filesystem;

std::string Read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Manifest(const std::string& data, int epochs, const std::string& codec, double deadline_s = 30,
                     const std::string& algorithm = "{name: qg-gutm, lr: 0.05, momentum: 0.9, mu: 0.01}",
                     const std::string& topology = "{graph: ring, weights: uniform}") {
  return "run: {name: it, seed: 3, epochs: " + std::to_string(epochs) +
         ", final_gossip_rounds: 3, eval_every: 2}\n"
         "agents: {count: 4}\n"
         "topology: " + topology + "\n"
         "algorithm: " + algorithm + "\n"
         "data: {path: " + data + ", partition: dirichlet, alpha: 1.0, batch_size: 16, test_batch_size: 50}\n"
         "model: {name: lenet5, init: gut}\n"
         "exchange: {codec: " + codec + ", deadline_s: " + std::to_string(deadline_s) + "}\n";
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
  pid_t Spawn(std::vector<std::string> args, const std::string& log) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
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
    *coordinator = Spawn({GUT_COORDINATOR, "--manifest", manifest, "--out", (dir_ / "out").string(), "--listen",
                          "127.0.0.1:0", "--port-file", (dir_ / "port").string(), "--linger-s", "0"},
                         (dir_ / "coordinator.log").string());
    EXPECT_TRUE(WaitForFile(dir_ / "port", 20));
    std::string port;
    std::ifstream(dir_ / "port") >> port;
    std::vector<pid_t> agents;
    for (int r = 0; r < 4; ++r) {
      std::vector<std::string> args = {GUT_AGENTD, "--coordinator", "127.0.0.1:" + port, "--listen", "127.0.0.1:0",
                                        "--rank", std::to_string(r), "--name", "a" + std::to_string(r),
                                        "--checkpoint-dir", (dir_ / ("rank-" + std::to_string(r))).string(),
                                        "--fast-failure-detection", "--report-flush-s", "2", "--stop-timeout-s", "4"};
      args.insert(args.end(), agent_extra.begin(), agent_extra.end());
      agents.push_back(Spawn(args, (dir_ / ("agent-" + std::to_string(r) + ".log")).string()));
    }
    return agents;
  }
  fs::path dir_;
  std::vector<pid_t> pids_;
};

// promtool from PATH or from the install script's download (deploy/install-deps.sh --promtool).
std::string Promtool() {
  for (const std::string& p : {std::string(GUT_SOURCE_DIR) + "/.deps/bin/promtool", std::string("/usr/bin/promtool")}) {
    if (access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

void CheckBitIdentical(const std::string& codec, const fs::path& dir, const std::string& manifest_text,
                       const std::string& manifest_path) {
  auto config = core::ParseManifest(manifest_text, "test", {});
  ASSERT_TRUE(config.ok()) << config.status();
  config->threads = 2;
  auto sim = sim::Simulation::Create(*config);
  ASSERT_TRUE(sim.ok()) << sim.status();
  auto summary = (*sim)->Run(nullptr);
  ASSERT_TRUE(summary.ok()) << summary.status();

  const fs::path out = dir / ("cluster-" + codec);
  const std::string cmd = "GUT_BUILD_DIR=" + std::string(GUT_BUILD_DIR) + " bash " + GUT_SOURCE_DIR +
                          "/deploy/local/run-cluster.sh --manifest " + manifest_path + " --out " + out.string() +
                          " --agent-arg --fast-failure-detection > " + (dir / ("launcher-" + codec + ".log")).string() +
                          " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << Read(dir / ("launcher-" + codec + ".log"));
  for (int r = 0; r < 4; ++r) {
    char name[32];
    std::snprintf(name, sizeof(name), "agents/rank-%02d/params-final.f32", r);
    const std::string got = Read(out / name);
    const std::vector<float> want = (*sim)->Params(r);
    ASSERT_EQ(got.size(), want.size() * sizeof(float)) << name;
    EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size()), 0)
        << codec << ": agent " << r << "'s final parameters differ from gut-sim's";
  }
  // The coordinator's table agrees with gut-sim's where both compute the same thing.
  const std::string csv = Read(out / "metrics.csv");
  std::istringstream lines(csv);
  std::string header, row;
  std::getline(lines, header);
  EXPECT_EQ(header.substr(0, 40), std::string("epoch,rounds,lr,train_loss,test_acc_mean,").substr(0, 40));
  for (const auto& rec : summary->epochs) {
    ASSERT_TRUE(std::getline(lines, row));
    if (!rec.evaluated) continue;
    char acc[32];
    std::snprintf(acc, sizeof(acc), ",%.6f,", rec.acc_mean);
    EXPECT_NE(row.find(acc), std::string::npos) << codec << " epoch " << rec.epoch << ": " << row;
  }
  EXPECT_TRUE(fs::exists(out / "summary.json"));
  EXPECT_TRUE(fs::exists(out / "metrics.svg"));
  EXPECT_TRUE(fs::exists(out / "prometheus-targets.json"));

  const std::string promtool = Promtool();
  if (promtool.empty()) {
    std::printf("promtool not found (deploy/install-deps.sh --promtool): /metrics pages not linted\n");
    return;
  }
  std::vector<fs::path> pages = {out / "metrics.prom"};
  for (int r = 0; r < 4; ++r) {
    char name[32];
    std::snprintf(name, sizeof(name), "agents/rank-%02d/metrics.prom", r);
    pages.push_back(out / name);
  }
  for (const auto& p : pages) {
    ASSERT_TRUE(fs::exists(p)) << p;
    const std::string lint = promtool + " check metrics < " + p.string() + " > " + p.string() + ".lint 2>&1";
    EXPECT_EQ(std::system(lint.c_str()), 0) << p << ":\n" << Read(p.string() + ".lint");
  }
  EXPECT_NE(Read(pages[1]).find("gut_agent_peer_sent_bytes_total{peer=\"1\"}"), std::string::npos);
}

TEST_F(Cluster, ComputesExactlyWhatTheSimulatorComputes) {
  const std::string text = Manifest((dir_ / "data").string(), 4, "fp32");
  CheckBitIdentical("fp32", dir_, text, WriteManifest(text));
}

TEST_F(Cluster, ComputesExactlyWhatTheSimulatorComputesWithInt8) {
  const std::string text = Manifest((dir_ / "data").string(), 2, "int8");
  CheckBitIdentical("int8", dir_, text, WriteManifest(text));
}

// The baselines that send two messages per round (GT, NGM: slots 0 and 1), per-neighbour
// messages (NGM's and CGA's cross-gradients, RelaySGD's relays) and one-value messages (RelaySGD's
// counts) go through the same gRPC exchange and still match gut-sim bit for bit.
TEST_F(Cluster, BaselinesComputeExactlyWhatTheSimulatorComputes) {
  const std::string data = (dir_ / "data").string();
  struct Case {
    std::string name, algorithm, topology;
  };
  for (const Case& c : {Case{"gt", "{name: gt, lr: 0.05}", "{graph: ring, weights: uniform}"},
                        Case{"cga", "{name: cga, lr: 0.05, momentum: 0.9}", "{graph: ring, weights: uniform}"},
                        Case{"relaysgd", "{name: relaysgd, lr: 0.05, momentum: 0.9}",
                             "{graph: chain, weights: metropolis}"}}) {
    SCOPED_TRACE(c.name);
    const std::string text = Manifest(data, 2, "fp32", 30, c.algorithm, c.topology);
    std::ofstream(dir_ / (c.name + ".yaml")) << text;
    CheckBitIdentical(c.name, dir_, text, (dir_ / (c.name + ".yaml")).string());
  }
}

TEST_F(Cluster, TrainingSurvivesTheCoordinator) {
  pid_t coordinator;
  auto agents = StartByHand(WriteManifest(Manifest((dir_ / "data").string(), 40, "fp32")), &coordinator);
  // Bootstrap is over once every agent has its join response (the coordinator's "4/4 in" comes
  // just before the responses go out).
  for (int r = 0; r < 4; ++r) {
    ASSERT_TRUE(WaitForLog(dir_ / ("agent-" + std::to_string(r) + ".log"), "joined run", 60))
        << Read(dir_ / "coordinator.log");
  }
  kill(coordinator, SIGKILL);
  ASSERT_NE(Wait(coordinator, 10), -1);
  for (int r = 0; r < 4; ++r) {
    const int code = Wait(agents[r], 180);
    EXPECT_EQ(code, 0) << Read(dir_ / ("agent-" + std::to_string(r) + ".log"));
    EXPECT_EQ(fs::file_size(dir_ / ("rank-" + std::to_string(r)) / "params-final.f32"), 61706u * 4);
    // Its own record of every epoch, although nobody collected the reports.
    const std::string csv = Read(dir_ / ("rank-" + std::to_string(r)) / "metrics.csv");
    EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 1 + 40 + 1) << csv;
  }
  EXPECT_NE(Read(dir_ / "agent-0.log").find("not delivered"), std::string::npos);
}

// grpc.health.v1.Health/Check by hand (no generated stubs needed): request {service = 1},
// response {status = 1}; SERVING = 1, NOT_SERVING = 2. Returns the status, or -1.
int HealthCheck(const std::string& address, const std::string& service) {
  auto ch = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(ch);
  std::string req;
  if (!service.empty()) req = std::string("\x0a") + static_cast<char>(service.size()) + service;
  grpc::Slice slice(req);
  grpc::ByteBuffer in(&slice, 1), out;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  grpc::Status status;
  stub.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &in, &out, [&](grpc::Status s) {
    std::lock_guard<std::mutex> l(mu);
    status = s;
    done = true;
    cv.notify_all();
  });
  std::unique_lock<std::mutex> l(mu);
  cv.wait(l, [&] { return done; });
  if (!status.ok()) return -1;
  std::vector<grpc::Slice> slices;
  out.Dump(&slices);
  std::string bytes;
  for (auto& sl : slices) bytes.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
  return bytes.size() == 2 && bytes[0] == 0x08 ? bytes[1] : (bytes.empty() ? 0 : -1);
}

TEST_F(Cluster, HealthServiceSaysAliveThenReady) {
  pid_t coordinator;
  auto agents = StartByHand(WriteManifest(Manifest((dir_ / "data").string(), 30, "fp32")), &coordinator);
  ASSERT_TRUE(WaitForLog(dir_ / "agent-0.log", "peer service on port", 30));
  const std::string log = Read(dir_ / "agent-0.log");
  const size_t at = log.find("peer service on port ") + std::strlen("peer service on port ");
  const std::string address = "127.0.0.1:" + log.substr(at, log.find(' ', at) - at);
  EXPECT_EQ(HealthCheck(address, ""), 1) << "alive from the start";
  ASSERT_TRUE(WaitForLog(dir_ / "agent-0.log", "connected to all", 60));
  EXPECT_EQ(HealthCheck(address, "gut.v1.Peer"), 1) << "ready once connected to its neighbours";
  for (pid_t a : agents) EXPECT_EQ(Wait(a, 180), 0);
  EXPECT_EQ(Wait(coordinator, 30), 0);
}

TEST_F(Cluster, SigtermStopsAnAgentAndItsNeighboursFailWithAClearError) {
  pid_t coordinator;
  auto agents = StartByHand(WriteManifest(Manifest((dir_ / "data").string(), 100000, "fp32", 3)), &coordinator);
  ASSERT_TRUE(WaitForLog(dir_ / "agent-2.log", "epoch 2/", 120)) << Read(dir_ / "agent-2.log");
  const auto t0 = std::chrono::steady_clock::now();
  kill(agents[2], SIGTERM);
  EXPECT_EQ(Wait(agents[2], 10), 0) << Read(dir_ / "agent-2.log");
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 6.0);
  EXPECT_NE(Read(dir_ / "agent-2.log").find("stop requested"), std::string::npos);
  // Its neighbours give up after the round deadline and name it.
  for (int r : {1, 3}) {
    EXPECT_EQ(Wait(agents[r], 30), 1) << Read(dir_ / ("agent-" + std::to_string(r) + ".log"));
    EXPECT_NE(Read(dir_ / ("agent-" + std::to_string(r) + ".log")).find("no message from agent(s) 2"),
              std::string::npos);
  }
  EXPECT_NE(Wait(agents[0], 30), -1);
  EXPECT_EQ(Wait(coordinator, 30), 1) << Read(dir_ / "coordinator.log");
  EXPECT_NE(Read(dir_ / "coordinator.log").find("no message from agent(s) 2"), std::string::npos);
}

}  // namespace
}  // namespace gut
