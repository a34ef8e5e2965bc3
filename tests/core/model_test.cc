#include <ATen/ATen.h>

#include <cmath>
#include <filesystem>
#include <numeric>
#include <random>

#include "core/data/dataset.h"
#include "core/models/functional.h"
#include "core/models/model.h"
#include "core/train/trainer.h"
#include "gtest/gtest.h"
#include "tests/testing/synthetic_data.h"

namespace gut::core {
namespace {

TEST(Models, LeNet5HasTheReferenceParameterCount) {
  auto m = GetModelInfo("lenet5");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->num_params(), 61706);
  EXPECT_EQ(m->offsets().back(), 61706 - 10);
  EXPECT_NE(GetModelInfo("resnet18").status().message().find("model.name: unknown model 'resnet18'; allowed: lenet5, resnet20"),
            std::string::npos);
}

// docs/algorithms.md §5: the parameter counts of the reference code's models, exactly.
TEST(Models, ZooHasTheReferenceParameterCounts) {
  struct Row {
    std::string name;
    int classes;
    std::vector<int64_t> input;
    int64_t params;
  };
  for (const Row& r : {Row{"resnet20", 10, {}, 272474}, Row{"resnet20", 100, {}, 278324},
                       Row{"resnet32", 10, {}, 466906}, Row{"resnet44", 10, {}, 661338},
                       Row{"resnet56", 10, {}, 855770}, Row{"vgg11", 10, {}, 579786},
                       Row{"mobilenetv2", 10, {3, 224, 224}, 2296490}, Row{"mobilenetv2", 10, {3, 32, 32}, 2296922}}) {
    for (const char* norm : {"evonorm", "groupnorm"}) {
      auto m = GetModelInfo(r.name, {norm, r.classes, r.input});
      ASSERT_TRUE(m.ok()) << m.status();
      EXPECT_EQ(m->num_params(), r.params) << r.name << " " << norm << " " << r.classes << " classes";
    }
  }
  auto evo = *GetModelInfo("resnet20", {"evonorm", 10, {}}), gn = *GetModelInfo("resnet20", {"groupnorm", 10, {}});
  EXPECT_NE(evo.layout_hash(), gn.layout_hash()) << "agents with different norms must not exchange updates";
  EXPECT_NE(GetModelInfo("resnet20", {"batchnorm", 10, {}}).status().message().find("model.norm: unknown normalisation 'batchnorm'"),
            std::string::npos);
  EXPECT_NE(GetModelInfo("vgg11", {"evonorm", 10, {1, 28, 28}}).status().message().find("vgg11 takes 3x32x32 inputs, the data set has 1x28x28"),
            std::string::npos);
}

// §5.3 / §5.4 initialisation: He-normal convolutions (std sqrt(2 / (k k C_out))), VGG conv biases
// 0, norm scales 1 and shifts 0, the linear head PyTorch's default.
TEST(Models, ZooInitialisation) {
  for (const char* name : {"resnet20", "vgg11"}) {
    const ModelInfo m = *GetModelInfo(name);
    const std::vector<float> x = m.InitialParameters(12);
    const auto off = m.offsets();
    for (size_t k = 0; k < m.layout.size(); ++k) {
      const ParamSpec& p = m.layout[k];
      double sum = 0, sq = 0, maxabs = 0;
      for (int64_t i = 0; i < p.numel(); ++i) {
        const double v = x[off[k] + i];
        sum += v;
        sq += v * v;
        maxabs = std::max(maxabs, std::abs(v));
      }
      if (p.shape.size() == 4) {
        const double want = std::sqrt(2.0 / (p.shape[2] * p.shape[3] * p.shape[0]));
        EXPECT_NEAR(std::sqrt(sq / p.numel()), want, 0.1 * want) << name << " " << p.name;
      } else if (p.name.find("norm") != std::string::npos || p.name.find("bn") != std::string::npos ||
                 p.name.find("shortcut.1") != std::string::npos) {
        EXPECT_EQ(maxabs, p.name.find(".weight") != std::string::npos ? 1.0 : 0.0) << p.name;
        if (p.name.find(".weight") != std::string::npos) {
          EXPECT_EQ(sum, double(p.numel())) << p.name;
        }
      } else if (p.name.find("conv.bias") != std::string::npos) {
        EXPECT_EQ(maxabs, 0.0) << p.name;
      } else {
        EXPECT_LE(maxabs, 1 / std::sqrt(double(p.fan_in))) << p.name;
        EXPECT_GT(maxabs, 0) << p.name;
      }
    }
    auto t = TorchDefaultInit(m, 12);
    ASSERT_TRUE(t.ok());
    EXPECT_EQ(t->size(), x.size());
  }
}

// model.init: torch draws as PyTorch builds and then re-initialises the modules: the linear head
// comes from the generator right after every conv's default uniform draw (not after the He normals
// that overwrite them), and the He convolutions come after it.
TEST(Models, TorchInitFollowsPyTorchsDrawOrder) {
  const ModelInfo m = *GetModelInfo("vgg11");
  auto got = TorchDefaultInit(m, 7);
  ASSERT_TRUE(got.ok());
  at::manual_seed(7);
  const auto off = m.offsets();
  std::vector<float> head;
  for (size_t k = 0; k < m.layout.size(); ++k) {
    const ParamSpec& p = m.layout[k];
    if (!p.torch_draw) continue;
    at::Tensor t = at::empty(p.shape, at::kFloat).uniform_(-1 / std::sqrt(double(p.fan_in)), 1 / std::sqrt(double(p.fan_in)));
    if (p.name.rfind("classifier", 0) == 0) head.insert(head.end(), t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
  }
  const size_t first_conv = 0, head_at = m.layout.size() - 2;
  ASSERT_EQ(m.layout[head_at].name, "classifier.weight");
  EXPECT_EQ(std::vector<float>(got->begin() + off[head_at], got->end()), head);
  // The first conv's weights are the first normal draw after all the uniform ones.
  at::Tensor w0 = at::empty(m.layout[first_conv].shape, at::kFloat).normal_(0, m.layout[first_conv].init_value);
  EXPECT_EQ(std::vector<float>(got->begin(), got->begin() + w0.numel()),
            std::vector<float>(w0.data_ptr<float>(), w0.data_ptr<float>() + w0.numel()));
  EXPECT_EQ((*got)[off[1]], 0.0f) << "VGG's conv biases start at 0";
}

// §5.2 against a direct loop: per sample and group of C/G channels, biased variance of x,
// gamma * x * clamp(x/6 + 1/2, 0, 1) / sqrt(var + 1e-5) + beta.
TEST(Models, EvoNormS0MatchesItsDefinition) {
  at::manual_seed(3);
  const int n = 2, c = 16, h = 3, w = 5, g = 8;
  at::Tensor x = at::randn({n, c, h, w}) * 2, gamma = at::randn({c}), beta = at::randn({c});
  at::Tensor y = EvoNormS0(x, gamma, beta, g);
  auto X = x.accessor<float, 4>();
  auto Y = y.accessor<float, 4>();
  for (int s = 0; s < n; ++s) {
    for (int grp = 0; grp < g; ++grp) {
      double mean = 0, var = 0;
      const int cpg = c / g, cnt = cpg * h * w;
      for (int ch = grp * cpg; ch < (grp + 1) * cpg; ++ch)
        for (int i = 0; i < h; ++i)
          for (int j = 0; j < w; ++j) mean += X[s][ch][i][j] / cnt;
      for (int ch = grp * cpg; ch < (grp + 1) * cpg; ++ch)
        for (int i = 0; i < h; ++i)
          for (int j = 0; j < w; ++j) var += (X[s][ch][i][j] - mean) * (X[s][ch][i][j] - mean) / cnt;
      for (int ch = grp * cpg; ch < (grp + 1) * cpg; ++ch)
        for (int i = 0; i < h; ++i)
          for (int j = 0; j < w; ++j) {
            const double v = X[s][ch][i][j];
            const double hs = std::min(1.0, std::max(0.0, v / 6 + 0.5));
            const double want = gamma[ch].item<double>() * v * hs / std::sqrt(var + 1e-5) + beta[ch].item<double>();
            ASSERT_NEAR(Y[s][ch][i][j], want, 1e-5 * (1 + std::abs(want)));
          }
    }
  }
}

// Every model runs forward and backward through the trainer's path: logits of the right shape,
// a finite loss, and a gradient in every parameter tensor.
TEST(Models, ZooForwardAndBackward) {
  struct Row {
    std::string name, norm;
    std::vector<int64_t> input;
  };
  for (const Row& r : {Row{"resnet20", "evonorm", {3, 32, 32}}, Row{"resnet20", "groupnorm", {3, 32, 32}},
                       Row{"vgg11", "evonorm", {3, 32, 32}}, Row{"vgg11", "groupnorm", {3, 32, 32}},
                       Row{"mobilenetv2", "evonorm", {3, 32, 32}}, Row{"mobilenetv2", "groupnorm", {3, 224, 224}}}) {
    const ModelInfo m = *GetModelInfo(r.name, {r.norm, 10, r.input});
    std::vector<float> flat = m.InitialParameters(5);
    std::vector<at::Tensor> p;
    const auto off = m.offsets();
    for (size_t k = 0; k < m.layout.size(); ++k)
      p.push_back(at::from_blob(flat.data() + off[k], m.layout[k].shape, at::kFloat).set_requires_grad(true));
    std::vector<int64_t> shape{2};
    shape.insert(shape.end(), r.input.begin(), r.input.end());
    at::manual_seed(1);
    at::Tensor logits = ModelForward(m, p, at::randn(shape));
    ASSERT_EQ(logits.sizes(), (at::IntArrayRef{2, 10})) << r.name;
    at::Tensor loss = at::cross_entropy_loss(logits, at::tensor({int64_t{1}, int64_t{7}}));
    ASSERT_TRUE(std::isfinite(loss.item<double>())) << r.name << " " << r.norm;
    loss.backward();
    for (size_t k = 0; k < p.size(); ++k) {
      ASSERT_TRUE(p[k].grad().defined()) << r.name << " " << m.layout[k].name;
      EXPECT_TRUE(at::isfinite(p[k].grad()).all().item<bool>()) << r.name << " " << m.layout[k].name;
      EXPECT_GT(p[k].grad().abs().sum().item<double>(), 0) << r.name << " " << r.norm << " " << m.layout[k].name;
    }
  }
}

TEST(Models, InitialParametersAreSeededAndBounded) {
  auto m = *GetModelInfo("lenet5");
  const auto a = m.InitialParameters(12), b = m.InitialParameters(12), c = m.InitialParameters(13);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  const auto off = m.offsets();
  for (size_t k = 0; k < m.layout.size(); ++k) {
    const double bound = 1 / std::sqrt(double(m.layout[k].fan_in));
    double maxabs = 0;
    for (int64_t i = 0; i < m.layout[k].numel(); ++i) maxabs = std::max(maxabs, std::abs(double(a[off[k] + i])));
    EXPECT_LE(maxabs, bound) << m.layout[k].name;
    EXPECT_GT(maxabs, 0.8 * bound) << m.layout[k].name << " should fill its range";
  }
  ModelInfo other = m;
  other.layout[0].shape = {6, 1, 3, 3};
  EXPECT_NE(m.layout_hash(), other.layout_hash());
}

TEST(Models, TorchInitIsSeededBoundedAndDistinct) {
  auto m = *GetModelInfo("lenet5");
  auto a = TorchDefaultInit(m, 12), b = TorchDefaultInit(m, 12);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
  EXPECT_NE(*a, m.InitialParameters(12));
  const auto off = m.offsets();
  for (size_t k = 0; k < m.layout.size(); ++k) {
    const float bound = 1 / std::sqrt(float(m.layout[k].fan_in));
    for (int64_t i = 0; i < m.layout[k].numel(); ++i) ASSERT_LE(std::abs((*a)[off[k] + i]), bound);
  }
}

TEST(Models, FusedReluMaxPoolMatchesLibTorch) {
  at::manual_seed(1);
  for (auto shape : {std::vector<int64_t>{3, 6, 28, 28}, std::vector<int64_t>{2, 16, 10, 10}, std::vector<int64_t>{1, 2, 7, 5}}) {
    at::Tensor base = at::randn(shape);
    base.index_put_({0, 0, 0, 0}, 0.0);  // ties and zeros
    base.index_put_({0, 0, 0, 1}, 0.0);
    at::Tensor a = base.clone().set_requires_grad(true), b = base.clone().set_requires_grad(true);
    at::Tensor ya = ReluMaxPool2x2(a), yb = at::max_pool2d(at::relu(b), {2, 2}, {2, 2});
    EXPECT_TRUE(at::equal(ya, yb));
    at::Tensor go = at::randn_like(ya);
    ya.backward(go);
    yb.backward(go);
    EXPECT_TRUE(at::allclose(a.grad(), b.grad(), 0, 0)) << "shape " << shape[1];
  }
}

class TrainerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(std::filesystem::temp_directory_path() / ("gut_trainer_" + std::to_string(::getpid())));
    std::filesystem::create_directories(*dir_);
    testing::WriteSyntheticDataset(*dir_, 256, 100);
  }
  static void TearDownTestSuite() { std::filesystem::remove_all(*dir_); }
  static std::string* dir_;
};
std::string* TrainerTest::dir_ = nullptr;

// The trainer's flat gradient equals a plain LibTorch computation with standard layers.
TEST_F(TrainerTest, GradientMatchesReferenceComputation) {
  auto data = LoadMnistFamily(*dir_);
  ASSERT_TRUE(data.ok()) << data.status();
  auto model = *GetModelInfo("lenet5");
  std::vector<int64_t> shard(64);
  std::iota(shard.begin(), shard.end(), 0);
  auto t = Trainer::Create(model, &data->train, shard, 16, 5);
  ASSERT_TRUE(t.ok()) << t.status();
  const auto x0 = model.InitialParameters(12);
  std::copy(x0.begin(), x0.end(), (*t)->point().begin());
  (*t)->NextBatch();
  ASSERT_TRUE((*t)->ComputeGradient().ok());

  // Reference: the same batch through ATen's own max-pool, gradients via autograd.grad-free path.
  BatchSampler same(shard, 16, 5);
  const auto& idx = same.Next();
  at::Tensor input = at::empty({16, 1, 28, 28});
  at::Tensor target = at::empty({16}, at::kLong);
  for (int b = 0; b < 16; ++b) {
    std::copy(data->train.image(idx[b]), data->train.image(idx[b]) + 784, input.data_ptr<float>() + b * 784);
    target.data_ptr<int64_t>()[b] = data->train.labels[idx[b]];
  }
  std::vector<at::Tensor> p;
  const auto off = model.offsets();
  for (size_t k = 0; k < model.layout.size(); ++k)
    p.push_back(at::from_blob(const_cast<float*>(x0.data()) + off[k], model.layout[k].shape).clone().set_requires_grad(true));
  at::Tensor x = at::max_pool2d(at::relu(at::conv2d(input, p[0], p[1], {1, 1}, {2, 2})), {2, 2}, {2, 2});
  x = at::max_pool2d(at::relu(at::conv2d(x, p[2], p[3])), {2, 2}, {2, 2}).flatten(1);
  x = at::relu(at::linear(x, p[4], p[5]));
  x = at::relu(at::linear(x, p[6], p[7]));
  at::Tensor loss = at::cross_entropy_loss(at::linear(x, p[8], p[9]), target);
  loss.backward();
  EXPECT_NEAR((*t)->last_loss(), loss.item<double>(), 1e-5);
  auto g = (*t)->gradient();
  for (size_t k = 0; k < p.size(); ++k) {
    at::Tensor mine = at::from_blob(const_cast<float*>(g.data()) + off[k], model.layout[k].shape);
    EXPECT_TRUE(at::allclose(mine, p[k].grad(), 1e-4, 1e-6)) << model.layout[k].name;
  }
  // A second step starts from zero again (no accumulation across steps).
  ASSERT_TRUE((*t)->ComputeGradient().ok());
  for (size_t k = 0; k < p.size(); ++k) {
    at::Tensor mine = at::from_blob(const_cast<float*>(g.data()) + off[k], model.layout[k].shape);
    EXPECT_TRUE(at::allclose(mine, p[k].grad(), 1e-4, 1e-6)) << model.layout[k].name;
  }
}

// data.shuffle: reference against an independent model of PyTorch 1.2's CPU generator, the
// reference code's: a plain MT19937 seeded with the run seed, one 32-bit output per float uniform
// (LeNet-5's init, then rank 0's 2x1x28x28 torchsummary input), two per int64 random_() (the
// loaders' worker seeds: the training loader's, and from the second epoch on the validation
// loader's before it), and randperm as Fisher-Yates with swap(r[i], r[i + out % (n - i)]).
TEST_F(TrainerTest, ReferenceShuffleReplaysPyTorchsLoaderOrder) {
  auto data = LoadMnistFamily(*dir_);
  ASSERT_TRUE(data.ok()) << data.status();
  const auto model = *GetModelInfo("lenet5");
  std::vector<int64_t> shard;
  for (int k = 0; k < 10; ++k) shard.push_back((37 * k + 11) % 256);
  const uint32_t seed = 12;
  const int epochs = 3, batch = 4;
  int64_t init_draws = 0;
  for (const auto& p : model.layout) init_draws += p.torch_draw ? p.numel() : 0;
  ASSERT_EQ(init_draws, 61706);

  auto expected = [&](int rank) {
    std::mt19937 mt(seed);
    mt.discard(init_draws + (rank == 0 ? 2 * 28 * 28 : 0));
    std::vector<int64_t> out;
    for (int e = 0; e < epochs; ++e) {
      mt.discard(e == 0 ? 2 : 4);
      std::vector<int64_t> r(shard.size());
      std::iota(r.begin(), r.end(), 0);
      const int64_t n = static_cast<int64_t>(r.size());
      for (int64_t i = 0; i < n - 1; ++i) std::swap(r[i], r[i + mt() % (n - i)]);
      for (int64_t k : r) out.push_back(shard[k]);
    }
    return out;
  };
  auto drawn = [&](int rank) {
    auto t = Trainer::Create(model, &data->train, shard, batch, SampleOrder{"reference", seed, rank});
    EXPECT_TRUE(t.ok()) << t.status();
    std::vector<int64_t> out;
    EXPECT_EQ((*t)->batches_per_epoch(), 3);
    for (int b = 0; b < epochs * (*t)->batches_per_epoch(); ++b) {
      (*t)->NextBatch();
      EXPECT_EQ((*t)->batch().size(), b % 3 == 2 ? 2u : 4u) << "the last batch of an epoch is kept";
      out.insert(out.end(), (*t)->batch().begin(), (*t)->batch().end());
    }
    return out;
  };
  for (int rank : {0, 1, 5}) EXPECT_EQ(drawn(rank), expected(rank)) << "rank " << rank;
  EXPECT_EQ(drawn(1), drawn(5)) << "ranks other than 0 share the reference's order";
  EXPECT_NE(drawn(0), drawn(1)) << "rank 0's torchsummary draw moves its stream";
  // The init itself: the first weights are PyTorch's uniform from the same stream's first outputs,
  // (out & (2^24 - 1)) * 2^-24 * (b - a) + a in double, a = -b = float(1/sqrt(25)).
  auto x0 = TorchDefaultInit(model, seed);
  ASSERT_TRUE(x0.ok());
  std::mt19937 mt(seed);
  for (int k = 0; k < 3; ++k) {
    const double u = static_cast<double>(mt() & 0xFFFFFF) / 16777216.0;
    const float a = -0.2f, b = 0.2f;
    EXPECT_EQ((*x0)[k], static_cast<float>(u * double(b - a) + a)) << k;
  }
  // The agent order stays each agent's own stream.
  auto a1 = Trainer::Create(model, &data->train, shard, batch, SampleOrder{"agent", seed, 1});
  auto a5 = Trainer::Create(model, &data->train, shard, batch, SampleOrder{"agent", seed, 5});
  ASSERT_TRUE(a1.ok() && a5.ok());
  std::vector<int64_t> o1, o5;
  for (int b = 0; b < 3; ++b) {
    (*a1)->NextBatch();
    (*a5)->NextBatch();
    o1.insert(o1.end(), (*a1)->batch().begin(), (*a1)->batch().end());
    o5.insert(o5.end(), (*a5)->batch().begin(), (*a5)->batch().end());
  }
  EXPECT_NE(o1, o5);
  EXPECT_FALSE(Trainer::Create(model, &data->train, shard, batch, SampleOrder{"torch", seed, 1}).ok());
}

TEST_F(TrainerTest, EvaluateCountsAccuracyAndRejectsWrongSizes) {
  auto data = LoadMnistFamily(*dir_);
  auto model = *GetModelInfo("lenet5");
  auto t = Trainer::Create(model, &data->train, {0, 1, 2}, 2, 1);
  ASSERT_TRUE(t.ok());
  const auto x0 = model.InitialParameters(1);
  auto a = (*t)->Evaluate(x0, data->test, 7);
  auto b = (*t)->Evaluate(x0, data->test, 100);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->samples, 100);
  EXPECT_DOUBLE_EQ(a->metric, b->metric) << "batching must not change the result";
  EXPECT_NEAR(a->loss, b->loss, 1e-5);
  EXPECT_NEAR(a->loss, std::log(10.0), 0.3) << "an untrained model is near chance";
  std::vector<float> short_params(10);
  EXPECT_NE((*t)->Evaluate(short_params, data->test, 10).status().message().find("got 10 parameters, the model has 61706"), std::string::npos);
  EXPECT_FALSE(Trainer::Create(model, &data->train, {}, 2, 1).ok());
  EXPECT_FALSE(Trainer::Create(model, &data->train, {999999}, 2, 1).ok());
}

}  // namespace
}  // namespace gut::core
