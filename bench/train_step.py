"""Time wandata's phase-1 training step: text encoder + VAE every step vs from the cache.

Builds a full-size, randomly initialised Wan2.1-T2V-1.3B (DiT, UMT5-XXL text encoder,
Wan2.1 VAE; shapes identical to the released checkpoints, so DiffSynth's model table
recognises each file by its key:shape hash; random weights, nothing downloaded), puts a
rank-32 LoRA on the DiT (q,k,v,o,ffn.0,ffn.2), and trains on one synthetic clip
(81 x 480 x 832 by default) with wandata's own training step (``wandata.train.trainer.train_step``):

* uncached: every step runs the text encoder and VAE, then the DiT (DiffSynth's default);
* encode:   one clip through the text encoder and VAE alone (what the cache pays once);
* cached:   the encoders are freed; every step reads the clip's tensors from the
  safetensors cache on disk and runs only the DiT.

Reports median seconds per step (after warm-up) and peak GPU memory
(``torch.cuda.max_memory_allocated``) with the GPU's name; ``--json OUT`` writes them.
``--tiny`` runs the same code on a tiny random stack (CPU smoke test).

``--sweep`` times the cached step alone (what ``wandata/train/estimate.py`` models) over many
configurations in one process: clip shapes, LoRA ranks, gradient checkpointing on and
off, the 1.3B and the 14B DiT. The DiT is built in memory with random weights (no files,
no encoders) and fed synthetic cached inputs of the real shapes (latents
16 x ((F-1)/4+1) x H/8 x W/8, a 512 x 4096 text context), then trained with the same
``wandata.train.trainer.train_step``. Each configuration is written as one JSON line the moment it
is done, so a run stopped at its time limit keeps what it measured. Each line carries its
``role`` from ``SWEEP``: ``fit`` (the estimator's efficiencies are fitted on these) or
``held_out`` (never fitted on; the estimator's error is measured on them).

    python bench/train_step.py --json bench/train_step.json
    python bench/train_step.py --tiny --device cpu          # smoke run, seconds
    python bench/train_step.py --sweep --json-lines sweep.jsonl --deadline 480
    python bench/train_step.py --sweep --tiny --device cpu --json-lines /tmp/s.jsonl   # smoke run
"""
from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # benchmark the working tree, not some installed copy

T2V_13B = {"has_image_input": False, "patch_size": [1, 2, 2], "in_dim": 16, "dim": 1536, "ffn_dim": 8960,
           "freq_dim": 256, "text_dim": 4096, "out_dim": 16, "num_heads": 12, "num_layers": 30, "eps": 1e-06}
T2V_14B = dict(T2V_13B, dim=5120, ffn_dim=13824, num_heads=40, num_layers=40)
DITS = {"1.3B": ("Wan2.1-T2V-1.3B", T2V_13B), "14B": ("Wan2.1-T2V-14B", T2V_14B)}
PROMPT = "a red fox running across a snowy field at dawn, the camera panning slowly to the left"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def build_full(folder: Path, device: str, dit: dict = T2V_13B) -> dict:
    """Random full-size Wan2.1 T2V files (safetensors) + a small word tokenizer."""
    from safetensors.torch import save_file
    from diffsynth.models.wan_video_dit import WanModel
    from diffsynth.models.wan_video_text_encoder import WanTextEncoder
    from diffsynth.models.wan_video_vae import VideoVAE_
    from tools.tiny_wan import write_tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    files = {"dit": folder / "dit.safetensors", "text_encoder": folder / "text_encoder.safetensors",
             "vae": folder / "vae.safetensors"}
    makers = {"dit": lambda: WanModel(**dit), "text_encoder": WanTextEncoder, "vae": lambda: VideoVAE_()}
    torch.manual_seed(0)
    for role, path in files.items():
        if path.exists():
            continue
        t = time.perf_counter()
        old = torch.get_default_dtype()
        torch.set_default_dtype(torch.bfloat16)   # init directly in bf16, on the GPU when there is one
        try:
            with torch.device(device):
                model = makers[role]()
        finally:
            torch.set_default_dtype(old)
        sd = {k: v.detach().to("cpu", torch.bfloat16).contiguous() for k, v in model.state_dict().items()}
        del model
        if str(device).startswith("cuda"):
            torch.cuda.empty_cache()
        save_file(sd, str(path))
        del sd
        gc.collect()
        log(f"wrote random {role}: {path} ({path.stat().st_size / 2**30:.1f} GiB, {time.perf_counter() - t:.0f} s)")
    # The UMT5 tokenizer is not downloadable here; a word-level one gives token ids inside
    # the embedding and is padded to the same 512 tokens, so the encoder's work is identical.
    write_tokenizer(folder / "tokenizer")
    return {**{k: [str(v)] for k, v in files.items()}, "tokenizer": [str(folder / "tokenizer")]}


def synthetic_clip(frames: int, height: int, width: int):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    return [Image.fromarray(np.roll(base, 8 * i, axis=1)) for i in range(frames)]


def attention_impl() -> str:
    from diffsynth.models import wan_video_dit as w
    for flag, name in (("FLASH_ATTN_3_AVAILABLE", "flash-attn 3"), ("FLASH_ATTN_2_AVAILABLE", "flash-attn 2"),
                       ("SAGE_ATTN_AVAILABLE", "sage")):
        if getattr(w, flag, False):
            return name
    return "torch SDPA"


def timed_steps(n_warm: int, n: int, fn, device) -> list[float]:
    out = []
    for i in range(n_warm + n):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        if i >= n_warm:
            out.append(time.perf_counter() - t)
    return out


def peak_gib(device) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if str(device).startswith("cuda") else None


def reset_peak(device):
    if str(device).startswith("cuda"):
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=81)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=832)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per mode")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--encode-reps", type=int, default=3)
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--no-gradient-checkpointing", action="store_true")
    ap.add_argument("--models-dir", type=Path, help="keep the random model files here (reused when present)")
    ap.add_argument("--tiny", action="store_true", help="tiny random stack (smoke run)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--phase2", action="store_true", help="run wandata's phase 2 (accelerate + DeepSpeed) instead")
    ap.add_argument("--gpus", type=int, default=2, help="phase 2: processes (GPUs)")
    ap.add_argument("--model", choices=sorted(DITS), default=None, help="DiT size (default 1.3B; phase 2: 14B)")
    ap.add_argument("--deepspeed", choices=["zero3", "zero2-offload"], default="zero3")
    ap.add_argument("--clips-per-gpu", type=int, default=1)
    ap.add_argument("--work", type=Path, help="phase 2: working folder (kept)")
    ap.add_argument("--sweep", action="store_true", help="time the cached DiT step over the SWEEP configurations")
    ap.add_argument("--json-lines", type=Path, help="sweep: append one JSON line per configuration here")
    ap.add_argument("--deadline", type=float, default=540.0,
                    help="sweep: start no configuration after this many seconds")
    ap.add_argument("--only", help="sweep: comma-separated indexes into SWEEP")
    args = ap.parse_args(argv)
    if args.sweep:
        return sweep(args)
    if args.phase2:
        args.model = args.model or "14B"
        return phase2(args)
    if args.model not in (None, "1.3B"):
        ap.error("the one-GPU benchmark measures the 1.3B model; use --phase2 for 14B")

    from accelerate import Accelerator
    import diffsynth

    from wandata.train import cache as C
    from wandata.train.config import DEFAULT_TARGETS, TrainConfig
    from wandata.train.models import register_models
    from wandata.train.module import WanLoRAModule, load_pipeline
    from wandata.train.trainer import train_step

    device = args.device
    tmp = tempfile.TemporaryDirectory(prefix="wandata-bench-")
    work = Path(tmp.name)
    if args.tiny:
        from tools.tiny_wan import build_tiny_stack
        stack = build_tiny_stack(args.models_dir or work / "models")
        files = {k: [stack[k]] for k in ("dit", "text_encoder", "vae", "tokenizer")}
        registry, model_name = stack["registry"], "tiny random Wan stack"
        if (args.frames, args.height, args.width) == (81, 480, 832):
            args.frames, args.height, args.width = 5, 32, 32
    else:
        files = build_full(args.models_dir or work / "models", device)
        registry, model_name = [], "Wan2.1-T2V-1.3B (random weights)"
    dtype = "bf16" if str(device).startswith("cuda") else "fp32"
    cfg = TrainConfig(models={k: {"paths": v} for k, v in files.items()}, model_registry=registry, dtype=dtype,
                      lora_rank=args.rank, lora_targets=DEFAULT_TARGETS, num_frames=args.frames,
                      height=args.height, width=args.width, gradient_checkpointing=not args.no_gradient_checkpointing,
                      output_dir=str(work / "out"), cache_dir=str(work / "cache"), steps=1)
    register_models(registry)
    accelerator = Accelerator(cpu=not str(device).startswith("cuda"))

    t = time.perf_counter()
    pipe = load_pipeline(cfg, files, device=device)
    load_s = time.perf_counter() - t
    torch.manual_seed(0)
    module = WanLoRAModule(pipe, cfg)
    module.to(device)
    params = list(module.trainable_modules())
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-2)
    module, optimizer = accelerator.prepare(module, optimizer)
    inner = accelerator.unwrap_model(module)
    clip = {"video": synthetic_clip(args.frames, args.height, args.width), "prompt": PROMPT}
    weights = {r: sum(p.numel() * p.element_size() for p in getattr(inner.pipe, r).parameters()) / 2**30
               for r in ("dit", "text_encoder", "vae")}
    log(f"loaded in {load_s:.0f} s; weights GiB {weights}; LoRA params {sum(p.numel() for p in params):,}")

    # 1) text encoder + VAE at every step
    reset_peak(device)
    unc = timed_steps(args.warmup, args.steps, lambda: train_step(accelerator, module, optimizer, params, cfg, item=clip), device)
    unc_peak = peak_gib(device)
    log(f"uncached: {statistics.median(unc):.3f} s/step, peak {unc_peak} GiB")

    # 2) encode once
    enc_times, inputs = [], None
    for _ in range(args.encode_reps):
        sync(device)
        t = time.perf_counter()
        inputs = inner.encode(clip)
        sync(device)
        enc_times.append(time.perf_counter() - t)
    cache = C.EncodeCache(cfg.cache_dir)
    cache.put("bench", inputs)
    del inputs
    cache_bytes = cache.path("bench").stat().st_size
    log(f"encode: {statistics.median(enc_times):.3f} s/clip; cache file {cache_bytes / 2**20:.1f} MiB")

    # 3) from the cache, encoders freed (as in a phase-1 run, where they are never loaded)
    inner.free_encoders()
    gc.collect()
    reset_peak(device)
    cached = timed_steps(args.warmup, args.steps,
                         lambda: train_step(accelerator, module, optimizer, params, cfg, inputs=cache.get("bench")),
                         device)
    cached_peak = peak_gib(device)
    log(f"cached: {statistics.median(cached):.3f} s/step, peak {cached_peak} GiB")

    gpu = torch.cuda.get_device_name() if str(device).startswith("cuda") else "cpu"
    result = {
        "gpu": gpu, "device": str(device), "torch": torch.__version__, "diffsynth": diffsynth.__version__
        if hasattr(diffsynth, "__version__") else _pkg_version("diffsynth"),
        "attention": attention_impl(), "model": model_name, "frames": args.frames, "height": args.height,
        "width": args.width, "lora_rank": args.rank, "dtype": dtype,
        "gradient_checkpointing": not args.no_gradient_checkpointing, "steps_timed": args.steps,
        "warmup_steps": args.warmup, "weights_gib": {k: round(v, 3) for k, v in weights.items()},
        "uncached": {"s_per_step": statistics.median(unc), "step_s": unc, "peak_gib": unc_peak},
        "cached": {"s_per_step": statistics.median(cached), "step_s": cached, "peak_gib": cached_peak,
                   "cache_file_mib": cache_bytes / 2**20},
        "encode": {"s_per_clip": statistics.median(enc_times), "runs_s": enc_times},
        "date": _dt.date.today().isoformat(),
    }
    print_table(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    tmp.cleanup()
    return 0


def write_gif_dataset(folder: Path, n: int, frames: int, height: int, width: int) -> Path:
    """``n`` GIF clips + metadata.jsonl. DiffSynth's UnifiedDataset reads GIFs with
    imageio's Pillow plugin, so no ffmpeg is needed on the GPU machine."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    y, x = np.mgrid[0:height, 0:width]
    for k in range(n):
        ims = [Image.fromarray(np.stack([(x + 6 * i + 40 * k) % 256, (y + 3 * i) % 256, (x + y) // 8 % 256],
                                        -1).astype(np.uint8)) for i in range(frames)]
        name = f"clip{k}.gif"
        ims[0].save(folder / name, save_all=True, append_images=ims[1:], duration=62, loop=0)
        rows.append({"video": name, "prompt": f"{PROMPT}, take {k}"})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return folder


def phase2(args) -> int:
    """wandata's phase 2 end to end: ``accelerate launch`` + DeepSpeed over ``--gpus`` GPUs,
    a random full-size DiT, one clip per GPU per step; reads the run's summary.json."""
    from wandata.train import launch
    from wandata.train.config import DEFAULT_TARGETS, TrainConfig

    work = Path(args.work or tempfile.mkdtemp(prefix="wandata-bench-p2-"))
    if args.tiny:
        from tools.tiny_wan import build_tiny_stack
        stack = build_tiny_stack(args.models_dir or work / "models")
        files = {k: [stack[k]] for k in ("dit", "text_encoder", "vae", "tokenizer")}
        registry, model = stack["registry"], "Wan2.1-T2V-14B"
        label = "tiny random Wan stack"
        if (args.frames, args.height, args.width) == (81, 480, 832):
            args.frames, args.height, args.width = 5, 32, 32
    else:
        model, kwargs = DITS[args.model]
        files = build_full(args.models_dir or work / "models", "cuda", kwargs)
        registry, label = [], f"{model} (random weights)"
    data = write_gif_dataset(work / "data", args.gpus * args.clips_per_gpu, args.frames, args.height, args.width)
    total = args.warmup + args.steps
    cfg = TrainConfig(phase=2, model=model, models={k: {"paths": v} for k, v in files.items()},
                      model_registry=registry, dataset_base_path=str(data), metadata_path=str(data / "metadata.jsonl"),
                      num_frames=args.frames, height=args.height, width=args.width, resolution_mode="fixed",
                      num_clips=args.gpus * args.clips_per_gpu, output_dir=str(work / "run"),
                      cache_dir=str(work / "cache"), steps=total, save_every=max(1, total - 1),
                      lora_rank=args.rank, lora_targets=DEFAULT_TARGETS, num_processes=args.gpus,
                      deepspeed=args.deepspeed, main_process_port=29517, num_workers=0,
                      gradient_checkpointing=not args.no_gradient_checkpointing,
                      dtype="bf16" if torch.cuda.is_available() else "fp32")
    log("launch:", launch.shell(launch.command(cfg)))
    # The launched processes run this checkout too, and --tiny's model table names a class in
    # tools/ (development only, not installed), which DiffSynth imports by its dotted path.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    t = time.perf_counter()
    code = launch.launch_phase2(cfg)
    wall = time.perf_counter() - t
    if code != 0:
        log(f"accelerate launch exited with {code}")
        return code
    summ = json.loads((work / "run" / "summary.json").read_text())
    steps = summ["step_seconds"][args.warmup:] or summ["step_seconds"]
    result = {"gpu": summ.get("gpu", "cpu"), "num_gpus": args.gpus, "deepspeed": args.deepspeed, "model": label,
              "frames": args.frames, "height": args.height, "width": args.width, "lora_rank": args.rank,
              "torch": torch.__version__, "s_per_step": statistics.median(steps), "step_s": summ["step_seconds"],
              "peak_gib_per_gpu": summ.get("peak_gib_per_gpu"), "encode": summ.get("encode"),
              "load_seconds": summ.get("load_seconds"), "wall_seconds": wall, "losses": summ["losses"],
              "checkpoints": summ["checkpoints"], "date": _dt.date.today().isoformat()}
    print(f"\n{label}, phase 2 on {args.gpus} GPUs ({result['gpu']}), DeepSpeed {args.deepspeed}, LoRA rank "
          f"{args.rank}, one {args.frames}x{args.height}x{args.width} clip per GPU per step, cached inputs")
    print(f"s/step (median of {len(steps)}): {result['s_per_step']:.3f}; peak GiB per GPU: {result['peak_gib_per_gpu']}")
    print(f"LoRA saved: {', '.join(Path(c).name for c in summ['checkpoints'])}; losses {summ['losses']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


# The sweep. role "fit": the estimator fits its per-GPU efficiencies on these: rank 32,
# checkpointing on, four clip lengths of the 1.3B (so the parts that grow with L and with
# L^2 can be told apart) and one of the 14B (matmul FLOPs grow with d^2, element-wise
# bytes with d: only two DiT widths tell those two apart). role "held_out": never fitted on;
# the estimator's error is measured on them: other lengths, another area and aspect, other
# ranks, checkpointing off, the 14B at two more lengths.
SWEEP = [
    {"model": "1.3B", "frames": 81, "height": 480, "width": 832, "rank": 32, "gc": True, "role": "fit"},
    {"model": "1.3B", "frames": 17, "height": 480, "width": 832, "rank": 32, "gc": True, "role": "fit"},
    {"model": "1.3B", "frames": 33, "height": 480, "width": 832, "rank": 32, "gc": True, "role": "fit"},
    {"model": "1.3B", "frames": 121, "height": 480, "width": 832, "rank": 32, "gc": True, "role": "fit"},
    {"model": "1.3B", "frames": 49, "height": 480, "width": 832, "rank": 32, "gc": True, "role": "held_out"},
    {"model": "1.3B", "frames": 81, "height": 320, "width": 576, "rank": 32, "gc": True, "role": "held_out"},
    {"model": "1.3B", "frames": 81, "height": 480, "width": 832, "rank": 8, "gc": True, "role": "held_out"},
    {"model": "1.3B", "frames": 81, "height": 480, "width": 832, "rank": 128, "gc": True, "role": "held_out"},
    {"model": "1.3B", "frames": 33, "height": 480, "width": 832, "rank": 64, "gc": True, "role": "held_out"},
    {"model": "1.3B", "frames": 81, "height": 480, "width": 832, "rank": 32, "gc": False, "role": "held_out"},
    {"model": "1.3B", "frames": 33, "height": 480, "width": 832, "rank": 32, "gc": False, "role": "held_out"},
    {"model": "14B", "frames": 17, "height": 480, "width": 832, "rank": 32, "gc": True, "role": "held_out"},
    {"model": "14B", "frames": 33, "height": 480, "width": 832, "rank": 32, "gc": True, "role": "fit"},
    {"model": "1.3B", "frames": 81, "height": 720, "width": 1280, "rank": 32, "gc": True, "role": "held_out"},
    {"model": "14B", "frames": 81, "height": 480, "width": 832, "rank": 32, "gc": True, "role": "held_out"},
]
TINY_SWEEP_SHAPES = {17: (5, 32, 32), 33: (9, 32, 32), 49: (13, 32, 32), 81: (17, 32, 32), 121: (21, 32, 32)}


def synthetic_inputs(frames: int, height: int, width: int, text_dim: int, device, dtype):
    """What the encode-once cache hands the step (see wandata.train.cache): VAE latents and the
    text encoder's context, random, in their real shapes."""
    g = torch.Generator().manual_seed(0)
    lat = torch.randn(1, 16, (frames - 1) // 4 + 1, height // 8, width // 8, generator=g)
    ctx = torch.randn(1, 512, text_dim, generator=g)
    shared = {"height": height, "width": width, "num_frames": frames, "cfg_scale": 1, "cfg_merge": False,
              "tiled": False, "vace_scale": 1, "seed": 0, "rand_device": "cpu", "input_latents": lat.to(device, dtype),
              "vace_context": None, "animate_pose_video": None, "animate_face_video": None,
              "animate_inpaint_video": None, "animate_mask_video": None}
    return shared, {"prompt": PROMPT, "context": ctx.to(device, dtype)}, {}


def sweep_one(spec: dict, args, accelerator) -> dict:
    from diffsynth.models.wan_video_dit import WanModel
    from diffsynth.pipelines.wan_video import WanVideoPipeline

    from wandata.train.config import DEFAULT_TARGETS, TrainConfig
    from wandata.train.module import WanLoRAModule
    from wandata.train.trainer import train_step

    device = args.device
    cuda = str(device).startswith("cuda")
    dtype = torch.bfloat16 if cuda else torch.float32
    if args.tiny:
        from tools.tiny_wan import TINY_DIT
        kwargs, text_dim = TINY_DIT, TINY_DIT["text_dim"]
        frames, height, width = TINY_SWEEP_SHAPES.get(spec["frames"], (5, 32, 32))
        rank = min(spec["rank"], 8)
    else:
        kwargs, text_dim = DITS[spec["model"]][1], 4096
        frames, height, width, rank = spec["frames"], spec["height"], spec["width"], spec["rank"]
    reset_peak(device)
    t = time.perf_counter()
    pipe = WanVideoPipeline(device=device, torch_dtype=dtype)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)   # build directly in the training dtype, on the GPU
    try:
        with torch.device(device):
            pipe.dit = WanModel(**kwargs)
    finally:
        torch.set_default_dtype(old)
    cfg = TrainConfig(dtype="bf16" if cuda else "fp32", lora_rank=rank, lora_targets=DEFAULT_TARGETS,
                      num_frames=frames, height=height, width=width, gradient_checkpointing=spec["gc"], steps=1)
    torch.manual_seed(0)
    module = WanLoRAModule(pipe, cfg)
    module.to(device)
    params = list(module.trainable_modules())
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-2)
    module, optimizer = accelerator.prepare(module, optimizer)
    inputs = synthetic_inputs(frames, height, width, text_dim, device, dtype)
    sync(device)
    build_s = time.perf_counter() - t
    weights = torch.cuda.memory_allocated() / 2**30 if cuda else None
    reset_peak(device)
    out = {"model": DITS[spec["model"]][0] if not args.tiny else "tiny random Wan DiT", "frames": frames,
           "height": height, "width": width, "lora_rank": rank, "gradient_checkpointing": spec["gc"],
           "role": spec["role"], "build_s": round(build_s, 2),
           "lora_params": sum(p.numel() for p in params)}
    try:
        steps = timed_steps(args.warmup, args.steps,
                            lambda: train_step(accelerator, module, optimizer, params, cfg, inputs=inputs), device)
        out.update(s_per_step=statistics.median(steps), step_s=[round(x, 4) for x in steps],
                   peak_gib=peak_gib(device), weights_gib=weights)
    except torch.cuda.OutOfMemoryError as e:
        out.update(error=f"out of memory: {str(e).splitlines()[0]}")
    finally:
        accelerator.free_memory()
        del module, optimizer, params, pipe, inputs
        reset_peak(device)
    return out


def sweep(args) -> int:
    """Time the cached DiT step over ``SWEEP`` (or ``--only``); one JSON line each."""
    from accelerate import Accelerator
    import diffsynth  # noqa: F401

    device = args.device
    cuda = str(device).startswith("cuda")
    accelerator = Accelerator(cpu=not cuda)
    specs = list(enumerate(SWEEP))
    if args.only:
        keep = {int(i) for i in args.only.split(",")}
        specs = [(i, s) for i, s in specs if i in keep]
    common = {"gpu": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__,
              "diffsynth": _pkg_version("diffsynth"), "attention": attention_impl(),
              "dtype": "bf16" if cuda else "fp32", "mode": "cached", "trainer": "wandata", "num_gpus": 1,
              "phase": 1, "lora_targets": "q,k,v,o,ffn.0,ffn.2", "date": _dt.date.today().isoformat(),
              "source": "bench/train_step.py --sweep (DiT built in memory, random weights, synthetic cached "
                        f"inputs; median of {args.steps} steps after {args.warmup} warm-up)"}
    start = time.perf_counter()
    rows = []
    for i, spec in specs:
        if time.perf_counter() - start > args.deadline:
            log(f"deadline: skipping sweep[{i}] {spec}")
            continue
        row = dict(common, **sweep_one(spec, args, accelerator), sweep_index=i)
        rows.append(row)
        log(f"sweep[{i}] {row['model']} {row['frames']}x{row['height']}x{row['width']} r{row['lora_rank']} "
            f"gc={row['gradient_checkpointing']}: {row.get('s_per_step', row.get('error'))} s/step, "
            f"peak {row.get('peak_gib')} GiB ({time.perf_counter() - start:.0f} s so far)")
        if args.json_lines:
            args.json_lines.parent.mkdir(parents=True, exist_ok=True)
            with open(args.json_lines, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
                f.flush()
                os.fsync(f.fileno())
    print(f"\n{'model':<18}{'clip':>14}{'rank':>6}{'ckpt':>6}{'s/step':>10}{'peak GiB':>10}  role")
    for r in rows:
        s_ = f"{r['s_per_step']:.3f}" if "s_per_step" in r else "error"
        p_ = f"{r['peak_gib']:.2f}" if r.get("peak_gib") is not None else "n/a"
        print(f"{r['model'][:18]:<18}{r['frames']:>4}x{r['height']}x{r['width']:<5}{r['lora_rank']:>6}"
              f"{'on' if r['gradient_checkpointing'] else 'off':>6}{s_:>10}{p_:>10}  {r['role']}")
    return 0


def _pkg_version(name: str) -> str:
    from importlib.metadata import version
    try:
        return version(name)
    except Exception:
        return "?"


def print_table(r: dict) -> None:
    def gib(v):
        return "n/a (CPU)" if v is None else f"{v:.1f} GiB"
    print(f"\n{r['model']}, LoRA rank {r['lora_rank']}, one {r['frames']}x{r['height']}x{r['width']} clip, "
          f"{r['dtype']}, attention {r['attention']}, torch {r['torch']}")
    print(f"GPU: {r['gpu']}")
    print(f"{'mode':<34}{'s/step':>10}{'peak memory':>16}")
    print(f"{'text encoder + VAE every step':<34}{r['uncached']['s_per_step']:>10.3f}{gib(r['uncached']['peak_gib']):>16}")
    print(f"{'from the cache (DiT only)':<34}{r['cached']['s_per_step']:>10.3f}{gib(r['cached']['peak_gib']):>16}")
    print(f"{'encode once (per clip)':<34}{r['encode']['s_per_clip']:>10.3f}{'':>16}")


if __name__ == "__main__":
    sys.exit(main())
