// The exchange's settings that depend on more than one manifest key: the consensus step each codec
// gets by default, the codec options a run's model needs (the tensor shapes lowrank factors),
// warnings about combinations known to diverge, and what to blame when training diverges.
#ifndef GUT_CORE_CONFIG_EXCHANGE_SETTINGS_H_
#define GUT_CORE_CONFIG_EXCHANGE_SETTINGS_H_

#include <string>
#include <vector>

#include "core/codec/codec.h"
#include "core/config/manifest.h"
#include "core/models/model.h"

namespace gut::core {

// exchange.consensus_step when the manifest says "auto" (or nothing): 1 for the dense codecs
// (fp32, bf16, int8, int4: plain gossip, as the paper), a smaller step for the sparse, one-bit and
// low-rank ones, measured on the shipped manifests (docs/algorithms.md §8.4,
// bench/results/compression/README.md).
double DefaultConsensusStep(const CodecOptions& codec);

// The largest consensus step measured to converge with this codec on the shipped manifests (1 for
// the dense codecs).
double StableConsensusStep(const CodecOptions& codec);

// The run's codec options with the model's tensor shapes filled in (lowrank factors each weight
// as its first dimension against the rest).
CodecOptions CodecForRun(const RunConfig& config, const ModelInfo& model);

// Settings that are allowed but known to go wrong, one sentence each naming the keys to change.
std::vector<std::string> ExchangeWarnings(const RunConfig& config);

// How the exchange is written in logs and reports: "topk 0.1 (int8 values), consensus step 0.2",
// with ", overlap" under exchange.overlap: 1.
std::string DescribeExchange(const RunConfig& config);

}  // namespace gut::core

#endif  // GUT_CORE_CONFIG_EXCHANGE_SETTINGS_H_
