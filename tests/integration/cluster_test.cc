// Real processes on loopback: gut-coordinator and gut-agentd started by the launcher
// (deploy/local/run-cluster.sh) or one by one. Checks that a cluster computes exactly what gut-sim
// computes (bit for bit, lossless and lossy codec), that training survives the coordinator, that
// SIGTERM stops an agent cleanly and its neighbours fail with a clear error instead of hanging,
// and that every /metrics page passes promtool when it is available.
#include <condition_variable>
#include <cstdlib>
#include <mutex>

#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <nlohmann/json.hpp>

#include "core/config/manifest.h"
#include "sim/simulation.h"
#include "tests/integration/cluster_fixture.h"

namespace gut {
namespace {

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
  // Nothing of the run is readable by other users (issue 20): directories 0750, files 0640 at
  // most; only the public certificates (tls/*.pem) are world-readable.
  for (const auto& e : fs::recursive_directory_iterator(out)) {
    if (e.is_symlink() || e.path().extension() == ".pem") continue;
    EXPECT_EQ(e.status().permissions() & fs::perms::others_all, fs::perms::none) << e.path();
  }

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

// run.numerics: portable: the agents ask the coordinator for the mode and restart into it before
// they join; gut-sim (a process of its own: this test's process computes natively) restarts too;
// both give the same bits with no environment set by anyone.
TEST_F(Cluster, APortableClusterComputesWhatPortableGutSimComputes) {
  const std::string text = Manifest((dir_ / "data").string(), 1, "fp32", 30, "{name: qg-gutm, lr: 0.05, momentum: 0.9, mu: 0.01}",
                                    "{graph: ring, weights: uniform}", "") +
                           "checkpoint: {enabled: false}\n";
  std::ofstream(dir_ / "portable.yaml") << [&] {
    std::string t = text;
    t.replace(t.find("eval_every: 2}"), 14, "eval_every: 2, numerics: portable}");
    return t;
  }();
  pid_t coordinator = -1;
  auto agents = StartByHand((dir_ / "portable.yaml").string(), &coordinator);
  ASSERT_EQ(Wait(coordinator, 180), 0) << Read(dir_ / "coordinator.log");
  for (pid_t a : agents) EXPECT_EQ(Wait(a, 30), 0);
  for (int r = 0; r < 4; ++r) {
    EXPECT_NE(Read(AgentLog(r)).find("run.numerics: portable: restarting with"), std::string::npos) << Read(AgentLog(r));
  }
  const std::string sim_dir = (dir_ / "sim").string();
  const pid_t sim = Spawn({std::string(GUT_BUILD_DIR) + "/sim/gut-sim", "--manifest", (dir_ / "portable.yaml").string(),
                           "--out", sim_dir},
                          (dir_ / "sim.log").string());
  ASSERT_EQ(Wait(sim, 120), 0) << Read(dir_ / "sim.log");
  for (int r = 0; r < 4; ++r) {
    char name[64];
    std::snprintf(name, sizeof(name), "agents/rank-%02d/params-final.f32", r);
    EXPECT_EQ(Read(dir_ / ("rank-" + std::to_string(r)) / "params-final.f32"), Read(fs::path(sim_dir) / name))
        << "rank " << r;
  }
  EXPECT_NE(Read(fs::path(sim_dir) / "summary.json").find("\"numerics\": \"portable\""), std::string::npos);
}

// Every sparse, one-bit and low-rank codec, with a consensus step below 1: the agents decode randk
// with each sender's seed, lowrank with the model's layout, and still match gut-sim bit for bit.
TEST_F(Cluster, CompressedCodecsComputeExactlyWhatTheSimulatorComputes) {
  const std::string data = (dir_ / "data").string();
  for (const std::string& codec : {std::string("topk, topk_fraction: 0.1, sparse_values: int8, consensus_step: 0.3"),
                                   std::string("randk, topk_fraction: 0.1, sparse_values: bf16, consensus_step: 0.1"),
                                   std::string("sign, consensus_step: 0.5"),
                                   std::string("lowrank, lowrank_rank: 2, zstd: true, consensus_step: 0.5")}) {
    const std::string name = codec.substr(0, codec.find(','));
    SCOPED_TRACE(name);
    const std::string text = Manifest(data, 1, codec);
    std::ofstream(dir_ / (name + ".yaml")) << text;
    CheckBitIdentical(name, dir_, text, (dir_ / (name + ".yaml")).string());
  }
}

// exchange.overlap (docs/algorithms.md §12) with every codec, and in both method forms (replica
// tracking, adapt-then-combine): the gradient runs while the messages travel, the numbers stay
// gut-sim's bit for bit.
TEST_F(Cluster, WithOverlapEveryCodecComputesExactlyWhatTheSimulatorComputes) {
  const std::string data = (dir_ / "data").string();
  const std::string qggutm = "{name: qg-gutm, lr: 0.05, momentum: 0.9, mu: 0.01}";
  const std::string dsgdm = "{name: dsgdm, lr: 0.05, momentum: 0.9}";
  struct Case {
    std::string codec, algorithm;
  };
  for (const Case& c : {Case{"fp32", qggutm}, Case{"bf16", dsgdm}, Case{"int8", qggutm}, Case{"int4, zstd: true", qggutm},
                        Case{"int2", dsgdm}, Case{"topk, topk_fraction: 0.1, sparse_values: int8", qggutm},
                        Case{"randk, topk_fraction: 0.1", qggutm}, Case{"sign", dsgdm},
                        Case{"lowrank, lowrank_rank: 2", qggutm}}) {
    const std::string name = "overlap-" + c.codec.substr(0, c.codec.find(','));
    SCOPED_TRACE(name);
    const std::string text = Manifest(data, 1, c.codec + ", overlap: 1", 30, c.algorithm);
    ASSERT_NE(text.find("overlap: 1"), std::string::npos);
    std::ofstream(dir_ / (name + ".yaml")) << text;
    CheckBitIdentical(name, dir_, text, (dir_ / (name + ".yaml")).string());
    auto summary = nlohmann::json::parse(Read(dir_ / ("cluster-" + name) / "summary.json"));
    EXPECT_EQ(summary["config"]["overlap"], 1) << "the run's record says how it ran";
  }
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

// The health service, on the main port and on the plaintext --health-listen port Kubernetes probes:
// "" alive from the start, gut.v1.Peer ready once the neighbours are connected; anything else on
// the health port is refused.
TEST_F(Cluster, HealthServiceSaysAliveThenReady) {
  pid_t coordinator;
  coordinator_extra_ = {"--health-listen", "127.0.0.1:0"};
  auto agents = StartByHand(WriteManifest(Manifest((dir_ / "data").string(), 30, "fp32")), &coordinator,
                            {"--health-listen", "127.0.0.1:0"});
  auto port_after = [&](const fs::path& log_file, const std::string& what) {
    const std::string log = Read(log_file);
    const size_t at = log.find(what) + what.size();
    return "127.0.0.1:" + log.substr(at, log.find_first_not_of("0123456789", at) - at);
  };
  ASSERT_TRUE(WaitForLog(dir_ / "agent-0.log", "peer service on port", 30));
  ASSERT_TRUE(WaitForLog(dir_ / "coordinator.log", "health service on port", 30));
  ASSERT_TRUE(WaitForLog(dir_ / "agent-0.log", "health service on port", 30));
  const std::string address = port_after(dir_ / "agent-0.log", "peer service on port ");
  const std::string probe = port_after(dir_ / "agent-0.log", "health service on port ");
  EXPECT_EQ(HealthCheck(address, ""), 1) << "alive from the start";
  EXPECT_EQ(HealthCheck(probe, ""), 1) << "alive from the start, on the probe port";
  EXPECT_EQ(HealthCheck(port_after(dir_ / "coordinator.log", "health service on port "), ""), 1) << "coordinator alive";
  ASSERT_TRUE(WaitForLog(dir_ / "agent-0.log", "connected to all", 60));
  EXPECT_EQ(HealthCheck(address, "gut.v1.Peer"), 1) << "ready once connected to its neighbours";
  EXPECT_EQ(HealthCheck(probe, "gut.v1.Peer"), 1) << "ready on the probe port too";
  for (pid_t a : agents) EXPECT_EQ(Wait(a, 180), 0);
  EXPECT_EQ(Wait(coordinator, 30), 0);
}

// A coordinator restarted with --resume after its run finished (Kubernetes restarts containers that
// exit) says so and exits 0, leaving the results as they were.
TEST_F(Cluster, ResumingAFinishedRunChangesNothing) {
  pid_t coordinator;
  auto agents = StartByHand(WriteManifest(Manifest((dir_ / "data").string(), 1, "fp32")), &coordinator);
  for (pid_t a : agents) EXPECT_EQ(Wait(a, 180), 0);
  ASSERT_EQ(Wait(coordinator, 30), 0);
  const std::string summary = Read(dir_ / "out" / "summary.json");
  ASSERT_NE(summary.find("\"status\": \"finished\""), std::string::npos);
  EXPECT_EQ(Wait(RestartCoordinator(), 30), 0);
  EXPECT_EQ(Read(dir_ / "out" / "summary.json"), summary);
  EXPECT_NE(Read(dir_ / "coordinator.log").find("has finished; its results are there"), std::string::npos);
  // An agent restarted after the end (what Kubernetes does to an exited pod) does not wait the
  // join timeout for a coordinator that is gone: it holds its final parameters and exits 0 (issue 21).
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(Wait(Restart(2), 30), 0) << Read(AgentLog(2));
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5 + 1.5);
  EXPECT_NE(Read(AgentLog(2)).find("this agent finished its run already"), std::string::npos) << Read(AgentLog(2));
}

// Issue 21: an output the coordinator cannot write is never reported as written, and a later
// --resume of the finished run writes it again from the journal of reports. metrics.svg is made
// unwritable (a directory in its place) for the whole run, as a full disk would be at its end.
TEST_F(Cluster, OutputsThatCouldNotBeWrittenAreNamedAndWrittenAgainOnResume) {
  fs::create_directories(dir_ / "out" / "metrics.svg" / "blocker");
  pid_t coordinator;
  auto agents = StartByHand(WriteManifest(Manifest((dir_ / "data").string(), 2, "fp32")), &coordinator);
  for (pid_t a : agents) EXPECT_EQ(Wait(a, 180), 0);
  EXPECT_EQ(Wait(coordinator, 30), 1) << "the run finished, but not all of its outputs were written";
  std::string log = Read(dir_ / "coordinator.log");
  EXPECT_EQ(log.find("wrote "), std::string::npos) << log;
  EXPECT_NE(log.find("the run finished, but metrics.svg in " + (dir_ / "out").string() + " could not be written"),
            std::string::npos)
      << log;
  const std::string summary = Read(dir_ / "out" / "summary.json");
  ASSERT_NE(summary.find("\"status\": \"finished\""), std::string::npos);
  // Space is back: --resume writes what is missing from reports.jsonl, and nothing else.
  fs::remove_all(dir_ / "out" / "metrics.svg");
  fs::remove(dir_ / "out" / "summary.json");
  EXPECT_EQ(Wait(RestartCoordinator(), 30), 0) << Read(dir_ / "coordinator.log");
  log = Read(dir_ / "coordinator.log");
  EXPECT_NE(log.find("metrics.svg, summary.json written again from its reports"), std::string::npos) << log;
  EXPECT_NE(Read(dir_ / "out" / "metrics.svg").find("<svg"), std::string::npos);
  auto before = nlohmann::json::parse(summary), after = nlohmann::json::parse(Read(dir_ / "out" / "summary.json"));
  EXPECT_EQ(after["status"], "finished");
  EXPECT_EQ(after["final"], before["final"]) << "the same results, rebuilt from the same reports";
}

}  // namespace
}  // namespace gut
