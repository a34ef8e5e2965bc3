#include "agent/agent_participant.h"

#include <cmath>
#include <limits>
#include <optional>

#include <spdlog/spdlog.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/common/atomic_file.h"
#include "core/common/cli.h"
#include "core/common/log_context.h"
#include "core/common/sketch.h"
#include "core/exchange/message_guard.h"
#include "core/report/run_report.h"

namespace gut::agent {

using Clock = std::chrono::steady_clock;

namespace {
double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
// The agent's own metrics.csv; the test metric's column is test_acc or test_rmse (model.loss).
std::string CsvHeader(const report::Metric& m) {
  return absl::StrCat("epoch,final,round,lr,train_loss,test_", m.key,
                      ",test_loss,compute_s,wait_s,wall_s,bytes_sent,bytes_received\n");
}
}  // namespace

AgentParticipant::AgentParticipant(ParticipantParts p) : p_(std::move(p)) {
  scratch_.assign(p_.trainer->point().size(), 0.0f);
}

double AgentParticipant::Elapsed() const { return wall_offset_ + Since(start_); }

bool AgentParticipant::StopRequested() {
  if (pending_) return true;
  if (p_.stop == nullptr || !p_.stop->load()) return false;
  // Every agent asked to stop stops at the same round (RunCommand.stop_round, decided by the
  // coordinator), so that all of them hold a stop checkpoint of that round and none waits in a
  // round its stopped neighbours will never send. Without an answer soon (no coordinator), it
  // stops where it is.
  const absl::Time until = absl::Now() + absl::Seconds(2);
  for (;;) {
    const int64_t s = stop_round_.load();
    if (s > 0) return round_ >= s;
    if (pending_ || absl::Now() >= until) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
}

absl::Status AgentParticipant::TrainRound(int64_t round, double lr) {
  if (pending_) return absl::AbortedError("a recovery command is waiting");
  const auto t0 = Clock::now();
  const double w0 = p_.exchange->wait_seconds();
  core::RoundContext<float> ctx{round, lr, p_.trainer, p_.exchange, absl::MakeSpan(scratch_)};
  p_.trainer->NextBatch();
  p_.exchange->NoteModelNorm(core::MessageNorm(algorithm_->params()));
  for (int phase = 0; phase < algorithm_->phases(); ++phase) {
    if (auto s = algorithm_->RunPhase(phase, ctx); !s.ok()) return s;
  }
  loss_sum_ += p_.trainer->last_loss();
  round_ = round + 1;
  core::SetLogRound(round_);
  const double dt = Since(t0), dw = p_.exchange->wait_seconds() - w0;
  train_s_ += dt;
  wait_s_ += dw;
  compute_s_ += dt - dw;
  if (p_.metrics != nullptr) {
    const double total = static_cast<double>(p_.config->epochs) * p_.rounds_per_epoch + p_.config->final_gossip_rounds;
    const double rate = (round_ - start_round_) / std::max(1e-9, Since(start_));
    p_.metrics->Round(round_, dt, dw, lr, round_ / total, (total - round_) / std::max(1e-9, rate));
    if (round_ % 16 == 0) SyncMetrics();
  }
  std::lock_guard<std::mutex> l(progress_mu_);
  progress_.round = round_;
  return absl::OkStatus();
}

std::string AgentParticipant::DivergenceHint() {
  return core::RefusalHint(p_.exchange->Refusals()) + core::DivergenceAdvice(*p_.config);
}

absl::Status AgentParticipant::GossipRound(int64_t round) {
  if (pending_) return absl::AbortedError("a recovery command is waiting");
  p_.exchange->NoteModelNorm(core::MessageNorm(algorithm_->params()));
  for (int phase = 0; phase < 2; ++phase) {
    if (auto s = algorithm_->RunGossipPhase(phase, round, p_.exchange); !s.ok()) return s;
  }
  round_ = round + 1;
  core::SetLogRound(round_);
  std::lock_guard<std::mutex> l(progress_mu_);
  progress_.round = round_;
  return absl::OkStatus();
}

double AgentParticipant::TakeEpochLoss() {
  const double loss = loss_sum_ / static_cast<double>(p_.rounds_per_epoch);
  loss_sum_ = 0;
  return loss;
}

void AgentParticipant::UpdateProgress(int epoch, double loss, const double* accuracy) {
  std::lock_guard<std::mutex> l(progress_mu_);
  progress_.epoch = epoch;
  progress_.loss = loss;
  if (accuracy != nullptr) progress_.accuracy = *accuracy;
}

AgentProgress AgentParticipant::Progress() {
  std::lock_guard<std::mutex> l(progress_mu_);
  return progress_;
}

gut::v1::EpochMetrics AgentParticipant::EpochReport(int epoch, double lr, double train_loss, const core::EvalResult* ev,
                                                    bool final) {
  gut::v1::EpochMetrics m;
  m.set_rank(p_.rank);
  m.set_epoch(epoch);
  m.set_round(round_);
  m.set_lr(lr);
  m.set_train_loss(train_loss);
  if (ev != nullptr) {
    m.set_evaluated(true);
    m.set_test_accuracy(ev->metric);
    m.set_test_loss(ev->loss);
  }
  m.set_consensus_distance_estimate(p_.client->consensus());
  m.set_bytes_sent(p_.exchange->bytes_sent());
  m.set_bytes_received(p_.exchange->bytes_received());
  m.set_raw_bytes_sent(p_.exchange->raw_bytes_sent());
  m.set_replica_error(algorithm_->replica_error());
  m.set_compute_seconds(compute_s_);
  m.set_wait_seconds(wait_s_);
  m.set_final(final);
  m.set_train_seconds(train_s_);
  m.set_wall_seconds(Elapsed());
  m.set_rounds_per_epoch(p_.rounds_per_epoch);
  m.set_num_params(static_cast<int64_t>(algorithm_->params().size()));
  for (float v : core::SketchParams(algorithm_->params())) m.add_sketch(v);
  csv_rows_.push_back(absl::StrFormat("%d,%d,%d,%.6g,%.6f,%s,%s,%.3f,%.3f,%.3f,%d,%d", epoch, final ? 1 : 0, round_, lr,
                                      train_loss, ev ? absl::StrFormat("%.6f", ev->metric) : std::string(),
                                      ev ? absl::StrFormat("%.6f", ev->loss) : std::string(), compute_s_, wait_s_,
                                      Elapsed(), p_.exchange->bytes_sent(), p_.exchange->bytes_received()));
  return m;
}

void AgentParticipant::SendReport(const gut::v1::EpochMetrics& m) {
  reports_.push_back(m.SerializeAsString());
  p_.client->Report(m);
}

void AgentParticipant::WriteLocalCsv() {
  if (p_.out_dir.empty()) return;
  std::string out = CsvHeader(report::Metric::For(*p_.config));
  for (const auto& r : csv_rows_) absl::StrAppend(&out, r, "\n");
  if (auto s = core::AtomicWrite(p_.out_dir + "/metrics.csv", out, core::Durability::kRename); !s.ok()) {
    spdlog::warn("{}", s.ToString());
  }
}

absl::Status AgentParticipant::EndEpoch(const core::EpochEnd& e) {
  std::optional<core::EvalResult> ev;
  if (e.evaluate) {
    auto r = p_.trainer->Evaluate(algorithm_->params(), *p_.test, p_.config->test_batch_size);
    if (!r.ok()) return r.status();
    ev = *r;
  }
  SendReport(EpochReport(e.epoch, e.lr, e.train_loss, ev ? &*ev : nullptr, false));
  WriteLocalCsv();
  const double acc = ev ? ev->metric : 0, tl = ev ? ev->loss : 0;
  UpdateProgress(e.epoch, e.train_loss, ev ? &acc : nullptr);
  if (p_.metrics != nullptr) {
    p_.metrics->Epoch(e.epoch, &e.train_loss, ev ? &acc : nullptr, ev ? &tl : nullptr, p_.client->consensus());
    p_.metrics->Compression(p_.exchange->bytes_sent(), p_.exchange->raw_bytes_sent(), algorithm_->replica_error());
    SyncMetrics();
  }
  const double rate = (round_ - start_round_) / std::max(1e-9, Since(start_));
  const double left = static_cast<double>(p_.config->epochs - e.epoch) * p_.rounds_per_epoch + p_.config->final_gossip_rounds;
  const report::Metric metric = report::Metric::For(*p_.config);
  const double wait = wait_s_ / std::max(1e-9, wait_s_ + compute_s_);
  const std::string test_metric = "test_" + metric.key;
  core::SetLogEpoch(e.epoch);
  core::LogEvent(spdlog::level::info, "epoch",
                 {{"epochs", static_cast<double>(p_.config->epochs)}, {"rounds", static_cast<double>(round_)},
                  {"lr", e.lr}, {"train_loss", e.train_loss},
                  {test_metric.c_str(), ev ? ev->metric : std::numeric_limits<double>::quiet_NaN()},
                  {"rounds_per_s", rate}, {"wait_fraction", wait}, {"eta_s", left / std::max(1e-9, rate)}},
                 fmt::format("rank {} epoch {}/{}: lr {:.4g} loss {:.4f} {} {} | {:.1f} rounds/s, wait {:.0f}%, ETA "
                             "{:.0f}s", p_.rank, e.epoch, p_.config->epochs, e.lr, e.train_loss, metric.key,
                             ev ? metric.Format(ev->metric) : "-", rate, 100 * wait, left / std::max(1e-9, rate)));
  return absl::OkStatus();
}

absl::Status AgentParticipant::Finish(int64_t rounds) {
  auto ev = p_.trainer->Evaluate(algorithm_->params(), *p_.test, p_.config->test_batch_size);
  if (!ev.ok()) return ev.status();
  SendReport(EpochReport(p_.config->epochs, p_.config->schedule.At(p_.config->epochs - 1), 0, &*ev, true));
  WriteLocalCsv();
  if (!p_.out_dir.empty()) {
    const auto x = algorithm_->params();
    if (auto s = core::AtomicWrite(p_.out_dir + "/params-final.f32",
                                   absl::string_view(reinterpret_cast<const char*>(x.data()), x.size() * sizeof(float)));
        !s.ok()) {
      return s;
    }
    // The same model as a file PyTorch loads (README: "Take the model home").
    auto pt = p_.trainer->ExportModel(x);
    if (!pt.ok()) return pt.status();
    if (auto s = core::AtomicWrite(p_.out_dir + "/model-final.pt", *pt); !s.ok()) return s;
  }
  const double acc = ev->metric;
  UpdateProgress(p_.config->epochs, 0, &acc);
  const report::Metric metric = report::Metric::For(*p_.config);
  const std::string final_metric = "test_" + metric.key;
  core::LogEvent(spdlog::level::info, "finished", {{final_metric.c_str(), ev->metric}, {"rounds", static_cast<double>(rounds)}},
                 fmt::format("rank {} done: final {} {} after {} rounds", p_.rank, metric.label,
                             metric.Format(ev->metric), rounds));
  if (p_.metrics != nullptr) {
    p_.metrics->Epoch(p_.config->epochs, nullptr, &acc, &ev->loss, p_.client->consensus());
    SyncMetrics();
  }
  return absl::OkStatus();
}

void AgentParticipant::SyncMetrics() {
  if (p_.metrics != nullptr) {
    p_.metrics->Sync(p_.exchange->Stats(), algorithm_->solver_fallbacks());
  }
}

// ---- checkpoints ----------------------------------------------------------------------------

void AgentParticipant::Visit(core::StateVisitor<float>* v) {
  v->Integer("run/rounds", &round_);
  v->Double("run/loss_sum", &loss_sum_);
  v->Double("run/train_s", &train_s_);
  v->Double("run/compute_s", &compute_s_);
  v->Double("run/wait_s", &wait_s_);
  double wall = Elapsed();
  v->Double("run/wall_s", &wall);
  int64_t topology = topology_version_;
  v->Integer("run/topology_version", &topology);
  topology_version_ = static_cast<uint32_t>(topology);
  std::string rows = absl::StrJoin(csv_rows_, "\n");
  v->Text("run/csv_rows", &rows);
  csv_rows_ = rows.empty() ? std::vector<std::string>{} : absl::StrSplit(rows, '\n');
  int64_t sent = p_.exchange->bytes_sent(), received = p_.exchange->bytes_received();
  int64_t raw = p_.exchange->raw_bytes_sent();
  v->Integer("run/bytes_sent", &sent);
  v->Integer("run/bytes_received", &received);
  v->Integer("run/raw_bytes_sent", &raw);
  p_.exchange->RestoreByteCounters(sent, received, raw);
  int64_t drawn = p_.trainer->batches_drawn();
  if (v->Has("run/reports")) {  // checkpoints from before reports were kept lack it
    std::string packed;
    for (const auto& r : reports_) absl::StrAppend(&packed, r.size(), ":", r);
    v->Text("run/reports", &packed);
    if (v->loading()) {
      reports_.clear();
      for (size_t at = 0; at < packed.size();) {
        const size_t colon = packed.find(':', at);
        size_t len = 0;
        if (colon == std::string::npos || !absl::SimpleAtoi(packed.substr(at, colon - at), &len) ||
            len > packed.size() - colon - 1) {
          v->Reject("run/reports", "a damaged report list");
          break;
        }
        reports_.push_back(packed.substr(colon + 1, len));
        at = colon + 1 + len;
      }
    }
  }
  v->Integer("run/batches_drawn", &drawn);
  if (drawn != p_.trainer->batches_drawn()) p_.trainer->Rewind(drawn);
  v->Push("trainer");
  p_.trainer->VisitBuffers(v);
  v->Pop();
  v->Push("algorithm");
  algorithm_->VisitState(v);
  v->Pop();
  wall_offset_ = wall;
  start_ = Clock::now();
  start_round_ = round_;
}

absl::Status AgentParticipant::Save(int64_t rounds, bool scheduled) {
  if (p_.store == nullptr) return absl::OkStatus();
  const auto t0 = Clock::now();
  core::StateBundle b;
  core::StateSaver<float> saver(&b);
  Visit(&saver);
  if (auto s = p_.store->Write(rounds, b, scheduled); !s.ok()) return s;
  if (p_.metrics != nullptr) p_.metrics->Checkpoint(rounds, Since(t0));
  const auto held = p_.store->Rounds();
  std::lock_guard<std::mutex> l(progress_mu_);
  progress_.checkpoints = held;
  return absl::OkStatus();
}

absl::Status AgentParticipant::Checkpoint(int64_t rounds) {
  // A scheduled checkpoint that cannot be written (a full disk) does not end the run: the older
  // ones stay valid (every write is atomic) and are what this agent announces, so a recovery
  // restores one of them. Warned, counted and alerted (GutCheckpointFailing) instead.
  if (auto s = Save(rounds, /*scheduled=*/true); !s.ok()) {
    const auto held = p_.store->Rounds();
    spdlog::warn("rank {}: the checkpoint of round {} was not written ({}); training goes on, the newest "
                 "checkpoint is round {}", p_.rank, rounds, std::string(s.message()),
                 held.empty() ? std::string("none") : std::to_string(held.front()));
    if (p_.metrics != nullptr) p_.metrics->CheckpointFailed();
  }
  return absl::OkStatus();
}

absl::Status AgentParticipant::SaveStop() { return Save(round_, /*scheduled=*/false); }

absl::Status AgentParticipant::RestoreInitial() {
  auto a = p_.make_algorithm();
  if (!a.ok()) return a.status();
  algorithm_ = std::move(*a);
  p_.trainer->Rewind(0);
  p_.trainer->ResetBuffers();
  round_ = 0;
  loss_sum_ = train_s_ = compute_s_ = wait_s_ = wall_offset_ = 0;
  csv_rows_.clear();
  reports_.clear();
  p_.exchange->RestoreByteCounters(0, 0, 0);
  topology_version_ = 1;
  start_ = Clock::now();
  start_round_ = 0;
  if (p_.store != nullptr) p_.store->DiscardAfter(0);
  std::lock_guard<std::mutex> l(progress_mu_);
  progress_ = AgentProgress();
  if (p_.store != nullptr) progress_.checkpoints = p_.store->Rounds();
  return absl::OkStatus();
}

absl::StatusOr<uint32_t> AgentParticipant::Restore(int64_t round) {
  if (p_.store == nullptr) return absl::FailedPreconditionError("no checkpoint directory to restore from");
  auto c = p_.store->Load(round);
  if (!c.ok()) return c.status();
  auto a = p_.make_algorithm();  // the right shape; every value comes from the checkpoint
  if (!a.ok()) return a.status();
  algorithm_ = std::move(*a);
  core::StateLoader<float> loader(&c->state);
  Visit(&loader);
  if (!loader.status().ok()) return loader.status();
  for (const auto& r : reports_) {
    gut::v1::EpochMetrics m;
    if (m.ParseFromString(r)) p_.client->Report(m);
  }
  p_.store->DiscardAfter(round);  // a rollback abandons what came after
  std::lock_guard<std::mutex> l(progress_mu_);
  progress_.round = round_;
  progress_.checkpoints = p_.store->Rounds();
  return topology_version_;
}

}  // namespace gut::agent
