// Fuzzes the JSONL readers of DPO pairs and GRPO prompts: any bytes are read
// or refused naming the file and line, never crash; packing accepted pairs
// stays within the batch.
#include <string_view>
#include <vector>

#include "data/preference_data.h"
#include "data/prompt_data.h"
#include "data/tokenizer.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  static const bl::ByteTokenizer tok;  // encodes any bytes: the parsing is what is fuzzed
  bl::fuzz::expect_clean_naming(
      [&] {
        const bl::PreferenceData d(text, "pairs.jsonl", tok, 0.25);
        std::vector<const bl::PreferencePair*> ps;
        for (const auto& p : d.train()) ps.push_back(&p);
        const int64_t n = int64_t(ps.size()), T = 8;
        std::vector<int32_t> x(size_t(2 * n * T)), y(x.size());
        bl::pack_preference_batch(ps.data(), n, T, x.data(), y.data());
      },
      "pairs.jsonl");
  bl::fuzz::expect_clean_naming([&] { bl::PromptSet(text, "prompts.jsonl", tok, 0.25); },
                                "prompts.jsonl");
  return 0;
}
