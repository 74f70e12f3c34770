// blocklab-cli data prepare: a text corpus (of any size) encoded once into a
// token file that training maps instead of reading (engine/data/token_file.h).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "args.h"
#include "commands.h"
#include "data/synthetic.h"
#include "data/token_file.h"
#include "data/tokenizer.h"
#include "io/synced_file.h"

namespace bl::cli {

namespace {

int data_prepare(const std::vector<std::string>& argv) {
  Args args(argv, {"data", "out", "tokenizer"}, {"json", "quiet"});
  if (!args.positional().empty())
    throw UsageError("unexpected argument '" + args.positional()[0] + "'");
  const auto data = args.get("data");
  const auto out = args.get("out");
  if (!data || !out)
    throw UsageError(
        "data prepare needs --data TEXT_FILE --out TOKEN_FILE [--tokenizer "
        "char|byte|bpe:DIR]");
  const std::string spec = args.get("tokenizer").value_or("char");
  const auto t0 = std::chrono::steady_clock::now();
  // char's vocabulary comes from the corpus: streamed, like the encoding.
  std::unique_ptr<Tokenizer> tok =
      spec == "char" ? char_tokenizer_of_file(*data) : make_tokenizer(spec, "");
  const bool tty = isatty(fileno(stderr)) && !args.flag("quiet");
  const TokenFileHeader h =
      prepare_token_file(*data, *tok, *out, size_t(16) << 20, [&](int64_t done, int64_t total) {
        if (tty)
          std::fprintf(stderr, "\r\033[Kencoding %s: %.0f%%", data->c_str(),
                       total > 0 ? 100.0 * double(done) / double(total) : 100.0);
      });
  if (tty) std::fprintf(stderr, "\n");
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf(
      "wrote %s: %lld tokens of %s (%lld bytes, %s tokenizer, vocab %lld) in %.2f s\n"
      "train on it with: blocklab-cli train --data %s ...\n",
      out->c_str(), (long long)h.n_tokens, data->c_str(), (long long)h.source_size,
      tok->name().c_str(), (long long)tok->vocab_size(), s, out->c_str());
  if (args.flag("json"))
    std::printf("%s\n", nlohmann::json({{"file", *out},
                                        {"n_tokens", h.n_tokens},
                                        {"source", h.source},
                                        {"source_size", h.source_size},
                                        {"source_sha256", h.source_sha256},
                                        {"tokenizer", tok->name()},
                                        {"vocab_size", tok->vocab_size()},
                                        {"seconds", s}})
                            .dump()
                            .c_str());
  return 0;
}

int data_synth(const std::vector<std::string>& argv) {
  Args args(argv, {"task", "p", "train-fraction", "seed", "out"}, {"json"});
  if (!args.positional().empty())
    throw UsageError("unexpected argument '" + args.positional()[0] + "'");
  const auto out = args.get("out");
  if (!out)
    throw UsageError(
        "data synth needs --out FILE [--task add|sub|mul|div] [--p P] "
        "[--train-fraction F] [--seed N]");
  ModularTask t;
  t.op = args.get("task").value_or("add");
  t.p = args.get_int("p", 2).value_or(97);
  t.train_fraction = args.get_double("train-fraction").value_or(0.5);
  t.seed = uint64_t(args.get_int("seed", 0).value_or(0));
  SyntheticText s;
  try {
    s = modular_arithmetic(t);
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("data synth: ") + e.what());
  }
  write_file_synced(*out, s.text);
  std::printf(
      "wrote %s: %lld training then %lld held-out equations of a%sb mod %lld\n"
      "train on it with: blocklab-cli train --data %s --set train.val_fraction=%.17g ...\n"
      "(that val_fraction puts exactly the held-out equations in the val split)\n",
      out->c_str(), (long long)s.n_train, (long long)s.n_val,
      t.op == "add"   ? "+"
      : t.op == "sub" ? "-"
      : t.op == "mul" ? "*"
                      : "/",
      (long long)t.p, out->c_str(), s.val_fraction);
  if (args.flag("json"))
    std::printf("%s\n", nlohmann::json({{"file", *out},
                                        {"task", t.op},
                                        {"p", t.p},
                                        {"n_train", s.n_train},
                                        {"n_val", s.n_val},
                                        {"val_fraction", s.val_fraction}})
                            .dump()
                            .c_str());
  return 0;
}

}  // namespace

int data_command(const std::vector<std::string>& argv) {
  if (argv.empty()) throw UsageError("data needs a subcommand: prepare or synth");
  const std::vector<std::string> rest(argv.begin() + 1, argv.end());
  if (argv[0] == "prepare") return data_prepare(rest);
  if (argv[0] == "synth") return data_synth(rest);
  throw UsageError("unknown data subcommand '" + argv[0] + "' (prepare, synth)");
}

}  // namespace bl::cli
