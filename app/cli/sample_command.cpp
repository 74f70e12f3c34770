// Generates text from a saved checkpoint (KV-cached incremental decoding).
#include <cstdio>

#include "args.h"
#include "commands.h"
#include "core/model.h"
#include "data/tokenizer.h"
#include "generate/sampler.h"
#include "lora/finetune.h"
#include "train/checkpoint.h"

namespace bl::cli {

int sample_command(const std::vector<std::string>& argv) {
  Args args(argv, {"run", "prompt", "tokens", "temperature", "top-k", "top-p", "seed"}, {});
  if (!args.positional().empty())
    throw UsageError("unexpected argument '" + args.positional()[0] + "'");
  auto dir = args.get("run");
  if (!dir)
    throw UsageError("--run DIR (a checkpoint directory written by train --out) is required");
  CheckpointInfo info = read_checkpoint_info(*dir);
  std::unique_ptr<Tokenizer> tok;
  std::unique_ptr<LanguageModel> model;
  if (!info.finetune.is_null()) {
    // A LoRA run's checkpoint holds only the adapter: rebuild base + adapter.
    Finetune ft = load_finetune_checkpoint(*dir);
    tok = std::move(ft.tokenizer);
    model = std::move(ft.model);
  } else {
    tok = tokenizer_from_json(info.tokenizer);
    model = std::make_unique<LanguageModel>(info.model);
    load_model_weights(*dir, *model);
  }

  SamplingOptions opt;
  opt.max_new_tokens = args.get_int("tokens", 1).value_or(200);
  opt.temperature = float(args.get_double("temperature").value_or(0.8));
  opt.top_k = args.get_int("top-k", 0).value_or(0);
  opt.top_p = float(args.get_double("top-p").value_or(1.0));
  if (opt.temperature < 0) throw UsageError("--temperature must be >= 0");
  if (opt.top_p <= 0 || opt.top_p > 1) throw UsageError("--top-p must be in (0, 1]");
  Rng rng(uint64_t(args.get_int("seed", 0).value_or(0)));
  std::string prompt = args.get("prompt").value_or("\n");
  std::vector<int32_t> ids = tok->encode(prompt);
  if (ids.empty()) throw UsageError("--prompt must not be empty");
  std::fputs(prompt.c_str(), stdout);
  // Stream each token as it is drawn (a byte tokenizer emits raw bytes; the
  // terminal reassembles multi-byte characters).
  generate(*model, ids, opt, rng, [&](int32_t id) {
    std::string piece = tok->decode(std::vector<int32_t>{id});
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    return true;
  });
  std::fputs("\n", stdout);
  return 0;
}

}  // namespace bl::cli
