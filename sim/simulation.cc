#include "sim/simulation.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <optional>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/checkpoint/checkpoint_store.h"
#include "core/common/numerics.h"
#include "core/common/thread_pool.h"
#include "core/config/exchange_settings.h"
#include "core/data/dataset.h"
#include "core/data/partition.h"
#include "core/exchange/in_process_exchange.h"
#include "core/exchange/message_guard.h"
#include "core/models/model.h"
#include "core/train/epoch_driver.h"
#include "core/train/run_model.h"
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
  int64_t start_round = 0;
  int64_t bench_round = 0;  // the next round RunTrainingRounds trains

  int n() const { return static_cast<int>(algorithms.size()); }

  // One lock-step training round of every agent.
  absl::Status TrainRound(int64_t round, double lr) {
    const int phases = algorithms[0]->phases();
    std::vector<absl::Status> status(n());
    for (int p = 0; p < phases; ++p) {
      pool->ParallelForWorker(n(), [&](int i, int worker) {
        if (!status[i].ok()) return;
        core::RoundContext<float> ctx{round, lr, trainers[i].get(), &exchange->Endpoint(i),
                                      absl::MakeSpan(scratch[worker])};
        if (p == 0) {
          trainers[i]->NextBatch();
          exchange->Endpoint(i).NoteModelNorm(core::MessageNorm(algorithms[i]->params()));
        }
        trainers[i]->UseWorkspace(workspaces[worker].get());
        status[i] = algorithms[i]->RunPhase(p, ctx);
        if (p == phases - 1 && status[i].ok()) loss_sum[i] += trainers[i]->last_loss();
      });
      for (const auto& s : status)
        if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }

  absl::Status GossipRound(int64_t round) {
    std::vector<absl::Status> status(n());
    for (int p = 0; p < 2; ++p) {
      pool->ParallelFor(n(), [&](int i) {
        if (p == 0) exchange->Endpoint(i).NoteModelNorm(core::MessageNorm(algorithms[i]->params()));
        if (status[i].ok()) status[i] = algorithms[i]->RunGossipPhase(p, round, &exchange->Endpoint(i));
      });
      for (const auto& s : status)
        if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<core::EvalResult>> EvaluateAll() {
    std::vector<absl::StatusOr<core::EvalResult>> r(n());
    pool->ParallelForWorker(n(), [&](int i, int worker) {
      trainers[i]->UseWorkspace(workspaces[worker].get());
      r[i] = trainers[i]->Evaluate(algorithms[i]->params(), data.test, config.test_batch_size);
    });
    std::vector<core::EvalResult> out;
    for (auto& x : r) {
      if (!x.ok()) return x.status();
      out.push_back(*x);
    }
    return out;
  }

  // Mean over agents, in rank order (as the coordinator adds the agents' reports), of each
  // agent's replica error; -1 when the method keeps no public copy.
  double MeanReplicaError() const {
    double mean = 0;
    for (const auto& a : algorithms) {
      const double e = a->replica_error();
      if (e < 0) return -1;
      mean += e / n();
    }
    return mean;
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

// The simulated run seen by the epoch driver: every agent at once, plus checkpoints of the whole.
class Simulation::Participant final : public core::RunParticipant {
 public:
  Participant(State* s, const std::function<void(const EpochRecord&)>& on_epoch, const SimRunOptions& o,
              core::CheckpointStore* store)
      : s_(*s), on_epoch_(on_epoch), o_(o), store_(store), start_(Clock::now()) {}

  absl::Status TrainRound(int64_t round, double lr) override {
    const auto t0 = Clock::now();
    auto st = s_.TrainRound(round, lr);
    train_s_ += std::chrono::duration<double>(Clock::now() - t0).count();
    if (st.ok()) rounds_done_ = round + 1;
    return st;
  }
  absl::Status GossipRound(int64_t round) override {
    if (round == s_.rounds_per_epoch * static_cast<int64_t>(s_.config.epochs)) {
      sum_.consensus_before_gossip = s_.ConsensusDistance();
    }
    auto st = s_.GossipRound(round);
    if (st.ok()) rounds_done_ = round + 1;
    return st;
  }
  double TakeEpochLoss() override {
    double loss = 0;
    for (double& l : s_.loss_sum) {
      loss += l / s_.rounds_per_epoch;
      l = 0;
    }
    return loss / s_.n();
  }
  absl::Status EndEpoch(const core::EpochEnd& e) override {
    EpochRecord rec;
    rec.epoch = e.epoch;
    rec.epochs = s_.config.epochs;
    rec.rounds = e.rounds;
    rec.lr = e.lr;
    rec.train_loss = e.train_loss;
    if (e.evaluate) {
      auto ev = s_.EvaluateAll();
      if (!ev.ok()) return ev.status();
      rec.evaluated = true;
      report::AgentSpread acc(s_.n());
      for (const auto& x : *ev) {
        acc.Add(x.metric);
        rec.test_loss += x.loss / s_.n();
      }
      rec.acc_mean = acc.mean;
      rec.acc_min = acc.min;
      rec.acc_max = acc.max;
    }
    rec.consensus = s_.ConsensusDistance();
    rec.wall_s = wall_offset_ + std::chrono::duration<double>(Clock::now() - start_).count();
    rec.train_s = train_s_;
    // This epoch's training rounds over this epoch's training seconds (a checkpoint written at
    // the end of the previous epoch once reset the time alone, inflating the rate epoch by epoch).
    rec.rounds_per_s = (e.rounds - epoch_round0_) / std::max(1e-9, train_s_ - epoch_train0_);
    epoch_round0_ = e.rounds;
    epoch_train0_ = train_s_;
    rec.eta_s = rec.wall_s / e.epoch * (s_.config.epochs - e.epoch);
    rec.bytes_sent = s_.exchange->total_bytes_sent();
    rec.raw_bytes_sent = s_.exchange->total_raw_bytes_sent();
    rec.replica_error = s_.MeanReplicaError();
    sum_.epochs.push_back(rec);
    if (on_epoch_) on_epoch_(rec);
    return absl::OkStatus();
  }
  absl::Status Finish(int64_t rounds) override {
    if (s_.config.final_gossip_rounds == 0) sum_.consensus_before_gossip = s_.ConsensusDistance();
    sum_.consensus_after_gossip = s_.ConsensusDistance();
    auto ev = s_.EvaluateAll();
    if (!ev.ok()) return ev.status();
    report::AgentSpread acc(s_.n());
    for (const auto& e : *ev) {
      sum_.final_acc.push_back(e.metric);
      acc.Add(e.metric);
    }
    sum_.final_acc_mean = acc.mean;
    sum_.final_acc_min = acc.min;
    sum_.final_acc_max = acc.max;
    sum_.wall_s = wall_offset_ + std::chrono::duration<double>(Clock::now() - start_).count();
    sum_.rounds = rounds;
    sum_.bytes_sent = s_.exchange->total_bytes_sent();
    sum_.raw_bytes_sent = s_.exchange->total_raw_bytes_sent();
    sum_.solver_fallbacks = 0;
    for (const auto& a : s_.algorithms) sum_.solver_fallbacks += a->solver_fallbacks();
    sum_.messages_refused = 0;
    for (int i = 0; i < s_.n(); ++i) sum_.messages_refused += s_.exchange->messages_refused(i);
    return absl::OkStatus();
  }
  absl::Status Checkpoint(int64_t rounds) override { return Save(rounds, /*scheduled=*/true); }
  bool StopRequested() override { return o_.stop != nullptr && o_.stop->load(); }
  std::string DivergenceHint() override {
    return core::RefusalHint(s_.exchange->Refusals()) + core::DivergenceAdvice(s_.config);
  }

  // The whole run after `rounds` rounds.
  absl::Status Save(int64_t rounds, bool scheduled) {
    if (store_ == nullptr) return absl::OkStatus();
    core::StateBundle b;
    core::StateSaver<float> v(&b);
    Visit(&v, rounds);
    return store_->Write(rounds, b, scheduled);
  }
  // Restores a checkpoint into freshly built agents; returns the round to start at.
  absl::StatusOr<int64_t> Restore(const core::LoadedCheckpoint& c) {
    core::StateLoader<float> v(&c.state);
    const int64_t rounds = Visit(&v, c.round);
    if (!v.status().ok()) return v.status();
    return rounds;
  }
  Summary& summary() { return sum_; }
  // Rounds completed so far (where a stop leaves the run).
  int64_t rounds_done() const { return rounds_done_; }

 private:
  // Saves or loads (the visitor decides) everything the rest of the run depends on.
  int64_t Visit(core::StateVisitor<float>* v, int64_t rounds) {
    v->Integer("run/rounds", &rounds);
    v->Double("run/train_s", &train_s_);
    double wall = wall_offset_ + std::chrono::duration<double>(Clock::now() - start_).count();
    v->Double("run/wall_s", &wall);
    v->Double("run/consensus_before_gossip", &sum_.consensus_before_gossip);
    std::vector<double> records = report::FlattenRecords(sum_.epochs);
    v->Doubles("run/epochs", &records);
    sum_.epochs = report::UnflattenRecords(records);
    for (int i = 0; i < s_.n(); ++i) {
      v->Push(absl::StrCat("agent/", i));
      s_.algorithms[i]->VisitState(v);
      int64_t drawn = s_.trainers[i]->batches_drawn();
      v->Integer("batches_drawn", &drawn);
      if (drawn != s_.trainers[i]->batches_drawn()) s_.trainers[i]->Rewind(drawn);
      s_.trainers[i]->VisitBuffers(v);
      v->Double("loss_sum", &s_.loss_sum[i]);
      auto& nbh = s_.exchange->Endpoint(i);
      int64_t sent = nbh.bytes_sent(), received = nbh.bytes_received(), raw = nbh.raw_bytes_sent();
      v->Integer("bytes_sent", &sent);
      v->Integer("bytes_received", &received);
      v->Integer("raw_bytes_sent", &raw);
      s_.exchange->RestoreByteCounters(i, sent, received, raw);
      v->Pop();
    }
    // Times continue from the checkpoint's (a loader has just replaced the wall time).
    wall_offset_ = wall;
    start_ = Clock::now();
    if (v->loading()) {
      epoch_round0_ = rounds;  // a resumed run's first rate counts from where it starts
      epoch_train0_ = train_s_;
    }
    rounds_done_ = rounds;
    return rounds;
  }

  State& s_;
  const std::function<void(const EpochRecord&)>& on_epoch_;
  const SimRunOptions& o_;
  core::CheckpointStore* store_;
  Summary sum_;
  Clock::time_point start_;
  double wall_offset_ = 0, train_s_ = 0;
  int64_t epoch_round0_ = 0;  // rounds and training seconds at the start of the epoch being run
  double epoch_train0_ = 0;
  int64_t rounds_done_ = 0;
};

Simulation::Simulation(std::unique_ptr<State> s) : s_(std::move(s)) {}
Simulation::~Simulation() = default;

absl::StatusOr<std::unique_ptr<Simulation>> Simulation::Create(const core::RunConfig& config) {
  // The libraries read the mode's settings when they load: the process must be in the mode already.
  if (auto mode = core::ParseNumerics(config.numerics); !mode.ok() || *mode != core::CurrentNumerics()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "run.numerics: this process computes in ", core::NumericsName(core::CurrentNumerics()), " mode, the run asks for ",
        config.numerics, " (gut-sim restarts itself into the run's mode: core::EnterNumerics)"));
  }
  auto s = std::make_unique<State>();
  s->config = config;
  auto w = core::BuildMixingMatrix(config);
  if (!w.ok()) return w.status();
  s->mixing = std::make_unique<core::MixingMatrix>(std::move(*w));
  auto data = core::LoadRunData(config, config.data_path);
  if (!data.ok()) return data.status();
  s->data = std::move(*data);
  auto model = core::BuildRunModel(config, s->data);
  if (!model.ok()) return model.status();
  s->model = std::move(*model);
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
      *s->mixing, absl::Seconds(config.deadline_s), core::CodecForRun(config, s->model), config.seed);
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
    auto ws = core::ModelWorkspace::Create(s->model, config.batch_size, s->data.train);
    if (!ws.ok()) return ws.status();
    s->workspaces.push_back(std::move(*ws));
    s->scratch.emplace_back(s->model.num_params());
  }
  return std::unique_ptr<Simulation>(new Simulation(std::move(s)));
}

absl::Status Simulation::InjectForgery(int rank, const core::Forgery& f) {
  if (rank < 0 || rank >= s_->n()) {
    return absl::InvalidArgumentError(absl::StrCat("--inject-forged-updates: no agent ", rank, " (", s_->n(), " agents)"));
  }
  s_->exchange->SetForgery(rank, f);
  return absl::OkStatus();
}

int Simulation::num_agents() const { return s_->n(); }
int64_t Simulation::num_params() const { return s_->model.num_params(); }
int Simulation::rounds_per_epoch() const { return s_->rounds_per_epoch; }
int64_t Simulation::start_round() const { return s_->start_round; }
int Simulation::algorithm_buffers() const {
  int most = 0;  // the busiest agent (RelaySGD keeps one relay per tree neighbour)
  for (const auto& a : s_->algorithms) most = std::max(most, a->persistent_buffers());
  return most;
}
std::vector<float> Simulation::Params(int agent) const {
  auto p = s_->algorithms[agent]->params();
  return {p.begin(), p.end()};
}

absl::StatusOr<std::string> Simulation::ExportModel(int agent) const {
  return s_->trainers[agent]->ExportModel(s_->algorithms[agent]->params());
}

absl::StatusOr<std::string> Simulation::ExportAverageModel() const {
  const size_t p = s_->algorithms[0]->params().size();
  std::vector<double> sum(p, 0.0);
  std::vector<const core::Trainer*> agents;
  for (int i = 0; i < s_->n(); ++i) {  // rank order, in double: the same mean on every machine
    auto x = s_->algorithms[i]->params();
    for (size_t k = 0; k < p; ++k) sum[k] += x[k];
    agents.push_back(s_->trainers[i].get());
  }
  std::vector<float> mean(p);
  for (size_t k = 0; k < p; ++k) mean[k] = static_cast<float>(sum[k] / s_->n());
  return core::Trainer::ExportAverageModel(agents, mean);
}

std::string Simulation::model_sha256() const { return s_->model.is_script() ? s_->model.script->sha256 : ""; }

absl::StatusOr<double> Simulation::RunTrainingRounds(int rounds) {
  const auto t0 = Clock::now();
  // Round numbers go on from the previous call: the exchange refuses a round it has delivered.
  for (int r = 0; r < rounds; ++r, ++s_->bench_round) {
    if (auto st = s_->TrainRound(s_->bench_round, s_->config.hyper.lr); !st.ok()) return st;
  }
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

absl::StatusOr<Summary> Simulation::Run(const std::function<void(const EpochRecord&)>& on_epoch,
                                        const SimRunOptions& options) {
  State& s = *s_;
  const core::RunConfig& c = s.config;
  core::RunPlan plan;
  plan.epochs = c.epochs;
  plan.rounds_per_epoch = s.rounds_per_epoch;
  plan.final_gossip_rounds = c.final_gossip_rounds;
  plan.eval_every = c.eval_every;
  plan.schedule = c.schedule;

  std::optional<core::CheckpointStore> store;
  if (!options.checkpoint_dir.empty()) {
    auto st = core::CheckpointStore::Open(options.checkpoint_dir, {c.name, s.model.identity_hash()});
    if (!st.ok()) return st.status();
    store.emplace(std::move(*st));
    plan.checkpoint_every_rounds = core::CheckpointInterval(c, s.rounds_per_epoch);
  }
  Participant p(&s, on_epoch, options, store ? &*store : nullptr);
  s.start_round = 0;
  if (options.resume) {
    if (!store) return absl::InvalidArgumentError("resume needs a checkpoint directory");
    std::vector<std::string> skipped;
    auto ck = store->LoadNewest(&skipped);
    for (const auto& why : skipped) std::fprintf(stderr, "gut-sim: skipping a checkpoint: %s\n", why.c_str());
    if (!ck.ok()) return ck.status();
    auto round = p.Restore(*ck);
    if (!round.ok()) return round.status();
    s.start_round = *round;
    for (const auto& r : p.summary().epochs)
      if (on_epoch) on_epoch(r);
  } else if (store) {
    store->DiscardAfter(-1);  // a fresh run: older checkpoints in the directory are not ours
  }
  const absl::Status st = core::DriveRun(plan, s.start_round, &p);
  if (!st.ok()) {
    // A stop comes at a round boundary: everything up to it survives in a checkpoint.
    if (st.code() == absl::StatusCode::kCancelled && store) {
      if (auto w = p.Save(p.rounds_done(), /*scheduled=*/false); !w.ok()) return w;
    }
    return st;
  }
  Summary sum = std::move(p.summary());
  sum.num_params = s.model.num_params();
  sum.threads = s.pool->size();
  sum.model_sha256 = model_sha256();
  return sum;
}

}  // namespace gut::sim
