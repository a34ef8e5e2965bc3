#include "core/config/exchange_settings.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace gut::core {
namespace {

bool Dense(CodecKind k) {
  return k == CodecKind::kFp32 || k == CodecKind::kBf16 || k == CodecKind::kInt8 || k == CodecKind::kInt4;
}

// Measured with bench/compression_frontier.sh (bench/results/compression/README.md; QG-GUTm,
// 16-agent ring, Fashion-MNIST, alpha 0.1): the quick 3-epoch screen over gamma in {1, 0.5, 0.2,
// 0.1, 0.05}, then the 100-epoch protocol for the candidates. The default is the best final
// accuracy of the screen among the steps that did not diverge in a full run where one was made
// (top-k 10 % at 0.5 was best on the screen and diverged at epoch 61 of the full run, so 0.2); the
// stable step is the largest that has not diverged.

struct Steps {
  double by_default;  // what `auto` picks
  double stable;      // the largest step that has not diverged
  // Non-empty where every step tried on the 100-epoch protocol diverged: what was tried. Such a
  // codec serves short runs (the 3-epoch screen converges: its learning rate decays after 1.5
  // epochs) but not 50 epochs at lr 0.1.
  const char* long_runs_diverged = "";
  bool DivergedInLongRuns() const { return *long_runs_diverged != '\0'; }
};

Steps MeasuredSteps(const CodecOptions& codec) {
  const bool dense_k = codec.topk_fraction >= 0.1;
  switch (codec.kind) {
    case CodecKind::kFp32:
    case CodecKind::kBf16:
    case CodecKind::kInt8:
    case CodecKind::kInt4: return {1.0, 1.0};
    case CodecKind::kInt2: return {0.3, 0.3, "steps 0.5 and 0.3 diverged at epochs 23 and 18"};
    case CodecKind::kTopK:
      if (codec.topk_fraction <= 0.01) {
        return {0.1, 0.2,
                "top-k 1 %: steps 0.1, 0.05 and 0.02 diverged by epoch 12, and 0.02 and 0.01 in the "
                "reference form (exchange.consensus_form) by epoch 15"};
      }
      return {dense_k ? 0.2 : 0.1, 0.2};
    case CodecKind::kRandK: return dense_k ? Steps{0.1, 0.1} : Steps{0.05, 0.05};
    case CodecKind::kSign: return {0.5, 0.5};
    case CodecKind::kLowRank: return {0.1, 0.1};
  }
  return {1.0, 1.0};
}

}  // namespace

double DefaultConsensusStep(const CodecOptions& codec) { return MeasuredSteps(codec).by_default; }
double StableConsensusStep(const CodecOptions& codec) { return MeasuredSteps(codec).stable; }

CodecOptions CodecForRun(const RunConfig& config, const ModelInfo& model) {
  CodecOptions o = config.codec;
  o.tensors.clear();
  for (const ParamSpec& p : model.layout) {
    int64_t numel = 1;
    for (int64_t d : p.shape) numel *= d;
    const int64_t rows = p.shape.size() >= 2 ? p.shape[0] : 1;
    o.tensors.emplace_back(rows, rows > 0 ? numel / rows : 0);
  }
  return o;
}

std::vector<std::string> ExchangeWarnings(const RunConfig& c) {
  std::vector<std::string> out;
  const Steps steps = MeasuredSteps(c.codec);
  if (c.consensus_step > steps.stable) {
    out.push_back(absl::StrFormat(
        "exchange.consensus_step %g with exchange.codec %s is above %g, the largest step measured to converge with "
        "this codec; expect divergence or lost accuracy (leave consensus_step at auto for %g)",
        c.consensus_step, DescribeExchange(c), steps.stable, steps.by_default));
  }
  if (steps.DivergedInLongRuns()) {
    out.push_back(absl::StrFormat(
        "exchange.codec %s diverged in every long run measured (QG-GUTm, 16-agent ring, Fashion-MNIST, 100 epochs "
        "at lr 0.1: %s); short runs converge, but for a long one use a denser codec (int4 with exchange.zstd: "
        "0.08 of fp32's bytes, within 0.2 points of fp32)",
        DescribeExchange(c), steps.long_runs_diverged));
  }
  if (c.overlap != 0 && c.hyper.algorithm == "gut" && c.hyper.mu > 0.8) {
    out.push_back(absl::StrFormat(
        "exchange.overlap 1 with algorithm.mu %g: GUT taking its gradient before the messages arrive diverged on "
        "the ring above mu = 0.8 (mu = 1 at every step measured, docs/algorithms.md §12); use mu <= 0.8 or "
        "exchange.overlap: 0",
        c.hyper.mu));
  }
  if (!Dense(c.codec.kind) && !GossipsReplicas(c.hyper.algorithm)) {
    out.push_back(absl::StrFormat(
        "exchange.codec %s with algorithm.name %s: this method gossips whole vectors without error feedback, so a "
        "sparse or one-bit codec loses what it drops for good; expect lost accuracy (use fp32, bf16 or int8)",
        CodecName(c.codec.kind), c.hyper.algorithm));
  }
  return out;
}

std::string DescribeExchange(const RunConfig& c) {
  std::string s = CodecName(c.codec.kind);
  if (c.codec.kind == CodecKind::kTopK || c.codec.kind == CodecKind::kRandK) {
    absl::StrAppend(&s, " ", c.codec.topk_fraction, " (", ValueCodingName(c.codec.sparse_values), " values)");
  }
  if (c.codec.kind == CodecKind::kLowRank) absl::StrAppend(&s, " rank ", c.codec.lowrank_rank);
  if (c.codec.zstd) absl::StrAppend(&s, "+zstd");
  absl::StrAppend(&s, ", consensus step ", c.consensus_step);
  if (c.overlap != 0) absl::StrAppend(&s, ", overlap");
  return s;
}

std::string DivergenceAdvice(const RunConfig& c) {
  if (!Dense(c.codec.kind)) {
    if (MeasuredSteps(c.codec).DivergedInLongRuns()) {
      return absl::StrCat("the exchange's compression is the likely cause (exchange.codec ", DescribeExchange(c),
                          "; it diverged in every long run measured, whatever the step): use a denser codec, "
                          "e.g. int4 with exchange.zstd");
    }
    return absl::StrCat("the exchange's compression is the likely cause (exchange.codec ", DescribeExchange(c),
                        "); lower exchange.consensus_step (", DefaultConsensusStep(c.codec),
                        " is this codec's default) or use a denser codec");
  }
  if (c.hyper.algorithm == "qg-gutm" && c.hyper.mu + c.hyper.momentum > 0.95) {
    return absl::StrCat("algorithm.mu + algorithm.momentum = ", c.hyper.mu + c.hyper.momentum,
                        " is close to 1, where QG-GUTm's averaged dynamics diverge; lower algorithm.mu "
                        "(or algorithm.lr = ", c.hyper.lr, ")");
  }
  const bool lossy = c.codec.kind != CodecKind::kFp32;
  return absl::StrCat("lower algorithm.lr (now ", c.hyper.lr, ")",
                      lossy ? absl::StrCat(", or use a less lossy exchange.codec than ", CodecName(c.codec.kind)) : "");
}

}  // namespace gut::core
