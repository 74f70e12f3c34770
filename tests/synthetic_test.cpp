// Modular-arithmetic tasks: every equation is right, each appears once, the
// held-out ones are exactly the run's val split, and bad tasks are refused
// naming the field.
#include "data/synthetic.h"

#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <sstream>
#include <string>

#include "data/text_dataset.h"
#include "data/tokenizer.h"
#include "expect_error.h"

namespace bl {
namespace {

struct Eq {
  int64_t a, b, c;
  char op;
};

std::vector<Eq> parse(const std::string& text) {
  std::vector<Eq> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    const size_t o = line.find_first_of("+-*/"), e = line.find('=');
    out.push_back({std::stoll(line.substr(0, o)), std::stoll(line.substr(o + 1, e - o - 1)),
                   std::stoll(line.substr(e + 1)), line[o]});
  }
  return out;
}

TEST(Synthetic, EveryEquationOnceAndRight) {
  for (const char* op : {"add", "sub", "mul", "div"}) {
    ModularTask t;
    t.op = op;
    t.p = 13;
    t.train_fraction = 0.3;
    const SyntheticText s = modular_arithmetic(t);
    const auto eqs = parse(s.text);
    const int64_t n = std::string(op) == "div" ? 13 * 12 : 13 * 13;
    ASSERT_EQ(int64_t(eqs.size()), n) << op;
    EXPECT_EQ(s.n_train + s.n_val, n);
    EXPECT_EQ(s.n_train, std::llround(0.3 * double(n)));
    std::set<std::pair<int64_t, int64_t>> seen;
    for (const Eq& e : eqs) {
      EXPECT_TRUE(seen.insert({e.a, e.b}).second) << op << " repeats " << e.a << ", " << e.b;
      switch (e.op) {
        case '+':
          EXPECT_EQ(e.c, (e.a + e.b) % 13);
          break;
        case '-':
          EXPECT_EQ((e.c + e.b) % 13, e.a);
          break;
        case '*':
          EXPECT_EQ(e.c, e.a * e.b % 13);
          break;
        default:
          EXPECT_EQ(e.c * e.b % 13, e.a) << e.a << "/" << e.b << "=" << e.c;
      }
    }
  }
  // Zero-padded to p's digits: every line is as long.
  ModularTask t;
  t.p = 97;
  const SyntheticText s = modular_arithmetic(t);
  EXPECT_EQ(s.text.substr(0, s.text.find('\n') + 1).size(), 9u);  // "aa+bb=cc\n"
  EXPECT_EQ(s.text.size(), size_t(97 * 97 * 9));
}

TEST(Synthetic, TheSeedChoosesTheTrainingEquationsDeterministically) {
  ModularTask t;
  t.p = 11;
  const std::string a = modular_arithmetic(t).text;
  EXPECT_EQ(modular_arithmetic(t).text, a);
  t.seed = 1;
  EXPECT_NE(modular_arithmetic(t).text, a);
}

// The printed val_fraction splits the run's tokens exactly at the held-out part.
TEST(Synthetic, TheValFractionSplitsAtTheHeldOutEquations) {
  for (int64_t p : {7, 97, 113}) {
    for (double f : {0.1, 0.3, 0.5, 0.77}) {
      ModularTask t;
      t.p = p;
      t.train_fraction = f;
      const SyntheticText s = modular_arithmetic(t);
      const int64_t line = int64_t(s.text.find('\n') + 1);
      auto tok = make_tokenizer("char", s.text);
      const TextDataset d(s.text, *tok, s.val_fraction);
      EXPECT_EQ(d.train_size(), s.n_train * line) << "p " << p << " fraction " << f;
      EXPECT_EQ(d.val_size(), s.n_val * line) << "p " << p << " fraction " << f;
    }
  }
}

TEST(Synthetic, BadTasksAreRefusedNamingTheField) {
  auto err = [](ModularTask t) {
    return test::error_of<std::invalid_argument>([&] { modular_arithmetic(t); });
  };
  ModularTask t;
  t.op = "pow";
  EXPECT_PRED2(test::contains, err(t), "task \"pow\" is not one of add, sub, mul, div");
  t = {};
  t.p = 1;
  EXPECT_PRED2(test::contains, err(t), "p must be in 2..10000, got 1");
  t = {};
  t.op = "div";
  t.p = 12;
  EXPECT_PRED2(test::contains, err(t), "p (12) must be prime for div");
  t = {};
  t.train_fraction = 1.0;
  EXPECT_PRED2(test::contains, err(t), "train_fraction must be in (0, 1)");
  t = {};
  t.p = 2;
  t.train_fraction = 0.01;
  EXPECT_PRED2(test::contains, err(t), "leaves no equation in one split");
}

}  // namespace
}  // namespace bl
