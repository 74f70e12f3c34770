#include "interop/hf_weights.h"

#include <set>

#include "train/checkpoint.h"

namespace bl {

namespace {

enum class Kind {
  kCopy,       // same shape, same layout
  kTranspose,  // (out, in) <-> GPT-2 Conv1D [in, out]
  kQkv,        // one third of GPT-2's fused attn.c_attn (transposed weight / bias slice)
  kExpert,     // one expert of a stacked (E, a, b) tensor <-> HF's per-expert [a, b]
};

struct Link {
  Parameter* p = nullptr;
  std::string param;
  std::string hf;
  Kind kind = Kind::kCopy;
  int64_t index = 0;  // kQkv: 0 q, 1 k, 2 v; kExpert: the expert
  std::vector<int64_t> hf_shape;
};

std::vector<int64_t> dims(const Parameter& p) {
  std::vector<int64_t> d;
  for (int i = 0; i < p.shape().rank; ++i) d.push_back(p.shape()[i]);
  return d;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + ")";
}

bool starts_with(const std::string& s, const std::string& p) {
  return s.compare(0, p.size(), p) == 0;
}

// "layers.<N>.<rest>" -> N and rest; false otherwise.
bool split_layer(const std::string& s, std::string& index, std::string& rest) {
  if (!starts_with(s, "layers.")) return false;
  const size_t b = s.find('.', 7);
  if (b == std::string::npos || b == 7) return false;
  for (size_t i = 7; i < b; ++i)
    if (s[i] < '0' || s[i] > '9') return false;
  index = s.substr(7, b - 7);
  rest = s.substr(b + 1);
  return true;
}

[[noreturn]] void no_tensor(const std::string& name, HfFamily f) {
  throw HfError("parameter '" + name + "' has no tensor in Hugging Face " + hf_model_type(f) +
                " (merge adapters and dequantize before exporting)");
}

void gpt2_link(Link& l, HfFamily f) {
  const std::string& n = l.param;
  const std::vector<int64_t> s = dims(*l.p);
  auto transposed = [&] { return std::vector<int64_t>{s[1], s[0]}; };
  if (n == "embed_tokens.weight")
    l.hf = "transformer.wte.weight";
  else if (n == "position.weight")
    l.hf = "transformer.wpe.weight";
  else if (n == "norm.weight" || n == "norm.bias")
    l.hf = "transformer.ln_f." + n.substr(5);
  else {
    std::string i, r;
    if (!split_layer(n, i, r)) no_tensor(n, f);
    const std::string h = "transformer.h." + i + ".";
    if (r == "attn_norm.weight" || r == "attn_norm.bias")
      l.hf = h + "ln_1." + r.substr(10);
    else if (r == "ffn_norm.weight" || r == "ffn_norm.bias")
      l.hf = h + "ln_2." + r.substr(9);
    else if (r == "attention.o_proj.weight" || r == "attention.o_proj.bias")
      l.hf = h + "attn.c_proj." + r.substr(17);
    else if (r == "ffn.up_proj.weight" || r == "ffn.up_proj.bias")
      l.hf = h + "mlp.c_fc." + r.substr(12);
    else if (r == "ffn.down_proj.weight" || r == "ffn.down_proj.bias")
      l.hf = h + "mlp.c_proj." + r.substr(14);
    else {
      const char* qkv[] = {"attention.q_proj.", "attention.k_proj.", "attention.v_proj."};
      for (int k = 0; k < 3; ++k)
        if (r == std::string(qkv[k]) + "weight" || r == std::string(qkv[k]) + "bias") {
          l.kind = Kind::kQkv;
          l.index = k;
          l.hf = h + "attn.c_attn." + r.substr(17);
        }
      if (l.kind != Kind::kQkv) no_tensor(n, f);
      l.hf_shape =
          s.size() == 2 ? std::vector<int64_t>{s[1], 3 * s[0]} : std::vector<int64_t>{3 * s[0]};
      return;
    }
    if (s.size() == 2) {
      l.kind = Kind::kTranspose;
      l.hf_shape = transposed();
      return;
    }
  }
  l.hf_shape = s;
}

// Parameter names LLaMA-like families have (checkpoint names are HF Llama's).
bool llama_like_name(const std::string& n, HfFamily f) {
  if (n == "embed_tokens.weight" || n == "norm.weight" || n == "lm_head.weight") return true;
  std::string i, r;
  if (!split_layer(n, i, r)) return false;
  static const std::set<std::string> plain = {
      "attn_norm.weight",        "ffn_norm.weight",         "attention.q_proj.weight",
      "attention.k_proj.weight", "attention.v_proj.weight", "attention.o_proj.weight",
      "attention.q_proj.bias",   "attention.k_proj.bias",   "attention.v_proj.bias",
      "attention.o_proj.bias",   "ffn.gate_proj.weight",    "ffn.up_proj.weight",
      "ffn.down_proj.weight",    "ffn.gate_proj.bias",      "ffn.up_proj.bias",
      "ffn.down_proj.bias"};
  if (plain.count(r)) return f != HfFamily::kMixtral || !starts_with(r, "ffn.");
  if (r == "attention.q_norm.weight" || r == "attention.k_norm.weight")
    return f == HfFamily::kQwen3;
  return false;
}

std::vector<Link> hf_links(LanguageModel& model, HfFamily f) {
  std::vector<Link> links;
  std::set<const float*> seen;
  for (auto& [name, p] : model.named_parameters()) {
    if (!seen.insert(p->data()).second) continue;  // tied: stored once
    Link l;
    l.p = p;
    l.param = name;
    if (f == HfFamily::kGpt2) {
      gpt2_link(l, f);
      links.push_back(l);
      continue;
    }
    std::string i, r;
    if (f == HfFamily::kMixtral && split_layer(name, i, r) && starts_with(r, "ffn.")) {
      const std::string h = "model.layers." + i + ".block_sparse_moe.";
      const std::vector<int64_t> s = dims(*p);
      if (r == "ffn.router.weight") {
        l.hf = h + "gate.weight";
        l.hf_shape = s;
        links.push_back(l);
        continue;
      }
      const char* w = r == "ffn.experts.gate_proj.weight"   ? "w1"
                      : r == "ffn.experts.down_proj.weight" ? "w2"
                      : r == "ffn.experts.up_proj.weight"   ? "w3"
                                                            : nullptr;
      if (!w || s.size() != 3) no_tensor(name, f);
      for (int64_t e = 0; e < s[0]; ++e) {
        Link x = l;
        x.kind = Kind::kExpert;
        x.index = e;
        x.hf = h + "experts." + std::to_string(e) + "." + w + ".weight";
        x.hf_shape = {s[1], s[2]};
        links.push_back(x);
      }
      continue;
    }
    if (!llama_like_name(name, f)) no_tensor(name, f);
    l.hf = checkpoint_tensor_name(name);
    l.hf_shape = dims(*p);
    links.push_back(l);
  }
  return links;
}

int64_t numel(const std::vector<int64_t>& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

// Moves one link's values between the parameter and the HF tensor: from the
// parameter into `to_hf` when it is set, else from `from_hf` into the parameter.
void transfer(const Link& l, const float* from_hf, float* to_hf) {
  float* p = l.p->data();
  const std::vector<int64_t> s = dims(*l.p);
  auto move = [&](int64_t pi, int64_t hi) {
    if (to_hf)
      to_hf[hi] = p[pi];
    else
      p[pi] = from_hf[hi];
  };
  switch (l.kind) {
    case Kind::kCopy:
      for (int64_t k = 0, n = numel(s); k < n; ++k) move(k, k);
      break;
    case Kind::kTranspose:
      for (int64_t o = 0; o < s[0]; ++o)
        for (int64_t i = 0; i < s[1]; ++i) move(o * s[1] + i, i * s[0] + o);
      break;
    case Kind::kQkv:
      if (s.size() == 1) {
        for (int64_t o = 0; o < s[0]; ++o) move(o, l.index * s[0] + o);
      } else {
        const int64_t cols = 3 * s[0];
        for (int64_t o = 0; o < s[0]; ++o)
          for (int64_t i = 0; i < s[1]; ++i) move(o * s[1] + i, i * cols + l.index * s[0] + o);
      }
      break;
    case Kind::kExpert: {
      const int64_t n = s[1] * s[2];
      for (int64_t k = 0; k < n; ++k) move(l.index * n + k, k);
      break;
    }
  }
}

// HF non-weight buffers found in real checkpoints: GPT-2's causal mask and
// masked_bias, old Llama's rotary inv_freq.
bool is_buffer(const std::string& n, HfFamily f) {
  auto ends = [&](const std::string& s) {
    return n.size() >= s.size() && n.compare(n.size() - s.size(), s.size(), s) == 0;
  };
  if (f == HfFamily::kGpt2) return ends(".attn.bias") || ends(".attn.masked_bias");
  return ends(".rotary_emb.inv_freq");
}

}  // namespace

std::vector<HfTensor> hf_tensors_from_model(LanguageModel& model, HfFamily family) {
  std::vector<HfTensor> out;
  std::map<std::string, size_t> index;
  for (const Link& l : hf_links(model, family)) {
    auto [it, fresh] = index.emplace(l.hf, out.size());
    if (fresh) out.push_back({l.hf, l.hf_shape, std::vector<float>(size_t(numel(l.hf_shape)))});
    transfer(l, nullptr, out[it->second].data.data());
  }
  return out;
}

void load_hf_tensors(const std::map<std::string, LoadedTensor>& tensors, LanguageModel& model,
                     HfFamily family, const std::string& what) {
  const std::vector<Link> links = hf_links(model, family);
  // GPT2Model files name tensors without the "transformer." prefix.
  auto find = [&](const std::string& hf) {
    auto it = tensors.find(hf);
    if (it == tensors.end() && starts_with(hf, "transformer.")) it = tensors.find(hf.substr(12));
    return it;
  };
  std::set<std::string> used;
  std::vector<std::pair<const Link*, const LoadedTensor*>> plan;
  for (const Link& l : links) {
    auto it = find(l.hf);
    if (it == tensors.end())
      throw HfError(what + ": tensor '" + l.hf + "' is missing (Blocklab parameter '" + l.param +
                    "' needs it with shape " + shape_str(l.hf_shape) + ")");
    if (it->second.shape != l.hf_shape)
      throw HfError(what + ": tensor '" + it->first + "' has shape " + shape_str(it->second.shape) +
                    " but config.json implies " + shape_str(l.hf_shape));
    used.insert(it->first);
    plan.emplace_back(&l, &it->second);
  }
  const bool tied = model.config().tie_embeddings;
  for (const auto& [name, t] : tensors) {
    if (used.count(name) || is_buffer(name, family)) continue;
    if (tied && name == "lm_head.weight") {
      // Some exporters store the tied head anyway: accept it only if it is the embedding.
      auto e =
          find(family == HfFamily::kGpt2 ? "transformer.wte.weight" : "model.embed_tokens.weight");
      if (e != tensors.end() && e->second.shape == t.shape && e->second.data == t.data) continue;
      throw HfError(what +
                    ": tensor 'lm_head.weight' differs from the token embedding, but "
                    "config.json ties them (tie_word_embeddings)");
    }
    throw HfError(what + ": unexpected tensor '" + name + "' (not part of a " +
                  hf_model_type(family) + " model with this config.json)");
  }
  for (auto& [l, t] : plan) transfer(*l, t->data.data(), nullptr);
}

}  // namespace bl
