#include "agent/agent.h"

#include <malloc.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <thread>

#include <grpcpp/create_channel.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/codec/codec.h"
#include "core/common/sketch.h"
#include "core/config/manifest.h"
#include "core/data/dataset.h"
#include "core/data/partition.h"
#include "core/models/model.h"
#include "core/train/trainer.h"
#include "gut/v1/coordinator.grpc.pb.h"
#include "services/metrics.h"
#include "services/grpc_exchange.h"
#include "services/status.h"
#include "core/report/run_report.h"

namespace gut::agent {
namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Sends reports in order, retrying each until the coordinator takes it: training never waits for
// the coordinator, and a coordinator that comes back gets everything.
class Reporter {
 public:
  Reporter(std::shared_ptr<grpc::Channel> channel, std::string run_id)
      : stub_(gut::v1::Coordinator::NewStub(std::move(channel))), run_id_(std::move(run_id)),
        thread_([this] { Loop(); }) {}
  ~Reporter() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void Add(const gut::v1::EpochMetrics& m) {
    {
      std::lock_guard<std::mutex> l(mu_);
      queue_.push_back(m);
    }
    cv_.notify_all();
  }
  // Waits until every report is delivered; false if some are still queued at the deadline.
  bool Flush(double seconds) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, std::chrono::duration<double>(seconds), [&] { return queue_.empty(); });
  }
  size_t pending() {
    std::lock_guard<std::mutex> l(mu_);
    return queue_.size();
  }
  double consensus() const { return consensus_.load(); }

 private:
  void Loop() {
    double backoff = 0.2;
    int failures = 0;
    for (;;) {
      gut::v1::ReportRequest req;
      {
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait(l, [&] { return stop_ || !queue_.empty(); });
        if (stop_) return;
        *req.mutable_metrics() = queue_.front();
      }
      req.set_run_id(run_id_);
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
      gut::v1::ReportResponse resp;
      const grpc::Status s = stub_->Report(&ctx, req, &resp);
      std::unique_lock<std::mutex> l(mu_);
      if (s.ok() || s.error_code() == grpc::StatusCode::INVALID_ARGUMENT ||
          s.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
        if (!s.ok()) spdlog::error("coordinator refused a report: {}", s.error_message());
        if (failures > 0) spdlog::info("coordinator reachable again after {} failed report(s)", failures);
        failures = 0;
        backoff = 0.2;
        if (s.ok() && resp.consensus_distance_estimate() >= 0) consensus_ = resp.consensus_distance_estimate();
        queue_.pop_front();
        cv_.notify_all();
        continue;
      }
      if (failures++ % 20 == 0) {
        spdlog::warn("report of epoch {} not delivered ({}); retrying, {} queued", req.metrics().epoch(),
                     s.error_message(), queue_.size());
      }
      cv_.wait_for(l, std::chrono::duration<double>(backoff), [&] { return stop_; });
      backoff = std::min(5.0, backoff * 2);
    }
  }

  std::unique_ptr<gut::v1::Coordinator::Stub> stub_;
  const std::string run_id_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<gut::v1::EpochMetrics> queue_;
  bool stop_ = false;
  std::atomic<double> consensus_{-1};
  std::thread thread_;
};

// The agent's Prometheus metrics (OPERATIONS.md §6.1 names; base units; peer = neighbour rank).
struct Metrics {
  explicit Metrics(prometheus::Registry& r, const core::RunConfig& c, const std::vector<int>& peers)
      : round(prometheus::BuildGauge().Name("gut_agent_round").Help("Current round.").Register(r).Add({})),
        epoch(prometheus::BuildGauge().Name("gut_agent_epoch").Help("Epochs completed.").Register(r).Add({})),
        rounds(prometheus::BuildCounter().Name("gut_agent_rounds_completed_total")
                   .Help("Training rounds completed.").Register(r).Add({})),
        round_seconds(prometheus::BuildHistogram().Name("gut_agent_round_duration_seconds")
                          .Help("Wall time of one training round.").Register(r)
                          .Add({}, services::DurationBuckets())),
        compute_seconds(prometheus::BuildHistogram().Name("gut_agent_round_compute_seconds")
                            .Help("Time of one round spent computing (round time minus waiting).")
                            .Register(r).Add({}, services::DurationBuckets())),
        wait_seconds(prometheus::BuildHistogram().Name("gut_agent_round_wait_seconds")
                         .Help("Time of one round spent waiting for neighbours' messages.").Register(r)
                         .Add({}, services::DurationBuckets())),
        train_loss(prometheus::BuildGauge().Name("gut_agent_train_loss")
                       .Help("Mean minibatch loss over the last epoch.").Register(r).Add({})),
        test_accuracy(prometheus::BuildGauge().Name("gut_agent_test_accuracy_ratio")
                          .Help("Test accuracy of this agent's model at the last evaluation.").Register(r).Add({})),
        test_loss(prometheus::BuildGauge().Name("gut_agent_test_loss")
                      .Help("Test loss of this agent's model at the last evaluation.").Register(r).Add({})),
        consensus(prometheus::BuildGauge().Name("gut_agent_consensus_distance_estimate")
                      .Help("Run-wide consensus distance, estimated by the coordinator from parameter "
                            "sketches at the last complete epoch (-1: not known yet).")
                      .Register(r).Add({})),
        unacked(prometheus::BuildGauge().Name("gut_agent_unacknowledged_frames")
                    .Help("Frames kept for resending until neighbours acknowledge them.").Register(r).Add({})),
        solver_fallbacks(prometheus::BuildCounter().Name("gut_agent_solver_fallbacks_total")
                             .Help("Per-round subproblems the method could not solve and answered with a "
                                   "fallback (CGA: a tensor's QP had non-finite data; the previous weights "
                                   "were reused).")
                             .Register(r).Add({})) {
    auto& sent = prometheus::BuildCounter().Name("gut_agent_peer_sent_bytes_total")
                     .Help("Bytes of frames sent to a neighbour (payload and headers).").Register(r);
    auto& recv = prometheus::BuildCounter().Name("gut_agent_peer_received_bytes_total")
                     .Help("Bytes of frames received from a neighbour (payload and headers).").Register(r);
    auto& up = prometheus::BuildGauge().Name("gut_agent_peer_up")
                   .Help("1 while the stream to a neighbour is established.").Register(r);
    auto& connects = prometheus::BuildCounter().Name("gut_agent_peer_connects_total")
                         .Help("Handshakes completed with a neighbour (first connection and reconnects).")
                         .Register(r);
    for (int p : peers) {
      const std::string label = std::to_string(p);
      peer_sent.push_back(&sent.Add({{"peer", label}}));
      peer_recv.push_back(&recv.Add({{"peer", label}}));
      peer_up.push_back(&up.Add({{"peer", label}}));
      peer_connects.push_back(&connects.Add({{"peer", label}}));
    }
    auto& rej = prometheus::BuildCounter().Name("gut_agent_frames_rejected_total")
                    .Help("Frames or streams refused, by reason.").Register(r);
    for (int k = 0; k < static_cast<int>(services::Reject::kCount); ++k) {
      rejected.push_back(&rej.Add({{"reason", services::RejectName(static_cast<services::Reject>(k))}}));
    }
    prometheus::BuildGauge().Name("gut_build_info").Help("Build and run settings of this agent.").Register(r)
        .Add({{"version", "0.1.0"}, {"algorithm", c.hyper.algorithm},
              {"codec", core::CodecName(c.codec.kind)}})
        .Set(1);
    consensus.Set(-1);
  }

  // Brings the counters up to the exchange's, the peer service's and the algorithm's totals.
  void Sync(const services::ExchangeStats& s, const services::PeerService& svc, int64_t fallbacks) {
    Bump(&solver_fallbacks, fallbacks);
    for (size_t k = 0; k < s.peers.size() && k < peer_sent.size(); ++k) {
      const auto& p = s.peers[k];
      Bump(peer_sent[k], p.frame_bytes_sent);
      Bump(peer_recv[k], p.frame_bytes_received);
      Bump(peer_connects[k], p.connects);
      peer_up[k]->Set(p.connected ? 1 : 0);
    }
    for (size_t k = 0; k < rejected.size(); ++k) {
      Bump(rejected[k], svc.rejected(static_cast<services::Reject>(k)));
    }
    unacked.Set(static_cast<double>(s.unacknowledged));
  }
  static void Bump(prometheus::Counter* c, int64_t total) {
    const double d = static_cast<double>(total) - c->Value();
    if (d > 0) c->Increment(d);
  }

  prometheus::Gauge& round;
  prometheus::Gauge& epoch;
  prometheus::Counter& rounds;
  prometheus::Histogram& round_seconds;
  prometheus::Histogram& compute_seconds;
  prometheus::Histogram& wait_seconds;
  prometheus::Gauge& train_loss;
  prometheus::Gauge& test_accuracy;
  prometheus::Gauge& test_loss;
  prometheus::Gauge& consensus;
  prometheus::Gauge& unacked;
  prometheus::Counter& solver_fallbacks;
  std::vector<prometheus::Counter*> peer_sent, peer_recv, peer_connects, rejected;
  std::vector<prometheus::Gauge*> peer_up;
};

// A dataset holding only `shard`'s samples, in shard order (so that batch k draws the same
// samples as from the full set).
core::Dataset Compact(const core::Dataset& full, const std::vector<int64_t>& shard) {
  core::Dataset d;
  d.channels = full.channels;
  d.height = full.height;
  d.width = full.width;
  d.num_classes = full.num_classes;
  d.augment = full.augment;
  d.pad_value = full.pad_value;
  d.stored = full.stored;
  d.mean = full.mean;
  d.stdev = full.stdev;
  d.labels.resize(shard.size());
  for (size_t k = 0; k < shard.size(); ++k) d.labels[k] = full.labels[shard[k]];
  if (full.is_stored()) {  // image folders: bytes at the stored size
    const int64_t s = full.stored_size();
    d.pixels.resize(shard.size() * s);
    for (size_t k = 0; k < shard.size(); ++k)
      std::copy(full.pixels.begin() + shard[k] * s, full.pixels.begin() + (shard[k] + 1) * s, d.pixels.begin() + k * s);
    return d;
  }
  const int64_t s = full.sample_size();
  d.images.resize(shard.size() * s);
  for (size_t k = 0; k < shard.size(); ++k)
    std::copy(full.image(shard[k]), full.image(shard[k]) + s, d.images.begin() + k * s);
  return d;
}

absl::Status WriteParams(const std::string& path, absl::Span<const float> x) {
  return report::AtomicWrite(path, std::string(reinterpret_cast<const char*>(x.data()), x.size() * sizeof(float)));
}

std::string DefaultName() {
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  return absl::StrCat(host, "-", getpid());
}

class Agent {
 public:
  Agent(const AgentOptions& o, const std::atomic<bool>* stop) : o_(o), stop_(stop) {}
  int Run();

 private:
  absl::Status Serve();
  absl::Status Join();
  absl::Status Prepare();
  absl::Status Train();
  void Leave(bool failed, const std::string& reason);
  // Brings metrics_ (which exists only once the exchange and the algorithm do) up to date.
  void SyncMetrics() {
    metrics_->Sync(exchange_->Stats(), peer_service_, algorithm_->solver_fallbacks());
  }
  void Shutdown();
  bool stopping() const { return stop_ != nullptr && stop_->load(); }
  gut::v1::EpochMetrics EpochReport(int epoch, double lr, double train_loss, const core::EvalResult* ev, bool final);
  void WriteLocalCsv();

  AgentOptions o_;
  const std::atomic<bool>* stop_;
  services::PeerService peer_service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::unique_ptr<services::MetricsEndpoint> endpoint_;
  std::shared_ptr<grpc::Channel> coordinator_;
  gut::v1::JoinResponse join_;
  core::RunConfig config_;
  core::ModelInfo model_;
  core::TrainTest data_;
  core::Dataset shard_;
  std::unique_ptr<core::Trainer> trainer_;
  std::unique_ptr<core::Algorithm<float>> algorithm_;
  std::unique_ptr<services::GrpcExchange> exchange_;
  std::unique_ptr<Reporter> reporter_;
  std::unique_ptr<Metrics> metrics_;
  int64_t rounds_per_epoch_ = 0;
  int64_t round_ = 0;
  Clock::time_point start_;
  double train_s_ = 0, compute_s_ = 0, wait_s_ = 0;
  std::vector<std::string> csv_rows_;
};

absl::Status Agent::Serve() {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder b;
  b.AddListeningPort(o_.listen, grpc::InsecureServerCredentials(), &port_);
  const auto tuning = o_.fast_failure_detection ? services::StreamTuning::ForTests() : services::StreamTuning();
  tuning.ApplyToServer(&b, /*peer_port=*/true);
  b.RegisterService(&peer_service_);
  server_ = b.BuildAndStart();
  if (!server_ || port_ == 0) return absl::UnavailableError(absl::StrCat("cannot listen on '", o_.listen, "'"));
  // "" (liveness) serves from now on; gut.v1.Peer (readiness) once the neighbours are connected.
  server_->GetHealthCheckService()->SetServingStatus("gut.v1.Peer", false);
  if (o_.advertise.empty()) o_.advertise = absl::StrCat("127.0.0.1:", port_);
  if (!o_.metrics_address.empty()) {
    auto m = services::MetricsEndpoint::Start(o_.metrics_address);
    if (!m.ok()) return m.status();
    endpoint_ = std::move(*m);
    if (o_.metrics_advertise.empty()) {
      const std::string host = o_.metrics_address.substr(0, o_.metrics_address.rfind(':'));
      o_.metrics_advertise = absl::StrCat(host == "0.0.0.0" || host.empty() ? "127.0.0.1" : host, ":",
                                          endpoint_->port());
    }
  }
  spdlog::info("agent '{}': peer service on port {} (advertised {}){}", o_.name, port_, o_.advertise,
               endpoint_ ? absl::StrCat(", metrics on ", o_.metrics_advertise) : "");
  return absl::OkStatus();
}

absl::Status Agent::Join() {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  coordinator_ = grpc::CreateCustomChannel(o_.coordinator, grpc::InsecureChannelCredentials(), args);
  auto stub = gut::v1::Coordinator::NewStub(coordinator_);
  gut::v1::JoinRequest req;
  req.set_agent_name(o_.name);
  req.set_advertised_address(o_.advertise);
  req.set_protocol_version(gut::v1::PROTOCOL_VERSION_1);
  req.set_build_version("0.1.0");
  req.set_requested_rank(o_.rank);
  req.set_metrics_address(o_.metrics_advertise);
  if (o_.local_data) {
    auto d = core::LoadDataset(core::DetectDataset(o_.data_dir), o_.data_dir);
    if (!d.ok()) return d.status();
    req.set_local_samples(d->train.size());
    data_ = std::move(*d);
  }
  const absl::Time until = absl::Now() + absl::Seconds(o_.join_timeout_s);
  for (int attempt = 0;; ++attempt) {
    if (stopping()) return absl::CancelledError("stopped while joining");
    grpc::ClientContext ctx;
    ctx.set_wait_for_ready(true);
    ctx.set_deadline(absl::ToChronoTime(std::min(until, absl::Now() + absl::Seconds(2))));
    const grpc::Status s = stub->Join(&ctx, req, &join_);
    if (s.ok()) break;
    const bool retry = s.error_code() == grpc::StatusCode::UNAVAILABLE ||
                       s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
    if (!retry || absl::Now() >= until) return services::FromGrpc(s, absl::StrCat("join at ", o_.coordinator));
    if (attempt % 15 == 0) spdlog::info("waiting for the run to start at {} ({})", o_.coordinator, s.error_message());
  }
  spdlog::info("joined run {} as rank {} of {} ({} neighbours)", join_.run_id(), join_.rank(),
               join_.world_size(), join_.neighbours_size());
  return absl::OkStatus();
}

absl::Status Agent::Prepare() {
  auto c = core::ParseManifest(join_.manifest_yaml(), "the coordinator's manifest", {});
  if (!c.ok()) return c.status();
  config_ = std::move(*c);
  if (!o_.data_dir.empty()) config_.data_path = o_.data_dir;
  auto model = core::ModelForRun(config_);
  if (!model.ok()) return model.status();
  model_ = std::move(*model);
  if (o_.local_data && (data_.train.num_classes != model_.num_classes ||
                        data_.train.sample_size() != model_.input_shape[0] * model_.input_shape[1] * model_.input_shape[2])) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--local-data ", o_.data_dir, " holds ", data_.train.num_classes, " classes of ", data_.train.channels, "x",
        data_.train.height, "x", data_.train.width, " images; the run's data set ", config_.dataset, " for model ",
        model_.name, " has ", model_.num_classes, " classes of ", model_.input_shape[0], "x", model_.input_shape[1], "x",
        model_.input_shape[2]));
  }
  const int rank = join_.rank();
  std::vector<int64_t> shard;
  if (o_.local_data) {
    shard.resize(data_.train.size());
    for (int64_t k = 0; k < data_.train.size(); ++k) shard[k] = k;
  } else {
    auto d = core::LoadDataset(config_.dataset, config_.data_path);
    if (!d.ok()) return d.status();
    data_ = std::move(*d);
    auto shards = config_.partition == "iid"
                      ? core::IidPartition(data_.train.size(), config_.num_agents, config_.seed)
                      : core::DirichletPartition(data_.train.labels, data_.train.num_classes,
                                                 config_.num_agents, config_.alpha, config_.seed);
    if (!shards.ok()) return shards.status();
    shard = std::move((*shards)[rank]);
  }
  // Keep only this agent's samples (edge devices: the full training set is not needed after the
  // partition).
  shard_ = Compact(data_.train, shard);
  data_.train = core::Dataset();
  malloc_trim(0);  // give the full training set back to the system (TuneAllocator keeps heaps)
  std::vector<int64_t> local(shard_.size());
  for (int64_t k = 0; k < shard_.size(); ++k) local[k] = k;
  core::SetComputeThreads(o_.threads);
  auto t = core::Trainer::Create(model_, &shard_, std::move(local), config_.batch_size,
                                 core::SampleOrder{config_.shuffle, config_.seed, rank});
  if (!t.ok()) return t.status();
  trainer_ = std::move(*t);
  rounds_per_epoch_ = join_.rounds_per_epoch() > 0 ? join_.rounds_per_epoch() : trainer_->batches_per_epoch();
  auto x0 = core::InitialModel(model_, config_.init, config_.seed);
  if (!x0.ok()) return x0.status();
  core::Hyperparameters hyper = config_.hyper;
  hyper.tensor_sizes = model_.tensor_sizes();
  auto a = core::CreateAlgorithm<float>(hyper, *x0, join_.self_weight());
  if (!a.ok()) return a.status();
  algorithm_ = std::move(*a);

  services::GrpcExchangeOptions xo;
  xo.run_id = join_.run_id();
  xo.rank = rank;
  xo.self_weight = join_.self_weight();
  std::vector<int> peers;
  for (const auto& n : join_.neighbours()) {
    xo.neighbours.push_back({n.rank(), n.weight(), n.address()});
    peers.push_back(n.rank());
  }
  xo.layout_hash = model_.layout_hash();
  xo.num_params = model_.num_params();
  xo.codec = config_.codec;
  xo.codec_seed = config_.seed;
  xo.deadline = absl::Seconds(config_.deadline_s);
  xo.peer_loss_grace = xo.deadline;  // until the coordinator orchestrates recovery
  xo.tuning = o_.fast_failure_detection ? services::StreamTuning::ForTests() : services::StreamTuning();
  auto ex = services::GrpcExchange::Create(xo, &peer_service_);
  if (!ex.ok()) return ex.status();
  exchange_ = std::move(*ex);
  reporter_ = std::make_unique<Reporter>(coordinator_, join_.run_id());
  if (endpoint_) metrics_ = std::make_unique<Metrics>(endpoint_->registry(), config_, peers);
  spdlog::info("rank {}: {} samples, {} rounds per epoch, {} parameters, {} ({}), codec {}", rank,
               shard_.size(), rounds_per_epoch_, model_.num_params(), config_.hyper.algorithm,
               config_.graph, core::CodecName(config_.codec.kind));
  return absl::OkStatus();
}

gut::v1::EpochMetrics Agent::EpochReport(int epoch, double lr, double train_loss, const core::EvalResult* ev,
                                     bool final) {
  gut::v1::EpochMetrics m;
  m.set_rank(join_.rank());
  m.set_epoch(epoch);
  m.set_round(round_);
  m.set_lr(lr);
  m.set_train_loss(train_loss);
  if (ev != nullptr) {
    m.set_evaluated(true);
    m.set_test_accuracy(ev->accuracy);
    m.set_test_loss(ev->loss);
  }
  m.set_consensus_distance_estimate(reporter_->consensus());
  m.set_bytes_sent(exchange_->bytes_sent());
  m.set_bytes_received(exchange_->bytes_received());
  m.set_compute_seconds(compute_s_);
  m.set_wait_seconds(wait_s_);
  m.set_final(final);
  m.set_train_seconds(train_s_);
  m.set_wall_seconds(Since(start_));
  m.set_rounds_per_epoch(rounds_per_epoch_);
  m.set_num_params(model_.num_params());
  for (float v : core::SketchParams(algorithm_->params())) m.add_sketch(v);
  csv_rows_.push_back(absl::StrFormat("%d,%d,%d,%.6g,%.6f,%s,%s,%.3f,%.3f,%.3f,%d,%d", epoch, final ? 1 : 0,
                                      round_, lr, train_loss,
                                      ev ? absl::StrFormat("%.6f", ev->accuracy) : std::string(),
                                      ev ? absl::StrFormat("%.6f", ev->loss) : std::string(), compute_s_,
                                      wait_s_, Since(start_), exchange_->bytes_sent(), exchange_->bytes_received()));
  return m;
}

void Agent::WriteLocalCsv() {
  if (o_.checkpoint_dir.empty()) return;
  std::string out =
      "epoch,final,round,lr,train_loss,test_acc,test_loss,compute_s,wait_s,wall_s,bytes_sent,bytes_received\n";
  for (const auto& r : csv_rows_) absl::StrAppend(&out, r, "\n");
  if (auto s = report::AtomicWrite(o_.checkpoint_dir + "/metrics.csv", out); !s.ok()) spdlog::warn("{}", s.ToString());
}

absl::Status Agent::Train() {
  if (auto s = exchange_->WaitConnected(absl::Seconds(o_.join_timeout_s)); !s.ok()) return s;
  server_->GetHealthCheckService()->SetServingStatus("gut.v1.Peer", true);
  spdlog::info("rank {}: connected to all {} neighbours; training {} epochs", join_.rank(), join_.neighbours_size(),
               config_.epochs);
  // The training thread yields to the gRPC threads: a neighbour's message is on everyone's
  // critical path, so its reader must not queue behind a long compute slice (this matters most
  // when several agents share a machine).
  if (o_.compute_nice != 0) setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), o_.compute_nice);
  std::vector<float> scratch(model_.num_params());
  const int phases = algorithm_->phases();
  start_ = Clock::now();
  for (int epoch = 0; epoch < config_.epochs; ++epoch) {
    const double lr = config_.schedule.At(epoch);
    double loss_sum = 0;
    const auto te = Clock::now();
    for (int64_t r = 0; r < rounds_per_epoch_; ++r) {
      if (stopping()) return absl::CancelledError(absl::StrCat("stopped at round ", round_));
      const auto t0 = Clock::now();
      const double w0 = exchange_->wait_seconds();
      core::RoundContext<float> ctx{round_, lr, trainer_.get(), exchange_.get(), absl::MakeSpan(scratch)};
      trainer_->NextBatch();
      for (int p = 0; p < phases; ++p) {
        if (auto s = algorithm_->RunPhase(p, ctx); !s.ok()) return s;
      }
      loss_sum += trainer_->last_loss();
      ++round_;
      const double dt = Since(t0), dw = exchange_->wait_seconds() - w0;
      wait_s_ += dw;
      compute_s_ += dt - dw;
      if (metrics_) {
        metrics_->round.Set(static_cast<double>(round_));
        metrics_->rounds.Increment();
        metrics_->round_seconds.Observe(dt);
        metrics_->wait_seconds.Observe(dw);
        metrics_->compute_seconds.Observe(dt - dw);
        if (round_ % 16 == 0) SyncMetrics();
      }
    }
    train_s_ += Since(te);
    const double train_loss = loss_sum / static_cast<double>(rounds_per_epoch_);
    if (!std::isfinite(train_loss)) {
      return absl::AbortedError(absl::StrCat("training diverged at epoch ", epoch + 1, " (mean train loss ",
                                             train_loss, "); lower algorithm.lr or check mu + momentum < 1"));
    }
    std::optional<core::EvalResult> ev;
    if ((epoch + 1) % config_.eval_every == 0 || epoch + 1 == config_.epochs) {
      auto e = trainer_->Evaluate(algorithm_->params(), data_.test, config_.test_batch_size);
      if (!e.ok()) return e.status();
      ev = *e;
    }
    reporter_->Add(EpochReport(epoch + 1, lr, train_loss, ev ? &*ev : nullptr, false));
    WriteLocalCsv();
    if (metrics_) {
      metrics_->epoch.Set(epoch + 1);
      metrics_->train_loss.Set(train_loss);
      if (ev) {
        metrics_->test_accuracy.Set(ev->accuracy);
        metrics_->test_loss.Set(ev->loss);
      }
      metrics_->consensus.Set(reporter_->consensus());
      SyncMetrics();
    }
    const double eta = Since(start_) / (epoch + 1) * (config_.epochs - epoch - 1);
    spdlog::info("rank {} epoch {}/{}: lr {:.4g} loss {:.4f} acc {} | {:.1f} rounds/s, wait {:.0f}%, ETA {:.0f}s",
                 join_.rank(), epoch + 1, config_.epochs, lr, train_loss,
                 ev ? absl::StrFormat("%.2f%%", 100 * ev->accuracy) : std::string("-"),
                 round_ / std::max(1e-9, train_s_), 100 * wait_s_ / std::max(1e-9, wait_s_ + compute_s_), eta);
  }
  for (int k = 0; k < config_.final_gossip_rounds; ++k) {
    if (stopping()) return absl::CancelledError(absl::StrCat("stopped at round ", round_));
    for (int p = 0; p < 2; ++p) {
      if (auto s = algorithm_->RunGossipPhase(p, round_, exchange_.get()); !s.ok()) return s;
    }
    ++round_;
  }
  auto ev = trainer_->Evaluate(algorithm_->params(), data_.test, config_.test_batch_size);
  if (!ev.ok()) return ev.status();
  reporter_->Add(EpochReport(config_.epochs, config_.schedule.At(config_.epochs - 1), 0, &*ev, true));
  WriteLocalCsv();
  if (!o_.checkpoint_dir.empty()) {
    if (auto s = WriteParams(o_.checkpoint_dir + "/params-final.f32", algorithm_->params()); !s.ok()) return s;
  }
  spdlog::info("rank {} done: final test accuracy {:.2f}% after {} rounds", join_.rank(), 100 * ev->accuracy, round_);
  if (metrics_) {
    metrics_->test_accuracy.Set(ev->accuracy);
    SyncMetrics();
  }
  return absl::OkStatus();
}

void Agent::Leave(bool failed, const std::string& reason) {
  if (!coordinator_ || join_.run_id().empty()) return;
  auto stub = gut::v1::Coordinator::NewStub(coordinator_);
  gut::v1::LeaveRequest req;
  req.set_run_id(join_.run_id());
  req.set_rank(join_.rank());
  req.set_reason(reason);
  req.set_failed(failed);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + std::min(absl::Seconds(2), absl::Seconds(o_.stop_timeout_s) / 4)));
  gut::v1::LeaveResponse resp;
  if (auto s = stub->Leave(&ctx, req, &resp); !s.ok()) spdlog::info("leave not delivered: {}", s.error_message());
}

void Agent::Shutdown() {
  const absl::Duration budget = absl::Seconds(o_.stop_timeout_s);
  if (server_) server_->GetHealthCheckService()->SetServingStatus("gut.v1.Peer", false);
  if (exchange_) exchange_->Shutdown(budget / 2);
  if (server_) server_->Shutdown(absl::ToChronoTime(absl::Now() + budget / 4));
}

int Agent::Run() {
  if (o_.name.empty()) o_.name = DefaultName();
  if (o_.coordinator.empty()) {
    spdlog::error("--coordinator is required");
    return 2;
  }
  if (o_.local_data && o_.data_dir.empty()) {
    spdlog::error("--local-data needs --data-dir");
    return 2;
  }
  if (!o_.checkpoint_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(o_.checkpoint_dir, ec);
    if (ec) {
      spdlog::error("cannot create checkpoint directory '{}': {}", o_.checkpoint_dir, ec.message());
      return 2;
    }
  }
  if (auto s = Serve(); !s.ok()) {
    spdlog::error("{}", std::string(s.message()));
    return 2;
  }
  if (auto s = Join(); !s.ok()) {
    if (stopping()) {
      spdlog::info("stop requested before the run started");
      Shutdown();
      return 0;
    }
    spdlog::error("{}", std::string(s.message()));
    Shutdown();
    return 1;
  }
  if (auto s = Prepare(); !s.ok()) {
    spdlog::error("rank {}: {}", join_.rank(), std::string(s.message()));
    Leave(true, std::string(s.message()));
    Shutdown();
    return 2;
  }
  const absl::Status result = Train();
  int code = 0;
  if (result.ok()) {
    // Neighbours may still need our last messages: wait for their acknowledgements.
    if (auto s = exchange_->Flush(absl::Seconds(std::max(1.0, config_.deadline_s))); !s.ok()) spdlog::warn("{}", std::string(s.message()));
    if (!reporter_->Flush(o_.report_flush_s)) {
      spdlog::warn("{} report(s) not delivered: the coordinator is unreachable; this agent's metrics are in {}",
                   reporter_->pending(), o_.checkpoint_dir.empty() ? "its log" : o_.checkpoint_dir + "/metrics.csv");
    }
    Leave(false, "finished");
  } else if (stopping()) {
    spdlog::info("rank {}: {} (stop requested)", join_.rank(), std::string(result.message()));
    Leave(false, std::string(result.message()));
  } else {
    spdlog::error("rank {}: {}", join_.rank(), std::string(result.message()));
    Leave(true, std::string(result.message()));
    code = 1;
  }
  reporter_.reset();
  if (endpoint_ && !o_.checkpoint_dir.empty()) {
    // The last scrape, kept for post-mortems (and checked by promtool in the tests).
    if (metrics_) SyncMetrics();
    (void)report::AtomicWrite(o_.checkpoint_dir + "/metrics.prom", endpoint_->Render());
  }
  Shutdown();
  return code;
}

}  // namespace

int RunAgent(const AgentOptions& options, const std::atomic<bool>* stop) {
  // Deliberately never destroyed: Run() has shut every stream and the server down, and the
  // process exits next (main calls _Exit). Tearing gRPC objects down at exit raced with a late
  // reaction once in CI (an abort in gRPC's ref_counted.h right after a clean stop).
  auto* a = new Agent(options, stop);
  return a->Run();
}

}  // namespace gut::agent
