#include "data/synthetic.h"

#include <cmath>
#include <numeric>
#include <stdexcept>
#include <vector>

#include "tensor/rng.h"

namespace bl {

namespace {

bool is_prime(int64_t p) {
  if (p < 2) return false;
  for (int64_t d = 2; d * d <= p; ++d)
    if (p % d == 0) return false;
  return true;
}

int64_t pow_mod(int64_t b, int64_t e, int64_t p) {
  int64_t r = 1;
  b %= p;
  for (; e > 0; e >>= 1, b = b * b % p)
    if (e & 1) r = r * b % p;
  return r;
}

std::string padded(int64_t v, int width) {
  std::string s = std::to_string(v);
  return std::string(size_t(width) - s.size(), '0') + s;
}

}  // namespace

SyntheticText modular_arithmetic(const ModularTask& t) {
  const int64_t p = t.p;
  if (p < 2 || p > 10000)
    throw std::invalid_argument("p must be in 2..10000, got " + std::to_string(p));
  char sym = 0;
  if (t.op == "add") sym = '+';
  if (t.op == "sub") sym = '-';
  if (t.op == "mul") sym = '*';
  if (t.op == "div") sym = '/';
  if (!sym) throw std::invalid_argument("task \"" + t.op + "\" is not one of add, sub, mul, div");
  if (sym == '/' && !is_prime(p))
    throw std::invalid_argument("p (" + std::to_string(p) +
                                ") must be prime for div: every b != 0 needs an inverse mod p");
  if (!(t.train_fraction > 0 && t.train_fraction < 1))
    throw std::invalid_argument("train_fraction must be in (0, 1), got " +
                                std::to_string(t.train_fraction));
  const int width = int(std::to_string(p - 1).size());
  std::vector<std::string> eqs;
  for (int64_t a = 0; a < p; ++a)
    for (int64_t b = sym == '/' ? 1 : 0; b < p; ++b) {
      int64_t c = 0;
      switch (sym) {
        case '+':
          c = (a + b) % p;
          break;
        case '-':
          c = ((a - b) % p + p) % p;
          break;
        case '*':
          c = a * b % p;
          break;
        default:
          c = a * pow_mod(b, p - 2, p) % p;  // Fermat: b^(p-2) = b^-1
      }
      eqs.push_back(padded(a, width) + sym + padded(b, width) + "=" + padded(c, width) + "\n");
    }
  const int64_t n = int64_t(eqs.size());
  const int64_t n_train = int64_t(std::llround(t.train_fraction * double(n)));
  if (n_train < 1 || n_train >= n)
    throw std::invalid_argument("train_fraction " + std::to_string(t.train_fraction) +
                                " leaves no equation in one split (" + std::to_string(n) +
                                " in all)");
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  Rng rng(t.seed ^ 0x6a09e667f3bcc908ULL);
  for (int64_t j = n - 1; j > 0; --j)
    std::swap(order[size_t(j)], order[size_t(rng.below(uint64_t(j + 1)))]);
  SyntheticText out;
  for (int64_t i : order) out.text += eqs[size_t(i)];
  out.n_train = n_train;
  out.n_val = n - n_train;
  // floor((1 - v) * chars) must be the boundary; v half a character short of
  // the val share keeps the product clear of it in floating point.
  const double chars = double(out.text.size()), line = double(eqs[0].size());
  out.val_fraction = (double(out.n_val) * line - 0.5) / chars;
  return out;
}

}  // namespace bl
