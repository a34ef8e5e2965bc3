// Algorithm: one agent's decentralised optimiser over a flat parameter vector (docs/algorithms.md §1-2).
//
// A round is split into phases so that a lock-step driver (gut-sim, the tests) can run n agents
// without threads blocking on each other, while a networked driver (gut-agentd) simply calls the
// phases one after another and blocks inside the Neighbourhood:
//   phase 0        : compute, send slot-0 messages
//   phase p (1..)  : receive slot p-1, compute, send slot p (if any)
//   last phase     : receive the last slot, finish the round
// Most methods send one message per neighbour per round (phases() == 2, slot 0). Methods with two
// messages use slots 0 and 1 of the same Neighbourhood: gradient and momentum tracking send both
// in phase 0 and receive both in phase 1; the cross-gradient methods (NGM, CGA) need the
// neighbours' models before they can compute what they send back, so they use three phases.
//
// The gradient comes from a GradientOracle: the algorithm writes the evaluation point into
// oracle.point() and asks for the gradient of the round's minibatch there. T is float for training
// and double for the reference-value tests; the code is the same.
//
// Ownership: an Algorithm owns its state buffers; it does not own the oracle or the neighbourhood
// handed to it per call. One thread drives an Algorithm. Errors from the neighbourhood or the oracle
// are returned unchanged; after an error the round must not be continued.
#ifndef GUT_CORE_ALGORITHM_ALGORITHM_H_
#define GUT_CORE_ALGORITHM_ALGORITHM_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/checkpoint/state_bundle.h"
#include "core/exchange/neighbourhood.h"

namespace gut::core {

template <typename T>
class GradientOracle {
 public:
  virtual ~GradientOracle() = default;
  // Where the next gradient is evaluated; the algorithm writes it before ComputeGradient().
  virtual absl::Span<T> point() = 0;
  // Gradient of this round's minibatch loss at point(). May be called more than once per round
  // (cross-gradient methods); the minibatch stays the same within a round.
  virtual absl::Status ComputeGradient() = 0;
  virtual absl::Span<const T> gradient() const = 0;
};

template <typename T>
struct RoundContext {
  int64_t round = 0;  // global round counter, unique per exchange
  double lr = 0;      // this round's learning rate
  GradientOracle<T>* oracle = nullptr;
  Neighbourhood<T>* nbh = nullptr;
  // Optional model-sized scratch owned by the driver, valid for one RunPhase call. A driver that
  // runs many agents on few threads passes its thread's buffer so that transient vectors are not
  // kept per agent; an empty span means "use your own".
  absl::Span<T> scratch;
};

struct Hyperparameters {
  std::string algorithm = "qg-gutm";
  double lr = 0.1;         // initial learning rate eta_0
  double momentum = 0.0;   // beta
  double mu = 0.0;         // GUT scaling factor
  bool nesterov = false;   // dsgdm, qg-dsgdm-lin
  double qgm_beta = -1;    // qg-dsgdm-lin's EMA rate mu~; negative means "= momentum"
  // Filled in by the manifest loader / the driver, not by users:
  // d2 mixes with (I + W)/2 when lambda_min(W) <= -1/3 (docs/algorithms.md §2.5).
  bool lazy_mixing = false;
  // cga solves its QP per parameter tensor: the model's tensor sizes in flat order (empty: the
  // whole vector is one tensor).
  std::vector<int64_t> tensor_sizes;
  // GUT family with momentum and exchange.consensus_step < 1 (docs/algorithms.md §8.4): the gossip
  // correction moves x directly instead of through the momentum buffer, which would carry each
  // round's compression error into the next 1/(1 - beta) steps.
  bool direct_consensus = false;
  // exchange.overlap: 1 (docs/algorithms.md §12): the gradient is taken before this round's
  // messages arrive, so that they travel while it is computed. Only for AlgorithmOverlaps().
  bool overlap = false;
};

// Names accepted by CreateAlgorithm, with one line each for help texts.
const std::vector<std::pair<std::string, std::string>>& AlgorithmNames();
std::string AllowedAlgorithmNames();
// Whether the method gossips replica differences with error feedback (ReplicaGossip, §1.3).
bool GossipsReplicas(const std::string& name);
// Whether the method has an exchange.overlap variant, and the names of those that do.
bool AlgorithmOverlaps(const std::string& name);
std::string OverlapAlgorithmNames();

// Checks the hyperparameters against the algorithm's requirements; errors name the field
// (algorithm.name, algorithm.momentum, algorithm.mu, ...) and the allowed values.
absl::Status ValidateHyperparameters(const Hyperparameters& h);

template <typename T>
class Algorithm {
 public:
  virtual ~Algorithm() = default;

  virtual std::string name() const = 0;
  virtual int phases() const { return 2; }
  virtual absl::Status RunPhase(int phase, const RoundContext<T>& ctx) = 0;

  // Final averaging (docs/algorithms.md §1.6): one round of x <- W x with the method's own gossip
  // bookkeeping, no gradient. Always two phases: 0 sends, 1 receives and combines.
  virtual absl::Status RunGossipPhase(int phase, int64_t round, Neighbourhood<T>* nbh) = 0;

  // The agent's model x_i (what is evaluated, checkpointed and averaged).
  virtual absl::Span<const T> params() const = 0;
  // Model-sized buffers this method keeps between rounds besides x_i itself (its memory cost).
  virtual int persistent_buffers() const = 0;
  // Every buffer and scalar the method's future depends on (its model, replicas, tracking and
  // momentum buffers, cached mixing weights, first-round flags), for checkpoints and rollback
  // (core/checkpoint/state_bundle.h). Buffers rebuilt within a round are left out: a method is
  // only ever saved or restored between rounds.
  virtual void VisitState(StateVisitor<T>* v) = 0;

  // The neighbourhood changed between rounds (a rank left the run for good and the mixing weights
  // were recomputed): bring the method's gossip state in line with `nbh`, exchanging whatever it
  // needs in `round` (slot kRebaseSlot). docs/algorithms.md §10 says what each method re-bases. Methods
  // that cannot follow a changed graph return FAILED_PRECONDITION naming themselves.
  virtual absl::Status Rebase(int64_t round, Neighbourhood<T>* nbh) = 0;

  // Solves of a per-round subproblem that failed so far, each answered by a fallback (CGA: a
  // tensor's QP had non-finite data and the previous weights were reused). 0 for methods with none.
  virtual int64_t solver_fallbacks() const { return 0; }

  // ||x - x̂|| / ||x|| now: how far the agent's public copy (what its neighbours hold of it) trails
  // its model. Between rounds x̂ lags x by the local step not yet sent, so a lossless codec shows
  // the relative size of one step (about 1e-3 on the shipped manifests); a lossy codec adds what it
  // has not delivered yet, and a value that keeps growing means the codec cannot keep up. Computed
  // on demand (one pass), not every round. -1 for methods that keep no public copy.
  virtual double replica_error() const { return -1; }
};

// Creates the algorithm named in h.algorithm for a model of x0.size() parameters, every agent
// starting from x0. self_weight is the agent's w_ii.
template <typename T>
absl::StatusOr<std::unique_ptr<Algorithm<T>>> CreateAlgorithm(const Hyperparameters& h,
                                                              absl::Span<const T> x0,
                                                              double self_weight);

}  // namespace gut::core

#endif  // GUT_CORE_ALGORITHM_ALGORITHM_H_
