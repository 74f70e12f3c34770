// `blocklab-cli models` as a user drives it: the registry, presets and
// published shapes listed; exact counts; clear errors for unknown names.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>

#include "cli_support.h"
#include "core/components.h"
#include "core/presets.h"

namespace bl {
namespace {

using test::run_cli;

std::string last_line(const std::string& s) {
  size_t end = s.find_last_not_of('\n');
  size_t start = s.rfind('\n', end);
  return s.substr(start == std::string::npos ? 0 : start + 1, end - start);
}

TEST(CliModels, ListShowsEveryComponentPresetAndArchitecture) {
  auto r = run_cli("models list", false);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  for (const std::string& n : attention_registry().names())
    EXPECT_NE(r.out.find("  " + n + " "), std::string::npos) << n;
  for (const std::string& n : ffn_registry().names())
    EXPECT_NE(r.out.find("  " + n + " "), std::string::npos) << n;
  for (const std::string& n : preset_names()) EXPECT_NE(r.out.find(n), std::string::npos) << n;
  for (const std::string& n : architecture_names())
    EXPECT_NE(r.out.find(n), std::string::npos) << n;
  EXPECT_NE(r.out.find("window_size"), std::string::npos);  // each component's own fields

  auto j = nlohmann::json::parse(last_line(run_cli("models list --json", false).out));
  EXPECT_EQ(j["components"]["attention"].size(), attention_registry().names().size());
  EXPECT_EQ(j["presets"].size(), preset_names().size());
  EXPECT_EQ(j["architectures"].size(), architecture_names().size());
}

TEST(CliModels, CountIsExactAndDetailListsEveryLayer) {
  auto r = run_cli("models count llama2-7b", false);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("(6738415616)"), std::string::npos) << r.out;

  auto j = nlohmann::json::parse(
      last_line(run_cli("models count mixtral-8x7b --detail --json --seq-len 2048", false).out));
  EXPECT_EQ(j["params"].get<int64_t>(), 46'702'792'704);
  EXPECT_EQ(j["active_params"].get<int64_t>(), 12'879'925'248);
  EXPECT_EQ(j["seq_len"].get<int64_t>(), 2048);
  EXPECT_EQ(j["layers"].size(), 32u);
  ASSERT_EQ(j["layer_types"].size(), 1u);
  EXPECT_EQ(j["layer_types"][0]["ffn"], "moe");

  // A hybrid: Nemotron-H's pattern makes three layer types, counted separately.
  auto h =
      nlohmann::json::parse(last_line(run_cli("models count nemotron-h-8b --json", false).out));
  std::set<std::string> kinds;
  int64_t layers = 0;
  for (auto& t : h["layer_types"]) {
    kinds.insert(t["attention"].get<std::string>() + "/" + t["ffn"].get<std::string>());
    layers += t["layers"].get<int64_t>();
  }
  EXPECT_EQ(kinds, (std::set<std::string>{"mamba2/none", "none/relu2", "gqa/none"}));
  EXPECT_EQ(layers, 52);
}

TEST(CliModels, InfoShowsDescriptionAndConfig) {
  auto r = run_cli("models info deepseek-v3-tiny", false);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("DeepSeek V3"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"kv_lora_rank\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("MTP heads"), std::string::npos) << r.out;
}

TEST(CliModels, BadInputIsAClearError) {
  auto r = run_cli("models count gpt-huge");
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("unknown model 'gpt-huge'"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("llama2-7b"), std::string::npos) << r.out;
  EXPECT_EQ(run_cli("models").exit_code, 2);
  EXPECT_EQ(run_cli("models frob").exit_code, 2);
  EXPECT_EQ(run_cli("models count").exit_code, 2);
  auto f = run_cli("models count /nonexistent/x.json");
  EXPECT_EQ(f.exit_code, 1) << f.out;
  EXPECT_NE(f.out.find("/nonexistent/x.json"), std::string::npos) << f.out;
}

}  // namespace
}  // namespace bl
