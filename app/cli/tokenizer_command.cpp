// blocklab-cli tokenizer: train a byte-level BPE vocabulary on a corpus and
// save it as a Hugging Face tokenizer.json; encode / decode with any
// tokenizer spec (byte, bpe:DIR) for scripts and tests.
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>

#include "args.h"
#include "commands.h"
#include "data/bpe_trainer.h"
#include "data/text_dataset.h"

namespace bl::cli {

namespace {

int tokenizer_train(const std::vector<std::string>& argv) {
  Args args(argv, {"data", "vocab-size", "out"}, {"json"});
  if (!args.positional().empty())
    throw UsageError("unexpected argument '" + args.positional()[0] + "'");
  const auto data = args.get("data");
  const auto out = args.get("out");
  const auto vocab = args.get_int("vocab-size", 256);
  if (!data || !out || !vocab)
    throw UsageError("tokenizer train needs --data FILE --vocab-size N (>= 256) --out DIR");
  const std::string text = read_text_file(*data);
  const auto t0 = std::chrono::steady_clock::now();
  BpeTrainStats st;
  const BpeTokenizer tok = train_bpe(text, *vocab, &st);
  const double train_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::string file = tok.save(*out);
  const int64_t n_tokens = int64_t(tok.encode(text).size());
  std::printf(
      "trained %lld merges (vocab %lld) on %s (%zu bytes, %lld pieces, %lld distinct) in "
      "%.2f s%s\nwrote %s; the corpus is %lld tokens, %.3f bytes/token\n",
      (long long)st.merges, (long long)tok.vocab_size(), data->c_str(), text.size(),
      (long long)st.pieces, (long long)st.unique_words, train_s,
      st.exhausted ? " (stopped early: every piece is one token)" : "", file.c_str(),
      (long long)n_tokens, double(text.size()) / double(n_tokens));
  if (args.flag("json"))
    std::printf("%s\n", nlohmann::json({{"file", file},
                                        {"vocab_size", tok.vocab_size()},
                                        {"merges", st.merges},
                                        {"exhausted", st.exhausted},
                                        {"train_seconds", train_s},
                                        {"corpus_tokens", n_tokens},
                                        {"corpus_bytes", text.size()}})
                            .dump()
                            .c_str());
  return 0;
}

std::unique_ptr<Tokenizer> tokenizer_of(const Args& args, const std::string& corpus) {
  const auto spec = args.get("tokenizer");
  if (!spec) throw UsageError("--tokenizer bpe:DIR|byte is required");
  if (*spec == "char")
    throw UsageError("--tokenizer char depends on a corpus: use bpe:DIR or byte here");
  return make_tokenizer(*spec, corpus);
}

int tokenizer_encode(const std::vector<std::string>& argv) {
  Args args(argv, {"tokenizer", "text", "data"}, {});
  const auto text = args.get("text"), data = args.get("data");
  if (bool(text) == bool(data)) throw UsageError("tokenizer encode needs --text S or --data FILE");
  const std::string input = text ? *text : read_text_file(*data);
  const auto tok = tokenizer_of(args, "");
  std::string line;
  for (int32_t id : tok->encode(input)) {
    if (!line.empty()) line += ' ';
    line += std::to_string(id);
  }
  std::printf("%s\n", line.c_str());
  return 0;
}

int tokenizer_decode(const std::vector<std::string>& argv) {
  Args args(argv, {"tokenizer", "ids"}, {});
  const auto ids_text = args.get("ids");
  if (!ids_text) throw UsageError("tokenizer decode needs --ids \"ID ID ...\"");
  std::vector<int32_t> ids;
  std::istringstream in(*ids_text);
  std::string w;
  while (in >> w) {
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(w, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != w.size() || v < INT32_MIN || v > INT32_MAX)
      throw UsageError("--ids: '" + w + "' is not a token id");
    ids.push_back(int32_t(v));
  }
  const auto tok = tokenizer_of(args, "");
  const std::string s = tok->decode(ids);
  std::fwrite(s.data(), 1, s.size(), stdout);
  return 0;
}

}  // namespace

int tokenizer_command(const std::vector<std::string>& argv) {
  if (argv.empty()) throw UsageError("tokenizer train | encode | decode (see blocklab-cli --help)");
  const std::vector<std::string> rest(argv.begin() + 1, argv.end());
  if (argv[0] == "train") return tokenizer_train(rest);
  if (argv[0] == "encode") return tokenizer_encode(rest);
  if (argv[0] == "decode") return tokenizer_decode(rest);
  throw UsageError("unknown tokenizer command '" + argv[0] + "' (train, encode, decode)");
}

}  // namespace bl::cli
