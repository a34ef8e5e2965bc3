// lowrank (docs/algorithms.md §8): a matrix-shaped tensor M (rows x cols, a weight viewed as its
// first dimension against the rest) goes as a rank-r product P Q' found by one power iteration
// from a random start, as in PowerGossip (Vogels et al., 2020):
//   Q0 = random cols x r (from the message's key), P = orthonormalised M Q0, Q = M' P,
//   M ~ P Q'  (the projection of M on the span of M Q0).
// P and Q go as fp32: r (rows + cols) values instead of rows * cols. Tensors with a dimension of 1
// (biases, scales) and tensors a rank-r product would not shrink go as fp32. What the product
// misses stays in the sender's error feedback and goes out in a later message, so one iteration per
// message is enough. Sender and receiver rebuild M from P and Q with the same function, so the
// sender's public copy is bit-identical to every replica.
#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/codec/codec_internal.h"

namespace gut::core::codec_internal {
namespace {

struct Block {
  size_t offset;
  int64_t rows, cols;
  bool factored;
};

// How a message of n values splits into tensors: the layout of CodecOptions::tensors, repeated if
// n is a multiple of its total (methods that send two model-sized vectors at once); anything else
// is one fp32 block.
std::vector<Block> Blocks(const CodecOptions& o, size_t n) {
  const int r = std::max(1, o.lowrank_rank);
  size_t total = 0;
  for (const auto& [rows, cols] : o.tensors) total += static_cast<size_t>(rows * cols);
  std::vector<Block> out;
  if (total == 0 || n % total != 0) {
    out.push_back({0, 1, static_cast<int64_t>(n), false});
    return out;
  }
  size_t at = 0;
  for (size_t rep = 0; rep < n / total; ++rep) {
    for (const auto& [rows, cols] : o.tensors) {
      const bool factored = rows > 1 && cols > 1 && r * (rows + cols) < rows * cols;
      out.push_back({at, rows, cols, factored});
      at += static_cast<size_t>(rows * cols);
    }
  }
  return out;
}

float Finite(float v) { return std::isfinite(v) ? v : 0.0f; }

// out = P Q' for P rows x r and Q cols x r, both row-major. The one routine both sides use.
void Rebuild(const float* p, const float* q, int64_t rows, int64_t cols, int r, float* out) {
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) {
      float acc = 0;
      for (int k = 0; k < r; ++k) acc += p[i * r + k] * q[j * r + k];
      out[i * cols + j] = acc;
    }
  }
}

}  // namespace

size_t LowRankSize(const CodecOptions& o, size_t n) {
  const int r = std::max(1, o.lowrank_rank);
  size_t bytes = 0;
  for (const Block& b : Blocks(o, n)) {
    bytes += 4 * static_cast<size_t>(b.factored ? r * (b.rows + b.cols) : b.rows * b.cols);
  }
  return bytes;
}

void EncodeLowRank(const CodecOptions& o, absl::Span<float> v, std::string* out, uint64_t key) {
  const int r = std::max(1, o.lowrank_rank);
  Rng64 rng(key);
  std::vector<double> q0, pd;
  std::vector<float> p, q;
  for (const Block& b : Blocks(o, v.size())) {
    float* m = v.data() + b.offset;
    const int64_t rows = b.rows, cols = b.cols;
    if (!b.factored) {
      for (int64_t k = 0; k < rows * cols; ++k) {
        m[k] = Finite(m[k]);
        Put<float>(out, m[k]);
      }
      continue;
    }
    // P = M Q0 in double, Q0 with independent entries uniform in [-1, 1).
    q0.resize(static_cast<size_t>(cols * r));
    for (double& x : q0) x = 2 * rng.Uniform() - 1;
    pd.assign(static_cast<size_t>(rows * r), 0.0);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) {
        const double mij = Finite(m[i * cols + j]);
        for (int k = 0; k < r; ++k) pd[i * r + k] += mij * q0[j * r + k];
      }
    // Modified Gram-Schmidt on P's columns; a column with no length left becomes zero.
    for (int k = 0; k < r; ++k) {
      for (int l = 0; l < k; ++l) {
        double dot = 0;
        for (int64_t i = 0; i < rows; ++i) dot += pd[i * r + k] * pd[i * r + l];
        for (int64_t i = 0; i < rows; ++i) pd[i * r + k] -= dot * pd[i * r + l];
      }
      double norm = 0;
      for (int64_t i = 0; i < rows; ++i) norm += pd[i * r + k] * pd[i * r + k];
      norm = std::sqrt(norm);
      for (int64_t i = 0; i < rows; ++i) pd[i * r + k] = norm > 1e-30 ? pd[i * r + k] / norm : 0.0;
    }
    p.resize(pd.size());
    for (size_t k = 0; k < pd.size(); ++k) p[k] = static_cast<float>(pd[k]);
    // Q = M' P with the P that is sent.
    q.assign(static_cast<size_t>(cols * r), 0.0f);
    for (int64_t j = 0; j < cols; ++j)
      for (int k = 0; k < r; ++k) {
        double acc = 0;
        for (int64_t i = 0; i < rows; ++i) acc += static_cast<double>(Finite(m[i * cols + j])) * p[i * r + k];
        q[j * r + k] = static_cast<float>(acc);
      }
    for (float x : p) Put<float>(out, x);
    for (float x : q) Put<float>(out, x);
    Rebuild(p.data(), q.data(), rows, cols, r, m);
  }
}

absl::Status DecodeLowRank(const CodecOptions& o, Reader* in, absl::Span<float> out) {
  const int r = std::max(1, o.lowrank_rank);
  if (in->left() != LowRankSize(o, out.size())) {
    return absl::DataLossError(absl::StrCat("lowrank payload has ", in->left(), " bytes, expected ",
                                            LowRankSize(o, out.size()), " for ", out.size(), " values at rank ", r));
  }
  std::vector<float> p, q;
  for (const Block& b : Blocks(o, out.size())) {
    float* m = out.data() + b.offset;
    if (!b.factored) {
      for (int64_t k = 0; k < b.rows * b.cols; ++k) in->Read(&m[k]);
      continue;
    }
    p.resize(static_cast<size_t>(b.rows * r));
    q.resize(static_cast<size_t>(b.cols * r));
    for (float& x : p) in->Read(&x);
    for (float& x : q) in->Read(&x);
    for (float x : p) {
      // P is orthonormal: an entry outside [-1, 1] (or not a number) is not a lowrank payload.
      if (!(std::abs(x) <= 1.0f + 1e-5f)) {
        return absl::DataLossError(absl::StrCat("lowrank payload: factor entry ", x, " of the tensor at value ",
                                                b.offset, " is outside [-1, 1]"));
      }
    }
    Rebuild(p.data(), q.data(), b.rows, b.cols, r, m);
  }
  return absl::OkStatus();
}

}  // namespace gut::core::codec_internal
