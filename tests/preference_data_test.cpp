// Preference pairs: the JSONL reader names the line and field of every
// mistake, splits deterministically, and the packer scores exactly the
// completion tokens.
#include "data/preference_data.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "data/tokenizer.h"
#include "expect_error.h"

namespace bl {
namespace {

std::unique_ptr<Tokenizer> abc() {
  return make_tokenizer("char", "abcdefghijklmnopqrstuvwxyz ?!.\n");
}

std::string pair_line(const std::string& p, const std::string& c, const std::string& r) {
  return R"({"prompt": ")" + p + R"(", "chosen": ")" + c + R"(", "rejected": ")" + r + "\"}\n";
}

std::string read_error(const std::string& jsonl) {
  auto tok = abc();
  return test::error_of<std::invalid_argument>(
      [&] { PreferenceData(jsonl, "pairs.jsonl", *tok, 0.1); });
}

TEST(PreferenceData, ReadsTokenizesAndSplitsTheTail) {
  auto tok = abc();
  std::string jsonl;
  for (int i = 0; i < 10; ++i) jsonl += pair_line("q" + std::string(1, char('a' + i)), "yes", "no");
  jsonl += "\n   \n";  // blank lines are skipped
  PreferenceData d(jsonl, "pairs.jsonl", *tok, 0.25);
  ASSERT_EQ(d.train().size(), 7u);  // ceil(0.25 * 10) = 3 validate: the last three
  ASSERT_EQ(d.val().size(), 3u);
  EXPECT_EQ(d.train()[0].prompt, tok->encode("qa"));
  EXPECT_EQ(d.train()[0].chosen, tok->encode("yes"));
  EXPECT_EQ(d.train()[0].rejected, tok->encode("no"));
  EXPECT_EQ(d.val()[0].prompt, tok->encode("qh"));
  EXPECT_EQ(d.chosen_text().substr(0, 12), "qayes\nqbyes\n");
  // val_fraction 0 still keeps one pair to validate on.
  PreferenceData z(jsonl, "pairs.jsonl", *tok, 0.0);
  EXPECT_EQ(z.val().size(), 1u);
}

TEST(PreferenceData, NamesTheLineAndFieldOfEveryMistake) {
  const std::string ok = pair_line("a", "b", "c");
  EXPECT_PRED2(test::contains, read_error(ok + "{not json\n" + ok),
               "pairs.jsonl:2: not a JSON object");
  EXPECT_PRED2(test::contains, read_error(ok + "[1, 2]\n" + ok),
               "pairs.jsonl:2: not a JSON object");
  EXPECT_PRED2(test::contains, read_error(ok + ok + R"({"prompt": "a", "chosen": "b"})"),
               "pairs.jsonl:3: missing \"rejected\"");
  EXPECT_PRED2(test::contains,
               read_error(ok +
                          R"({"prompt": 5, "chosen": "b", "rejected": "c"})"
                          "\n" +
                          ok),
               "pairs.jsonl:2: \"prompt\" must be a string, got number");
  EXPECT_PRED2(test::contains, read_error(ok + pair_line("a", "", "c")),
               "pairs.jsonl:2: \"chosen\" is empty");
  EXPECT_PRED2(test::contains, read_error(ok + pair_line("a", "b", "XYZ")),
               "pairs.jsonl:2: \"rejected\" cannot be encoded with the char tokenizer");
  EXPECT_PRED2(test::contains, read_error(ok), "1 preference pair(s); DPO needs at least 2");
  EXPECT_PRED2(test::contains, read_error(""), "0 preference pair(s)");
}

TEST(PreferenceData, PacksPromptAndCompletionScoringOnlyTheCompletion) {
  auto tok = abc();
  const int32_t a = tok->encode("a")[0], b = tok->encode("b")[0], c = tok->encode("c")[0],
                d = tok->encode("d")[0], e = tok->encode("e")[0];
  PreferencePair p{{a, b}, {c, d}, {e}};
  const PreferencePair* batch[1] = {&p};
  const int64_t T = 5;
  std::vector<int32_t> x(2 * T), y(2 * T);
  pack_preference_batch(batch, 1, T, x.data(), y.data());
  // Chosen row: a b c d, padded; predicting c (after b) and d (after c).
  EXPECT_EQ(x[0], a);
  EXPECT_EQ(x[1], b);
  EXPECT_EQ(x[2], c);
  EXPECT_EQ(x[3], d);
  EXPECT_EQ(x[4], 0);
  EXPECT_EQ((std::vector<int32_t>(y.begin(), y.begin() + T)),
            (std::vector<int32_t>{-1, c, d, -1, -1}));
  // Rejected row: a b e.
  EXPECT_EQ((std::vector<int32_t>(x.begin() + T, x.begin() + T + 3)),
            (std::vector<int32_t>{a, b, e}));
  EXPECT_EQ((std::vector<int32_t>(y.begin() + T, y.end())),
            (std::vector<int32_t>{-1, e, -1, -1, -1}));
}

TEST(PreferenceData, TruncationKeepsThePromptsEndAndTheCompletionsStart) {
  auto tok = abc();
  PreferencePair p{tok->encode("abcdefgh"), tok->encode("ijklmnop"), tok->encode("z")};
  const PreferencePair* batch[1] = {&p};
  const int64_t T = 7;  // a window of 8 tokens: 4 of the prompt, 4 of the completion
  std::vector<int32_t> x(2 * T), y(2 * T);
  pack_preference_batch(batch, 1, T, x.data(), y.data());
  EXPECT_EQ(tok->decode(std::vector<int32_t>(x.begin(), x.begin() + T)), "efghijk");
  EXPECT_EQ((std::vector<int32_t>(y.begin(), y.begin() + 3)), (std::vector<int32_t>{-1, -1, -1}));
  EXPECT_EQ(tok->decode(std::vector<int32_t>(y.begin() + 3, y.begin() + T)), "ijkl");
  // The short rejected row keeps the whole prompt that fits: 7 of 8 tokens + "z".
  EXPECT_EQ(tok->decode(std::vector<int32_t>(x.begin() + T, x.end())), "bcdefgh");
  EXPECT_EQ(y[2 * T - 1], tok->encode("z")[0]);
}

}  // namespace
}  // namespace bl
