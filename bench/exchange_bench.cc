// exchange_bench: what the gRPC message path costs per round, without any training.
//
//   exchange_bench [--params P] [--rounds R] [--reps K] [--codec NAME] [--tls-dir DIR]
//
// Two processes (this one and a fork) each start a Peer server on loopback and a GrpcExchange to
// the other, exactly as two gut-agentd on one machine do, then run R rounds of Broadcast +
// ReceiveWeightedSum of a P-float message (default: LeNet-5's 61,706 parameters). The same rounds
// also run over core's InProcessExchange (two threads, one process), the exchange gut-sim uses.
// The variants alternate K times; the table gives wall microseconds per round and CPU
// microseconds per round per agent (user + system, both processes), and the per-rep difference
// grpc - inproc, which is what one round's message costs a cluster agent on top of gut-sim.
// --tls-dir: mutual TLS with certificates made by deploy/local/make-certs.sh DIR agent-0 agent-1.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>

#include "absl/strings/str_cat.h"
#include "core/common/process.h"
#include "core/exchange/in_process_exchange.h"
#include "core/topology/graph.h"
#include "core/topology/mixing.h"
#include "services/grpc_exchange.h"
#include "services/tls.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  int64_t params = 61706;
  int rounds = 2000;
  int reps = 3;
  std::string codec = "fp32";
  std::string tls_dir;
};

// Runs `rounds` rounds on `ex` (the message changes every round, as a model does).
absl::Status Rounds(gut::core::Neighbourhood<float>* ex, int64_t first, int rounds, int64_t params) {
  std::vector<float> msg(static_cast<size_t>(params)), out(msg.size());
  for (size_t i = 0; i < msg.size(); ++i) msg[i] = 0.001f * static_cast<float>(i % 997);
  for (int64_t r = first; r < first + rounds; ++r) {
    msg[static_cast<size_t>(r % params)] += 1;
    if (auto s = ex->Broadcast(r, 0, absl::MakeSpan(msg)); !s.ok()) return s;
    if (auto s = ex->ReceiveWeightedSum(r, 0, absl::MakeSpan(out)); !s.ok()) return s;
    // The round must have carried the neighbour's message (both sides send the same one, with
    // weight 0.5; a lossy codec's decode only approximately): no timing of rounds that moved nothing.
    const size_t k = static_cast<size_t>(r % params);
    if (!(std::abs(out[k] - 0.5f * msg[k]) <= 0.05f * std::abs(msg[k]) + 1e-3f)) {
      return absl::DataLossError(absl::StrCat("round ", r, ": received ", out[k], " at element ", k, ", expected ",
                                              0.5f * msg[k], " (the neighbour's message did not arrive)"));
    }
  }
  return absl::OkStatus();
}

// One side of the gRPC pair; returns the wall seconds of the timed rounds (after a warm-up).
// `in` and `out` are the pipe ends that trade listening ports with the other side.
absl::StatusOr<double> GrpcSide(const Options& o, int rank, int in, int out) {
  gut::services::StreamTuning tuning;
  gut::services::PeerService service(tuning);
  std::optional<gut::services::TlsMaterial> tls;
  std::shared_ptr<grpc::ServerCredentials> server_creds = grpc::InsecureServerCredentials();
  if (!o.tls_dir.empty()) {
    const std::string me = o.tls_dir + "/agent-" + std::to_string(rank);
    auto m = gut::services::LoadTls({o.tls_dir + "/ca.pem", me + ".pem", me + ".key"}, gut::services::Role::kNone);
    if (!m.ok()) return m.status();
    tls = std::move(*m);
    server_creds = gut::services::ServerCredentials(&*tls);
  }
  grpc::ServerBuilder b;
  int port = 0;
  b.AddListeningPort("127.0.0.1:0", server_creds, &port);
  tuning.ApplyToServer(&b, true);
  b.RegisterService(&service);
  auto server = b.BuildAndStart();
  if (server == nullptr) return absl::UnavailableError("cannot start the Peer server");
  int other = 0;
  if (write(out, &port, sizeof(port)) != sizeof(port) || read(in, &other, sizeof(other)) != sizeof(other)) {
    return absl::InternalError("port exchange failed");
  }
  gut::services::GrpcExchangeOptions x;
  x.run_id = "exchange-bench";
  x.rank = rank;
  x.self_weight = 0.5;
  x.neighbours.push_back({1 - rank, 0.5, "127.0.0.1:" + std::to_string(other), tls ? "agent-" + std::to_string(1 - rank) : ""});
  x.layout_hash = 1;
  x.num_params = o.params;
  auto kind = gut::core::ParseCodecKind(o.codec);
  if (!kind.ok()) return kind.status();
  x.codec.kind = *kind;
  x.codec_seed = 1;
  x.tuning = tuning;
  if (tls) x.channel_credentials = gut::services::ChannelCredentials(&*tls);
  auto ex = gut::services::GrpcExchange::Create(x, &service);
  if (!ex.ok()) return ex.status();
  if (auto s = (*ex)->WaitConnected(absl::Seconds(30)); !s.ok()) return s;
  if (auto s = Rounds(ex->get(), 0, 50, o.params); !s.ok()) return s;  // warm-up
  const auto t0 = Clock::now();
  if (auto s = Rounds(ex->get(), 50, o.rounds, o.params); !s.ok()) return s;
  const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  if (auto s = (*ex)->Flush(absl::Seconds(10)); !s.ok()) return s;
  (*ex)->Shutdown(absl::Seconds(5));
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  return wall;
}

struct Result {
  double wall_us = 0, cpu_us = 0;  // per round; CPU per agent
};

// Forks both agents (gRPC does not survive a fork once started, so this process never starts it);
// each reports its timed wall seconds and its CPU seconds through a pipe.
absl::StatusOr<Result> RunGrpc(const Options& o) {
  int a[2], b[2], res[2];
  if (pipe(a) != 0 || pipe(b) != 0 || pipe(res) != 0) return absl::InternalError("pipe failed");
  std::fflush(stdout);
  pid_t kids[2];
  for (int rank = 0; rank < 2; ++rank) {
    kids[rank] = fork();
    if (kids[rank] < 0) return absl::InternalError("fork failed");
    if (kids[rank] == 0) {
      auto w = rank == 0 ? GrpcSide(o, 0, b[0], a[1]) : GrpcSide(o, 1, a[0], b[1]);
      if (!w.ok()) std::fprintf(stderr, "exchange_bench: agent %d: %s\n", rank, w.status().ToString().c_str());
      const double got[2] = {w.ok() ? *w : -1, gut::core::CpuSeconds()};
      (void)!write(res[1], got, sizeof(got));
      _exit(w.ok() ? 0 : 1);
    }
  }
  double wall = 0, cpu = 0;
  bool ok = true;
  for (int k = 0; k < 2; ++k) {
    double got[2] = {-1, 0};
    if (read(res[0], got, sizeof(got)) != sizeof(got) || got[0] < 0) ok = false;
    wall = std::max(wall, got[0]);
    cpu += got[1] / 2;
  }
  for (pid_t kid : kids) waitpid(kid, nullptr, 0);
  for (int fd : {a[0], a[1], b[0], b[1], res[0], res[1]}) close(fd);
  if (!ok) return absl::InternalError("an agent failed");
  // The processes' whole CPU (start-up and warm-up included) over the timed rounds: an upper
  // bound that the start-up of a few milliseconds hardly moves at 2000 rounds.
  return Result{1e6 * wall / o.rounds, 1e6 * cpu / o.rounds};
}

// The same rounds over InProcessExchange: two threads in this process.
absl::StatusOr<Result> RunInProcess(const Options& o) {
  auto kind = gut::core::ParseCodecKind(o.codec);
  if (!kind.ok()) return kind.status();
  gut::core::CodecOptions codec;
  codec.kind = *kind;
  const auto w = gut::core::MixingMatrix::Build(*gut::core::MakeChain(2), gut::core::WeightRule::kUniform);
  gut::core::InProcessExchange<float> hub(w, absl::Seconds(60), codec, 1);
  const double cpu0 = gut::core::CpuSeconds();
  const auto t0 = Clock::now();
  absl::Status st[2];
  std::vector<std::thread> ts;
  for (int r = 0; r < 2; ++r) ts.emplace_back([&, r] { st[r] = Rounds(&hub.Endpoint(r), 0, o.rounds, o.params); });
  for (auto& t : ts) t.join();
  const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  for (const auto& s : st)
    if (!s.ok()) return s;
  return Result{1e6 * wall / o.rounds, 1e6 * (gut::core::CpuSeconds() - cpu0) / 2 / o.rounds};
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app("exchange_bench: the gRPC message path's cost per round, side by side with gut-sim's exchange");
  app.add_option("--params", o.params, "floats per message")->check(CLI::PositiveNumber);
  app.add_option("--rounds", o.rounds, "timed rounds per run")->check(CLI::PositiveNumber);
  app.add_option("--reps", o.reps, "alternations")->check(CLI::PositiveNumber);
  app.add_option("--codec", o.codec, "fp32, bf16, int8, ...");
  app.add_option("--tls-dir", o.tls_dir, "mutual TLS with DIR/{ca,agent-0,agent-1}.pem (make-certs.sh)");
  CLI11_PARSE(app, argc, argv);
  gut::core::TuneAllocator();  // as gut-agentd and gut-sim do
  spdlog::set_level(spdlog::level::warn);
  std::printf("| rep | grpc us/round | inproc us/round | grpc CPU us/agent | inproc CPU us/agent | difference wall | difference CPU |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  std::vector<double> dw, dc;
  for (int k = 1; k <= o.reps; ++k) {
    auto g = RunGrpc(o);
    if (!g.ok()) {
      std::fprintf(stderr, "exchange_bench: %s\n", g.status().ToString().c_str());
      return 1;
    }
    auto p = RunInProcess(o);
    if (!p.ok()) {
      std::fprintf(stderr, "exchange_bench: %s\n", p.status().ToString().c_str());
      return 1;
    }
    dw.push_back(g->wall_us - p->wall_us);
    dc.push_back(g->cpu_us - p->cpu_us);
    std::printf("| %d | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f |\n", k, g->wall_us, p->wall_us, g->cpu_us, p->cpu_us,
                dw.back(), dc.back());
    std::fflush(stdout);
  }
  std::printf("\nmedian difference: wall %.1f us per round, CPU %.1f us per agent per round (%lld floats, %s%s)\n",
              Median(dw), Median(dc), static_cast<long long>(o.params), o.codec.c_str(), o.tls_dir.empty() ? "" : ", mutual TLS");
  return 0;
}
