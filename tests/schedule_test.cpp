#include "train/schedule.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <string>

namespace bl {
namespace {

// torch_ref.py's lr_at, transcribed (Python floats are doubles).
double torch_ref_lr_at(int64_t step, double lr, int64_t warm, int64_t total, double ratio) {
  const double min_lr = lr * ratio;
  if (step < warm) return lr * double(step + 1) / double(warm);
  if (total <= warm) return lr;
  const double p =
      std::min(1.0, double(step - warm) / double(std::max<int64_t>(1, total - 1 - warm)));
  return min_lr + 0.5 * (lr - min_lr) * (1.0 + std::cos(std::numbers::pi * p));
}

TEST(Schedule, CosineEqualsTorchRefFormula) {
  struct Cfg {
    float lr;
    int64_t warm, total;
    float ratio;
  };
  for (const Cfg c :
       {Cfg{1e-3f, 20, 300, 0.1f}, Cfg{1e-3f, 20, 200, 0.1f}, Cfg{3e-4f, 100, 1000, 0.1f},
        Cfg{1e-3f, 0, 50, 0.0f}, Cfg{1e-3f, 20, 21, 0.1f}, Cfg{1e-3f, 20, 20, 0.1f},
        Cfg{1e-3f, 20, 5, 0.1f}, Cfg{2e-3f, 1, 2, 0.5f}}) {
    const LrSchedule s = make_schedule("cosine", {c.lr, c.warm, c.total, c.ratio});
    EXPECT_EQ(s.name(), "cosine");
    for (int64_t step : {int64_t(0), c.warm - 1, c.warm, c.warm + 1, (c.warm + c.total) / 2,
                         c.total - 2, c.total - 1, c.total, c.total + 10}) {
      if (step < 0) continue;
      const double ref = torch_ref_lr_at(step, c.lr, c.warm, c.total, c.ratio);
      EXPECT_FLOAT_EQ(s.lr_at(step), float(ref))
          << "lr " << c.lr << " warm " << c.warm << " total " << c.total << " step " << step;
    }
  }
}

TEST(Schedule, KeyValuesOfTheAnchorRecipe) {
  // lr 1e-3, warmup 20, 300 steps (the README's learning anchor); values printed
  // by torch_ref.py's lr_at.
  const LrSchedule s = make_schedule("cosine", {1e-3f, 20, 300, 0.1f});
  EXPECT_FLOAT_EQ(s.lr_at(0), 5e-05f);
  EXPECT_FLOAT_EQ(s.lr_at(9), 5e-04f);
  EXPECT_FLOAT_EQ(s.lr_at(19), 1e-03f);
  EXPECT_FLOAT_EQ(s.lr_at(20), 1e-03f);
  EXPECT_FLOAT_EQ(s.lr_at(21), 0.0009999714721351618f);
  EXPECT_FLOAT_EQ(s.lr_at(100), 0.0008294370732117572f);
  EXPECT_FLOAT_EQ(s.lr_at(159), 0.0005525335290779047f);
  EXPECT_FLOAT_EQ(s.lr_at(250), 0.00016677599097616533f);
  EXPECT_FLOAT_EQ(s.lr_at(299), 1e-04f);  // min_lr reached at the last step
  EXPECT_FLOAT_EQ(s.lr_at(1000), 1e-04f);
}

TEST(Schedule, LinearAndConstant) {
  const ScheduleOptions o{1e-2f, 10, 110, 0.1f};
  const LrSchedule lin = make_schedule("linear", o);
  EXPECT_EQ(lin.name(), "linear");
  EXPECT_FLOAT_EQ(lin.lr_at(0), 1e-3f);
  EXPECT_FLOAT_EQ(lin.lr_at(9), 1e-2f);
  EXPECT_FLOAT_EQ(lin.lr_at(10), 1e-2f);
  // p = (step - 10) / 99; lr = min + (lr - min) * (1 - p)
  for (int64_t step : {10, 30, 59, 100, 108}) {
    const double p = double(step - 10) / 99.0;
    EXPECT_FLOAT_EQ(lin.lr_at(step), float(1e-3 + (1e-2 - 1e-3) * (1 - p))) << step;
  }
  EXPECT_FLOAT_EQ(lin.lr_at(109), 1e-3f);
  EXPECT_FLOAT_EQ(lin.lr_at(500), 1e-3f);

  const LrSchedule con = make_schedule("constant", o);
  EXPECT_EQ(con.name(), "constant");
  EXPECT_FLOAT_EQ(con.lr_at(4), 5e-3f);  // warmup still applies
  for (int64_t step : {10, 50, 109, 1000}) EXPECT_FLOAT_EQ(con.lr_at(step), 1e-2f);

  // no warmup: step 0 is the peak
  EXPECT_FLOAT_EQ(make_schedule("cosine", {1e-3f, 0, 100, 0.1f}).lr_at(0), 1e-3f);
}

TEST(Schedule, Errors) {
  const std::string names[] = {"cosine", "linear", "constant"};
  EXPECT_EQ(schedule_names(), std::vector<std::string>(std::begin(names), std::end(names)));
  try {
    make_schedule("step", {});
    FAIL() << "expected throw";
  } catch (const std::invalid_argument& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("step"), std::string::npos);
    EXPECT_NE(m.find("cosine"), std::string::npos);
  }
  EXPECT_THROW(make_schedule("cosine", {-1e-3f, 0, 10, 0.1f}), std::invalid_argument);
  EXPECT_THROW(make_schedule("cosine", {NAN, 0, 10, 0.1f}), std::invalid_argument);
  EXPECT_THROW(make_schedule("cosine", {1e-3f, -1, 10, 0.1f}), std::invalid_argument);
  EXPECT_THROW(make_schedule("cosine", {1e-3f, 0, 0, 0.1f}), std::invalid_argument);
  EXPECT_THROW(make_schedule("cosine", {1e-3f, 0, 10, -0.1f}), std::invalid_argument);
}

}  // namespace
}  // namespace bl
