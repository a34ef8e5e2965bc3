// CGA, cross-gradient aggregation of Esfandiari et al. (docs/algorithms.md §2.9): the round of
// cross_gradient_method.h with the per-tensor quadratic program that picks how much of each
// neighbour's cross-gradient to add to the agent's own gradient; and that QP's solver.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/algorithm/cross_gradient_method.h"
#include "core/algorithm/methods.h"

namespace gut::core {

namespace {

// Solves the d x d system a z = b in place (Gaussian elimination, partial pivoting).
bool SolveLinear(std::vector<double> a, std::vector<double> b, size_t d, std::vector<double>* z) {
  for (size_t col = 0; col < d; ++col) {
    size_t piv = col;
    for (size_t r = col + 1; r < d; ++r)
      if (std::abs(a[r * d + col]) > std::abs(a[piv * d + col])) piv = r;
    if (!(std::abs(a[piv * d + col]) > 0)) return false;
    if (piv != col) {
      for (size_t c = 0; c < d; ++c) std::swap(a[col * d + c], a[piv * d + c]);
      std::swap(b[col], b[piv]);
    }
    for (size_t r = col + 1; r < d; ++r) {
      const double f = a[r * d + col] / a[col * d + col];
      for (size_t c = col; c < d; ++c) a[r * d + c] -= f * a[col * d + c];
      b[r] -= f * b[col];
    }
  }
  z->assign(d, 0.0);
  for (size_t r = d; r-- > 0;) {
    double s = b[r];
    for (size_t c = r + 1; c < d; ++c) s -= a[r * d + c] * (*z)[c];
    (*z)[r] = s / a[r * d + r];
  }
  for (double v : *z)
    if (!std::isfinite(v)) return false;
  return true;
}

// min 1/2 v'Qv + c'v subject to v >= lo, Q symmetric positive definite (so the minimiser is
// unique). Up to 12 variables: every active set is tried and the one whose solution satisfies the
// KKT conditions (free variables >= lo, gradient >= 0 on the bound ones) wins; it is exact even
// when Q is nearly singular (M M' with fewer tensor elements than neighbours). Beyond that: cyclic
// coordinate descent.
bool SolveBoxQp(const std::vector<double>& q, const std::vector<double>& c, double lo,
                std::vector<double>* v) {
  const size_t d = c.size();
  if (d == 0) return true;
  auto objective = [&](const std::vector<double>& x) {
    double f = 0;
    for (size_t a = 0; a < d; ++a) {
      double qa = 0;
      for (size_t b = 0; b < d; ++b) qa += q[a * d + b] * x[b];
      f += 0.5 * x[a] * qa + c[a] * x[a];
    }
    return f;
  };
  if (d <= 12) {
    std::vector<double> best;
    double best_f = 0;
    for (uint32_t mask = 0; mask < (1u << d); ++mask) {  // bit set = free variable
      std::vector<size_t> fr;
      for (size_t k = 0; k < d; ++k)
        if (mask >> k & 1) fr.push_back(k);
      std::vector<double> x(d, lo);
      if (!fr.empty()) {
        const size_t m = fr.size();
        std::vector<double> a(m * m), b(m), z;
        for (size_t i = 0; i < m; ++i) {
          b[i] = -c[fr[i]];
          for (size_t k = 0; k < d; ++k)
            if (!(mask >> k & 1)) b[i] -= q[fr[i] * d + k] * lo;
          for (size_t j = 0; j < m; ++j) a[i * m + j] = q[fr[i] * d + fr[j]];
        }
        if (!SolveLinear(a, b, m, &z)) continue;
        bool feasible = true;
        for (size_t i = 0; i < m; ++i) {
          feasible &= z[i] >= lo;
          x[fr[i]] = z[i];
        }
        if (!feasible) continue;
      }
      // Among feasible candidates the KKT point has the lowest objective.
      const double f = objective(x);
      if (best.empty() || f < best_f) {
        best = x;
        best_f = f;
      }
    }
    if (best.empty()) return false;
    *v = best;
    return true;
  }
  for (int sweep = 0; sweep < 2000; ++sweep) {
    double change = 0, scale = 0;
    for (size_t k = 0; k < d; ++k) {
      double s = c[k];
      for (size_t l = 0; l < d; ++l)
        if (l != k) s += q[k * d + l] * (*v)[l];
      const double nv = std::max(lo, -s / q[k * d + k]);
      change = std::max(change, std::abs(nv - (*v)[k]));
      scale = std::max(scale, std::abs(nv));
      (*v)[k] = nv;
    }
    if (!std::isfinite(change)) return false;
    if (change <= 1e-12 * std::max(1.0, scale)) break;
  }
  return true;
}

template <typename T>
bool SolveCgaQpImpl(const std::vector<const T*>& rows, const T* self, size_t len,
                    std::vector<double>* v, T* out) {
  constexpr double kEps = 1e-12, kLo = 0.5;
  const size_t deg = rows.size();
  if (v->size() != deg) v->assign(deg, 1.0);
  // Active rows: the non-zero ones.
  std::vector<size_t> act;
  for (size_t k = 0; k < deg; ++k) {
    bool nz = false;
    for (size_t e = 0; e < len && !nz; ++e) nz = rows[k][e] != 0;
    if (nz) act.push_back(k);
  }
  const size_t d = act.size();
  std::vector<double> q(d * d), c(d), sol(d);
  for (size_t a = 0; a < d; ++a) {
    for (size_t b = a; b < d; ++b) {
      double s = 0;
      for (size_t e = 0; e < len; ++e) s += double(rows[act[a]][e]) * double(rows[act[b]][e]);
      q[a * d + b] = q[b * d + a] = s;
    }
    q[a * d + a] += kEps;
    double s = 0;
    for (size_t e = 0; e < len; ++e) s += double(rows[act[a]][e]) * double(self[e]);
    c[a] = s;
    sol[a] = std::max(kLo, (*v)[act[a]]);
  }
  bool ok = true;
  for (double x : q) ok &= std::isfinite(x);
  for (double x : c) ok &= std::isfinite(x);
  if (ok) ok = SolveBoxQp(q, c, kLo, &sol);
  if (ok) {
    for (size_t a = 0; a < d; ++a) (*v)[act[a]] = sol[a];
    for (size_t k = 0; k < deg; ++k)
      if (std::find(act.begin(), act.end(), k) == act.end()) (*v)[k] = kLo;
  }
  // out = M' v + self with the (new or previous) v.
  for (size_t e = 0; e < len; ++e) {
    double s = double(self[e]);
    for (size_t k = 0; k < deg; ++k) s += (*v)[k] * double(rows[k][e]);
    out[e] = static_cast<T>(s);
  }
  return ok;
}

}  // namespace

bool SolveCgaQp(const std::vector<const float*>& rows, const float* self, size_t len,
                std::vector<double>* v, float* out) {
  return SolveCgaQpImpl(rows, self, len, v, out);
}
bool SolveCgaQp(const std::vector<const double*>& rows, const double* self, size_t len,
                std::vector<double>* v, double* out) {
  return SolveCgaQpImpl(rows, self, len, v, out);
}

template <typename T>
std::unique_ptr<Algorithm<T>> MakeCga(double momentum, std::vector<int64_t> tensor_sizes,
                                      absl::Span<const T> x0, double self_weight) {
  return std::make_unique<detail::CrossGradient<T>>(true, momentum, std::move(tensor_sizes), x0, self_weight);
}

template std::unique_ptr<Algorithm<float>> MakeCga(double, std::vector<int64_t>, absl::Span<const float>, double);
template std::unique_ptr<Algorithm<double>> MakeCga(double, std::vector<int64_t>, absl::Span<const double>, double);

}  // namespace gut::core
