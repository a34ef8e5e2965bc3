// step_bench: one LeNet-5 trainer on Fashion-MNIST; milliseconds per training step (batch 32) and
// per full test-set evaluation, for choosing thread and evaluation-batch settings.
//   step_bench [THREADS=1] [EVAL_BATCH=250] [STEPS=500] [noeval]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <string>

#include "core/common/process.h"
#include "core/data/dataset.h"
#include "core/models/model.h"
#include "core/train/trainer.h"

int main(int argc, char** argv) {
  gut::core::TuneAllocator();
  const int threads = argc > 1 ? std::atoi(argv[1]) : 1;
  const int eval_batch = argc > 2 ? std::atoi(argv[2]) : 250;
  const int steps = argc > 3 ? std::atoi(argv[3]) : 500;
  const bool eval = !(argc > 4 && std::string(argv[4]) == "noeval");
  gut::core::SetComputeThreads(threads);
  auto data = gut::core::LoadMnistFamily("/usr/share/datasets/fashion-mnist");
  if (!data.ok()) {
    std::fprintf(stderr, "%s\n", std::string(data.status().message()).c_str());
    return 1;
  }
  auto model = gut::core::GetModelInfo("lenet5");
  std::vector<int64_t> shard(3750);
  std::iota(shard.begin(), shard.end(), 0);
  auto t = *gut::core::Trainer::Create(*model, &data->train, shard, 32, 1);
  const auto x0 = model->InitialParameters(12);
  std::copy(x0.begin(), x0.end(), t->point().begin());
  auto step = [&] {
    t->NextBatch();
    (void)t->ComputeGradient();
  };
  for (int i = 0; i < 50; ++i) step();
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; ++i) step();
  const double ms = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() * 1e3 / steps;
  double eval_ms = 0;
  if (eval) {
    t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 3; ++i) (void)t->Evaluate(x0, data->test, eval_batch);
    eval_ms = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() * 1e3 / 3;
  }
  std::printf("threads %d: %.3f ms/step, eval %.1f ms (batch %d)\n", threads, ms, eval_ms, eval_batch);
  return 0;
}
