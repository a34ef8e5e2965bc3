#include "coordinator/epoch_aggregator.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <google/protobuf/util/json_util.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "core/common/sketch.h"

namespace gut::coordinator {

EpochAggregator::EpochAggregator(core::RunConfig config, std::string out_dir)
    : config_(std::move(config)), out_dir_(std::move(out_dir)) {}

EpochAggregator::~EpochAggregator() {
  if (journal_ != nullptr) std::fclose(journal_);
}

absl::Status EpochAggregator::Open(bool replay, const Membership& members) {
  const std::string path = out_dir_ + "/reports.jsonl";
  if (replay) {
    std::ifstream in(path);
    std::string line;
    int lines = 0;
    uintmax_t good = 0;  // bytes of complete entries: appends continue after the last of them
    bool torn = false;
    while (std::getline(in, line)) {
      if (in.eof() && !line.empty()) {  // no newline after it: cut off mid-write
        torn = true;
        break;
      }
      if (line.empty()) {
        good += 1;
        continue;
      }
      nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded()) {  // a line torn by a crash or a full disk: everything before it counts
        torn = true;
        break;
      }
      good += line.size() + 1;
      if (j.contains("rewind")) {
        Rewind(j["rewind"].get<int64_t>(), j["rounds_per_epoch"].get<int64_t>());
      } else if (j.contains("report")) {
        gut::v1::EpochMetrics m;
        if (!google::protobuf::util::JsonStringToMessage(j["report"].dump(), &m).ok()) break;
        const int key = m.final() ? config_.epochs + 1 : m.epoch();
        reports_[key][m.rank()] = m;
        Aggregate(members);
      }
      ++lines;
    }
    spdlog::info("replayed {} journal entries from {}: {} epoch(s) aggregated", lines, path, last_epoch_);
    if (torn) {
      // New entries must not be glued to the fragment (a later replay would stop there again).
      std::error_code ec;
      std::filesystem::resize_file(path, good, ec);
      spdlog::warn("{} ended in a torn entry (a crash or a full disk while writing it); cut at byte {}{}", path, good,
                   ec ? absl::StrCat(" failed: ", ec.message()) : "");
    }
  }
  journal_ = std::fopen(path.c_str(), replay ? "a" : "w");
  if (journal_ == nullptr) return absl::PermissionDeniedError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

void EpochAggregator::Journal(const std::string& line) {
  if (journal_ == nullptr) return;
  std::fputs(line.c_str(), journal_);
  std::fputc('\n', journal_);
  std::fflush(journal_);
  ::fsync(::fileno(journal_));
}

std::vector<report::EpochRecord> EpochAggregator::Add(const gut::v1::EpochMetrics& m, const Membership& members) {
  const int key = m.final() ? config_.epochs + 1 : m.epoch();
  // A retry of a report already taken changes nothing: it is not journalled again (a client
  // repeating one report must not grow the journal, nor cost an fsync each time).
  if (auto it = reports_.find(key); it != reports_.end()) {
    if (auto r = it->second.find(m.rank());
        r != it->second.end() && r->second.SerializeAsString() == m.SerializeAsString()) {
      return {};
    }
  }
  reports_[key][m.rank()] = m;
  std::string json;
  google::protobuf::util::JsonPrintOptions o;
  o.always_print_primitive_fields = true;
  if (google::protobuf::util::MessageToJsonString(m, &json, o).ok()) Journal(absl::StrCat("{\"report\":", json, "}"));
  return Aggregate(members);
}

void EpochAggregator::Rewind(int64_t restore_round, int64_t rounds_per_epoch) {
  if (rounds_per_epoch <= 0) return;
  const int keep = static_cast<int>(restore_round / rounds_per_epoch);
  while (!epochs_.empty() && epochs_.back().epoch > keep) epochs_.pop_back();
  for (auto it = reports_.begin(); it != reports_.end();) {
    it = it->first > keep ? reports_.erase(it) : std::next(it);
  }
  last_epoch_ = std::min(last_epoch_, keep);
  last_consensus_ = epochs_.empty() ? -1 : epochs_.back().consensus;
  Journal(nlohmann::json({{"rewind", restore_round}, {"rounds_per_epoch", rounds_per_epoch}}).dump());
}

std::vector<report::EpochRecord> EpochAggregator::Aggregate(const Membership& members) {
  std::vector<report::EpochRecord> out;
  const int n = members.active_agents();
  auto complete = [&](int key) {
    auto it = reports_.find(key);
    if (it == reports_.end()) return false;
    int have = 0;
    for (const auto& [rank, m] : it->second) have += members.IsActive(rank) ? 1 : 0;
    return have == n && n > 0;
  };
  while (last_epoch_ < config_.epochs && complete(last_epoch_ + 1)) {
    const int epoch = last_epoch_ + 1;
    report::EpochRecord rec;
    rec.epoch = epoch;
    rec.epochs = config_.epochs;
    report::AgentSpread acc(n);
    std::vector<std::vector<float>> sketches;
    bool evaluated = true;
    double replica_error = 0;
    for (const auto& [rank, m] : reports_[epoch]) {
      if (!members.IsActive(rank)) continue;
      rec.rounds = std::max(rec.rounds, m.round());
      rec.lr = m.lr();
      rec.train_loss += m.train_loss() / n;
      evaluated = evaluated && m.evaluated();
      acc.Add(m.test_accuracy());
      rec.test_loss += m.test_loss() / n;
      rec.wall_s = std::max(rec.wall_s, m.wall_seconds());
      rec.train_s = std::max(rec.train_s, m.train_seconds());
      rec.bytes_sent += m.bytes_sent();
      rec.raw_bytes_sent += m.raw_bytes_sent();
      replica_error = replica_error < 0 || m.replica_error() < 0 ? -1 : replica_error + m.replica_error() / n;
      sketches.emplace_back(m.sketch().begin(), m.sketch().end());
    }
    rec.evaluated = evaluated;
    rec.replica_error = replica_error;
    rec.acc_mean = acc.mean;
    rec.acc_min = acc.min;
    rec.acc_max = acc.max;
    rec.consensus = core::ConsensusFromSketches(sketches);
    rec.rounds_per_s = rec.rounds / std::max(1e-9, rec.train_s);
    rec.eta_s = rec.wall_s / epoch * (config_.epochs - epoch);
    epochs_.push_back(rec);
    last_epoch_ = epoch;
    last_consensus_ = rec.consensus;
    out.push_back(rec);
  }
  return out;
}

bool EpochAggregator::complete(const Membership& members) const {
  if (last_epoch_ < config_.epochs) return false;
  auto it = reports_.find(config_.epochs + 1);
  if (it == reports_.end()) return false;
  int have = 0;
  for (const auto& [rank, m] : it->second) have += members.IsActive(rank) ? 1 : 0;
  return have == members.active_agents();
}

report::Summary EpochAggregator::Summarise(const Membership& members) const {
  report::Summary sum;
  sum.epochs = epochs_;
  const int n = members.active_agents();
  sum.agents = n;
  report::AgentSpread acc(n);
  std::vector<std::vector<float>> sketches;
  if (auto it = reports_.find(config_.epochs + 1); it != reports_.end()) {
    for (const auto& [rank, m] : it->second) {
      if (!members.IsActive(rank)) continue;
      sum.final_acc.push_back(m.test_accuracy());
      acc.Add(m.test_accuracy());
      sum.wall_s = std::max(sum.wall_s, m.wall_seconds());
      sum.rounds = std::max(sum.rounds, m.round());
      sum.bytes_sent += m.bytes_sent();
      sum.raw_bytes_sent += m.raw_bytes_sent();
      sum.num_params = m.num_params();
      sketches.emplace_back(m.sketch().begin(), m.sketch().end());
    }
  }
  if (!sum.final_acc.empty()) {
    sum.final_acc_mean = acc.mean;
    sum.final_acc_min = acc.min;
    sum.final_acc_max = acc.max;
    sum.consensus_after_gossip = core::ConsensusFromSketches(sketches);
  }
  sum.consensus_before_gossip = epochs_.empty() ? 0 : epochs_.back().consensus;
  sum.threads = n;
  for (const auto& d : members.dropped()) sum.dropped.push_back({d.rank, d.round});
  return sum;
}

std::vector<std::string> EpochAggregator::WriteOutputs(const Membership& members, const std::string& status,
                                                       const std::string& failure) {
  std::vector<std::string> failed;
  report::Summary sum = Summarise(members);
  sum.status = status;
  sum.failure = failure;
  sum.model_sha256 = model_sha256_;
  const report::Metric metric = report::Metric::For(config_);
  const std::pair<const char*, absl::Status> writes[] = {
      {"metrics.csv", report::WriteMetricsCsv(out_dir_ + "/metrics.csv", epochs_, core::Durability::kFsync, metric)},
      {"metrics.svg",
       report::WritePlot(out_dir_ + "/metrics.svg", config_.name, epochs_, core::Durability::kRename, metric)},
      {"summary.json", report::WriteSummaryJson(out_dir_ + "/summary.json", config_, sum)}};
  for (const auto& [name, s] : writes) {
    if (s.ok()) continue;
    spdlog::error("{}", s.ToString());
    failed.push_back(name);
  }
  return failed;
}

}  // namespace gut::coordinator
