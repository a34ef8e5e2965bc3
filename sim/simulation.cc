#include "sim/simulation.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/common/thread_pool.h"
#include "core/data/dataset.h"
#include "core/data/partition.h"
#include "core/exchange/in_process_exchange.h"
#include "core/models/model.h"
#include "core/train/trainer.h"

namespace gut::sim {

using core::Algorithm;
using Clock = std::chrono::steady_clock;

struct Simulation::State {
  core::RunConfig config;
  core::TrainTest data;
  core::ModelInfo model;
  std::unique_ptr<core::MixingMatrix> mixing;
  std::unique_ptr<core::InProcessExchange<float>> exchange;
  std::vector<std::unique_ptr<core::Trainer>> trainers;
  std::vector<std::unique_ptr<Algorithm<float>>> algorithms;
  std::unique_ptr<core::ThreadPool> pool;
  // One model workspace per worker thread, lent to whichever agent that worker runs.
  std::vector<std::unique_ptr<core::ModelWorkspace>> workspaces;
  std::vector<std::vector<float>> scratch;  // per worker, RoundContext::scratch
  std::vector<double> loss_sum;  // per agent, current epoch
  int rounds_per_epoch = 0;
  int64_t round = 0;  // next global round number

  int n() const { return static_cast<int>(algorithms.size()); }

  // One lock-step training round of every agent.
  absl::Status TrainRound(double lr) {
    const int phases = algorithms[0]->phases();
    std::vector<absl::Status> status(n());
    for (int p = 0; p < phases; ++p) {
      pool->ParallelForWorker(n(), [&](int i, int worker) {
        if (!status[i].ok()) return;
        core::RoundContext<float> ctx{round, lr, trainers[i].get(), &exchange->Endpoint(i),
                                      absl::MakeSpan(scratch[worker])};
        if (p == 0) trainers[i]->NextBatch();
        trainers[i]->UseWorkspace(workspaces[worker].get());
        status[i] = algorithms[i]->RunPhase(p, ctx);
        if (p == phases - 1 && status[i].ok()) loss_sum[i] += trainers[i]->last_loss();
      });
      for (const auto& s : status)
        if (!s.ok()) return s;
    }
    ++round;
    return absl::OkStatus();
  }

  absl::Status GossipRound() {
    std::vector<absl::Status> status(n());
    for (int p = 0; p < 2; ++p) {
      pool->ParallelFor(n(), [&](int i) {
        if (status[i].ok()) status[i] = algorithms[i]->RunGossipPhase(p, round, &exchange->Endpoint(i));
      });
      for (const auto& s : status)
        if (!s.ok()) return s;
    }
    ++round;
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<core::EvalResult>> EvaluateAll() {
    std::vector<absl::StatusOr<core::EvalResult>> r(n());
    pool->ParallelFor(n(), [&](int i) {
      r[i] = trainers[i]->Evaluate(algorithms[i]->params(), data.test, config.test_batch_size);
    });
    std::vector<core::EvalResult> out;
    for (auto& x : r) {
      if (!x.ok()) return x.status();
      out.push_back(*x);
    }
    return out;
  }

  double ConsensusDistance() const {
    const size_t p = algorithms[0]->params().size();
    std::vector<double> mean(p, 0.0);
    for (const auto& a : algorithms) {
      auto x = a->params();
      for (size_t k = 0; k < p; ++k) mean[k] += x[k];
    }
    for (double& v : mean) v /= n();
    double sq = 0;
    for (const auto& a : algorithms) {
      auto x = a->params();
      for (size_t k = 0; k < p; ++k) {
        const double d = x[k] - mean[k];
        sq += d * d;
      }
    }
    return std::sqrt(sq / n());
  }
};

Simulation::Simulation(std::unique_ptr<State> s) : s_(std::move(s)) {}
Simulation::~Simulation() = default;

absl::StatusOr<std::unique_ptr<Simulation>> Simulation::Create(const core::RunConfig& config) {
  auto s = std::make_unique<State>();
  s->config = config;
  auto w = core::BuildMixingMatrix(config);
  if (!w.ok()) return w.status();
  s->mixing = std::make_unique<core::MixingMatrix>(std::move(*w));
  auto model = core::ModelForRun(config);
  if (!model.ok()) return model.status();
  s->model = std::move(*model);
  auto data = core::LoadDataset(config.dataset, config.data_path);
  if (!data.ok()) return data.status();
  s->data = std::move(*data);
  if (s->data.train.size() < config.num_agents) {
    return absl::InvalidArgumentError(absl::StrCat("data: ", s->data.train.size(),
                                                   " training samples cannot feed ", config.num_agents, " agents"));
  }

  absl::StatusOr<std::vector<std::vector<int64_t>>> shards =
      config.partition == "iid"
          ? core::IidPartition(s->data.train.size(), config.num_agents, config.seed)
          : core::DirichletPartition(s->data.train.labels, s->data.train.num_classes,
                                     config.num_agents, config.alpha, config.seed);
  if (!shards.ok()) return shards.status();

  auto x0 = core::InitialModel(s->model, config.init, config.seed);
  if (!x0.ok()) return x0.status();
  s->exchange = std::make_unique<core::InProcessExchange<float>>(
      *s->mixing, absl::Seconds(config.deadline_s), config.codec, config.seed);
  core::Hyperparameters hyper = config.hyper;
  hyper.tensor_sizes = s->model.tensor_sizes();
  for (int i = 0; i < config.num_agents; ++i) {
    auto t = core::Trainer::Create(s->model, &s->data.train, (*shards)[i], config.batch_size,
                                   core::SampleOrder{config.shuffle, config.seed, i});
    if (!t.ok()) return t.status();
    s->trainers.push_back(std::move(*t));
    auto a = core::CreateAlgorithm<float>(hyper, *x0, s->mixing->self_weight(i));
    if (!a.ok()) return a.status();
    s->algorithms.push_back(std::move(*a));
  }
  // Lock-step rounds need the same number of rounds per epoch on every agent; equal shards give it.
  s->rounds_per_epoch = s->trainers[0]->batches_per_epoch();
  for (const auto& t : s->trainers) {
    if (t->batches_per_epoch() != s->rounds_per_epoch) {
      return absl::InternalError("agents' shards give different numbers of batches per epoch");
    }
  }
  s->loss_sum.assign(config.num_agents, 0.0);
  const int threads = config.threads > 0
                          ? config.threads
                          : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  s->pool = std::make_unique<core::ThreadPool>(std::min(threads, config.num_agents),
                                               [] { core::SetComputeThreads(1); });
  for (int w = 0; w < s->pool->size(); ++w) {
    auto ws = core::ModelWorkspace::Create(s->model, config.batch_size, s->data.train.sample_size());
    if (!ws.ok()) return ws.status();
    s->workspaces.push_back(std::move(*ws));
    s->scratch.emplace_back(s->model.num_params());
  }
  return std::unique_ptr<Simulation>(new Simulation(std::move(s)));
}

int Simulation::num_agents() const { return s_->n(); }
int64_t Simulation::num_params() const { return s_->model.num_params(); }
int Simulation::rounds_per_epoch() const { return s_->rounds_per_epoch; }
int Simulation::algorithm_buffers() const {
  int most = 0;  // the busiest agent (RelaySGD keeps one relay per tree neighbour)
  for (const auto& a : s_->algorithms) most = std::max(most, a->persistent_buffers());
  return most;
}
std::vector<float> Simulation::Params(int agent) const {
  auto p = s_->algorithms[agent]->params();
  return {p.begin(), p.end()};
}

absl::StatusOr<double> Simulation::RunTrainingRounds(int rounds) {
  const auto t0 = Clock::now();
  for (int r = 0; r < rounds; ++r) {
    if (auto st = s_->TrainRound(s_->config.hyper.lr); !st.ok()) return st;
  }
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

absl::StatusOr<Summary> Simulation::Run(const std::function<void(const EpochRecord&)>& on_epoch) {
  State& s = *s_;
  const core::RunConfig& c = s.config;
  Summary sum;
  sum.num_params = s.model.num_params();
  sum.threads = s.pool->size();
  const auto start = Clock::now();
  double train_s = 0;
  for (int epoch = 0; epoch < c.epochs; ++epoch) {
    const double lr = c.schedule.At(epoch);
    std::fill(s.loss_sum.begin(), s.loss_sum.end(), 0.0);
    const auto t0 = Clock::now();
    for (int r = 0; r < s.rounds_per_epoch; ++r) {
      if (auto st = s.TrainRound(lr); !st.ok()) return st;
    }
    train_s += std::chrono::duration<double>(Clock::now() - t0).count();
    EpochRecord rec;
    rec.epoch = epoch + 1;
    rec.epochs = c.epochs;
    rec.rounds = s.round;
    rec.lr = lr;
    double loss = 0;
    for (double l : s.loss_sum) loss += l / s.rounds_per_epoch;
    rec.train_loss = loss / s.n();
    if (!std::isfinite(rec.train_loss)) {
      return absl::AbortedError(absl::StrCat("training diverged at epoch ", epoch + 1,
                                             " (mean train loss ", rec.train_loss,
                                             "); lower algorithm.lr or check mu + momentum < 1"));
    }
    if ((epoch + 1) % c.eval_every == 0 || epoch + 1 == c.epochs) {
      auto ev = s.EvaluateAll();
      if (!ev.ok()) return ev.status();
      rec.evaluated = true;
      AgentSpread acc(s.n());
      for (const auto& e : *ev) {
        acc.Add(e.accuracy);
        rec.test_loss += e.loss / s.n();
      }
      rec.acc_mean = acc.mean;
      rec.acc_min = acc.min;
      rec.acc_max = acc.max;
    }
    rec.consensus = s.ConsensusDistance();
    rec.wall_s = std::chrono::duration<double>(Clock::now() - start).count();
    rec.train_s = train_s;
    rec.rounds_per_s = s.round / std::max(1e-9, train_s);
    rec.eta_s = rec.wall_s / (epoch + 1) * (c.epochs - epoch - 1);
    rec.bytes_sent = s.exchange->total_bytes_sent();
    sum.epochs.push_back(rec);
    if (on_epoch) on_epoch(rec);
  }
  sum.consensus_before_gossip = s.ConsensusDistance();
  for (int k = 0; k < c.final_gossip_rounds; ++k) {
    if (auto st = s.GossipRound(); !st.ok()) return st;
  }
  sum.consensus_after_gossip = s.ConsensusDistance();
  auto ev = s.EvaluateAll();
  if (!ev.ok()) return ev.status();
  AgentSpread acc(s.n());
  for (const auto& e : *ev) {
    sum.final_acc.push_back(e.accuracy);
    acc.Add(e.accuracy);
  }
  sum.final_acc_mean = acc.mean;
  sum.final_acc_min = acc.min;
  sum.final_acc_max = acc.max;
  sum.wall_s = std::chrono::duration<double>(Clock::now() - start).count();
  sum.rounds = s.round;
  sum.bytes_sent = s.exchange->total_bytes_sent();
  sum.solver_fallbacks = 0;
  for (const auto& a : s.algorithms) sum.solver_fallbacks += a->solver_fallbacks();
  return sum;
}

}  // namespace gut::sim
