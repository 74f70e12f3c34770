// blocklab-cli as a user drives it: bad input gives a clear message and a
// non-zero exit (never a crash); --json ends with one parseable summary line.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli_support.h"

namespace bl {
namespace {

using test::run_cli;

std::string temp_file(const std::string& name, const std::string& content) {
  auto path = std::filesystem::temp_directory_path() / ("blocklab_cli_test_" + name);
  std::ofstream(path, std::ios::binary) << content;
  return path.string();
}

TEST(Cli, UnknownPresetListsKnownOnes) {
  auto r = run_cli("train --preset gpt-huge");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("gpt-huge"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("gpt-tiny"), std::string::npos) << r.out;
}

TEST(Cli, UsageErrorsExitWithTwo) {
  EXPECT_EQ(run_cli("").exit_code, 2);
  EXPECT_EQ(run_cli("frobnicate").exit_code, 2);
  auto r = run_cli("train --steps abc");
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("--steps"), std::string::npos) << r.out;
  r = run_cli("train --stpes 3");
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("unknown option --stpes"), std::string::npos) << r.out;
}

TEST(Cli, MissingAndCorruptFilesAreNamed) {
  auto r = run_cli("train --config /nonexistent/model.json");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("/nonexistent/model.json"), std::string::npos) << r.out;

  std::string bad_json = temp_file("bad.json", "{\"model\": {\"block\": {\"d_model\": 64,,}}}");
  r = run_cli("train --config " + bad_json);
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find(bad_json), std::string::npos) << r.out;

  std::string bad_utf8 = temp_file("bad.txt", std::string("hello \xff\xfe world"));
  r = run_cli("train --data " + bad_utf8);
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("UTF-8"), std::string::npos) << r.out;

  r = run_cli("train --data /nonexistent/corpus.txt");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("/nonexistent/corpus.txt"), std::string::npos) << r.out;
}

TEST(Cli, InvalidConfigNamesFieldAndRule) {
  std::string cfg = temp_file(
      "heads.json", R"({"model": {"block": {"d_model": 30, "n_heads": 4}, "n_layers": 1}})");
  auto r = run_cli("train --config " + cfg);
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("d_model"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("n_heads"), std::string::npos) << r.out;
}

TEST(Cli, TooShortCorpusIsAClearError) {
  std::string tiny = temp_file("short.txt", "to be or not to be");
  auto r = run_cli("train --data " + tiny);
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("seq_len"), std::string::npos) << r.out;
}

TEST(Cli, JsonSummaryIsTheLastLine) {
  auto r =
      run_cli("train --preset gpt-tiny --steps 3 --warmup 1 --batch-size 4 --json --quiet", false);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  auto j = nlohmann::json::parse(r.last_line());
  for (const char* key : {"steps", "final_train_loss", "val_loss", "tokens_per_sec", "params"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_EQ(j["steps"], 3);
  EXPECT_EQ(j["params"], 818048);
  EXPECT_GT(j["val_loss"].get<double>(), 0.0);
}

// bench times exactly --steps steps after --warmup-steps, for any step count
// (a repeated --steps used to keep the user's value as the total, so
// --steps 5 timed nothing and crashed).
TEST(Cli, BenchTimesTheRequestedSteps) {
  for (int steps : {1, 3}) {
    auto r =
        run_cli("bench --preset gpt-tiny --batch-size 2 --threads 1 --warmup-steps 2 --steps " +
                    std::to_string(steps),
                false);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    auto j = nlohmann::json::parse(r.last_line());
    EXPECT_EQ(j["steps"], steps);
    EXPECT_EQ(j["timed_steps"], steps);
    EXPECT_GT(j["tokens_per_sec"].get<double>(), 0.0);
    EXPECT_GT(j["peak_rss_mb"].get<double>(), 0.0);
  }
}

TEST(Cli, UserDataWithOwnVocabulary) {
  std::string text;
  for (int i = 0; i < 400; ++i) text += "αβγ δέζ ηθι κλμ νξο πρσ ";
  std::string data = temp_file("greek.txt", text);
  auto r = run_cli(
      "train --data " + data + " --steps 2 --warmup 1 --batch-size 2 --seq-len 32 --json --quiet",
      false);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  auto j = nlohmann::json::parse(r.last_line());
  EXPECT_EQ(j["steps"], 2);
}

}  // namespace
}  // namespace bl
