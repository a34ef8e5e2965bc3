#include "core/data/partition.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace gut::core {
namespace {

// numpy's pairwise summation for short arrays (what proportions.sum() computes), so that the cut
// points match the reference to the last bit.
double NumpySum(const std::vector<double>& a) {
  const size_t n = a.size();
  if (n < 8) {
    double res = 0.;
    for (double v : a) res += v;
    return res;
  }
  double r[8];
  for (int k = 0; k < 8; ++k) r[k] = a[k];
  size_t i = 8;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) r[k] += a[i + k];
  double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
  for (; i < n; ++i) res += a[i];
  return res;
}

}  // namespace

absl::StatusOr<std::vector<std::vector<int64_t>>> DirichletPartition(
    const std::vector<int64_t>& labels, int num_classes, int num_agents, double alpha,
    uint32_t seed) {
  const int64_t n_samples = static_cast<int64_t>(labels.size());
  if (!(alpha > 0) || !std::isfinite(alpha)) {
    return absl::InvalidArgumentError(
        absl::StrCat("data.partition.alpha must be a positive number, got ", alpha));
  }
  if (num_agents < 1 || num_agents > n_samples) {
    return absl::InvalidArgumentError(absl::StrCat("cannot partition ", n_samples,
                                                   " samples over ", num_agents, " agents"));
  }
  LegacyRandom rng(seed);
  // 1. (index, label) pairs, shuffled in place.
  std::vector<std::pair<int64_t, int64_t>> pairs(n_samples);
  for (int64_t k = 0; k < n_samples; ++k) pairs[k] = {k, labels[k]};
  rng.Shuffle(pairs);

  // 2. Groups of at most 10 agents, each with a consecutive chunk of the shuffled pairs.
  constexpr int kGroup = 10;
  const int groups = (num_agents + kGroup - 1) / kGroup;
  const int64_t chunk = static_cast<int64_t>(static_cast<double>(kGroup) / num_agents * n_samples);
  std::vector<std::vector<int64_t>> lists;
  lists.reserve(num_agents);
  for (int g = 0; g < groups; ++g) {
    const int m = (g < groups - 1) ? kGroup : num_agents - kGroup * (groups - 1);
    const int64_t from = g * chunk;
    const int64_t to = (g == groups - 1) ? n_samples : std::min(n_samples, (g + 1) * chunk);
    const int64_t q_size = std::max<int64_t>(0, to - from);
    // Class index lists of this chunk, in chunk order.
    std::vector<std::vector<int64_t>> by_class(num_classes);
    for (int64_t p = from; p < to; ++p) by_class[pairs[p].second].push_back(pairs[p].first);
    const int64_t min_required = static_cast<int64_t>(0.5 * q_size / m);
    std::vector<std::vector<int64_t>> group_lists;
    int64_t min_size = 0;
    // 3. Redraw until every list of the group reaches half its fair share.
    do {
      group_lists.assign(m, {});
      for (int c = 0; c < num_classes; ++c) {
        const auto& idx = by_class[c];
        std::vector<double> p = rng.Dirichlet(alpha, m);
        for (int j = 0; j < m; ++j) {
          if (static_cast<double>(group_lists[j].size()) >= static_cast<double>(q_size) / m) p[j] = 0;
        }
        double sum = NumpySum(p);
        if (!(sum > 0) || !std::isfinite(sum)) {
          // The reference would produce NaN cut points here (every list full, or every gamma draw
          // underflowed to 0). Spread the class evenly over the lists instead.
          std::fill(p.begin(), p.end(), 1.0);
          sum = m;
        }
        for (double& v : p) v /= sum;
        double cum = 0;
        size_t start = 0;
        for (int j = 0; j < m; ++j) {
          size_t end = idx.size();
          if (j < m - 1) {
            cum += p[j];
            end = static_cast<size_t>(cum * static_cast<double>(idx.size()));
            end = std::clamp(end, start, idx.size());
          }
          group_lists[j].insert(group_lists[j].end(), idx.begin() + start, idx.begin() + end);
          start = end;
        }
      }
      min_size = INT64_MAX;
      for (const auto& l : group_lists) min_size = std::min<int64_t>(min_size, l.size());
    } while (min_size < min_required);
    for (auto& l : group_lists) lists.push_back(std::move(l));
  }
  // 4-5. Concatenate and cut equal consecutive windows.
  std::vector<int64_t> all;
  all.reserve(n_samples);
  for (const auto& l : lists) all.insert(all.end(), l.begin(), l.end());
  const int64_t per = n_samples / num_agents;
  std::vector<std::vector<int64_t>> shards(num_agents);
  for (int k = 0; k < num_agents; ++k)
    shards[k].assign(all.begin() + k * per, all.begin() + (k + 1) * per);
  return shards;
}

absl::StatusOr<std::vector<std::vector<int64_t>>> IidPartition(int64_t num_samples, int num_agents,
                                                               uint32_t seed) {
  if (num_agents < 1 || num_agents > num_samples) {
    return absl::InvalidArgumentError(absl::StrCat("cannot partition ", num_samples,
                                                   " samples over ", num_agents, " agents"));
  }
  std::vector<int64_t> all(num_samples);
  for (int64_t k = 0; k < num_samples; ++k) all[k] = k;
  LegacyRandom rng(seed);
  rng.Shuffle(all);
  const int64_t per = num_samples / num_agents;
  std::vector<std::vector<int64_t>> shards(num_agents);
  for (int k = 0; k < num_agents; ++k)
    shards[k].assign(all.begin() + k * per, all.begin() + (k + 1) * per);
  return shards;
}

BatchSampler::BatchSampler(std::vector<int64_t> shard, int batch_size, uint64_t seed)
    : order_(std::move(shard)),
      batch_size_(batch_size),
      batches_per_epoch_(static_cast<int>((order_.size() + batch_size - 1) / batch_size)),
      pos_(order_.size()),
      rng_(seed) {}

const std::vector<int64_t>& BatchSampler::Next() {
  if (pos_ >= order_.size()) {
    rng_.Shuffle(order_);
    pos_ = 0;
  }
  const size_t end = std::min(order_.size(), pos_ + batch_size_);
  batch_.assign(order_.begin() + pos_, order_.begin() + end);
  pos_ = end;
  return batch_;
}

}  // namespace gut::core
