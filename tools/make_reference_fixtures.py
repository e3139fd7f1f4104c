"""Writes PyTorch reference fixtures for the tiny CLIP and VQGAN models under test/fixtures/reference/.

The TypeScript graphs are checked against these files (weights, inputs, outputs, gradients), so the
tests need no Python. Hugging Face transformers' CLIPModel is the CLIP reference; tools/vqgan_reference.py
(a re-implementation of taming-transformers) is the VQGAN reference. Run from the repository root:

    .venv/bin/python tools/make_reference_fixtures.py

Weights are float32 on disk. References are computed in float64 from exactly those float32 values (and
float32 inputs), then stored as float32, so the stored outputs carry no float32 accumulation error of
their own. The output is deterministic for a given torch version (seeded torch.Generator everywhere).
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "test" / "fixtures" / "reference"
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.dont_write_bytecode = True  # no tools/__pycache__ in the working tree

from vqgan_reference import VQModel  # noqa: E402

SEED = 20240611


def gen(offset: int) -> torch.Generator:
    return torch.Generator().manual_seed(SEED + offset)


def normal_(t: torch.Tensor, g: torch.Generator, std: float, mean: float = 0.0) -> None:
    with torch.no_grad():
        t.copy_(torch.randn(t.shape, generator=g, dtype=torch.float64).to(t.dtype) * std + mean)


def f32(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.float32).contiguous()


def describe(name: str, t: torch.Tensor) -> str:
    if t.is_floating_point():
        x = t.double()
        return f"  {name:28s} {str(list(t.shape)):18s} {str(t.dtype):14s} mean {x.mean():+.4f} std {x.std():.4f} absmax {x.abs().max():.4f}"
    return f"  {name:28s} {str(list(t.shape)):18s} {str(t.dtype):14s} min {int(t.min())} max {int(t.max())}"


# --------------------------------------------------------------------------------------------- CLIP

CLIP_VOCAB = 600
CLIP_BOS = 598
CLIP_EOS = 599  # also the pad id, so HF pools at the FIRST position holding eos_token_id
CLIP_CONTEXT = 77


def clip_config():
    from transformers import CLIPConfig

    return CLIPConfig(
        text_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": CLIP_CONTEXT,
            "vocab_size": CLIP_VOCAB,
            "hidden_act": "quick_gelu",
            "layer_norm_eps": 1e-5,
            "bos_token_id": CLIP_BOS,
            "eos_token_id": CLIP_EOS,
            "pad_token_id": CLIP_EOS,
            "projection_dim": 16,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 32,
            "patch_size": 8,
            "num_channels": 3,
            "hidden_act": "quick_gelu",
            "layer_norm_eps": 1e-5,
            "projection_dim": 16,
        },
        projection_dim=16,
        logit_scale_init_value=2.6592,
    )


def init_clip(model: torch.nn.Module) -> None:
    """Re-initialises every parameter with scales that keep activations O(1) and attention non-uniform.

    HF's default init (std 0.02 embeddings, small projections, LayerNorm 1/0) gives near-constant outputs
    that would let a wrong graph pass; here LayerNorm affine parameters and every bias are non-trivial.
    """
    g = gen(1)
    for name, p in sorted(model.named_parameters()):
        if name == "logit_scale":
            continue  # keep logit_scale_init_value
        leaf = name.rsplit(".", 1)[-1]
        if "layer_norm" in name or "layrnorm" in name or "layernorm" in name:
            if leaf == "weight":
                normal_(p, g, 0.1, mean=1.0)
            else:
                normal_(p, g, 0.1)
        elif name.endswith("projection.weight"):
            normal_(p, g, 0.2)
        elif name.endswith("token_embedding.weight"):
            normal_(p, g, 0.5)
        elif name.endswith("position_embedding.weight"):
            normal_(p, g, 0.3)
        elif name.endswith("class_embedding"):
            normal_(p, g, 0.5)
        elif name.endswith("patch_embedding.weight"):
            fan_in = p.shape[1] * p.shape[2] * p.shape[3]
            normal_(p, g, 1.0 / math.sqrt(fan_in))
        elif leaf == "weight" and p.dim() == 2:
            # Linear layers; q and k a bit larger so softmax(QK^T) is far from uniform.
            gain = 2.0 if (".q_proj." in name or ".k_proj." in name) else 1.0
            normal_(p, g, gain / math.sqrt(p.shape[1]))
        elif leaf == "bias":
            normal_(p, g, 0.1)
        else:
            raise RuntimeError(f"init_clip: no rule for {name}")


def make_clip() -> dict[str, torch.Tensor]:
    from transformers import CLIPModel

    torch.manual_seed(SEED)
    model = CLIPModel(clip_config()).eval()
    init_clip(model)

    out_dir = OUT / "clip-tiny"
    if out_dir.exists():
        shutil.rmtree(out_dir)
    model.save_pretrained(out_dir, safe_serialization=True)
    for extra in out_dir.iterdir():
        if extra.name not in ("config.json", "model.safetensors"):
            extra.unlink()

    # Reload what was written: the reference must run on exactly the stored weights.
    model = CLIPModel.from_pretrained(out_dir, attn_implementation="eager").eval()
    stored = load_file(str(out_dir / "model.safetensors"))
    assert all(v.dtype == torch.float32 for v in stored.values()), "weights must be float32"
    model = model.double()

    g = gen(2)
    pixel_values = torch.randn(2, 3, 32, 32, generator=g, dtype=torch.float32)
    lengths = [3, 7, 12]  # content tokens between start and end
    input_ids = torch.full((3, CLIP_CONTEXT), CLIP_EOS, dtype=torch.int64)
    for row, n in enumerate(lengths):
        input_ids[row, 0] = CLIP_BOS
        input_ids[row, 1 : 1 + n] = torch.randint(0, CLIP_BOS, (n,), generator=g)
        input_ids[row, 1 + n] = CLIP_EOS
    eos_index = torch.tensor([1 + n for n in lengths], dtype=torch.int64)
    assert torch.equal((input_ids == CLIP_EOS).int().argmax(-1), eos_index)

    px = pixel_values.double().requires_grad_(True)
    vis = model.vision_model(pixel_values=px)
    image_embeds = model.visual_projection(vis.pooler_output)
    txt = model.text_model(input_ids=input_ids)
    text_embeds = model.text_projection(txt.pooler_output)
    full = model(input_ids=input_ids, pixel_values=px)

    # Cross-check our unnormalised embeddings against CLIPModel's own logits.
    ie = image_embeds / image_embeds.norm(dim=-1, keepdim=True)
    te = text_embeds / text_embeds.norm(dim=-1, keepdim=True)
    logits = model.logit_scale.exp() * ie @ te.t()
    assert torch.allclose(logits, full.logits_per_image, rtol=1e-12, atol=1e-12)

    r_image = torch.randn(2, 16, generator=g, dtype=torch.float32)
    (grad_px,) = torch.autograd.grad((image_embeds * r_image.double()).sum(), px)

    with torch.no_grad():
        vision_embeddings = model.vision_model.embeddings(pixel_values.double())
        text_embeddings = model.text_model.embeddings(input_ids=input_ids)

    return {
        "pixel_values": pixel_values,
        "input_ids": input_ids,
        "input_ids_f32": input_ids.to(torch.float32),
        "eos_index": eos_index,
        "vision_embeddings": f32(vision_embeddings),
        "vision_last_hidden_state": f32(vis.last_hidden_state),
        "vision_pooled": f32(vis.pooler_output),
        "image_embeds": f32(image_embeds),
        "text_embeddings": f32(text_embeddings),
        "text_last_hidden_state": f32(txt.last_hidden_state),
        "text_pooled": f32(txt.pooler_output),
        "text_embeds": f32(text_embeds),
        "logits_per_image": f32(full.logits_per_image),
        "image_embeds_normalized": f32(ie),
        "text_embeds_normalized": f32(te),
        "r_image": r_image,
        "grad_pixel_values": f32(grad_px),
    }


# -------------------------------------------------------------------------------------------- VQGAN

# The tiny preset's VQGAN (src/worker/models/config.ts tinyVqganConfig): vqgan_imagenet_f16_16384's
# five levels (downsampling 16) and attention at 16 of 256, i.e. at the lowest level only; 32 channels
# (the least GroupNorm(32) allows), 64 at the deepest level, so nin_shortcut is exercised both ways.
VQGAN_DDCONFIG = {
    "double_z": False,
    "z_channels": 16,
    "resolution": 256,
    "in_channels": 3,
    "out_ch": 3,
    "ch": 32,
    "ch_mult": [1, 1, 1, 1, 2],
    "num_res_blocks": 1,
    "attn_resolutions": [16],
    "dropout": 0.0,
}
VQGAN_EMBED_DIM = 16
VQGAN_N_EMBED = 1024
VQGAN_FACTOR = 2 ** (len(VQGAN_DDCONFIG["ch_mult"]) - 1)
# Not square, so a graph that swapped height and width would not match: a 4x6 latent (24 positions).
VQGAN_IMAGE_HW = (64, 96)


def init_vqgan(model: VQModel) -> None:
    """He-style normal convs, non-trivial GroupNorm affine and biases, a codebook at the scale of z_e."""
    g = gen(3)
    for name, p in sorted(model.named_parameters()):
        leaf = name.rsplit(".", 1)[-1]
        if ".norm" in name:  # norm1, norm2, norm, norm_out (GroupNorm)
            if leaf == "weight":
                normal_(p, g, 0.1, mean=1.0)
            else:
                normal_(p, g, 0.1)
        elif name == "quantize.embedding.weight":
            # About the spread of z_e (std ~0.5), so many codes are used and nearest rows win clearly.
            normal_(p, g, 0.5)
        elif leaf == "weight":
            fan_in = p.shape[1] * p.shape[2] * p.shape[3]
            gain = 2.0 if name.endswith((".q.weight", ".k.weight")) else 1.0
            normal_(p, g, gain / math.sqrt(fan_in))
        elif leaf == "bias":
            normal_(p, g, 0.05)
        else:
            raise RuntimeError(f"init_vqgan: no rule for {name}")


def make_vqgan() -> dict[str, torch.Tensor]:
    torch.manual_seed(SEED)
    model = VQModel(VQGAN_DDCONFIG, VQGAN_N_EMBED, VQGAN_EMBED_DIM).eval()
    init_vqgan(model)

    out_dir = OUT / "vqgan-tiny"
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    state = {k: f32(v) for k, v in model.state_dict().items()}
    save_file(state, str(out_dir / "model.safetensors"))
    config = {
        "model_type": "vqgan",
        "ddconfig": VQGAN_DDCONFIG,
        "embed_dim": VQGAN_EMBED_DIM,
        "n_embed": VQGAN_N_EMBED,
    }
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    model.load_state_dict(load_file(str(out_dir / "model.safetensors")), strict=True)
    model = model.double()

    g = gen(4)
    ih, iw = VQGAN_IMAGE_HW
    x = (torch.rand(1, 3, ih, iw, generator=g, dtype=torch.float32) * 2 - 1).contiguous()
    z = torch.randn(1, VQGAN_EMBED_DIM, ih // VQGAN_FACTOR, iw // VQGAN_FACTOR, generator=g, dtype=torch.float32)
    r = torch.randn(1, 3, ih, iw, generator=g, dtype=torch.float32)

    with torch.no_grad():
        h = model.encoder(x.double())
        z_e = model.quant_conv(h)
        z_q, indices = model.quantize(z_e)
        # The nearest row must win clearly, or float32 rounding in the graph could pick another one.
        d = model.quantize.distances(z_e).sort(dim=1).values
        gap = ((d[:, 1] - d[:, 0]) / d[:, 1].abs().clamp_min(1e-12)).min().item()
        abs_gap = (d[:, 1] - d[:, 0]).min().item()
        assert gap > 1e-3, f"quantizer near-tie (relative gap {gap:.2e}); change the seed"
        print(
            f"  quantizer: {indices.unique().numel()} distinct codes of {indices.numel()},"
            f" min gap between best and second-best squared distance {abs_gap:.3g} (relative {gap:.3g})"
        )
        decoded_zq = model.decode(z_q)

    zz = z.double().requires_grad_(True)
    dec_in = model.post_quant_conv(zz)
    dec_mid = model.decoder.forward_mid(dec_in)
    decoded = model.decoder(dec_in)
    (grad_z,) = torch.autograd.grad((decoded * r.double()).sum(), zz)

    return {
        "x": x,
        "h": f32(h),
        "z_e": f32(z_e),
        "z_q": f32(z_q),
        "indices": indices.to(torch.int64),
        "indices_f32": indices.to(torch.float32),
        "decoded_zq": f32(decoded_zq),
        "z": z,
        "post_quant_z": f32(dec_in),
        "decoder_mid": f32(dec_mid),
        "decoded": f32(decoded),
        "r": r,
        "grad_z": f32(grad_z),
    }


def main() -> None:
    import transformers

    OUT.mkdir(parents=True, exist_ok=True)
    # One key only: safetensors writes metadata in hash-map order, and the files should be byte-stable.
    meta = {"generator": f"tools/make_reference_fixtures.py seed {SEED}, torch {torch.__version__}, transformers {transformers.__version__}"}
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")

    print("clip-tiny-io.safetensors")
    clip = make_clip()
    for k, v in clip.items():
        print(describe(k, v))
    save_file(clip, str(OUT / "clip-tiny-io.safetensors"), metadata=meta)

    print("vqgan-tiny-io.safetensors")
    vq = make_vqgan()
    for k, v in vq.items():
        print(describe(k, v))
    save_file(vq, str(OUT / "vqgan-tiny-io.safetensors"), metadata=meta)

    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"total fixture size {total / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
