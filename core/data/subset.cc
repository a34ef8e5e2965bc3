#include <algorithm>

#include "core/data/dataset.h"

namespace gut::core {

Dataset Subset(const Dataset& full, const std::vector<int64_t>& shard) {
  Dataset d;
  d.channels = full.channels;
  d.height = full.height;
  d.width = full.width;
  d.num_classes = full.num_classes;
  d.shape = full.shape;
  d.target_size = full.target_size;
  d.target_shape = full.target_shape;
  d.augment = full.augment;
  d.pad_value = full.pad_value;
  d.stored = full.stored;
  d.mean = full.mean;
  d.stdev = full.stdev;
  if (full.is_regression()) {
    const int64_t t = full.target_size;
    d.targets.resize(shard.size() * t);
    for (size_t k = 0; k < shard.size(); ++k)
      std::copy(full.targets.begin() + shard[k] * t, full.targets.begin() + (shard[k] + 1) * t, d.targets.begin() + k * t);
  } else {
    d.labels.resize(shard.size());
    for (size_t k = 0; k < shard.size(); ++k) d.labels[k] = full.labels[shard[k]];
  }
  if (full.is_stored()) {  // image folders: bytes at the stored size
    const int64_t s = full.stored_size();
    d.pixels.resize(shard.size() * s);
    for (size_t k = 0; k < shard.size(); ++k)
      std::copy(full.pixels.begin() + shard[k] * s, full.pixels.begin() + (shard[k] + 1) * s, d.pixels.begin() + k * s);
    return d;
  }
  const int64_t s = full.sample_size();
  d.images.resize(shard.size() * s);
  for (size_t k = 0; k < shard.size(); ++k) std::copy(full.image(shard[k]), full.image(shard[k]) + s, d.images.begin() + k * s);
  return d;
}

}  // namespace gut::core
