// blocklab-cli inspect RUN|CKPT --lens --prompt TEXT: the logit lens of a
// stored model on a prompt (LanguageModel::lens_logits): at every layer and
// position, the token the model would predict next if the residual stream
// stopped there, with its probability and the probability of the prompt's
// actual next token. A table on stdout, all of it as CSV with --csv FILE.
#include <cmath>
#include <cstdio>
#include <fstream>

#include "args.h"
#include "commands.h"
#include "lora/finetune.h"
#include "setup.h"
#include "tensor/graph.h"
#include "train/checkpoint.h"

namespace bl::cli {

namespace {

// A token's text for a table cell: control characters escaped, at most 6 columns.
std::string cell_text(const std::string& piece) {
  std::string out;
  for (char c : piece) {
    if (c == ' ')
      out += "\u2423";  // ␣: a space must be visible in a cell
    else if (c == '\n')
      out += "\\n";
    else if (c == '\t')
      out += "\\t";
    else if (static_cast<unsigned char>(c) < 0x20)
      out += '?';
    else
      out += c;
  }
  return out;
}

// `s` cut to `w` code points, then padded with spaces to `w` columns.
std::string padded(const std::string& s, size_t w) {
  std::string out;
  size_t cols = 0;
  for (size_t i = 0; i < s.size() && cols < w; ++cols) {
    size_t n = 1;  // the UTF-8 sequence's length, from its lead byte
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0xF0)
      n = 4;
    else if (c >= 0xE0)
      n = 3;
    else if (c >= 0xC0)
      n = 2;
    out.append(s, i, n);
    i += n;
  }
  return out + std::string(w - cols, ' ');
}

std::string csv_field(const std::string& s) {
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

}  // namespace

int inspect_command(const std::vector<std::string>& argv) {
  Args args(argv, {"prompt", "csv", "db"}, {"lens"});
  if (args.positional().size() != 1)
    throw UsageError(
        "inspect takes one RUN|CKPT: blocklab-cli inspect RUN|CKPT --lens --prompt TEXT");
  if (!args.flag("lens"))
    throw UsageError(
        "inspect needs a view: --lens (the logit lens; attention maps are not built yet)");
  const auto prompt = args.get("prompt");
  if (!prompt || prompt->empty()) throw UsageError("--lens needs --prompt TEXT");
  const std::string dir = export_source_checkpoint(args, args.positional()[0], "inspect");
  StoredModel stored = load_stored_model(dir);
  std::unique_ptr<Tokenizer>& tok = stored.tok;
  std::unique_ptr<LanguageModel>& model = stored.model;
  std::vector<int32_t> ids = tok->encode(*prompt);
  const int64_t ctx = model->config().block.max_seq_len;
  if (int64_t(ids.size()) > ctx)
    throw UsageError("--prompt is " + std::to_string(ids.size()) +
                     " tokens, longer than the model's context of " + std::to_string(ctx));
  const int64_t T = int64_t(ids.size()), V = model->config().vocab_size;
  NoGradGuard no_grad;
  const std::vector<Tensor> lens = model->lens_logits(Tokens{ids.data(), Shape{1, T}});
  const int64_t L = int64_t(lens.size());
  struct Cell {
    int32_t top;
    double top_p, next_p;
  };
  std::vector<Cell> cells(size_t(L * T));
  for (int64_t l = 0; l < L; ++l)
    for (int64_t t = 0; t < T; ++t) {
      const float* z = lens[size_t(l)].data() + t * V;
      double m = z[0];
      int32_t arg = 0;
      for (int64_t v = 1; v < V; ++v)
        if (z[v] > m) m = z[v], arg = int32_t(v);
      double sum = 0;
      for (int64_t v = 0; v < V; ++v) sum += std::exp(double(z[v]) - m);
      const double next_p = t + 1 < T ? std::exp(double(z[ids[size_t(t + 1)]]) - m) / sum : NAN;
      cells[size_t(l * T + t)] = {arg, 1.0 / sum, next_p};
    }
  auto piece = [&](int32_t id) { return tok->decode(std::span<const int32_t>(&id, 1)); };
  std::printf(
      "logit lens of %s on %lld prompt tokens: the top next-token guess after the "
      "embeddings (L0) and after each of %lld blocks (L%lld = the model's output)\n",
      dir.c_str(), (long long)T, (long long)(L - 1), (long long)(L - 1));
  std::printf("%-6s", "input");
  for (int64_t t = 0; t < T; ++t)
    std::printf(" %s", padded(cell_text(piece(ids[size_t(t)])), 8).c_str());
  std::printf("\n");
  for (int64_t l = 0; l < L; ++l) {
    std::printf("L%-5lld", (long long)l);
    for (int64_t t = 0; t < T; ++t) {
      const Cell& c = cells[size_t(l * T + t)];
      std::printf(" %s%2.0f", padded(cell_text(piece(c.top)), 6).c_str(),
                  std::min(99.0, 100.0 * c.top_p));
    }
    std::printf("\n");
  }
  std::printf("(each cell: the top token and its probability in %%)\n");
  if (const auto csv = args.get("csv")) {
    std::ofstream f(*csv);
    if (!f) throw std::runtime_error("cannot write " + *csv);
    f << "layer,position,input,top,top_prob,next,next_prob\n";
    for (int64_t l = 0; l < L; ++l)
      for (int64_t t = 0; t < T; ++t) {
        const Cell& c = cells[size_t(l * T + t)];
        f << l << ',' << t + 1 << ',' << csv_field(piece(ids[size_t(t)])) << ','
          << csv_field(piece(c.top)) << ',' << c.top_p << ','
          << (t + 1 < T ? csv_field(piece(ids[size_t(t + 1)])) : std::string()) << ','
          << (t + 1 < T ? std::to_string(c.next_p) : std::string()) << '\n';
      }
    if (!f) throw std::runtime_error("cannot write " + *csv);
    std::printf("wrote %s (%lld rows)\n", csv->c_str(), (long long)(L * T));
  }
  return 0;
}

}  // namespace bl::cli
