#include <ATen/ATen.h>

#include <cmath>
#include <filesystem>
#include <numeric>

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
  EXPECT_NE(GetModelInfo("resnet20").status().message().find("allowed: lenet5"), std::string::npos);
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
  EXPECT_DOUBLE_EQ(a->accuracy, b->accuracy) << "batching must not change the result";
  EXPECT_NEAR(a->loss, b->loss, 1e-5);
  EXPECT_NEAR(a->loss, std::log(10.0), 0.3) << "an untrained model is near chance";
  std::vector<float> short_params(10);
  EXPECT_NE((*t)->Evaluate(short_params, data->test, 10).status().message().find("got 10 parameters, the model has 61706"), std::string::npos);
  EXPECT_FALSE(Trainer::Create(model, &data->train, {}, 2, 1).ok());
  EXPECT_FALSE(Trainer::Create(model, &data->train, {999999}, 2, 1).ok());
}

}  // namespace
}  // namespace gut::core
