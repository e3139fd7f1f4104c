"""Writes test/fixtures/pull/: a tiny taming-transformers style checkpoint for `models pull` tests.

`models pull` reads taming's `last.ckpt` (a PyTorch Lightning checkpoint saved by torch.save in the
zip format) without Python, through its own minimal pickle reader. This script makes a small file of
the same shape as the real one, with the things that reader must cope with:

- Lightning's wrapper dict: epoch, global_step, pytorch-lightning_version, optimizer_states (Adam
  moments as tensors, betas as tuples), lr_schedulers, and a `callbacks` dict keyed by the
  ModelCheckpoint class (a GLOBAL of pytorch_lightning, as in CompVis checkpoints of that era);
- the state_dict as an OrderedDict with `_metadata`, in taming's module order (encoder, decoder,
  loss, quantize, quant_conv, post_quant_conv), with loss.* tensors (a BatchNorm's int64
  num_batches_tracked among them) that the converter must skip;
- tensors of other dtypes than float32 (float16 convolutions, a bfloat16 codebook, a float64 bias),
  a non-contiguous view (a transposed quant_conv weight) and a view at an offset into a storage
  shared with another tensor.

`expected.safetensors` holds every tensor the converter must keep, as torch reads it from the
checkpoint (contiguous, in its checkpoint dtype). `evil.ckpt` is a torch.save of an object whose
__reduce__ names os.system: the reader must refuse it. Run from the repository root:

    .venv/bin/python tools/make_pull_fixtures.py
"""

from __future__ import annotations

import collections
import os
import sys
import types
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "test" / "fixtures" / "pull"
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.dont_write_bytecode = True

from vqgan_reference import VQModel  # noqa: E402

SEED = 20261127
# The smallest VQGAN our schema accepts (GroupNorm(32) needs 32 channels) with attention and a codebook.
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
    "dropout": 0.0,
}
N_EMBED = 8
EMBED_DIM = 4


def fake_lightning_callback() -> type:
    """A class pickled as pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint (no Lightning here)."""
    names = ["pytorch_lightning", "pytorch_lightning.callbacks", "pytorch_lightning.callbacks.model_checkpoint"]
    for name in names:
        sys.modules.setdefault(name, types.ModuleType(name))
    cls = type("ModelCheckpoint", (), {"__module__": names[-1]})
    sys.modules[names[-1]].ModelCheckpoint = cls  # type: ignore[attr-defined]
    return cls


def state_dict(g: torch.Generator) -> tuple[collections.OrderedDict, list[str]]:
    model = VQModel(DDCONFIG, N_EMBED, EMBED_DIM)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    sd = model.state_dict()  # OrderedDict with _metadata, as Lightning saves it
    wanted = list(sd.keys())

    # Convolutions in float16 (keeps the file small, exercises HalfStorage), codebook in bfloat16,
    # quant_conv.bias in float64.
    for k in wanted:
        if k.endswith((".conv1.weight", ".conv2.weight")):
            sd[k] = sd[k].half()
    sd["quantize.embedding.weight"] = sd["quantize.embedding.weight"].bfloat16()
    sd["quant_conv.bias"] = sd["quant_conv.bias"].double()
    # A transposed view: strides (1, cin, 1, 1) instead of (cin, 1, 1, 1).
    w = sd["quant_conv.weight"]
    sd["quant_conv.weight"] = w[:, :, 0, 0].t().contiguous().t()[:, :, None, None]
    assert not sd["quant_conv.weight"].is_contiguous()
    # post_quant_conv.bias at offset 3 of a storage it shares with a loss tensor.
    shared = torch.randn(DDCONFIG["z_channels"] + 5, generator=g)
    shared[3 : 3 + DDCONFIG["z_channels"]] = sd["post_quant_conv.bias"]
    sd["post_quant_conv.bias"] = shared[3 : 3 + DDCONFIG["z_channels"]]

    # taming's VQModel order: encoder, decoder, loss, quantize, quant_conv, post_quant_conv.
    loss = collections.OrderedDict()
    loss["loss.logvar"] = torch.zeros(())
    loss["loss.discriminator.main.0.weight"] = torch.randn(8, 3, 4, 4, generator=g)
    loss["loss.discriminator.main.2.weight"] = torch.ones(8)
    loss["loss.discriminator.main.2.running_var"] = torch.ones(8)
    loss["loss.discriminator.main.2.num_batches_tracked"] = torch.tensor(10, dtype=torch.int64)
    loss["loss.shared_buffer"] = shared
    out = collections.OrderedDict()
    for k in wanted:
        if k.startswith("quantize."):
            out.update(loss)
        out[k] = sd[k]
    out._metadata = sd._metadata  # type: ignore[attr-defined]
    return out, wanted


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(SEED)
    sd, wanted = state_dict(g)
    params = [t for k, t in sd.items() if k.startswith("decoder.")][:2]
    checkpoint = {
        "epoch": 3,
        "global_step": 10,
        "pytorch-lightning_version": "1.0.8",
        "callbacks": {fake_lightning_callback(): {"best_model_score": torch.tensor(0.25), "best_model_path": "x"}},
        "optimizer_states": [
            {
                "state": {
                    i: {"step": 10, "exp_avg": torch.zeros_like(p, dtype=torch.float32), "exp_avg_sq": torch.ones(2)}
                    for i, p in enumerate(params)
                },
                "param_groups": [
                    {"lr": 4.5e-6, "betas": (0.5, 0.9), "eps": 1e-8, "weight_decay": 0, "amsgrad": False, "params": [0, 1]}
                ],
            }
        ],
        "lr_schedulers": [],
        "state_dict": sd,
    }
    torch.save(checkpoint, OUT / "last.ckpt")

    expected = {k: sd[k].contiguous().clone() for k in wanted}
    save_file(expected, OUT / "expected.safetensors", metadata={"format": "pt"})

    config = {
        "model": {
            "base_learning_rate": 4.5e-06,
            "target": "taming.models.vqgan.VQModel",
            "params": {
                "embed_dim": EMBED_DIM,
                "n_embed": N_EMBED,
                "monitor": "val/rec_loss",
                "ddconfig": DDCONFIG,
                "lossconfig": {
                    "target": "taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator",
                    "params": {"disc_conditional": False, "disc_in_channels": 3, "disc_start": 0, "disc_weight": 0.75},
                },
            },
        }
    }
    (OUT / "model.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    class Evil:
        def __reduce__(self):  # the classic payload: unpickling calls os.system
            return (os.system, ("echo this must never run",))

    torch.save({"state_dict": collections.OrderedDict(w=torch.zeros(2)), "epoch": 0, "payload": Evil()}, OUT / "evil.ckpt")

    for f in sorted(OUT.iterdir()):
        print(f"{f.relative_to(ROOT)}: {f.stat().st_size} bytes")
    print(f"{len(wanted)} model tensors, {sum(t.numel() for t in expected.values())} parameters")


if __name__ == "__main__":
    main()
