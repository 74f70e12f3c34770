// Token files (`data prepare`): streamed encoding equals whole-text encoding
// for every tokenizer, a run trains on the mapped ids exactly as on the text,
// and damaged files are refused naming the problem, never read out of bounds.
#include "data/token_file.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "data/bpe_trainer.h"
#include "data/text_dataset.h"
#include "data/tokenizer.h"
#include "expect_error.h"
#include "io/sha256.h"
#include "run/launcher.h"
#include "run_support.h"
#include "temp_files.h"
#include "test_paths.h"

namespace bl {
namespace {

using test::shakespeare;

std::vector<int32_t> ids_of(const std::string& token_file, int64_t vocab) {
  const TextDataset d = TextDataset::from_token_file(token_file, vocab, 0.0);
  return {d.tokens().begin(), d.tokens().end()};
}

std::string error_of(const std::function<void()>& f) {
  return test::error_of<std::exception>(f);
}

// Pieces of ~4 KB (dozens of cuts, some inside runs of blank lines) give the
// same ids as one encode of the whole text: char, byte and a trained BPE.
TEST(TokenFile, StreamedEncodingEqualsWholeTextEncoding) {
  test::TempDir dir;
  const std::string text = shakespeare().substr(0, 200000) + "\n\n\n  indented\n\ttab\nend";
  const std::string src = dir / "corpus.txt";
  test::write_bytes(src, text);
  const BpeTokenizer bpe = train_bpe(text.substr(0, 50000), 400);
  const std::unique_ptr<Tokenizer> chr = char_tokenizer_of_file(src);
  EXPECT_EQ(chr->to_json(), CharTokenizer::from_text(text).to_json());
  const ByteTokenizer byte;
  const std::vector<const Tokenizer*> toks = {chr.get(), &byte, &bpe};
  for (const Tokenizer* tok : toks) {
    const std::string out = dir / (tok->name() + ".tokens");
    int calls = 0;
    const TokenFileHeader h =
        prepare_token_file(src, *tok, out, 4096, [&](int64_t, int64_t) { ++calls; });
    EXPECT_GT(calls, 20) << tok->name();
    const std::vector<int32_t> want = tok->encode(text);
    EXPECT_EQ(h.n_tokens, int64_t(want.size())) << tok->name();
    EXPECT_EQ(h.source_size, int64_t(text.size()));
    EXPECT_EQ(h.source_sha256, sha256_file(src));
    EXPECT_TRUE(is_token_file(out));
    const TokenFileHeader back = read_token_file_header(out);
    EXPECT_EQ(back.tokenizer, tok->to_json());
    EXPECT_EQ(back.n_tokens, h.n_tokens);
    EXPECT_EQ(ids_of(out, tok->vocab_size()), want) << tok->name();
  }
  EXPECT_FALSE(is_token_file(src));
  EXPECT_FALSE(is_token_file(dir / "missing"));
  EXPECT_FALSE(is_token_file(dir.path()));
}

TEST(TokenFile, TheSplitIsTheTextDatasets) {
  test::TempDir dir;
  const std::string src = dir / "corpus.txt";
  test::write_bytes(src, shakespeare().substr(0, 30000));
  auto tok = char_tokenizer_of_file(src);
  prepare_token_file(src, *tok, dir / "c.tokens");
  const TextDataset text(shakespeare().substr(0, 30000), *tok, 0.1);
  const TextDataset mapped = TextDataset::from_token_file(dir / "c.tokens", tok->vocab_size(), 0.1);
  EXPECT_TRUE(mapped.mapped());
  EXPECT_EQ(mapped.train_size(), text.train_size());
  EXPECT_TRUE(
      std::equal(mapped.val().begin(), mapped.val().end(), text.val().begin(), text.val().end()));
}

// The launcher trains on a token file as on its text: the same losses, bit
// for bit, and the run records the token file as its dataset.
TEST(TokenFile, ARunTrainsOnTheMappedIdsAsOnTheText) {
  test::TempDir dir;
  const std::string src = dir / "corpus.txt";
  test::write_bytes(src, shakespeare().substr(0, 100000));
  prepare_token_file(src, *char_tokenizer_of_file(src), dir / "c.tokens");
  auto spec = [&](const std::string& data) {
    RunSpec s;
    s.preset_name = "gpt-tiny";
    s.set = {"model.n_layers=1", "model.block.d_model=32", "model.block.d_ff=64"};
    s.train.max_steps = 4;
    s.train.warmup_steps = 0;
    s.train.batch_size = 2;
    s.train.seq_len = 32;
    s.train.threads = 1;
    s.train.eval_interval = 2;
    s.data_path = data;
    s.db_path = dir / "experiments.db";
    return s;
  };
  struct Losses : Callback {
    std::vector<double> v;
    void on_step_end(Trainer&, const StepMetrics& m) override {
      v.push_back(m.loss);
      if (m.eval_loss) v.push_back(*m.eval_loss);
    }
  };
  Losses a, b;
  auto ra = launch_run(spec(src));
  ra->add_callback(a);
  ra->train();
  auto rb = launch_run(spec(dir / "c.tokens"));
  EXPECT_TRUE(rb->data().mapped());
  EXPECT_EQ(rb->tokenizer().to_json(), ra->tokenizer().to_json());
  rb->add_callback(b);
  rb->train();
  ASSERT_EQ(a.v.size(), 6u);
  EXPECT_EQ(a.v, b.v);
  const RunRecord r = *rb->store().get_run(rb->run_id());
  EXPECT_EQ(r.dataset_path,
            std::filesystem::absolute(dir / "c.tokens").lexically_normal().string());

  // A tokenizer named for the run must be the file's kind.
  RunSpec bad = spec(dir / "c.tokens");
  bad.tokenizer = "byte";
  EXPECT_PRED2(test::contains, error_of([&] { launch_run(bad); }),
               "is a token file prepared with the char tokenizer");
  bad.tokenizer = "char";  // the same kind: accepted (what MPI ranks pass)
  EXPECT_NO_THROW(launch_run(bad));
}

TEST(TokenFile, DamagedFilesAreRefusedNamingTheProblem) {
  test::TempDir dir;
  const std::string src = dir / "corpus.txt";
  test::write_bytes(src, shakespeare().substr(0, 5000));
  auto tok = char_tokenizer_of_file(src);
  const std::string good = dir / "good.tokens";
  prepare_token_file(src, *tok, good);
  const std::string bytes = test::read_bytes(good);
  const std::string f = dir / "bad.tokens";
  auto refused = [&](const std::string& content, int64_t vocab = 0) {
    test::write_bytes(f, content);
    return error_of([&] { MappedTokens m(f, vocab ? vocab : tok->vocab_size()); });
  };
  EXPECT_PRED2(test::contains, refused(bytes.substr(0, bytes.size() - 3)),
               "not the 5000 tokens its header promises: truncated or damaged");
  EXPECT_PRED2(test::contains, refused(bytes + "xxxx"), "truncated or damaged");
  EXPECT_PRED2(test::contains, refused(bytes.substr(0, 12)), "truncated header");
  EXPECT_PRED2(test::contains, refused("BLTOKEN1" + std::string(8, '\xff') + "{}"), "header size");
  std::string garbled = bytes;
  garbled[16] = '[';
  EXPECT_PRED2(test::contains, refused(garbled), "header is not a JSON object");
  std::string high = bytes;
  const int64_t off = read_token_file_header(good).data_offset;
  high[size_t(off + 4 * 7 + 3)] = '\x7f';  // id 7 becomes huge
  EXPECT_PRED2(test::contains, refused(high), "at index 7 is outside the vocabulary of");
  EXPECT_PRED2(test::contains, refused(bytes, 3), "is outside the vocabulary of 3");
  EXPECT_PRED2(test::contains, refused("plain text\n"), "not a token file");

  // A source that is not UTF-8: the offset is named and no file is left behind.
  std::string text = shakespeare().substr(0, 9000);
  text[8500] = '\xff';
  test::write_bytes(src, text);
  EXPECT_PRED2(test::contains,
               error_of([&] { prepare_token_file(src, ByteTokenizer(), dir / "x.tokens", 1024); }),
               "is not valid UTF-8 (byte offset 8500)");
  EXPECT_FALSE(std::filesystem::exists(dir / "x.tokens"));
  EXPECT_FALSE(std::filesystem::exists(dir / "x.tokens.partial"));
}

}  // namespace
}  // namespace bl
