#include "export/llama_gguf_export.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <set>
#include <vector>

#include "data/bpe_tokenizer.h"
#include "data/byte_level.h"
#include "export/llama_gguf_names.h"

namespace bl {

namespace {
// llama.cpp's llama_token_type (llama-vocab.h).
constexpr int32_t kNormal = 1, kControl = 3, kUserDefined = 4;

std::string utf8_of(char32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += char(cp);
  } else if (cp < 0x800) {
    s += char(0xC0 | (cp >> 6));
    s += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += char(0xE0 | (cp >> 12));
    s += char(0x80 | ((cp >> 6) & 0x3F));
    s += char(0x80 | (cp & 0x3F));
  } else {
    s += char(0xF0 | (cp >> 18));
    s += char(0x80 | ((cp >> 12) & 0x3F));
    s += char(0x80 | ((cp >> 6) & 0x3F));
    s += char(0x80 | (cp & 0x3F));
  }
  return s;
}

// The byte-level (GPT-2 mapped) spelling of each code point of `bytes`.
std::vector<std::string> mapped_chars(const std::string& bytes) {
  std::vector<std::string> out;
  for (unsigned char b : bytes) out.push_back(utf8_of(byte_level::to_unicode(b)));
  return out;
}
}  // namespace

int64_t add_llama_tokenizer_keys(GgufWriter& w, const Tokenizer& tok) {
  std::vector<std::string> tokens, merges;
  std::vector<int32_t> types;
  std::vector<float> scores;
  std::optional<int32_t> eos;
  if (const auto* bpe = dynamic_cast<const BpeTokenizer*>(&tok)) {
    std::map<int32_t, const BpeTokenizer::AddedToken*> added;
    for (const auto& a : bpe->added_tokens()) added[a.id] = &a;
    for (int32_t id = 0; id < int32_t(bpe->vocab_size()); ++id) {
      auto it = added.find(id);
      if (it != added.end()) {
        // Added tokens are matched as raw text, as in tokenizer.json.
        tokens.push_back(it->second->content);
        types.push_back(it->second->special ? kControl : kUserDefined);
        if (it->second->special && !eos) eos = id;
      } else {
        tokens.push_back(byte_level::encode(bpe->piece(id)));
        types.push_back(kNormal);
      }
    }
    // Without a special token: the NUL byte's token (every byte is one), which
    // text does not contain, as for the byte tokenizer.
    if (!eos)
      for (int32_t id = 0; id < int32_t(bpe->vocab_size()) && !eos; ++id)
        if (!added.count(id) && bpe->piece(id) == std::string(1, '\0')) eos = id;
    if (!eos) throw GgufExportError("the BPE vocabulary has no token for the NUL byte");
    for (auto [l, r] : bpe->merges())
      merges.push_back(byte_level::encode(bpe->piece(l)) + " " + byte_level::encode(bpe->piece(r)));
  } else if (const auto* ch = dynamic_cast<const CharTokenizer*>(&tok)) {
    // Each character is the token of its UTF-8 bytes; llama.cpp's BPE starts
    // from single bytes, so a multi-byte character is built by merges of its
    // bytes (left to right). These merges never join bytes of two characters:
    // they always pair a lead byte (or a lead prefix) with a continuation byte.
    std::set<std::string> seen;
    for (char32_t cp : ch->code_points()) {
      const std::vector<std::string> parts = mapped_chars(utf8_of(cp));
      std::string left = parts[0];
      for (size_t i = 1; i < parts.size(); ++i) {
        const std::string m = left + " " + parts[i];
        if (seen.insert(m).second) merges.push_back(m);  // shared prefixes: once
        left += parts[i];
      }
      tokens.push_back(left);
      types.push_back(kNormal);
    }
    // Every character is text, so none can be the end-of-text token: one
    // extra control token is (its embedding and output rows are zero), and
    // `llama-cli --ignore-eos` bans only it, leaving the model's choices as
    // they are. (With EOS = a character, llama.cpp stopped at or banned it.)
    tokens.push_back("<|endoftext|>");
    types.push_back(kControl);
    eos = int32_t(tokens.size() - 1);
  } else if (dynamic_cast<const ByteTokenizer*>(&tok)) {
    for (int b = 0; b < 256; ++b) {
      tokens.push_back(byte_level::encode(std::string(1, char(b))));
      types.push_back(kNormal);
    }
    eos = 0;  // the NUL byte, which text does not contain
  } else {
    throw GgufExportError("tokenizer '" + tok.name() + "' has no llama.cpp equivalent");
  }
  scores.assign(tokens.size(), 0.0f);
  w.add_string("tokenizer.ggml.model", "gpt2");
  w.add_string("tokenizer.ggml.pre", "gpt-2");
  w.add_strings("tokenizer.ggml.tokens", tokens);
  w.add_i32s("tokenizer.ggml.token_type", types);
  w.add_f32s("tokenizer.ggml.scores", scores);
  w.add_strings("tokenizer.ggml.merges", merges);
  w.add_u32("tokenizer.ggml.bos_token_id", uint32_t(*eos));
  w.add_u32("tokenizer.ggml.eos_token_id", uint32_t(*eos));
  // Blocklab trains without BOS/EOS: llama.cpp must not add them to prompts.
  w.add_bool("tokenizer.ggml.add_bos_token", false);
  w.add_bool("tokenizer.ggml.add_eos_token", false);
  return int64_t(tokens.size());
}

GgufExportSummary export_llama_gguf(const std::string& path, LanguageModel& model,
                                    const Tokenizer& tok, const GgufExportOptions& opt) {
  const ModelConfig& c = model.config();
  const std::string why = llama_cpp_incompatibility(c);
  if (!why.empty()) throw GgufExportError("llama.cpp cannot run this model: " + why);
  if (tok.vocab_size() != c.vocab_size)
    throw GgufExportError("the tokenizer has " + std::to_string(tok.vocab_size()) +
                          " tokens but the model's vocab_size is " + std::to_string(c.vocab_size));
  std::map<std::string, Parameter*> params;
  for (auto& [name, p] : model.named_parameters()) {
    if (name.find("lora_") != std::string::npos)
      throw GgufExportError("the model carries a LoRA adapter ('" + name +
                            "'): merge it first (lora merge)");
    params[name] = p;
  }
  const BlockConfig& b = c.block;
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.add_string("general.name", !opt.name.empty() ? opt.name : c.name.empty() ? "blocklab" : c.name);
  w.add_u32("general.file_type", uint32_t(opt.dtype == GgmlType::kF16 ? LlamaFileType::kMostlyF16
                                                                      : LlamaFileType::kAllF32));
  w.add_u32("llama.context_length", uint32_t(b.max_seq_len));
  w.add_u32("llama.embedding_length", uint32_t(b.d_model));
  w.add_u32("llama.block_count", uint32_t(c.n_layers));
  w.add_u32("llama.feed_forward_length", uint32_t(b.d_ff));
  w.add_u32("llama.attention.head_count", uint32_t(b.n_heads));
  w.add_u32("llama.attention.head_count_kv", uint32_t(b.effective_n_kv_heads()));
  w.add_u32("llama.rope.dimension_count", uint32_t(b.head_dim()));
  w.add_f32("llama.rope.freq_base", float(b.rope_theta));
  w.add_f32("llama.attention.layer_norm_rms_epsilon", float(b.norm_eps));
  // The GGUF vocabulary may have extra tokens past the model's (a char
  // tokenizer's end-of-text): their embedding and output rows are zero.
  const int64_t n_vocab = add_llama_tokenizer_keys(w, tok);
  w.add_u32("llama.vocab_size", uint32_t(n_vocab));

  // llama.cpp's tensor order: token_embd, each block, output_norm, output.
  std::vector<std::string> order = {"embed_tokens.weight"};
  for (int64_t i = 0; i < c.n_layers; ++i)
    for (const char* t : {"attn_norm.weight", "attention.q_proj.weight", "attention.k_proj.weight",
                          "attention.v_proj.weight", "attention.o_proj.weight", "ffn_norm.weight",
                          "ffn.gate_proj.weight", "ffn.up_proj.weight", "ffn.down_proj.weight"})
      order.push_back("layers." + std::to_string(i) + "." + t);
  order.push_back("norm.weight");
  if (!c.tie_embeddings) order.push_back("lm_head.weight");  // tied: llama.cpp reuses token_embd
  size_t used = 0;
  for (const std::string& n : order) {
    auto it = params.find(n);
    if (it == params.end())
      throw GgufExportError("the model has no parameter '" + n +
                            "' (a quantized model cannot be exported; export its checkpoint)");
    ++used;
    const Parameter* p = it->second;
    const std::string name = *llama_gguf_tensor_name(n);
    if (p->shape().rank == 1) {
      w.add_tensor(name, {uint64_t(p->shape()[0])}, p->data(), GgmlType::kF32);
      continue;
    }
    int64_t rows = p->shape()[0];
    const int64_t cols = p->shape()[1];
    std::vector<float> data(p->data(), p->data() + rows * cols);
    if (n == "embed_tokens.weight" || n == "lm_head.weight") {
      data.resize(size_t(n_vocab * cols), 0.0f);
      rows = n_vocab;
    }
    if (opt.dtype == GgmlType::kF16)
      for (float v : data)
        if (!(std::abs(v) <= 65504.0f))  // also NaN
          throw GgufExportError("parameter '" + n + "' holds " + std::to_string(v) +
                                ", beyond F16's range (export with --dtype f32)");
    if (const int64_t heads = llama_rope_permute_heads(n, b.n_heads, b.effective_n_kv_heads()))
      llama_rope_permute_rows(data.data(), rows, cols, heads, true);
    w.add_tensor(name, {uint64_t(cols), uint64_t(rows)}, data.data(), opt.dtype);
  }
  if (used != params.size())
    for (auto& [n, p] : params)
      if (std::find(order.begin(), order.end(), n) == order.end())
        throw GgufExportError("parameter '" + n + "' has no llama.cpp tensor");
  try {
    w.write(path);
  } catch (const std::runtime_error& e) {
    throw GgufExportError(e.what());
  }
  return {w.n_tensors(), w.n_kv()};
}

}  // namespace bl
