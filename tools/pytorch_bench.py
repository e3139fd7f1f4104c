"""PyTorch eager baseline for the CPU benchmarks, timed on the same machine as our ONNX graphs.

What users would run instead of this project is PyTorch (Hugging Face CLIP, Pixray / VQGAN-CLIP), so
`bench/compare-pytorch.ts` times these next to our ORT sessions, interleaved, in one run:

- clip: Hugging Face `CLIPVisionModelWithProjection` with ViT-B/32 shapes and random weights,
  `image_embeds` under `torch.inference_mode()`, at a given batch size.
- step: one VQGAN+CLIP step with the structure of src/worker/generate/step-graph.ts: latent z ->
  straight-through quantiser (16384 x 256 codebook) -> post_quant_conv + taming f16_16384 decoder
  (tools/vqgan_reference.py) -> (x + 1) / 2 clamped (gradient passes through, as ClampWithGrad) ->
  cutouts as batched matrix products rows_k . img . cols_k^T -> noise -> CLIP normalisation -> CLIP
  ViT-B/32 image tower -> L2-normalised embeddings -> spherical distance 2 asin(|a - b| / 2)^2 to one
  prompt -> mean over cutouts -> loss.backward() -> Adam step on z.

Modes (threads default 2; set before any model is built; --device cpu (default) or cuda):

    .venv/bin/python tools/pytorch_bench.py --threads 2 --clip 1,16 --steps 128x8,256x8,256x32
        times everything and prints one JSON object.
    .venv/bin/python tools/pytorch_bench.py --serve --threads 2
        reads one JSON command per stdin line and answers one JSON line each, so a caller can
        interleave PyTorch samples with its own: {"op": "clip", "batch": 1, "reps": 3} or
        {"op": "step", "size": 128, "cutouts": 8, "reps": 1}; {"op": "drop", "size": 128, "cutouts": 8}
        frees a step's state; {"op": "info"}; {"op": "quit"}.
    .venv/bin/python tools/pytorch_bench.py --device cuda --clip 1,16 --steps 128x8,256x8,256x32
        the same PyTorch step on a GPU (fp32; TF32 as PyTorch defaults, reported in "info"): every
        sample is bracketed by torch.cuda.synchronize(), warm-up runs come first (cuDNN picks its
        algorithms then), and each step sample reports the peak CUDA memory.

Nothing in src/ or test/ runs this; torch and transformers are only needed to run it.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.dont_write_bytecode = True

from vqgan_reference import Decoder  # noqa: E402

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# taming's vqgan_imagenet_f16_16384 ddconfig (src/worker/models/config.ts vqganF16_16384Config).
F16_16384 = {
    "double_z": False,
    "z_channels": 256,
    "resolution": 256,
    "in_channels": 3,
    "out_ch": 3,
    "ch": 128,
    "ch_mult": [1, 1, 2, 2, 4],
    "num_res_blocks": 2,
    "attn_resolutions": [16],
    "dropout": 0.0,
}
EMBED_DIM = 256
N_EMBED = 16384

# Where models and tensors live (--device); set once in main() before anything is built.
DEVICE = torch.device("cpu")


def synchronize() -> None:
    """Waits for queued GPU work, so a sample times the kernels and not just their launch."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Models:
    """Full-size random-weight models, built on first use and kept."""

    def __init__(self) -> None:
        self._clip = None
        self._vqgan = None

    @property
    def clip(self):
        if self._clip is None:
            from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

            torch.manual_seed(0)
            model = CLIPVisionModelWithProjection(CLIPVisionConfig())  # ViT-B/32 defaults
            model.eval().to(DEVICE)
            self._clip = model
        return self._clip

    @property
    def vqgan(self):
        if self._vqgan is None:
            torch.manual_seed(1)
            decoder = Decoder(**F16_16384).eval()
            post_quant_conv = torch.nn.Conv2d(EMBED_DIM, F16_16384["z_channels"], 1).eval()
            codebook = torch.randn(N_EMBED, EMBED_DIM) * 0.5
            for p in [*decoder.parameters(), *post_quant_conv.parameters()]:
                p.requires_grad_(False)
            # Drawn on the CPU (the same values on every device), then moved.
            self._vqgan = (decoder.to(DEVICE), post_quant_conv.to(DEVICE), codebook.to(DEVICE))
        return self._vqgan


def quantize_st(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Nearest codebook row per position (squared distance), straight-through gradient."""
    b, c, h, w = z.shape
    zf = z.detach().permute(0, 2, 3, 1).reshape(-1, c)
    d = (codebook**2).sum(1) - 2 * zf @ codebook.t()  # ||z||^2 does not change the argmin
    zq = codebook[d.argmin(1)].view(b, h, w, c).permute(0, 3, 1, 2)
    return z + (zq - z).detach()


class ClampWithGrad(torch.autograd.Function):
    """VQGAN-CLIP's clamp: the gradient passes wherever it pulls a value back into range."""

    @staticmethod
    def forward(ctx, x, lo, hi):  # type: ignore[override]
        ctx.lo, ctx.hi = lo, hi
        ctx.save_for_backward(x)
        return x.clamp(lo, hi)

    @staticmethod
    def backward(ctx, gy):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return gy * (gy * (x - x.clamp(ctx.lo, ctx.hi)) >= 0), None, None


def spherical_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a[:, None, :] - b[None, :, :]).norm(dim=-1).div(2).clamp(max=1).asin().pow(2).mul(2)


class Step:
    """One generation step at (size, cutouts), state kept across calls like the real loop."""

    def __init__(self, models: Models, size: int, cutouts: int) -> None:
        decoder, post_quant_conv, codebook = models.vqgan
        self.clip = models.clip
        self.decoder, self.post_quant_conv, self.codebook = decoder, post_quant_conv, codebook
        for p in self.clip.parameters():
            p.requires_grad_(False)
        g = torch.Generator().manual_seed(size * 1000 + cutouts)
        s, k = 224, cutouts
        # Drawn on the CPU with a seeded generator (same values on every device), then moved.
        z = torch.randn(1, EMBED_DIM, size // 16, size // 16, generator=g) * 0.5
        self.z = z.to(DEVICE).requires_grad_(True)
        self.opt = torch.optim.Adam([self.z], lr=0.1)
        # Cutout matrices and noise: per step in the real loop; their values do not change the cost.
        self.rows = (torch.rand(k, 1, s, size, generator=g) / size).to(DEVICE)
        self.cols_t = (torch.rand(k, 1, size, s, generator=g) / size).to(DEVICE)
        self.noise = (torch.randn(k, 3, s, s, generator=g) * 0.05).to(DEVICE)
        self.mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1).to(DEVICE)
        self.std = torch.tensor(CLIP_STD).view(1, 3, 1, 1).to(DEVICE)
        prompt = torch.randn(1, 512, generator=g)
        self.prompt = F.normalize(prompt, dim=-1).to(DEVICE)

    def __call__(self) -> float:
        self.opt.zero_grad(set_to_none=True)
        zq = quantize_st(self.z, self.codebook)
        img = self.decoder(self.post_quant_conv(zq))
        img = ClampWithGrad.apply((img + 1) / 2, 0.0, 1.0)
        cut = self.rows @ img @ self.cols_t  # [K, 3, 224, 224]
        pixels = (cut + self.noise - self.mean) / self.std
        emb = F.normalize(self.clip(pixel_values=pixels).image_embeds, dim=-1)
        loss = spherical_distance(emb, self.prompt).mean(0).sum()
        loss.backward()
        self.opt.step()
        return float(loss.detach())


def time_ms(fn, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        synchronize()
        t0 = time.perf_counter()
        fn()
        synchronize()
        out.append((time.perf_counter() - t0) * 1000)
    return out


class Bench:
    def __init__(self) -> None:
        self.models = Models()
        self.steps: dict[tuple[int, int], Step] = {}
        self.clip_inputs: dict[int, torch.Tensor] = {}

    def clip_fn(self, batch: int):
        x = self.clip_inputs.get(batch)
        if x is None:
            x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(batch)).to(DEVICE)
            self.clip_inputs[batch] = x
        model = self.models.clip

        def run() -> None:
            with torch.inference_mode():
                model(pixel_values=x).image_embeds

        return run

    def step_fn(self, size: int, cutouts: int):
        key = (size, cutouts)
        if key not in self.steps:
            self.steps[key] = Step(self.models, size, cutouts)
        return self.steps[key]

    def handle(self, cmd: dict) -> dict:
        op = cmd.get("op")
        reps = int(cmd.get("reps", 1))
        warmup = int(cmd.get("warmup", 0))
        if op == "info":
            return info()
        if op == "drop":
            self.steps.pop((int(cmd["size"]), int(cmd["cutouts"])), None)
            gc.collect()
            return {"samples_ms": []}
        if op == "clip":
            fn = self.clip_fn(int(cmd["batch"]))
        elif op == "step":
            fn = self.step_fn(int(cmd["size"]), int(cmd["cutouts"]))
        else:
            raise ValueError(f"unknown op {op!r}")
        time_ms(fn, warmup)
        if DEVICE.type == "cuda":
            torch.cuda.reset_peak_memory_stats(DEVICE)
        reply: dict = {"samples_ms": time_ms(fn, reps)}
        if DEVICE.type == "cuda":
            reply["peak_cuda_mb"] = torch.cuda.max_memory_allocated(DEVICE) / 2**20
        return reply


def info() -> dict:
    transformers_version = None
    clip_attn = None
    try:
        import transformers
        from transformers import CLIPVisionConfig

        transformers_version = transformers.__version__
        clip_attn = getattr(CLIPVisionConfig(), "_attn_implementation", None)
    except Exception:  # noqa: BLE001 - informational only; the CLIP tower needs it, and says so when built
        pass
    out = {
        "torch": torch.__version__,
        "transformers": transformers_version,
        "python": platform.python_version(),
        "device": str(DEVICE),
        "threads": torch.get_num_threads(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "clip_attn_implementation": clip_attn,
    }
    if DEVICE.type == "cuda":
        out.update(
            {
                "gpu": torch.cuda.get_device_name(DEVICE),
                "cuda": torch.version.cuda,
                "cudnn": torch.backends.cudnn.version(),
                # fp32 convs may run in TF32 on Ampere+ (PyTorch's default); matmuls do not.
                "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            }
        )
    return out


def summary(samples: list[float]) -> dict:
    s = sorted(samples)
    return {"median_ms": s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2,
            "min_ms": s[0], "max_ms": s[-1], "samples_ms": samples}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where the models run")
    ap.add_argument("--serve", action="store_true")
    ap.add_argument("--clip", default="1,16", help="batch sizes, comma-separated ('' for none)")
    ap.add_argument("--clip-reps", type=int, default=15)
    ap.add_argument("--steps", default="128x8,256x8,256x32", help="SIZExCUTOUTS list ('' for none)")
    ap.add_argument("--step-reps", type=int, default=3)
    args = ap.parse_args()
    global DEVICE
    if args.device == "cuda" and not torch.cuda.is_available():
        # A CPU-only torch build or no visible GPU: say so instead of a stack trace from the first .to().
        print(
            f"--device cuda: this torch ({torch.__version__}) sees no CUDA device "
            f"(built with CUDA {torch.version.cuda}); install a CUDA build of torch on a GPU host",
            file=sys.stderr,
        )
        sys.exit(2)
    DEVICE = torch.device(args.device)
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    bench = Bench()
    if args.serve:
        print(json.dumps({"ready": True, **info()}), flush=True)
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            cmd = json.loads(line)
            if cmd.get("op") == "quit":
                break
            try:
                reply = bench.handle(cmd)
            except Exception as err:  # noqa: BLE001 - reported to the caller, which decides
                reply = {"error": f"{type(err).__name__}: {err}"}
            print(json.dumps(reply), flush=True)
        return
    result: dict = {"info": info(), "clip": {}, "step": {}}
    for b in [int(v) for v in args.clip.split(",") if v]:
        log(f"clip batch {b}")
        samples = bench.handle({"op": "clip", "batch": b, "reps": args.clip_reps, "warmup": 2})["samples_ms"]
        r = summary(samples)
        r["images_per_s"] = 1000 * b / r["median_ms"]
        result["clip"][str(b)] = r
    for spec in [v for v in args.steps.split(",") if v]:
        size, cutouts = (int(v) for v in spec.split("x"))
        log(f"step {size}x{size}, {cutouts} cutouts")
        samples = bench.handle(
            {"op": "step", "size": size, "cutouts": cutouts, "reps": args.step_reps, "warmup": 1}
        )["samples_ms"]
        result["step"][spec] = summary(samples)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
