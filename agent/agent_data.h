// What an agent trains: the run's data (its share of the manifest's partition, or its own local
// files) and the run's model (built in, or the coordinator's TorchScript file), checked against each
// other before the first round. agent.cc calls these while joining and preparing.
#ifndef GUT_AGENT_AGENT_DATA_H_
#define GUT_AGENT_AGENT_DATA_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/agent.h"
#include "core/config/manifest.h"
#include "core/data/dataset.h"
#include "core/models/model.h"
#include "core/models/model_file.h"
#include "gut/v1/coordinator.pb.h"
#include "services/coordinator_client.h"

namespace gut::agent {

// Asks the coordinator for run.numerics and enters it (core::EnterNumerics: this process may start
// again with the mode's environment before it joins, and then does not return here). ALREADY_EXISTS
// (the process exits 0) when the run has finished: the coordinator says so, or none answers within
// 4 s and --checkpoint-dir holds this agent's final parameters already.
absl::Status EnterRunNumerics(services::CoordinatorClient* client, const AgentOptions& o, const std::atomic<bool>* stop);

// That this process computes in the run's numerics mode; a portable run computes each operation on
// one thread (`threads` set to 1: a reduction split over threads adds in an order that depends on
// their number).
absl::Status CheckNumerics(const core::RunConfig& config, int* threads);

// Training samples in a --local-data directory (JoinRequest.local_samples), before the run's
// settings (its loss: class ids or float targets) are known.
absl::StatusOr<int64_t> LocalSampleCount(const std::string& dir);

// model.name: torchscript: the run's model file. The agent's own copy (--model) must be the run's
// (the JoinResponse's SHA-256); without one the coordinator hands it over (FetchModel) and the bytes
// are checked against the same digest.
absl::StatusOr<core::ModelFile> RunModelFile(const AgentOptions& o, const gut::v1::JoinResponse& join,
                                             services::CoordinatorClient* client);

struct AgentData {
  core::TrainTest data;        // the whole training set until the caller keeps its shard
  std::vector<int64_t> shard;  // this agent's training samples (indices into data.train)
  core::ModelInfo model;
};

// Loads the data (the manifest's data.path, --data-dir, or with --local-data all of --data-dir's
// training set), cuts this rank's shard of the run's partition, and builds the model for it
// (core/train/run_model.h). `file`: the TorchScript model's bytes (null for a built-in model).
absl::StatusOr<AgentData> LoadAgentData(const core::RunConfig& config, const AgentOptions& o, int rank,
                                        const core::ModelFile* file);

}  // namespace gut::agent

#endif  // GUT_AGENT_AGENT_DATA_H_
