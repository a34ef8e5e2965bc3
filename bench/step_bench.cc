// step_bench THREADS EVAL_BATCH: one LeNet-5 trainer, ms per training step (batch 32) and per
// full test-set evaluation, with THREADS intra-op threads. For choosing thread and batch settings.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include "core/common/process.h"
#include "core/data/dataset.h"
#include "core/data/partition.h"
#include "core/models/model.h"
#include "core/train/trainer.h"

int main(int argc, char** argv) {
  gut::core::TuneAllocator();
  int th = atoi(argv[1]);
  gut::core::SetComputeThreads(th);
  auto data = gut::core::LoadMnistFamily("/usr/share/datasets/fashion-mnist");
  auto model = gut::core::GetModelInfo("lenet5");
  std::vector<int64_t> shard(3750); for (int i=0;i<3750;++i) shard[i]=i;
  auto t = *gut::core::Trainer::Create(*model, &data->train, shard, 32, 1);
  auto x0 = model->InitialParameters(12);
  std::copy(x0.begin(), x0.end(), t->point().begin());
  for (int i=0;i<50;++i){t->NextBatch(); (void)t->ComputeGradient();}
  auto t0 = std::chrono::steady_clock::now();
  int N = argc > 3 ? atoi(argv[3]) : 500;
  for (int i=0;i<N;++i){t->NextBatch(); (void)t->ComputeGradient();}
  double ms = std::chrono::duration<double>(std::chrono::steady_clock::now()-t0).count()*1e3/N;
  t0 = std::chrono::steady_clock::now();
  for (int i=0;i<(argc > 4 ? 0 : 3);++i) (void)t->Evaluate(x0, data->test, atoi(argv[2]));
  double ems = std::chrono::duration<double>(std::chrono::steady_clock::now()-t0).count()*1e3/3;
  printf("threads %d: %.3f ms/step, eval %.1f ms (batch %s)\n", th, ms, ems, argv[2]);
}
