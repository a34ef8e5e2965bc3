// Fuzz target: checkpoint files as a crash or a failing disk leaves them. Oracle: no crash, no
// sanitizer report; a file either decodes (and its state bundle then loads into a method or is
// refused with a named item) or is refused.
#include "core/algorithm/algorithm.h"
#include "core/checkpoint/checkpoint_store.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto c = gut::core::DecodeCheckpoint(absl::string_view(reinterpret_cast<const char*>(data), size), {});
  if (!c.ok()) return 0;
  gut::core::Hyperparameters h;
  h.algorithm = "qg-gutm";
  h.momentum = 0.9;
  h.mu = 0.01;
  auto a = gut::core::CreateAlgorithm<float>(h, std::vector<float>(8, 0.0f), 0.5);
  if (!a.ok()) __builtin_trap();
  gut::core::StateLoader<float> loader(&c->state);
  (*a)->VisitState(&loader);
  return 0;
}
