"""CLIP image-embedding throughput (issue 17): frames per second, CPU and GPU.

Two figures per model and device, both with open_clip's own model (random weights: the speed does
not depend on the values) at the frame size clips have (832x480):

* ``embedder``: wandata's path (``wandata.quality.clip.Embedder.images``): PIL pictures through
  open_clip's preprocessing on the host, then the image tower in batches (autocast on a GPU);
* ``model only``: the image tower on tensors already preprocessed and on the device: the
  ceiling the host-side preprocessing leaves room for.

    python bench/clip_throughput.py                          # ViT-B-32 and ViT-L-14, every device here
    python bench/clip_throughput.py --models ViT-B-32 --frames 256 --json out.json
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # benchmark the working tree


def _sync(device):
    import torch
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(model: str, device: str, frames: int, batch: int) -> dict:
    import torch
    from PIL import Image

    from wandata.quality.clip import load_embedder

    torch.manual_seed(0)
    emb = load_embedder(model, pretrained=None, device=device, batch_size=batch)
    rng = np.random.default_rng(0)
    pics = [Image.fromarray(rng.integers(0, 256, (480, 832, 3), dtype=np.uint8)) for _ in range(batch)]
    emb.images(pics)   # warm-up (kernels, autocast caches)
    _sync(device)
    t, done = time.perf_counter(), 0
    while done < frames:
        emb.images(pics)
        done += batch
    _sync(device)
    path_fps = done / (time.perf_counter() - t)
    x = torch.stack([emb.preprocess(p) for p in pics]).to(device)
    with torch.inference_mode(), torch.autocast(device.split(":")[0], enabled=device != "cpu"):
        emb.model.encode_image(x)
        _sync(device)
        t, done = time.perf_counter(), 0
        while done < frames:
            emb.model.encode_image(x)
            done += batch
        _sync(device)
    model_fps = done / (time.perf_counter() - t)
    name = torch.cuda.get_device_name() if device.startswith("cuda") else f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
    return {"model": model, "device": name, "batch": batch, "frames": done,
            "embedder_fps": round(path_fps, 1), "model_only_fps": round(model_fps, 1),
            "clips_per_s": round(path_fps / 3, 1)}


def main() -> int:
    import torch
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["ViT-B-32", "ViT-L-14"])
    ap.add_argument("--devices", nargs="+", help="default: cpu, and cuda when there is one")
    ap.add_argument("--frames", type=int, default=0, help="frames timed per figure (default 64 on CPU, 2048 on GPU)")
    ap.add_argument("--batch", type=int, default=0, help="default 32 on CPU, 256 on GPU")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    devices = args.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    rows = []
    for device in devices:
        gpu = device.startswith("cuda")
        for model in args.models:
            r = measure(model, device, args.frames or (2048 if gpu else 64), args.batch or (256 if gpu else 32))
            rows.append(r)
            print(f"{r['model']:10s} {r['device'][:34]:34s} batch {r['batch']:4d}: embedder {r['embedder_fps']:8.1f} "
                  f"frames/s ({r['clips_per_s']:.1f} clips/s at 3 frames), model only {r['model_only_fps']:8.1f}",
                  flush=True)
            if args.json:
                args.json.write_text(json.dumps({"torch": torch.__version__, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
