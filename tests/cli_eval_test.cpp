// blocklab-cli tokenizer / eval end to end with real processes: a BPE
// vocabulary trained and used by train (--tokenizer bpe:DIR), resume, sample
// and eval; eval's bits per byte against loss / ln 2 / bytes per token, its
// rows in the store; FLOPs / MFU in the run's summary.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli_support.h"
#include "expect_error.h"
#include "temp_files.h"
#include "test_paths.h"  // BLOCKLAB_SOURCE_DIR, BLOCKLAB_CLI_PATH

namespace bl {
namespace {

namespace fs = std::filesystem;
using test::contains;
using test::run_cli;
using test::TempDir;
using test::write_bytes;

const std::string kCorpus =
    std::string(BLOCKLAB_SOURCE_DIR) + "/resources/data/tinyshakespeare.txt";

// d_model 32, 2 layers, batch 4, seq 32.
constexpr const char* kTinyConfig = R"({
  "model": {"name": "tiny", "n_layers": 2,
            "block": {"d_model": 32, "n_heads": 2, "d_ff": 64, "max_seq_len": 32, "position": "learned"}},
  "train": {"learning_rate": 0.003, "warmup_steps": 2, "max_steps": 30, "batch_size": 4, "seq_len": 32,
            "eval_interval": 10, "eval_batches": 2, "checkpoint_interval": 10, "seed": 7, "threads": 1}
})";

nlohmann::json last_json(const test::CliResult& r) {
  return nlohmann::json::parse(r.last_line());
}

TEST(CliTokenizer, TrainEncodeDecode) {
  TempDir dir;
  const std::string out = dir / "bpe";
  auto r =
      run_cli("tokenizer train --data " + kCorpus + " --vocab-size 400 --out " + out + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const auto j = last_json(r);
  EXPECT_EQ(j["vocab_size"], 400);
  EXPECT_EQ(j["merges"], 144);
  EXPECT_TRUE(fs::exists(fs::path(out) / "tokenizer.json"));
  EXPECT_GT(double(j["corpus_bytes"]) / double(j["corpus_tokens"]), 1.5);
  r = run_cli("tokenizer encode --tokenizer bpe:" + out + " --text 'To be, or not to be'");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const std::string ids = r.last_line();
  EXPECT_LT(std::count(ids.begin(), ids.end(), ' ') + 1, 19);  // fewer tokens than bytes
  r = run_cli("tokenizer decode --tokenizer bpe:" + out + " --ids '" + ids + "'");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(r.out, "To be, or not to be");
  // Errors name what is wrong.
  r = run_cli("tokenizer train --data " + kCorpus + " --vocab-size 100 --out " + out);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.out, "--vocab-size must be >= 256")) << r.out;
  fs::create_directories(dir / "bad");
  write_bytes(dir / "bad/tokenizer.json", R"({"model": {"type": "Unigram"}})");
  r = run_cli("tokenizer encode --tokenizer bpe:" + (dir / "bad") + " --text x");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.out, "model.type")) << r.out;
  EXPECT_TRUE(contains(r.out, dir / "bad/tokenizer.json")) << r.out;
}

TEST(CliEval, BpeRunTrainsResumesSamplesAndEvaluates) {
  TempDir dir;
  const std::string bpe = dir / "bpe", db = dir / "db/experiments.db", cfg = dir / "tiny.json";
  write_bytes(cfg, kTinyConfig);
  auto r = run_cli("tokenizer train --data " + kCorpus + " --vocab-size 512 --out " + bpe);
  ASSERT_EQ(r.exit_code, 0) << r.out;

  r = run_cli("train --config " + cfg + " --tokenizer bpe:" + bpe + " --steps 20 --db " + db +
              " --json --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const auto t = last_json(r);
  const int64_t id = t["run_id"];
  // FLOPs: per token x tokens trained (20 steps x 4 x 32); MFU a fraction of the peak.
  const double fpt = t["flops_per_token"];
  EXPECT_GT(fpt, 0);
  EXPECT_DOUBLE_EQ(double(t["total_flops"]), fpt * 20 * 4 * 32);
  EXPECT_GT(double(t["mfu"]), 0.0);
  EXPECT_LT(double(t["mfu"]), 1.5);
  EXPECT_TRUE(contains(r.out, "MFU")) << r.out;

  // The run record rebuilds the tokenizer: a resume continues without the directory.
  fs::rename(bpe, dir / "moved");
  r = run_cli("train --resume " + std::to_string(id) + " --steps 30 --db " + db +
              " --json --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const auto resumed = last_json(r);
  const int64_t id2 = resumed["run_id"];
  const std::string ckpt = resumed["checkpoint"];
  r = run_cli("sample --run " + ckpt + " --tokens 20 --seed 1");
  EXPECT_EQ(r.exit_code, 0) << r.out;

  r = run_cli("eval --run " + std::to_string(id2) + " --db " + db + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const auto e = last_json(r);
  const double loss = e["loss"], bpt = e["bytes_per_token"], bpb = e["bits_per_byte"];
  EXPECT_EQ(e["split"], "val");
  EXPECT_EQ(e["step"], 30);
  EXPECT_GT(int64_t(e["tokens"]), 20000);  // the whole validation split (~110 KB)
  EXPECT_NEAR(bpb, loss / std::log(2.0) / bpt, 1e-9 * bpb);
  EXPECT_GT(bpt, 1.5);  // 512 tokens: ~2 bytes per token
  EXPECT_LT(bpt, 4.0);
  EXPECT_GT(loss, 0.5);
  EXPECT_LT(loss, std::log(512.0) + 0.5);  // below (about) chance after 30 steps
  EXPECT_NEAR(double(e["perplexity"]), std::exp(loss), 1e-9 * std::exp(loss));
  EXPECT_GT(bpb, 1.0);
  EXPECT_LT(bpb, 8.0);

  r = run_cli("runs show " + std::to_string(id2) + " --db " + db);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_TRUE(contains(r.out, "val/bits_per_byte")) << r.out;
  EXPECT_TRUE(contains(r.out, "bpe (vocab 512")) << r.out;
  EXPECT_TRUE(contains(r.out, "total_flops")) << r.out;
  EXPECT_TRUE(contains(r.out, "mfu")) << r.out;
  r = run_cli("runs show " + std::to_string(id2) + " --db " + db + " --json");
  const auto show = nlohmann::json::parse(r.out);
  int found = 0;
  for (const auto& ev : show["evals"])
    if (ev["name"] == "val/bits_per_byte") {
      EXPECT_EQ(ev["step"], 30);
      EXPECT_NEAR(double(ev["value"]), bpb, 1e-12);
      ++found;
    }
  EXPECT_EQ(found, 1);

  // Another file, scored as a whole from the checkpoint directory (not recorded).
  write_bytes(dir / "other.txt", "To be, or not to be, that is the question.\n");
  r = run_cli("eval --run " + ckpt + " --data " + (dir / "other.txt") + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const auto o = last_json(r);
  // Every token but the first is scored: the bytes are the text's but the first token's.
  EXPECT_LT(int64_t(o["bytes"]), 43);
  EXPECT_GT(int64_t(o["bytes"]), 35);
  EXPECT_EQ(o["windows"], 1);
  EXPECT_NEAR(double(o["bits_per_byte"]),
              double(o["loss"]) / std::log(2.0) / double(o["bytes_per_token"]), 1e-9);
  // A directory without --data cannot know its split.
  r = run_cli("eval --run " + ckpt);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(contains(r.out, "--data")) << r.out;
  // A missing tokenizer directory is named.
  r = run_cli("train --config " + cfg + " --tokenizer bpe:" + (dir / "nowhere") + " --db " + db);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.out, dir / "nowhere")) << r.out;
}

}  // namespace
}  // namespace bl
