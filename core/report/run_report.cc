#include "core/report/run_report.h"

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/report/plot.h"

namespace gut::report {

Metric Metric::For(const core::RunConfig& config) {
  if (core::MetricName(config) == "rmse") return Metric{"rmse", "rmse", "test RMSE", false};
  return Metric{};
}

std::string Metric::Format(double v) const {
  return percent ? absl::StrFormat("%.2f%%", 100 * v) : absl::StrFormat("%.4g", v);
}

std::string FormatProgress(const EpochRecord& r, const Metric& metric) {
  const int eta = static_cast<int>(r.eta_s);
  std::string acc;
  if (!r.evaluated) {
    acc = absl::StrCat(metric.key, " (not evaluated)");
  } else if (metric.percent) {
    acc = absl::StrFormat("%s %6.2f%% [min %6.2f max %6.2f]", metric.key, 100 * r.acc_mean, 100 * r.acc_min,
                          100 * r.acc_max);
  } else {
    acc = absl::StrFormat("%s %.4g [min %.4g max %.4g]", metric.key, r.acc_mean, r.acc_min, r.acc_max);
  }
  return absl::StrFormat(
      "epoch %3d/%d  lr %.4g  loss %.4f  %s  consensus %.3e  %.1f rounds/s  elapsed %.0fs  ETA %dm%02ds",
      r.epoch, r.epochs, r.lr, r.train_loss, acc, r.consensus, r.rounds_per_s, r.wall_s, eta / 60,
      eta % 60);
}

std::vector<double> FlattenRecords(const std::vector<EpochRecord>& records) {
  std::vector<double> out;
  for (const auto& r : records) {
    const double f[kEpochRecordFields] = {
        double(r.epoch), double(r.epochs), double(r.rounds), r.lr, r.train_loss, r.evaluated ? 1.0 : 0.0,
        r.acc_mean, r.acc_min, r.acc_max, r.test_loss, r.consensus, r.wall_s, r.train_s, r.rounds_per_s,
        r.eta_s, double(r.bytes_sent), double(r.raw_bytes_sent), r.replica_error};
    out.insert(out.end(), f, f + kEpochRecordFields);
  }
  return out;
}

std::vector<EpochRecord> UnflattenRecords(const std::vector<double>& flat) {
  std::vector<EpochRecord> out;
  for (size_t k = 0; k + kEpochRecordFields <= flat.size(); k += kEpochRecordFields) {
    const double* f = flat.data() + k;
    EpochRecord r;
    r.epoch = static_cast<int>(f[0]);
    r.epochs = static_cast<int>(f[1]);
    r.rounds = static_cast<int64_t>(f[2]);
    r.lr = f[3];
    r.train_loss = f[4];
    r.evaluated = f[5] != 0;
    r.acc_mean = f[6];
    r.acc_min = f[7];
    r.acc_max = f[8];
    r.test_loss = f[9];
    r.consensus = f[10];
    r.wall_s = f[11];
    r.train_s = f[12];
    r.rounds_per_s = f[13];
    r.eta_s = f[14];
    r.bytes_sent = static_cast<int64_t>(f[15]);
    r.raw_bytes_sent = static_cast<int64_t>(f[16]);
    r.replica_error = f[17];
    out.push_back(r);
  }
  return out;
}

absl::Status WriteMetricsCsv(const std::string& path, const std::vector<EpochRecord>& epochs,
                             core::Durability durability, const Metric& metric) {
  const std::string& k = metric.key;
  std::string out = absl::StrCat("epoch,rounds,lr,train_loss,test_", k, "_mean,test_", k, "_min,test_", k,
                                 "_max,test_loss,consensus_distance,"
                                 "wall_s,train_s,rounds_per_s,bytes_sent,compression,replica_error\n");
  for (const auto& r : epochs) {
    auto acc = [&](double v) { return r.evaluated ? absl::StrFormat("%.6f", v) : std::string(); };
    absl::StrAppend(&out, absl::StrFormat("%d,%d,%.6g,%.6f,%s,%s,%s,%s,%.6e,%.3f,%.3f,%.2f,%d,%.6f,%s\n", r.epoch,
                                          r.rounds, r.lr, r.train_loss, acc(r.acc_mean), acc(r.acc_min),
                                          acc(r.acc_max), acc(r.test_loss), r.consensus, r.wall_s,
                                          r.train_s, r.rounds_per_s, r.bytes_sent, r.compression(),
                                          r.replica_error >= 0 ? absl::StrFormat("%.6e", r.replica_error) : ""));
  }
  return AtomicWrite(path, out, durability);
}

absl::Status WritePlot(const std::string& path, const std::string& title,
                       const std::vector<EpochRecord>& epochs, core::Durability durability, const Metric& metric) {
  return AtomicWrite(path, RenderSvg(title, epochs, metric.label, metric.percent), durability);
}

absl::Status WriteSummaryJson(const std::string& path, const core::RunConfig& c,
                              const Summary& s) {
  nlohmann::json j;
  j["config"] = {
      {"name", c.name}, {"seed", c.seed}, {"epochs", c.epochs},
      {"final_gossip_rounds", c.final_gossip_rounds}, {"agents", c.num_agents},
      {"graph", c.graph}, {"weights", c.weights}, {"algorithm", c.hyper.algorithm},
      {"lr", c.hyper.lr}, {"momentum", c.hyper.momentum}, {"mu", c.hyper.mu},
      {"nesterov", c.hyper.nesterov}, {"lr_milestones", c.schedule.milestones},
      {"lr_gamma", c.schedule.gamma}, {"dataset", c.dataset}, {"data_path", c.data_path},
      {"partition", c.partition}, {"alpha", c.alpha}, {"batch_size", c.batch_size}, {"shuffle", c.shuffle},
      {"model", c.model}, {"init", c.init}, {"codec", core::CodecName(c.codec.kind)}, {"zstd", c.codec.zstd},
      {"topk_fraction", c.codec.topk_fraction}, {"sparse_values", core::ValueCodingName(c.codec.sparse_values)},
      {"lowrank_rank", c.codec.lowrank_rank}, {"consensus_step", c.consensus_step},
      {"consensus_form", c.hyper.direct_consensus ? "direct" : "reference"}, {"overlap", c.overlap},
      {"manifest_yaml", core::ToYaml(c)}};
  const Metric metric = Metric::For(c);
  const std::string k = "test_" + metric.key;
  j["metric"] = metric.name;
  if (!s.model_sha256.empty()) j["config"]["model_sha256"] = s.model_sha256;
  if (c.model == "torchscript") j["config"]["model_path"] = c.model_path;
  j["config"]["loss"] = c.loss;
  j["config"]["numerics"] = c.numerics;
  j["final"] = {{k + "_mean", s.final_acc_mean},
                {k + "_min", s.final_acc_min},
                {k + "_max", s.final_acc_max},
                {k + "_per_agent", s.final_acc},
                {"consensus_before_gossip", s.consensus_before_gossip},
                {"consensus_after_gossip", s.consensus_after_gossip}};
  if (s.solver_fallbacks >= 0) j["final"]["solver_fallbacks"] = s.solver_fallbacks;
  if (s.messages_refused >= 0) j["final"]["messages_refused"] = s.messages_refused;
  j["status"] = s.status;
  if (!s.failure.empty()) j["failure"] = s.failure;
  nlohmann::json dropped = nlohmann::json::array();
  for (const auto& d : s.dropped) dropped.push_back({{"rank", d.rank}, {"round", d.round}});
  j["dropped"] = dropped;
  j["final"]["agents"] = s.agents > 0 ? s.agents : c.num_agents;
  if (!s.epochs.empty()) {
    const auto& last = s.epochs.back();
    j["last_epoch"] = {{k + "_mean", last.acc_mean}, {k + "_min", last.acc_min},
                       {k + "_max", last.acc_max}, {"train_loss", last.train_loss}, {"test_loss", last.test_loss},
                       {"consensus_distance", last.consensus}};
  }
  const double train_s = s.epochs.empty() ? 0 : s.epochs.back().train_s;
  const int64_t train_rounds = s.epochs.empty() ? 0 : s.epochs.back().rounds;
  j["timing"] = {{"wall_s", s.wall_s},
                 {"train_s", train_s},
                 {"rounds", s.rounds},
                 {"ms_per_training_round", train_rounds > 0 ? 1e3 * train_s / train_rounds : 0.0},
                 {"threads", s.threads}};
  j["exchange"] = {{"bytes_sent", s.bytes_sent},
                   {"raw_bytes_sent", s.raw_bytes_sent},
                   {"compression_ratio", s.raw_bytes_sent > 0 ? static_cast<double>(s.bytes_sent) /
                                                                   static_cast<double>(s.raw_bytes_sent)
                                                             : 1.0},
                   {"num_params", s.num_params}};
  // The replica error where training ended (before the final gossip rounds); null when the
  // method keeps no public copy.
  if (!s.epochs.empty() && s.epochs.back().replica_error >= 0) {
    j["exchange"]["replica_error"] = s.epochs.back().replica_error;
  } else {
    j["exchange"]["replica_error"] = nullptr;
  }
  return AtomicWrite(path, j.dump(2) + "\n");
}

}  // namespace gut::report
