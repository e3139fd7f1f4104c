"""A PyTorch reference of minDALL-E's stage-2 transformer, and the fixtures that check our graphs.

Written from the published architecture (Kakao Brain's minDALL-E, `Transformer1d` of
dalle/models/stage2/transformer.py: a minGPT over text tokens then image tokens), not from its code:
separate token and position embeddings for text and image, pre-LN blocks (ln1 -> multi-head causal
self-attention with key/query/value/proj Linear layers -> residual; ln2 -> Linear(D, 4D) -> GELU ->
Linear(4D, D) -> residual), a final LayerNorm and a bias-free image head. Sampling feeds the prompt
once (the last text position predicts image token 0), then one image token at a time with the keys
and values of earlier positions cached, which is what our prefill and decode graphs do.

Run from the repository root (see tools/README.md for the venv):

    .venv/bin/python tools/dalle_reference.py

It writes test/fixtures/reference/mindalle-tiny/ (config.json + model.safetensors in the state_dict
names) and mindalle-tiny-io.safetensors (inputs and logits). Weights are float32; the reference runs
in float64 on exactly those values, so the stored logits carry no float32 error of their own.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "test" / "fixtures" / "reference"
SEED = 20261201

CONFIG = {
    "model_type": "mindalle",
    "architectures": ["Transformer1d"],
    "vocab_size_txt": 600,
    "vocab_size_img": 1024,
    "embed_dim": 32,
    "n_layers": 2,
    "n_heads": 4,
    "ctx_len_txt": 16,
    "ctx_len_img": 64,
    "mlp_bias": True,
    "attn_bias": True,
    "gelu_use_approx": False,
    "layer_norm_eps": 1e-5,
    "pad_token_id": 0,
}


def parameter_shapes(c: dict) -> list[tuple[str, list[int]]]:
    """Transformer1d's state_dict: embeddings, blocks.{i}.{ln1,ln2,attn.{key,query,value,proj},mlp.{0,2}}, ln_f, heads."""
    d = c["embed_dim"]
    out = [
        ("tok_emb_img.weight", [c["vocab_size_img"], d]),
        ("tok_emb_txt.weight", [c["vocab_size_txt"], d]),
        ("pos_emb_img.weight", [c["ctx_len_img"], d]),
        ("pos_emb_txt.weight", [c["ctx_len_txt"], d]),
    ]
    for i in range(c["n_layers"]):
        b = f"blocks.{i}"
        out += [(f"{b}.ln1.weight", [d]), (f"{b}.ln1.bias", [d]), (f"{b}.ln2.weight", [d]), (f"{b}.ln2.bias", [d])]
        for name in ("key", "query", "value", "proj"):
            out += [(f"{b}.attn.{name}.weight", [d, d]), (f"{b}.attn.{name}.bias", [d])]
        out += [(f"{b}.mlp.0.weight", [4 * d, d]), (f"{b}.mlp.0.bias", [4 * d])]
        out += [(f"{b}.mlp.2.weight", [d, 4 * d]), (f"{b}.mlp.2.bias", [d])]
    out += [("ln_f.weight", [d]), ("ln_f.bias", [d])]
    out += [("head_img.weight", [c["vocab_size_img"], d]), ("head_txt.weight", [c["vocab_size_txt"], d])]
    return out


def random_weights(c: dict, g: torch.Generator) -> dict[str, torch.Tensor]:
    """Scales that keep activations O(1) and attention far from uniform (q and k drawn larger)."""
    w = {}
    for name, shape in parameter_shapes(c):
        if ".ln" in name or name.startswith("ln_f"):
            t = torch.randn(shape, generator=g) * 0.1 + (1.0 if name.endswith("weight") else 0.0)
        elif "_emb_" in name:
            t = torch.randn(shape, generator=g)
        elif name.endswith(".bias"):
            t = torch.randn(shape, generator=g) * 0.1
        else:
            gain = 2.0 if (".key." in name or ".query." in name) else 1.0
            t = torch.randn(shape, generator=g) * gain / math.sqrt(shape[1])
        w[name] = t.to(torch.float32).contiguous()
    return w


class Stage2:
    """The transformer as functions of its state_dict (float64)."""

    def __init__(self, c: dict, w: dict[str, torch.Tensor]):
        self.c = c
        self.w = {k: v.double() for k, v in w.items()}
        self.heads = c["n_heads"]

    def lin(self, x, name):
        b = self.w.get(f"{name}.bias")
        return F.linear(x, self.w[f"{name}.weight"], b)

    def ln(self, x, name):
        d = x.shape[-1]
        return F.layer_norm(x, (d,), self.w[f"{name}.weight"], self.w[f"{name}.bias"], self.c["layer_norm_eps"])

    def split_heads(self, x):
        b, t, d = x.shape
        return x.view(b, t, self.heads, d // self.heads).transpose(1, 2)  # [B, H, T, hd]

    def block(self, x, i, past=None):
        """x [B, T, D]; past (k, v) of earlier positions, each [B, H, P, hd]. Returns x and this chunk's (k, v)."""
        p = f"blocks.{i}"
        h = self.ln(x, f"{p}.ln1")
        q = self.split_heads(self.lin(h, f"{p}.attn.query"))
        k = self.split_heads(self.lin(h, f"{p}.attn.key"))
        v = self.split_heads(self.lin(h, f"{p}.attn.value"))
        present = (k, v)
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        t, s = q.shape[2], k.shape[2]
        att = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        # Query j of this chunk sits at position s - t + j and sees keys 0..s - t + j.
        allowed = torch.ones(t, s, dtype=torch.bool).tril(diagonal=s - t)
        att = att.masked_fill(~allowed, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(x.shape)
        x = x + self.lin(y, f"{p}.attn.proj")
        m = self.lin(F.gelu(self.lin(self.ln(x, f"{p}.ln2"), f"{p}.mlp.0")), f"{p}.mlp.2")
        return x + m, present

    def image_logits(self, x):
        return F.linear(self.ln(x, "ln_f"), self.w["head_img.weight"])

    def embed_text(self, text):
        return self.w["tok_emb_txt.weight"][text] + self.w["pos_emb_txt.weight"][: text.shape[1]]

    def embed_image(self, image, start):
        n = image.shape[1]
        return self.w["tok_emb_img.weight"][image] + self.w["pos_emb_img.weight"][start : start + n]

    def full(self, text, image):
        """Logits predicting image tokens 0..n for text [B, Tt] and image [B, n]: [B, n + 1, V]."""
        x = torch.cat([self.embed_text(text), self.embed_image(image, 0)], dim=1)
        for i in range(self.c["n_layers"]):
            x, _ = self.block(x, i)
        return self.image_logits(x[:, text.shape[1] - 1 :])

    def sample_logits(self, text, image):
        """The cached path: prefill on the text, then one image token per step. Logits [n + 1, B, V]."""
        x = self.embed_text(text)
        past = []
        for i in range(self.c["n_layers"]):
            x, kv = self.block(x, i)
            past.append(kv)
        steps = [self.image_logits(x[:, -1])]
        for j in range(image.shape[1]):
            x = self.embed_image(image[:, j : j + 1], j)
            for i in range(self.c["n_layers"]):
                x, kv = self.block(x, i, past[i])
                past[i] = (torch.cat([past[i][0], kv[0]], dim=2), torch.cat([past[i][1], kv[1]], dim=2))
            steps.append(self.image_logits(x[:, -1]))
        return torch.stack(steps)


def main() -> None:
    g = torch.Generator().manual_seed(SEED)
    c = CONFIG
    out_dir = OUT / "mindalle-tiny"
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    weights = random_weights(c, g)
    meta = {"generator": f"tools/dalle_reference.py seed {SEED}, torch {torch.__version__}"}
    save_file(weights, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    (out_dir / "config.json").write_text(json.dumps(c, indent=2) + "\n")
    # The reference runs on exactly what was stored.
    model = Stage2(c, load_file(str(out_dir / "model.safetensors")))

    candidates, steps = 2, 6
    text = torch.randint(1, c["vocab_size_txt"], (1, c["ctx_len_txt"]), generator=g)
    text[0, 9:] = c["pad_token_id"]  # a short prompt padded with [PAD], as the tokenizer pads it
    image = torch.randint(0, c["vocab_size_img"], (candidates, steps), generator=g)
    with torch.no_grad():
        cached = model.sample_logits(text.expand(candidates, -1), image)  # [steps + 1, N, V]
        full = model.full(text.expand(candidates, -1), image)  # [N, steps + 1, V]
    gap = (cached.transpose(0, 1) - full).abs().max().item()
    assert gap < 1e-10, f"cached and full reference paths differ by {gap}"
    io = {
        "text": text.to(torch.int64),
        "image": image.to(torch.int64),
        # Our safetensors reader reads floats only; small ids are exact in float32.
        "text_f32": text.to(torch.float32),
        "image_f32": image.to(torch.float32),
        "step_logits": cached.to(torch.float32).contiguous(),
        "full_logits": full.to(torch.float32).contiguous(),
    }
    for k, v in io.items():
        x = v.double()
        print(f"  {k:12s} {str(list(v.shape)):16s} mean {x.mean():+.4f} std {x.std():.4f} absmax {x.abs().max():.4f}")
    save_file(io, str(OUT / "mindalle-tiny-io.safetensors"), metadata=meta)
    total = sum(p.stat().st_size for p in out_dir.rglob("*")) + (OUT / "mindalle-tiny-io.safetensors").stat().st_size
    print(f"cached vs full (float64): {gap:.2e}; fixture size {total / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
