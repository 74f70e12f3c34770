#!/usr/bin/env python3
"""Independent check of the Hugging Face import (not part of the test suite).

For each family it writes a small HF folder itself (config.json as the
released configs spell them, model.safetensors by hand: JSON header + raw
float32, random weights), computes the mean next-token cross-entropy of a
byte string with its own float64 PyTorch forward pass written from the
families' papers / transformers modelling code, then imports the folder with
`blocklab-cli models import hf` and evaluates the same bytes with
`blocklab-cli eval --json`. It prints both losses and their difference, and
the loss with one family feature left out, to show the check sees it.

Needs python3-torch. Usage: hf_torch_check.py BLOCKLAB_CLI WORK_DIR
"""
import json
import math
import os
import struct
import subprocess
import sys

import torch

torch.manual_seed(0)
T = 48
TEXT = b"First Citizen:\nBefore we proceed any further, hear me speak.\nAll:\nSpeak!"[: T + 1]
IDS = list(TEXT)


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        data = t.to(torch.float32).contiguous().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def rms(x, w, eps, offset=False):
    y = x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)
    return y * ((1.0 + w) if offset else w)


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def rope(x, theta):  # x: (T, H, hd), HF rotate-half
    hd = x.shape[-1]
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    ang = torch.arange(x.shape[0], dtype=torch.float64)[:, None] * inv[None, :]
    cos = torch.cat([ang.cos(), ang.cos()], -1)[:, None, :]
    sin = torch.cat([ang.sin(), ang.sin()], -1)[:, None, :]
    x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def attend(q, k, v):  # (T, H, hd), k/v (T, KV, hd)
    rep = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(rep, 1)
    v = v.repeat_interleave(rep, 1)
    s = torch.einsum("thd,shd->hts", q, k) / math.sqrt(q.shape[-1])
    mask = torch.triu(torch.ones(q.shape[0], q.shape[0], dtype=torch.bool), 1)
    s = s.masked_fill(mask, float("-inf"))
    return torch.einsum("hts,shd->thd", s.softmax(-1), v).reshape(q.shape[0], -1)


def llama_like(cfg, W, drop=None):
    fam = cfg["model_type"]
    d, H = cfg["hidden_size"], cfg["num_attention_heads"]
    KV = cfg.get("num_key_value_heads", H)
    hd = cfg.get("head_dim") or d // H
    eps, theta = cfg["rms_norm_eps"], cfg.get("rope_theta", 10000.0)
    gemma = fam == "gemma" and drop != "offset"
    ids = torch.tensor(IDS[:-1])
    x = W["model.embed_tokens.weight"][ids]
    if fam == "gemma" and drop != "embed_scale":
        x = x * torch.tensor(math.sqrt(d), dtype=torch.float32).double()
    act = gelu_tanh if fam == "gemma" and drop != "gelu_tanh" else torch.nn.functional.silu
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = rms(x, W[p + "input_layernorm.weight"], eps, gemma)
        proj = {}
        for n, heads in (("q", H), ("k", KV), ("v", KV)):
            y = h @ W[p + f"self_attn.{n}_proj.weight"].T
            b = W.get(p + f"self_attn.{n}_proj.bias")
            if b is not None and drop != "qkv_bias":
                y = y + b
            proj[n] = y.reshape(-1, heads, hd)
        q, k, v = proj["q"], proj["k"], proj["v"]
        if fam == "qwen3" and drop != "qk_norm":
            q = rms(q, W[p + "self_attn.q_norm.weight"], eps)
            k = rms(k, W[p + "self_attn.k_norm.weight"], eps)
        x = x + attend(rope(q, theta), rope(k, theta), v) @ W[p + "self_attn.o_proj.weight"].T
        h = rms(x, W[p + "post_attention_layernorm.weight"], eps, gemma)
        g = act(h @ W[p + "mlp.gate_proj.weight"].T) * (h @ W[p + "mlp.up_proj.weight"].T)
        x = x + g @ W[p + "mlp.down_proj.weight"].T
    x = rms(x, W["model.norm.weight"], eps, gemma)
    head = W.get("lm_head.weight", W["model.embed_tokens.weight"])
    return x @ head.T


def gpt2(cfg, W, drop=None):
    d, H = cfg["n_embd"], cfg["n_head"]
    eps = cfg["layer_norm_epsilon"]
    ln = lambda x, p: torch.nn.functional.layer_norm(x, (d,), W[p + ".weight"], W[p + ".bias"], eps)
    act = gelu_tanh if drop != "gelu_tanh" else (lambda x: torch.nn.functional.gelu(x))
    ids = torch.tensor(IDS[:-1])
    x = W["transformer.wte.weight"][ids] + W["transformer.wpe.weight"][: len(ids)]
    for l in range(cfg["n_layer"]):
        p = f"transformer.h.{l}."
        qkv = ln(x, p + "ln_1") @ W[p + "attn.c_attn.weight"] + W[p + "attn.c_attn.bias"]
        q, k, v = (t.reshape(-1, H, d // H) for t in qkv.split(d, -1))
        x = x + attend(q, k, v) @ W[p + "attn.c_proj.weight"] + W[p + "attn.c_proj.bias"]
        h = act(ln(x, p + "ln_2") @ W[p + "mlp.c_fc.weight"] + W[p + "mlp.c_fc.bias"])
        x = x + h @ W[p + "mlp.c_proj.weight"] + W[p + "mlp.c_proj.bias"]
    return ln(x, "transformer.ln_f") @ W["transformer.wte.weight"].T


def loss_of(logits):
    return torch.nn.functional.cross_entropy(logits, torch.tensor(IDS[1:])).item()


def weights_llama(cfg):
    d, H, F, V = cfg["hidden_size"], cfg["num_attention_heads"], cfg["intermediate_size"], cfg["vocab_size"]
    KV = cfg.get("num_key_value_heads", H)
    hd = cfg.get("head_dim") or d // H
    r = lambda *s: torch.randn(*s) * 0.3
    W = {"model.embed_tokens.weight": r(V, d), "model.norm.weight": 1 + r(d) if cfg["model_type"] != "gemma" else r(d)}
    if not cfg.get("tie_word_embeddings", cfg["model_type"] == "gemma"):
        W["lm_head.weight"] = r(V, d)
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        for n in ("input_layernorm", "post_attention_layernorm"):
            W[p + n + ".weight"] = r(d) if cfg["model_type"] == "gemma" else 1 + r(d)
        W[p + "self_attn.q_proj.weight"] = r(H * hd, d)
        W[p + "self_attn.k_proj.weight"] = r(KV * hd, d)
        W[p + "self_attn.v_proj.weight"] = r(KV * hd, d)
        W[p + "self_attn.o_proj.weight"] = r(d, H * hd)
        if cfg["model_type"] == "qwen2":
            for n, w in (("q", H), ("k", KV), ("v", KV)):
                W[p + f"self_attn.{n}_proj.bias"] = r(w * hd)
        if cfg["model_type"] == "qwen3":
            W[p + "self_attn.q_norm.weight"] = 1 + r(hd)
            W[p + "self_attn.k_norm.weight"] = 1 + r(hd)
        W[p + "mlp.gate_proj.weight"] = r(F, d)
        W[p + "mlp.up_proj.weight"] = r(F, d)
        W[p + "mlp.down_proj.weight"] = r(d, F)
    return W


def weights_gpt2(cfg):
    d, V, P = cfg["n_embd"], cfg["vocab_size"], cfg["n_positions"]
    r = lambda *s: torch.randn(*s) * 0.3
    W = {"transformer.wte.weight": r(V, d), "transformer.wpe.weight": r(P, d),
         "transformer.ln_f.weight": 1 + r(d), "transformer.ln_f.bias": r(d)}
    for l in range(cfg["n_layer"]):
        p = f"transformer.h.{l}."
        for n in ("ln_1", "ln_2"):
            W[p + n + ".weight"], W[p + n + ".bias"] = 1 + r(d), r(d)
        W[p + "attn.c_attn.weight"], W[p + "attn.c_attn.bias"] = r(d, 3 * d), r(3 * d)
        W[p + "attn.c_proj.weight"], W[p + "attn.c_proj.bias"] = r(d, d), r(d)
        W[p + "mlp.c_fc.weight"], W[p + "mlp.c_fc.bias"] = r(d, 4 * d), r(4 * d)
        W[p + "mlp.c_proj.weight"], W[p + "mlp.c_proj.bias"] = r(4 * d, d), r(d)
    return W


BASE = {"vocab_size": 256, "hidden_size": 48, "intermediate_size": 80, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64,
        "rms_norm_eps": 1e-6, "torch_dtype": "float32"}
CASES = [
    ("qwen2", dict(BASE, model_type="qwen2", architectures=["Qwen2ForCausalLM"], hidden_act="silu",
                   rope_theta=1e6, use_sliding_window=False, sliding_window=64, max_window_layers=2,
                   tie_word_embeddings=True), ["qkv_bias"]),
    ("qwen3", dict(BASE, model_type="qwen3", architectures=["Qwen3ForCausalLM"], hidden_act="silu",
                   head_dim=20, rope_theta=1e6, tie_word_embeddings=False), ["qk_norm"]),
    ("gemma", dict(BASE, model_type="gemma", architectures=["GemmaForCausalLM"], hidden_act="gelu",
                   hidden_activation="gelu_pytorch_tanh", head_dim=16, num_attention_heads=2,
                   num_key_value_heads=1), ["offset", "embed_scale", "gelu_tanh"]),
    ("gpt2", {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": 256,
              "n_positions": 64, "n_embd": 48, "n_layer": 2, "n_head": 4,
              "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new"}, ["gelu_tanh"]),
]


def main():
    cli, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    data = os.path.join(work, "text.txt")
    with open(data, "wb") as f:
        f.write(TEXT)
    for name, cfg, drops in CASES:
        folder = os.path.join(work, name)
        os.makedirs(folder, exist_ok=True)
        W = weights_gpt2(cfg) if name == "gpt2" else weights_llama(cfg)
        write_safetensors(os.path.join(folder, "model.safetensors"), W)
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(cfg, f)
        with open(os.path.join(folder, "blocklab_tokenizer.json"), "w") as f:
            json.dump({"type": "byte", "vocab_size": 256}, f)
        Wd = {k: v.double() for k, v in W.items()}
        fwd = gpt2 if name == "gpt2" else llama_like
        ref = loss_of(fwd(cfg, Wd))
        ckpt = os.path.join(work, name + "-ckpt")
        subprocess.run([cli, "models", "import", "hf", folder, "--out", ckpt], check=True,
                       stdout=subprocess.DEVNULL)
        out = subprocess.run([cli, "eval", "--run", ckpt, "--data", data, "--seq-len", str(T),
                              "--batch-size", "1", "--json"], check=True, capture_output=True,
                             text=True).stdout
        got = json.loads(out.strip().splitlines()[-1])
        assert got["windows"] == 1 and got["tokens"] == T, got
        wrong = ", ".join(f"without {d}: {loss_of(fwd(cfg, Wd, d)):.6f}" for d in drops)
        print(f"{name:6s} torch float64 {ref:.9f}  blocklab {got['loss']:.9f}  "
              f"|diff| {abs(ref - got['loss']):.2e}   ({wrong})")


if __name__ == "__main__":
    main()
