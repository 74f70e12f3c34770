// Generates text from a saved checkpoint (KV-cached incremental decoding):
// sampling, beam search, best-of-N and greedy speculative decoding with a
// draft run, with a repetition penalty and stop strings.
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "args.h"
#include "commands.h"
#include "core/model.h"
#include "data/tokenizer.h"
#include "generate/beam_search.h"
#include "generate/best_of.h"
#include "generate/sampler.h"
#include "generate/speculative.h"
#include "generate/stop_strings.h"
#include "lora/finetune.h"
#include "setup.h"
#include "train/checkpoint.h"

namespace bl::cli {

namespace {

void write_out(const std::string& s) {
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fflush(stdout);
}

// Text of a finished continuation, cut at the first stop string.
std::string until_stop(const Tokenizer& tok, const std::vector<int32_t>& ids,
                       const std::vector<std::string>& stops) {
  StopStrings s(stops);
  std::string out = s.push(tok.decode(ids));
  return s.stopped() ? out : out + s.flush();
}

}  // namespace

int sample_command(const std::vector<std::string>& argv) {
  Args args(argv,
            {"run", "prompt", "tokens", "temperature", "top-k", "top-p", "seed",
             "repetition-penalty", "stop", "beams", "best-of", "draft", "draft-tokens"},
            {});
  if (!args.positional().empty())
    throw UsageError("unexpected argument '" + args.positional()[0] + "'");
  auto dir = args.get("run");
  if (!dir)
    throw UsageError("--run DIR (a checkpoint directory written by train --out) is required");
  const int modes = int(args.get("beams").has_value()) + int(args.get("best-of").has_value()) +
                    int(args.get("draft").has_value());
  if (modes > 1) throw UsageError("--beams, --best-of and --draft exclude each other");

  SamplingOptions opt;
  opt.max_new_tokens = args.get_int("tokens", 1).value_or(200);
  opt.temperature = float(args.get_double("temperature").value_or(0.8));
  opt.top_k = args.get_int("top-k", 0).value_or(0);
  opt.top_p = float(args.get_double("top-p").value_or(1.0));
  opt.repetition_penalty = float(args.get_double("repetition-penalty").value_or(1.0));
  if (opt.temperature < 0) throw UsageError("--temperature must be >= 0");
  if (opt.top_p <= 0 || opt.top_p > 1) throw UsageError("--top-p must be in (0, 1]");
  if (!(opt.repetition_penalty > 0) || !std::isfinite(opt.repetition_penalty))
    throw UsageError("--repetition-penalty must be a finite number > 0 (1 = off)");
  const std::vector<std::string> stops = args.all("stop");
  const int64_t beams = args.get_int("beams", 1).value_or(0);
  const int64_t best_of = args.get_int("best-of", 1).value_or(0);
  const int64_t draft_tokens = args.get_int("draft-tokens", 1).value_or(4);
  if (args.get("draft-tokens") && !args.get("draft"))
    throw UsageError("--draft-tokens needs --draft RUN_DIR");
  if (args.get("draft") && args.get("temperature") && opt.temperature != 0)
    throw UsageError("--draft decodes greedily: leave --temperature out or set it to 0");

  StoredModel target = load_stored_model(*dir);
  Rng rng(uint64_t(args.get_int("seed", 0).value_or(0)));
  std::string prompt = args.get("prompt").value_or("\n");
  std::vector<int32_t> ids = target.tok->encode(prompt);
  if (ids.empty()) throw UsageError("--prompt must not be empty");
  write_out(prompt);

  if (beams > 0) {
    BeamOptions b;
    b.beams = beams;
    b.max_new_tokens = opt.max_new_tokens;
    const auto hyps = beam_search(*target.model, ids, b);
    write_out(until_stop(*target.tok, hyps.front().tokens, stops) + "\n");
    std::fprintf(stderr, "beam search: %lld beams, best log-prob %.4f\n", (long long)beams,
                 hyps.front().log_prob);
    return 0;
  }
  if (best_of > 0) {
    const auto seqs = best_of_n(*target.model, ids, opt, best_of, rng);
    write_out(until_stop(*target.tok, seqs.front().tokens, stops) + "\n");
    std::fprintf(stderr, "best of %lld samples: log-prob %.4f (worst %.4f)\n", (long long)best_of,
                 seqs.front().log_prob, seqs.back().log_prob);
    return 0;
  }
  // Streamed: each token's text as it is drawn (a byte tokenizer emits raw
  // bytes; the terminal reassembles multi-byte characters), held back only
  // while it could be the start of a stop string.
  StopStrings stop(stops);
  auto on_token = [&](int32_t id) {
    write_out(stop.push(target.tok->decode(std::vector<int32_t>{id})));
    return !stop.stopped();
  };
  if (auto draft_dir = args.get("draft")) {
    StoredModel draft = load_stored_model(*draft_dir);
    if (draft.tok->to_json() != target.tok->to_json())
      throw UsageError("--draft " + *draft_dir + " uses another tokenizer than --run " + *dir +
                       ": speculative decoding needs the same vocabulary");
    const auto r = speculative_generate(*target.model, *draft.model, ids, opt.max_new_tokens,
                                        draft_tokens, on_token);
    write_out(stop.flush() + "\n");
    std::fprintf(stderr,
                 "speculative decoding: %lld target passes for %zu tokens, %lld of %lld drafted "
                 "tokens accepted (%.1f%%)\n",
                 (long long)r.rounds, r.tokens.size(), (long long)r.accepted, (long long)r.drafted,
                 100.0 * r.acceptance_rate());
    return 0;
  }
  generate(*target.model, ids, opt, rng, on_token);
  write_out(stop.flush() + "\n");
  return 0;
}

}  // namespace bl::cli
