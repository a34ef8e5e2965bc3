#include "agent/agent_data.h"

#include <spdlog/spdlog.h>

#include <filesystem>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/common/atomic_file.h"
#include "core/common/numerics.h"
#include "core/common/sha256.h"
#include "core/data/npy.h"
#include "core/data/partition.h"
#include "core/train/run_model.h"

namespace gut::agent {

absl::Status EnterRunNumerics(services::CoordinatorClient* client, const AgentOptions& o, const std::atomic<bool>* stop) {
  // Finished runs stay finished (a restarted pod, a restarted unit): an agent whose directory holds
  // a run's final parameters does not wait the join timeout for a coordinator that is gone.
  const std::string final_params = o.checkpoint_dir.empty() ? "" : o.checkpoint_dir + "/params-final.f32";
  const bool done_here = !final_params.empty() && std::filesystem::exists(final_params);
  auto status = client->Status(absl::Seconds(done_here ? 4 : o.join_timeout_s), stop);
  const bool unreachable = !status.ok() && (status.status().code() == absl::StatusCode::kUnavailable ||
                                            status.status().code() == absl::StatusCode::kDeadlineExceeded);
  if ((status.ok() && status->finished()) || (done_here && unreachable)) {
    spdlog::info("{}: nothing to do{}", status.ok() ? "the coordinator says the run has finished"
                                                    : "no coordinator answers, and this agent finished its run already",
                 done_here ? absl::StrCat(" (its final parameters: ", final_params,
                                          "; to take part in a new run, start it with another --checkpoint-dir)")
                           : "");
    return absl::AlreadyExistsError("the run has finished");  // exit 0
  }
  if (!status.ok()) return status.status();
  auto mode = core::ParseNumerics(status->numerics().empty() ? "native" : status->numerics());
  if (!mode.ok()) return mode.status();
  if (*mode != core::CurrentNumerics()) spdlog::info("the run computes in run.numerics {} mode", core::NumericsName(*mode));
  return core::EnterNumerics(*mode);
}

absl::Status CheckNumerics(const core::RunConfig& config, int* threads) {
  if (config.numerics != core::NumericsName(core::CurrentNumerics())) {
    return absl::FailedPreconditionError(absl::StrCat("run.numerics is ", config.numerics, ", this process computes in ",
                                                      core::NumericsName(core::CurrentNumerics()), " mode"));
  }
  if (config.numerics != "native" && *threads != 1) {
    spdlog::warn("run.numerics {}: --threads {} ignored, computing on 1 thread", config.numerics, *threads);
    *threads = 1;
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> LocalSampleCount(const std::string& dir) {
  const std::string kind = core::DetectDataset(dir);
  if (kind == "npy") {
    auto y = core::ReadNpy(dir + "/train_y.npy");  // the small array of the two
    if (!y.ok()) return y.status();
    if (y->shape.empty()) return absl::InvalidArgumentError(absl::StrCat(dir, "/train_y.npy is a 0-d array"));
    return y->shape[0];
  }
  auto d = core::LoadDataset(kind, dir);
  if (!d.ok()) return d.status();
  return d->train.size();
}

absl::StatusOr<core::ModelFile> RunModelFile(const AgentOptions& o, const gut::v1::JoinResponse& join,
                                             services::CoordinatorClient* client) {
  const std::string& want = join.model_sha256();
  if (want.empty()) {
    return absl::FailedPreconditionError(
        "the run's model is torchscript, but the coordinator announced no model file (a coordinator of an older "
        "gut version?)");
  }
  if (!o.model_file.empty()) {
    auto f = core::ReadModelFile(o.model_file);
    if (!f.ok()) return absl::Status(f.status().code(), absl::StrCat("--model: ", f.status().message()));
    if (f->sha256 != want) {
      return absl::FailedPreconditionError(absl::StrCat(
          "--model ", o.model_file, " is not the run's model: its SHA-256 is ", f->sha256, ", the coordinator's file's ",
          want, " (leave --model out to receive the run's model from the coordinator)"));
    }
    spdlog::info("model file {} is the run's (sha256 {})", o.model_file, want.substr(0, 12));
    return f;
  }
  if (join.model_size() <= 0 || join.model_size() > core::kMaxModelFileBytes) {
    return absl::DataLossError(absl::StrCat("the coordinator announced a model file of ", join.model_size(), " bytes"));
  }
  gut::v1::FetchModelRequest req;
  req.set_run_id(join.run_id());
  req.set_rank(join.rank());
  if (!o.join_token_file.empty()) {
    auto token = core::ReadWholeFile(o.join_token_file);
    if (!token.ok()) return token.status();
    req.set_join_token(token->substr(0, token->find_first_of("\r\n")));
  }
  auto bytes = client->FetchModel(req, join.model_size(), absl::Seconds(o.join_timeout_s));
  if (!bytes.ok()) return bytes.status();
  core::ModelFile f;
  f.sha256 = core::Sha256Hex(*bytes);
  if (f.sha256 != want) {
    return absl::DataLossError(absl::StrCat("the model file received from the coordinator has SHA-256 ", f.sha256,
                                            ", not the announced ", want));
  }
  f.bytes = std::move(*bytes);
  spdlog::info("received the run's model file from the coordinator ({} bytes, sha256 {})", f.bytes.size(),
               want.substr(0, 12));
  return f;
}

absl::StatusOr<AgentData> LoadAgentData(const core::RunConfig& config, const AgentOptions& o, int rank,
                                        const core::ModelFile* file) {
  AgentData out;
  const std::string dir = o.data_dir.empty() ? config.data_path : o.data_dir;
  if (o.local_data) {
    // The IDX reader serves both MNIST sets; the detector names them fashion-mnist.
    const std::string kind = core::DetectDataset(dir);
    if (kind != (config.dataset == "mnist" ? "fashion-mnist" : config.dataset)) {
      return absl::InvalidArgumentError(absl::StrCat("--local-data ", dir, " holds a ", kind,
                                                     " data set; the run's data.dataset is ", config.dataset));
    }
  }
  auto d = core::LoadRunData(config, dir);
  if (!d.ok()) return d.status();
  out.data = std::move(*d);
  auto model = core::BuildRunModel(config, out.data, file);
  if (!model.ok()) return model.status();
  out.model = std::move(*model);
  if (o.local_data) {
    out.shard.resize(out.data.train.size());
    for (int64_t k = 0; k < out.data.train.size(); ++k) out.shard[k] = k;
    return out;
  }
  auto shards = config.partition == "iid"
                    ? core::IidPartition(out.data.train.size(), config.num_agents, config.seed)
                    : core::DirichletPartition(out.data.train.labels, out.data.train.num_classes, config.num_agents,
                                               config.alpha, config.seed);
  if (!shards.ok()) return shards.status();
  out.shard = std::move((*shards)[rank]);
  return out;
}

}  // namespace gut::agent
