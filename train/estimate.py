"""Seconds per step and peak GPU memory for a run, from the figures in ``measured.json``.

Every figure there was measured (``bench/train_step.py``), with the GPU it ran on. An
estimate says which figure it starts from and how far it had to reach:

* ``measured``: same model, mode (cached or not), frames and size;
* ``scaled``: same model, another clip shape: time and activation memory scale with the
  DiT's latent tokens (linear; attention grows faster, so long clips run somewhat slower);
* ``extrapolated``: another model (the 14B from the 1.3B): time also scales with the DiT's
  parameters, memory with its weights, split over the GPUs under ZeRO-3. A rough guide only.
"""
from __future__ import annotations

import json
from pathlib import Path

from . import models as M

MEASURED = Path(__file__).with_name("measured.json")
GIB_PER_B_PARAMS_BF16 = 2 / 1.073741824   # 1e9 bf16 parameters in GiB


def load(path: Path | None = None) -> list[dict]:
    data = json.loads(Path(path or MEASURED).read_text(encoding="utf-8"))
    return list(data.get("entries", []))


def latent_tokens(frames: int, height: int, width: int) -> int:
    """Tokens the Wan DiT attends over: VAE 4x time / 8x space, then 2x2 patches."""
    return ((frames - 1) // 4 + 1) * (height // 16) * (width // 16)


def run_shape(cfg) -> tuple[int, int, int]:
    """The largest clip shape of the run (dynamic mode: the largest bucket)."""
    if cfg.height and cfg.width:
        return cfg.num_frames, cfg.height, cfg.width
    if cfg.buckets:
        b = max(cfg.buckets, key=lambda b: b["width"] * b["height"])
        return cfg.num_frames, b["height"], b["width"]
    return cfg.num_frames, 480, 832


def estimate(cfg, num_gpus: int = 1, gpu: str | None = None, entries: list[dict] | None = None) -> dict | None:
    entries = [e for e in (entries if entries is not None else load())
               if e.get("trainer", "wandata") == "wandata" and e.get("s_per_step")]
    mode = "cached" if cfg.use_cache else "uncached"
    frames, height, width = run_shape(cfg)
    tokens = latent_tokens(frames, height, width)
    pool = [e for e in entries if e.get("mode") == mode] or entries
    if not pool:
        return None

    def rank(e):
        same_model = e.get("model") == cfg.model
        same_gpu = gpu is not None and e.get("gpu") == gpu
        same_gpus = e.get("num_gpus", 1) == num_gpus
        dist = abs(latent_tokens(e["frames"], e["height"], e["width"]) - tokens)
        return (not same_model, not same_gpus, not same_gpu, dist)

    e = min(pool, key=rank)
    e_tokens = latent_tokens(e["frames"], e["height"], e["width"])
    ratio = tokens / e_tokens
    p_run = M.PRESETS[cfg.model].params_b if cfg.model in M.PRESETS else None
    p_ref = M.PRESETS[e["model"]].params_b if e.get("model") in M.PRESETS else None
    s = e["s_per_step"] * ratio
    weights = e.get("weights_gib")
    act = (e["peak_gib"] - weights) if weights is not None else None
    if e.get("model") == cfg.model and e.get("num_gpus", 1) == num_gpus:
        basis = "measured" if ratio == 1 and e.get("mode") == mode else "scaled"
        peak = e["peak_gib"] if act is None else weights + act * ratio
    else:
        basis = "extrapolated"
        pr = (p_run / p_ref) if p_run and p_ref else 1.0
        s *= pr   # data parallel: each GPU takes one clip per step; ZeRO-3 traffic comes on top
        w_run = (p_run or 1.42) * GIB_PER_B_PARAMS_BF16
        shard = num_gpus if cfg.phase == 2 and cfg.deepspeed == "zero3" else 1
        peak = w_run / shard + (act or 0.0) * ratio * (pr ** 0.5)
        if mode == "uncached":
            peak += 10.6   # UMT5-XXL stays on the GPU
    out = {"basis": basis, "mode": mode, "frames": frames, "height": height, "width": width, "tokens": tokens,
           "s_per_step": round(s, 2), "peak_gib": round(peak, 1), "num_gpus": num_gpus,
           "from": {k: e.get(k) for k in ("gpu", "model", "mode", "frames", "height", "width", "num_gpus",
                                           "s_per_step", "peak_gib", "date", "source")}}
    if gpu is not None and e.get("gpu") != gpu:
        out["gpu_differs"] = True
    if e.get("encode_s_per_clip") and mode == "cached":
        out["encode_s_per_clip"] = round(e["encode_s_per_clip"] * ratio, 2)
    return out


def describe(est: dict | None, steps: int | None, clips: int) -> list[str]:
    if est is None:
        return ["no measured figures (train/measured.json); run bench/train_step.py on your GPU to add one"]
    f = est["from"]
    lines = [f"from {f['gpu']}: {f['model']}, {f['mode']}, {f['frames']}x{f['height']}x{f['width']}, "
             f"{f.get('num_gpus', 1)} GPU(s): {f['s_per_step']} s/step, peak {f['peak_gib']} GiB"
             + (f" ({f['date']})" if f.get("date") else ""),
             f"this run ({est['basis']}): {est['frames']}x{est['height']}x{est['width']} ({est['tokens']} tokens), "
             f"~{est['s_per_step']} s/step, ~{est['peak_gib']} GiB peak per GPU"]
    if steps:
        lines.append(f"training: {steps} steps, ~{steps * est['s_per_step'] / 60:.0f} min")
    if est.get("encode_s_per_clip"):
        lines.append(f"encode once: {clips} clips, ~{clips * est['encode_s_per_clip'] / 60:.1f} min "
                     "(skipped for clips already in the cache)")
    if est["basis"] == "extrapolated":
        lines.append("extrapolated from another model: a rough guide; measure with bench/train_step.py")
    if est.get("gpu_differs"):
        lines.append("measured on another GPU than this machine's")
    return lines
