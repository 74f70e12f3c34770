#include "train/train_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include "expect_error.h"

namespace bl {
namespace {

template <class F>
std::string error_of(F&& f) {
  return test::error_of<ConfigError>(std::forward<F>(f));
}

using nlohmann::json;
using ::testing::HasSubstr;

namespace fs = std::filesystem;

std::string errors_of(const TrainConfig& t) {
  std::string s;
  for (auto& e : validation_errors(t)) s += e + "\n";
  return s;
}

fs::path temp_file(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / "blocklab_train_config_test";
  fs::create_directories(dir);
  return dir / name;
}

TEST(TrainConfig, DefaultsMatchLmxlab) {
  TrainConfig t;
  EXPECT_EQ(t.learning_rate, 3e-4);
  EXPECT_EQ(t.weight_decay, 0.01);
  EXPECT_EQ(t.warmup_steps, 100);
  EXPECT_EQ(t.max_steps, 1000);
  EXPECT_EQ(t.batch_size, 32);
  EXPECT_EQ(t.grad_accumulation_steps, 1);
  EXPECT_EQ(t.max_grad_norm, 1.0);
  EXPECT_EQ(t.eval_interval, 100);
  EXPECT_EQ(t.log_interval, 10);
  EXPECT_EQ(t.checkpoint_interval, 500);
  EXPECT_EQ(t.optimizer, "adamw");
  EXPECT_EQ(t.lr_schedule, "cosine");
  EXPECT_TRUE(t.compile_step);
  EXPECT_EQ(t.seed, 42);
}

TEST(TrainConfig, ExtrasDefaults) {
  TrainConfig t;
  EXPECT_EQ(t.seq_len, 256);
  EXPECT_EQ(t.min_lr_ratio, 0.1);
  EXPECT_EQ(t.beta1, 0.9);
  EXPECT_EQ(t.beta2, 0.95);
  EXPECT_EQ(t.eps, 1e-8);
  EXPECT_EQ(t.momentum, 0.9);
  EXPECT_EQ(t.eval_batches, 20);
  EXPECT_EQ(t.val_fraction, 0.1);
  EXPECT_EQ(t.threads, 0);
  EXPECT_EQ(t.flop_budget, 0.0);  // no budgets
  EXPECT_EQ(t.time_budget_s, 0.0);
  EXPECT_TRUE(validation_errors(t).empty()) << errors_of(t);
  EXPECT_EQ(json(t).size(), 26u);
  EXPECT_EQ(train_config_field_names().size(), 26u);
}

TEST(TrainConfigJson, RoundTrip) {
  TrainConfig t;
  EXPECT_EQ(train_config_from_json(train_config_to_json(t)), t);
  EXPECT_EQ(train_config_from_json(json::object()), t);
  t.learning_rate = 1.234e-3;
  t.optimizer = "lion";
  t.lr_schedule = "linear";
  t.compile_step = false;
  t.seed = 1337;
  t.threads = 2;
  t.min_lr_ratio = 0.0;
  t.beta2 = 0.999;
  t.eps = 1e-6;
  EXPECT_EQ(train_config_from_json(train_config_to_json(t)), t);
  EXPECT_EQ(json(t).get<TrainConfig>(), t);

  auto path = temp_file("train.json").string();
  save_train_config(path, t);
  EXPECT_EQ(load_train_config(path), t);
}

TEST(TrainConfigJson, PartialOverlay) {
  TrainConfig t = train_config_from_json({{"max_steps", 50}, {"warmup_steps", 5}});
  EXPECT_EQ(t.max_steps, 50);
  EXPECT_EQ(t.warmup_steps, 5);
  EXPECT_EQ(t.batch_size, 32);
}

TEST(TrainConfigJson, Errors) {
  EXPECT_THAT(error_of([] {
                train_config_from_json({{"lr", 1e-3}});
              }),
              HasSubstr("unknown key 'lr'"));
  EXPECT_THAT(error_of([] {
                train_config_from_json({{"max_step", 1}});
              }),
              HasSubstr("unknown key 'max_step'; did you mean 'max_steps'?"));
  EXPECT_THAT(error_of([] {
                train_config_from_json({{"batch_size", "32"}});
              }),
              HasSubstr("batch_size: expected integer, got string \"32\""));
  EXPECT_THAT(error_of([] {
                train_config_from_json({{"compile_step", "yes"}});
              }),
              HasSubstr("compile_step: expected boolean"));
  EXPECT_THAT(error_of([] {
                train_config_from_json({{"learning_rate", nullptr}});
              }),
              HasSubstr("learning_rate: expected number, got null"));
  EXPECT_THAT(error_of([] {
                train_config_from_json(json::array({1, 2}));
              }),
              HasSubstr("expected a JSON object"));

  EXPECT_THAT(error_of([] { load_train_config("/nonexistent/train.json"); }),
              HasSubstr("/nonexistent/train.json: cannot open file"));
  auto bad = temp_file("bad.json");
  std::ofstream(bad) << "{\"seed\": 1";
  EXPECT_THAT(error_of([&] { load_train_config(bad.string()); }),
              HasSubstr(bad.string() + ": invalid JSON: "));
  auto invalid = temp_file("invalid.json");
  std::ofstream(invalid) << R"({"optimizer": "adam", "warmup_steps": 5000})";
  std::string e = error_of([&] { load_train_config(invalid.string()); });
  EXPECT_THAT(e, HasSubstr(invalid.string() + ": optimizer: unknown optimizer 'adam'"));
  EXPECT_THAT(e, HasSubstr(invalid.string() + ": warmup_steps (5000) must be <= max_steps (1000)"));
}

struct RuleCase {
  std::function<void(TrainConfig&)> edit;
  const char* message;
};

TEST(TrainConfigValidation, EachRuleNamesTheField) {
  std::vector<RuleCase> cases = {
      {[](TrainConfig& t) { t.learning_rate = 0; },
       "learning_rate (0) must be a finite number > 0"},
      {[](TrainConfig& t) { t.weight_decay = -1; },
       "weight_decay (-1) must be a finite number >= 0"},
      {[](TrainConfig& t) { t.warmup_steps = -1; }, "warmup_steps (-1) must be >= 0"},
      {[](TrainConfig& t) { t.max_steps = 0; }, "max_steps (0) must be >= 1"},
      {[](TrainConfig& t) { t.warmup_steps = 2000; },
       "warmup_steps (2000) must be <= max_steps (1000)"},
      {[](TrainConfig& t) { t.batch_size = 0; }, "batch_size (0) must be >= 1"},
      {[](TrainConfig& t) { t.grad_accumulation_steps = 0; },
       "grad_accumulation_steps (0) must be >= 1"},
      {[](TrainConfig& t) { t.max_grad_norm = -1; },
       "max_grad_norm (-1) must be a finite number >= 0"},
      {[](TrainConfig& t) { t.eval_interval = -1; }, "eval_interval (-1) must be >= 0"},
      {[](TrainConfig& t) { t.log_interval = -1; }, "log_interval (-1) must be >= 0"},
      {[](TrainConfig& t) { t.checkpoint_interval = -5; }, "checkpoint_interval (-5) must be >= 0"},
      {[](TrainConfig& t) { t.optimizer = "adam"; },
       "optimizer: unknown optimizer 'adam'; known: adafactor, adamw, lion, sgd"},
      {[](TrainConfig& t) { t.lr_schedule = "step"; },
       "lr_schedule: unknown lr_schedule 'step'; known: constant, cosine, linear"},
      {[](TrainConfig& t) { t.seed = -1; }, "seed (-1) must be >= 0"},
      {[](TrainConfig& t) { t.seq_len = 0; }, "seq_len (0) must be >= 1"},
      {[](TrainConfig& t) { t.min_lr_ratio = 1.5; }, "min_lr_ratio (1.5) must be in [0, 1]"},
      {[](TrainConfig& t) { t.beta1 = 1.0; }, "beta1 (1) must be in [0, 1)"},
      {[](TrainConfig& t) { t.beta2 = -0.1; }, "beta2 (-0.1) must be in [0, 1)"},
      {[](TrainConfig& t) { t.eps = 0; }, "eps (0) must be a finite number > 0"},
      {[](TrainConfig& t) { t.momentum = 1.0; }, "momentum (1) must be in [0, 1)"},
      {[](TrainConfig& t) { t.eval_batches = 0; }, "eval_batches (0) must be >= 1"},
      {[](TrainConfig& t) { t.val_fraction = 0; }, "val_fraction (0) must be in (0, 1)"},
      {[](TrainConfig& t) { t.val_fraction = 1; }, "val_fraction (1) must be in (0, 1)"},
      {[](TrainConfig& t) { t.threads = -1; }, "threads (-1) must be >= 0"},
      {[](TrainConfig& t) { t.diagnostics_interval = -1; },
       "diagnostics_interval (-1) must be >= 0"},
  };
  for (auto& c : cases) {
    TrainConfig t;
    c.edit(t);
    EXPECT_THAT(errors_of(t), HasSubstr(c.message)) << c.message;
    EXPECT_THROW(validate(t), ConfigError) << c.message;
  }
}

TEST(TrainConfigValidation, PathPrefixAndCollectsAll) {
  TrainConfig t;
  t.batch_size = 0;
  t.optimizer = "x";
  auto e = validation_errors(t, "train");
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0], "train.batch_size (0) must be >= 1");
  EXPECT_THAT(e[1], HasSubstr("train.optimizer: unknown optimizer 'x'"));
}

TEST(TrainConfigValidation, NamesDiagnosticsInterval) {
  TrainConfig t;
  t.diagnostics_interval = -3;
  auto e = validation_errors(t, "train");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0], "train.diagnostics_interval (-3) must be >= 0");
  t.diagnostics_interval = 0;  // off
  EXPECT_TRUE(validation_errors(t).empty()) << errors_of(t);
}

TEST(TrainConfigValidation, AllOptimizersAndSchedulesAccepted) {
  for (auto& o : known_optimizers())
    for (auto& s : known_lr_schedules()) {
      TrainConfig t;
      t.optimizer = o;
      t.lr_schedule = s;
      EXPECT_TRUE(validation_errors(t).empty()) << errors_of(t);
    }
}

TEST(TrainConfigValidation, Compatibility) {
  ModelConfig m;
  m.block.max_seq_len = 128;
  TrainConfig t;
  t.seq_len = 128;
  EXPECT_TRUE(compatibility_errors(m, t).empty());
  t.seq_len = 256;
  auto e = compatibility_errors(m, t);
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0], "train.seq_len (256) must be <= model.block.max_seq_len (128)");
  m.n_layers = 2;
  m.block_configs = {m.block, m.block};
  m.block_configs[1].max_seq_len = 512;
  e = compatibility_errors(m, t);
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0], "train.seq_len (256) must be <= model.block_configs[0].max_seq_len (128)");
}

}  // namespace
}  // namespace bl
