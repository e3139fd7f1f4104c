"""Writes test/fixtures/pull/mindalle-tiny.tar.gz: a tiny archive in the layout of minDALL-E's 1.3B.tar.gz.

`models pull --only dalle` downloads minDALL-E's archive and converts it without Python. This makes a
small file of the same layout for its tests, with real formats throughout:

- `tiny/config.yaml` in minDALL-E's structure (dataset / stage1 with its `hparams` and `pdrop` /
  stage2 with vocabulary sizes and `hparams`, `n_dense_layers` included);
- `tiny/tokenizer/bpe-16k-vocab.json` and `bpe-16k-merges.txt` as Hugging Face's CharBPETokenizer
  saves them (a "#version" header line in merges.txt), without [PAD] (minDALL-E adds it);
- `tiny/stage2_last.ckpt`: torch.save({"state_dict": OrderedDict}) of the stage-2 weights of
  test/fixtures/reference/mindalle-tiny (tools/dalle_reference.py), plus one tensor the converter
  must skip (an attention-mask buffer);
- `tiny/stage1_last.ckpt`: torch.save({"state_dict": ...}) of a tiny VQGAN (tools/vqgan_reference.py)
  whose codebook has as many entries as stage 2 has image tokens.

Run from the repository root after tools/dalle_reference.py:

    .venv/bin/python tools/make_dalle_pull_fixtures.py
"""

from __future__ import annotations

import collections
import io
import json
import sys
import tarfile
from pathlib import Path

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "test" / "fixtures" / "pull"
REF = ROOT / "test" / "fixtures" / "reference" / "mindalle-tiny"
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.dont_write_bytecode = True

from vqgan_reference import VQModel  # noqa: E402

SEED = 20261202
DDCONFIG = {
    "double_z": False,
    "z_channels": 4,
    "resolution": 8,
    "in_channels": 3,
    "out_ch": 3,
    "ch": 32,
    "ch_mult": [1],
    "num_res_blocks": 1,
    "attn_resolutions": [8],
}
EMBED_DIM = 4

# A CharBPE vocabulary: [UNK], letters and their word-final forms, a few merges.
LETTERS = [chr(c) for c in range(ord("a"), ord("z") + 1)]
MERGES = [("c", "a"), ("ca", "t</w>"), ("d", "o"), ("do", "g</w>"), ("a", "</w>")]


def tokenizer_files() -> tuple[str, str]:
    tokens = ["[UNK]"] + LETTERS + [f"{c}</w>" for c in LETTERS]
    for a, b in MERGES:
        if b == "</w>":
            continue  # "a" + "</w>" is the token a</w>, already in the alphabet
        tokens.append(a + b)
    vocab = {t: i for i, t in enumerate(tokens)}
    merges = "#version: 0.2 - Trained by `huggingface/tokenizers`\n" + "".join(
        f"{a} {b}\n" for a, b in MERGES if b != "</w>"
    )
    return json.dumps(vocab, ensure_ascii=False), merges


def config_yaml(c: dict) -> str:
    dd = "\n".join(f"    {k}: {json.dumps(v)}" for k, v in DDCONFIG.items())
    return f"""dataset:
  tokenizer_type: CharBPE
  context_length: {c['ctx_len_txt']}
  image_resolution: {DDCONFIG['resolution']}
stage1:
  type: vqgan
  embed_dim: {EMBED_DIM}
  n_embed: {c['vocab_size_img']}
  hparams:
{dd}
    pdrop: 0.0
stage2:
  type: transformer1d
  vocab_size_txt: {c['vocab_size_txt']}
  vocab_size_img: {c['vocab_size_img']}
  use_cls_cond: None
  hparams:
    embed_dim: {c['embed_dim']}
    n_layers: {c['n_layers']}
    n_heads: {c['n_heads']}
    n_dense_layers: {c['n_layers']}
    ctx_len_img: {c['ctx_len_img']}
    ctx_len_txt: {c['ctx_len_txt']}
    embd_pdrop: 0.0
    resid_pdrop: 0.0
    attn_pdrop: 0.0
    mlp_bias: True
    attn_bias: True
    gelu_use_approx: False
"""


def saved(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def main() -> None:
    c = json.loads((REF / "config.json").read_text())
    stage2 = collections.OrderedDict(load_file(str(REF / "model.safetensors")))
    n = c["ctx_len_txt"] + c["ctx_len_img"]
    stage2["blocks.0.attn.mask"] = torch.ones(n, n).tril().view(1, n, n)

    torch.manual_seed(SEED)
    vq = VQModel({**DDCONFIG, "dropout": 0.0}, c["vocab_size_img"], EMBED_DIM)
    with torch.no_grad():
        vq.quantize.embedding.weight.uniform_(-1, 1)
    vocab, merges = tokenizer_files()
    members = {
        "tiny/config.yaml": config_yaml(c).encode(),
        "tiny/tokenizer/bpe-16k-vocab.json": vocab.encode(),
        "tiny/tokenizer/bpe-16k-merges.txt": merges.encode(),
        "tiny/stage1_last.ckpt": saved({"state_dict": vq.state_dict()}),
        "tiny/stage2_last.ckpt": saved({"state_dict": stage2}),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "mindalle-tiny.tar.gz"
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    print(f"wrote {path} ({path.stat().st_size / 1024:.1f} KiB): {', '.join(members)}")


if __name__ == "__main__":
    main()
