// model.name: torchscript below the programs: the layout is named_parameters() in order, the flat
// vector is the model (a TorchScript LeNet-5 trains to the bit like the zoo's, relu and max-pool
// fused in either order), buffers belong to each agent (also through a shared workspace and a
// checkpoint), model-final.pt loads back with the trained values, and bad models are named at
// start-up with what is wrong.
#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/serialization/pickle.h>

#include <cstring>

#include "core/data/npy.h"
#include "core/models/script_module.h"
#include "core/models/torchscript.h"
#include "core/train/torch_draws.h"
#include "core/train/trainer.h"
#include "gtest/gtest.h"
#include "tests/testing/script_models.h"

namespace gut::core {
namespace {

namespace fs = std::filesystem;

ModelFile FileOf(torch::jit::Module& m) {
  ModelFile f;
  f.bytes = testing::SaveToBytes(m);
  f.sha256 = "test";
  return f;
}

// A small image set in memory (Dataset), from the same generator as the .npy writer.
TrainTest Images(int train, int test, bool regression = false) {
  const fs::path dir = fs::temp_directory_path() / ("gut_ts_data_" + std::to_string(::getpid()) + (regression ? "r" : "c"));
  testing::WriteNpyImages(dir, train, test, regression);
  auto d = LoadNpyDataset(dir.string(), regression ? NpyTargets::kRegression : NpyTargets::kClasses);
  fs::remove_all(dir);
  EXPECT_TRUE(d.ok()) << d.status();
  return std::move(*d);
}

std::vector<at::Tensor> ZooWeights(const ModelInfo& zoo, const std::vector<float>& x) {
  std::vector<at::Tensor> w;
  const auto off = zoo.offsets();
  for (size_t k = 0; k < zoo.layout.size(); ++k)
    w.push_back(at::from_blob(const_cast<float*>(x.data()) + off[k], zoo.layout[k].shape).clone());
  return w;
}

std::vector<int64_t> Range(int64_t n) {
  std::vector<int64_t> v(n);
  for (int64_t k = 0; k < n; ++k) v[k] = k;
  return v;
}

TEST(TorchScriptModel, LayoutIsNamedParametersInOrderWithTheFilesWeights) {
  auto m = testing::ScriptBatchNormCnn(3);
  auto info = LoadTorchScriptModel(FileOf(m), "cnn.pt");
  ASSERT_TRUE(info.ok()) << info.status();
  ASSERT_EQ(info->layout.size(), 6u);
  const char* names[] = {"conv.weight", "conv.bias", "bn.weight", "bn.bias", "fc.weight", "fc.bias"};
  for (int k = 0; k < 6; ++k) EXPECT_EQ(info->layout[k].name, names[k]);
  EXPECT_EQ(info->layout[4].shape, (std::vector<int64_t>{10, 784}));
  EXPECT_EQ(info->num_params(), 4 * 9 + 4 + 4 + 4 + 7840 + 10);
  ASSERT_EQ(info->script->buffers.size(), 3u);
  EXPECT_EQ(info->script->buffers[2].name, "bn.num_batches_tracked");
  EXPECT_EQ(info->script->buffers[2].dtype, "int64");
  const at::Tensor fc = m.attr("fc").toModule().attr("weight").toTensor();
  EXPECT_EQ(std::memcmp(info->script->params.data() + info->offsets()[4], fc.data_ptr<float>(), fc.nbytes()), 0);
  auto x0 = InitialModel(*info, "gut", 12);
  ASSERT_TRUE(x0.ok());
  EXPECT_EQ(*x0, info->script->params) << "every agent starts from the file's weights";
  // The layout hash covers the buffers: the same parameters with another buffer are another model.
  auto other = testing::ScriptBatchNormCnn(3);
  other.attr("bn").toModule().register_buffer("extra", at::zeros({2}));
  auto info2 = LoadTorchScriptModel(FileOf(other), "other.pt");
  ASSERT_TRUE(info2.ok());
  EXPECT_NE(info->layout_hash(), info2->layout_hash());
  EXPECT_EQ(info2->LayoutDescription().back(), "buffer bn.extra [2] float32");
}

// The flat vector is the whole model: a TorchScript LeNet-5 at the zoo's x0 computes the zoo's loss,
// gradient and evaluation to the bit, whichever order relu and max-pool come in.
TEST(TorchScriptModel, LeNetTrainsBitIdenticallyToTheZoo) {
  const TrainTest data = Images(96, 40);
  auto zoo = GetModelInfo("lenet5");
  ASSERT_TRUE(zoo.ok());
  const std::vector<float> x0 = zoo->InitialParameters(12);
  for (bool pool_first : {false, true}) {
    SCOPED_TRACE(pool_first ? "max-pool then relu" : "relu then max-pool");
    auto zt = Trainer::Create(*zoo, &data.train, Range(96), 32, uint64_t{9});
    ASSERT_TRUE(zt.ok());
    auto m = testing::ScriptLeNet(ZooWeights(*zoo, x0), pool_first);
    auto info = LoadTorchScriptModel(FileOf(m), "lenet.pt");
    ASSERT_TRUE(info.ok()) << info.status();
    ASSERT_TRUE(ProbeModel(&*info, data.train, data.test).ok());
    EXPECT_EQ(info->num_classes, 10);
    auto sm = ScriptModule::Load(*info->script, /*prepare=*/true);
    ASSERT_TRUE(sm.ok());
    const std::string graph = torch::jit::toGraphFunction((*sm)->module().get_method("forward").function()).graph()->toString();
    size_t fused = 0;
    for (size_t at = 0; (at = graph.find("gut::relu_max_pool2x2", at)) != std::string::npos; ++at) ++fused;
    EXPECT_EQ(fused, 2u) << graph;
    auto tt = Trainer::Create(*info, &data.train, Range(96), 32, uint64_t{9});
    ASSERT_TRUE(tt.ok());
    for (int step = 0; step < 3; ++step) {
      for (auto* t : {zt->get(), tt->get()}) {
        t->NextBatch();
        std::copy(x0.begin(), x0.end(), t->point().begin());
        const absl::Status st = t->ComputeGradient();
        ASSERT_TRUE(st.ok()) << st;
      }
      EXPECT_EQ((*zt)->last_loss(), (*tt)->last_loss());
      ASSERT_EQ(std::memcmp((*zt)->gradient().data(), (*tt)->gradient().data(), x0.size() * sizeof(float)), 0);
    }
    auto ez = (*zt)->Evaluate(x0, data.test, 16);
    auto et = (*tt)->Evaluate(x0, data.test, 16);
    ASSERT_TRUE(ez.ok() && et.ok());
    EXPECT_EQ(ez->metric, et->metric);
    EXPECT_EQ(ez->loss, et->loss);
  }
}

// Buffers are each agent's: two agents that share one workspace (as gut-sim's do) keep their own
// running statistics, the same as with workspaces of their own; a checkpoint carries them; and the
// model file holds the trained parameters and that agent's buffers, in eval mode.
TEST(TorchScriptModel, BuffersBelongToEachAgent) {
  const TrainTest data = Images(64, 20);
  auto m = testing::ScriptBatchNormCnn(4);
  auto info = LoadTorchScriptModel(FileOf(m), "cnn.pt");
  ASSERT_TRUE(info.ok());
  ASSERT_TRUE(ProbeModel(&*info, data.train, data.test).ok());
  auto shared = ModelWorkspace::Create(*info, 16, data.train);
  ASSERT_TRUE(shared.ok());
  std::vector<std::unique_ptr<Trainer>> a, b;  // a: sharing one workspace; b: each its own
  for (int i = 0; i < 2; ++i) {
    std::vector<int64_t> shard = {i * 32 + 0, i * 32 + 1};
    for (int k = 2; k < 32; ++k) shard.push_back(i * 32 + k);
    a.push_back(*Trainer::Create(*info, &data.train, shard, 16, uint64_t(i)));
    b.push_back(*Trainer::Create(*info, &data.train, shard, 16, uint64_t(i)));
  }
  const std::vector<float> x0 = info->script->params;
  for (int step = 0; step < 3; ++step)
    for (int i = 0; i < 2; ++i) {
      a[i]->UseWorkspace(shared->get());
      for (auto* t : {a[i].get(), b[i].get()}) {
        t->NextBatch();
        std::copy(x0.begin(), x0.end(), t->point().begin());
        ASSERT_TRUE(t->ComputeGradient().ok());
      }
      EXPECT_EQ(a[i]->last_loss(), b[i]->last_loss()) << "agent " << i << " step " << step;
    }
  auto buffers = [](Trainer& t) {
    StateBundle bundle;
    StateSaver<float> saver(&bundle);
    t.VisitBuffers(&saver);
    return bundle;
  };
  const StateBundle a0 = buffers(*a[0]), a1 = buffers(*a[1]), b0 = buffers(*b[0]);
  EXPECT_EQ(a0.items.at("model_buffers").bytes, b0.items.at("model_buffers").bytes);
  EXPECT_NE(a0.items.at("model_buffers").bytes, a1.items.at("model_buffers").bytes) << "each agent its own statistics";
  // Restoring agent 0's buffers into a fresh agent gives the same evaluation; a bundle of the wrong
  // size is refused naming the item.
  auto fresh = *Trainer::Create(*info, &data.train, Range(32), 16, uint64_t{0});
  auto before = fresh->Evaluate(x0, data.test, 10);
  StateLoader<float> loader(&a0);
  fresh->VisitBuffers(&loader);
  ASSERT_TRUE(loader.status().ok()) << loader.status();
  auto after = fresh->Evaluate(x0, data.test, 10);
  auto want = a[0]->Evaluate(x0, data.test, 10);
  ASSERT_TRUE(before.ok() && after.ok() && want.ok());
  EXPECT_EQ(after->loss, want->loss);
  EXPECT_NE(after->loss, before->loss) << "eval mode reads the running statistics";
  StateBundle cut = a0;
  cut.items["model_buffers"].bytes.pop_back();
  StateLoader<float> bad(&cut);
  fresh->VisitBuffers(&bad);
  EXPECT_NE(bad.status().message().find("model_buffers"), std::string::npos) << bad.status();
  // model-final.pt: the module with these parameters and agent 0's buffers, in eval mode.
  std::vector<float> trained = x0;
  for (float& v : trained) v *= 0.5f;
  auto bytes = a[0]->ExportModel(trained);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  std::istringstream in(*bytes);
  torch::jit::Module back = torch::jit::load(in);
  EXPECT_FALSE(back.is_training());
  EXPECT_TRUE(at::equal(back.attr("fc").toModule().attr("weight").toTensor(),
                        at::from_blob(trained.data() + info->offsets()[4], {10, 784})));
  EXPECT_EQ(back.attr("bn").toModule().attr("num_batches_tracked").toTensor().item<int64_t>(), 3);
  EXPECT_EQ(std::memcmp(back.attr("bn").toModule().attr("running_mean").toTensor().data_ptr<float>(),
                        a0.items.at("model_buffers").bytes.data(), 4 * sizeof(float)),
            0);
}

TEST(TorchScriptModel, ZooModelFileIsAStateDictOfTheLayoutNames) {
  const TrainTest data = Images(32, 10);
  auto zoo = GetModelInfo("lenet5");
  auto t = Trainer::Create(*zoo, &data.train, Range(32), 16, uint64_t{1});
  ASSERT_TRUE(t.ok());
  const std::vector<float> x = zoo->InitialParameters(3);
  auto bytes = (*t)->ExportModel(x);
  ASSERT_TRUE(bytes.ok());
  const c10::IValue v = torch::jit::pickle_load(std::vector<char>(bytes->begin(), bytes->end()));
  ASSERT_TRUE(v.isGenericDict());
  const auto dict = v.toGenericDict();
  ASSERT_EQ(dict.size(), zoo->layout.size());
  const auto off = zoo->offsets();
  for (size_t k = 0; k < zoo->layout.size(); ++k) {
    const at::Tensor got = dict.at(zoo->layout[k].name).toTensor();
    EXPECT_EQ(got.sizes().vec(), zoo->layout[k].shape);
    EXPECT_EQ(std::memcmp(got.data_ptr<float>(), x.data() + off[k], got.nbytes()), 0) << zoo->layout[k].name;
  }
}

TEST(TorchScriptModel, BadModelsAreNamedAtStartUp) {
  auto expect_error = [](const absl::Status& s, const std::string& part) {
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.message().find(part), std::string::npos) << s.message();
  };
  ModelFile junk{"this is not a model", "x"};
  expect_error(LoadTorchScriptModel(junk, "'junk.pt'").status(), "'junk.pt' is not a TorchScript file");
  // A state dict saved with torch.save is a zip archive, but not TorchScript.
  c10::Dict<std::string, at::Tensor> dict;
  dict.insert("w", at::ones({2}));
  const auto pickled = torch::jit::pickle_save(c10::IValue(dict));
  ModelFile state{std::string(pickled.begin(), pickled.end()), "x"};
  expect_error(LoadTorchScriptModel(state, "'state.pt'").status(), "'state.pt' is not a TorchScript");
  torch::jit::Module none = testing::Layer("Empty", {});
  none.register_buffer("b", at::zeros({2}));
  none.define("def forward(self, x):\n    return x\n");
  expect_error(LoadTorchScriptModel(FileOf(none), "'none.pt'").status(), "has no trainable parameters");
  torch::jit::Module dbl = testing::Layer("D", {{"w", at::ones({3}, at::kDouble)}});
  dbl.define("def forward(self, x):\n    return x * self.w\n");
  expect_error(LoadTorchScriptModel(FileOf(dbl), "'double.pt'").status(), "parameter 'w' is float64");

  const TrainTest data = Images(20, 10), targets = Images(20, 10, /*regression=*/true);
  auto probe = [](torch::jit::Module& m, const TrainTest& d, const std::string& loss) {
    auto info = LoadTorchScriptModel(FileOf(m), "m.pt");
    EXPECT_TRUE(info.ok()) << info.status();
    info->loss = loss;
    return ProbeModel(&*info, d.train, d.test);
  };
  torch::jit::Module flat_mlp = testing::ScriptMlp(1, 784, 5);
  // An input shape the model rejects: the MLP wants flat vectors, the data are 1x28x28 images.
  expect_error(probe(flat_mlp, data, "cross_entropy"), "fails on a batch of 2 training samples of shape [2, 1, 28, 28]");
  torch::jit::Module logits5 = testing::Layer("L5", {});
  logits5.register_module("inner", testing::ScriptMlp(1, 784, 5));
  logits5.define("def forward(self, x):\n    return self.inner.forward(torch.flatten(x, 1))\n");
  expect_error(probe(logits5, data, "cross_entropy"), "labels go up to class 9, but the TorchScript model outputs [2, 5]: 5 classes");
  expect_error(probe(logits5, targets, "mse"), "outputs [2, 5] (5 values per sample); the training targets have 1 per sample");
  expect_error(probe(logits5, data, "mse"), "model.loss: mse needs float targets");
  torch::jit::Module pair = testing::Layer("P", {{"w", at::ones({1})}});
  pair.define("def forward(self, x):\n    return (x, x)\n");
  expect_error(probe(pair, data, "cross_entropy"), "forward returned Tuple");
}

}  // namespace
}  // namespace gut::core
