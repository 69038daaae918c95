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

``--compare`` (issue 16) times, in one process on the same GPU, the cached step three ways:
(a) ``diffsynth``: DiffSynth 2.1.12's own example training path: a ``DiffusionTrainingModule``
built as ``examples/wanvideo/model_training/train.py`` builds it (``switch_pipe_to_training_mode``
with task ``sft:train``, ``split_pipeline_units``, ``FlowMatchSFTLoss``, gradient checkpointing on)
and trained by DiffSynth's ``launch_training_task`` (AdamW, ConstantLR, its DataLoader over the
cached inputs); (b) ``off``: wandata with ``levers = none``; (c) ``auto``: wandata with the
levers chosen at run time (``wandata.train.levers``). Each reads the same synthetic cached
inputs from a safetensors cache on disk. Reported: seconds per step (the mean over the timed
steps, one GPU sync at each end of the window, so that a lever that removes a per-step host
sync shows), the first step apart (it holds the compile), peak GiB, MFU = model FLOPs
(``wandata.train.estimate.work`` without recompute: linear + attention) / s per step /
989e12 (H200 SXM dense bf16 peak, the datasheet's). One JSON line per mode as it finishes.

``--loss-curve N`` trains N steps with levers off and with levers auto on the same fixed
synthetic dataset (4 cached clips), the same LoRA init, seed, timesteps and noise, and writes
both loss lists (``--json``); ``bench/plot_loss.py`` draws them.

    python bench/train_step.py --compare --json-lines cmp.jsonl                  # 1.3B: a, b, c
    python bench/train_step.py --compare --model 14B --modes auto --json-lines cmp.jsonl
    python bench/train_step.py --loss-curve 150 --frames 17 --json loss.json
    python bench/train_step.py --compare --tiny --device cpu                     # smoke run
"""
from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import math
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
# Wan2.2-TI2V-5B: diffsynth/configs/model_configs.py, hash 1f5ab770... (48 latent channels of the
# Wan2.2 VAE, 16x spatial; per-token timesteps; the first frame's latents fused into the input).
# The Wan2.2 A14B experts have the Wan2.1-T2V-14B DiT's dims (the T2V expert's checkpoint hashes
# to that very entry; the I2V expert only takes in_dim 36): the "14B" figure is one expert's.
TI2V_5B = {"has_image_input": False, "patch_size": [1, 2, 2], "in_dim": 48, "dim": 3072, "ffn_dim": 14336,
           "freq_dim": 256, "text_dim": 4096, "out_dim": 48, "num_heads": 24, "num_layers": 30, "eps": 1e-6,
           "seperated_timestep": True, "require_clip_embedding": False, "require_vae_embedding": False,
           "fuse_vae_embedding_in_latents": True}
DITS = {"1.3B": ("Wan2.1-T2V-1.3B", T2V_13B), "14B": ("Wan2.1-T2V-14B", T2V_14B), "5B": ("Wan2.2-TI2V-5B", TI2V_5B)}
# (latent channels, VAE spatial stride) of each DiT's VAE
LATENT = {"1.3B": (16, 8), "14B": (16, 8), "5B": (48, 16)}
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
    ap.add_argument("--deepspeed", choices=["zero3", "zero2-offload", "none"], default="zero3")
    ap.add_argument("--save-every", type=int, help="phase 2: checkpoint every N steps (default: the last two steps)")
    ap.add_argument("--run", default="run", help="phase 2: the run's folder under --work (data and cache are shared)")
    ap.add_argument("--resume", action="store_true", help="phase 2: resume the run from its latest checkpoint")
    ap.add_argument("--levers", choices=["auto", "none"], default="auto", help="phase 2: the run's --levers")
    ap.add_argument("--kill-at", type=int, metavar="K",
                    help="phase 2: SIGKILL every process of the run once checkpoint K's resume state is written")
    ap.add_argument("--clips-per-gpu", type=int, default=1)
    ap.add_argument("--work", type=Path, help="phase 2: working folder (kept)")
    ap.add_argument("--sweep", action="store_true", help="time the cached DiT step over the SWEEP configurations")
    ap.add_argument("--json-lines", type=Path, help="sweep: append one JSON line per configuration here")
    ap.add_argument("--deadline", type=float, default=540.0,
                    help="sweep: start no configuration after this many seconds")
    ap.add_argument("--only", help="sweep: comma-separated indexes into SWEEP")
    ap.add_argument("--compare", action="store_true", help="DiffSynth's path vs wandata levers off vs auto")
    ap.add_argument("--modes", default="diffsynth,off,auto",
                    help="compare: which of diffsynth,off,auto; off+LEVER=VALUE forces one lever on the untuned path "
                         "(e.g. off+compile=on, off+checkpointing=off, off+attention=cudnn)")
    ap.add_argument("--loss-curve", type=int, metavar="N", help="N steps levers off vs auto; losses to --json")
    ap.add_argument("--render", action="store_true",
                    help="with --loss-curve: a validation render with each LoRA and the base model, compared (PSNR)")
    ap.add_argument("--peak-tflops", type=float, default=989.0,
                    help="dense bf16 peak for MFU (default: H200 SXM's datasheet figure)")
    args = ap.parse_args(argv)
    if args.sweep:
        return sweep(args)
    if args.compare:
        return compare(args)
    if args.loss_curve:
        return loss_curve(args)
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
    data = work / "data"
    if not (data / "metadata.jsonl").exists():   # a second run (resume, reference) reads the same clips
        write_gif_dataset(data, args.gpus * args.clips_per_gpu, args.frames, args.height, args.width)
    total = args.warmup + args.steps
    run = work / args.run
    cfg = TrainConfig(phase=2, model=model, models={k: {"paths": v} for k, v in files.items()},
                      model_registry=registry, dataset_base_path=str(data), metadata_path=str(data / "metadata.jsonl"),
                      num_frames=args.frames, height=args.height, width=args.width, resolution_mode="fixed",
                      num_clips=args.gpus * args.clips_per_gpu, output_dir=str(run),
                      cache_dir=str(work / "cache"), steps=total, save_every=args.save_every or max(1, total - 1),
                      resume="auto" if args.resume else None, levers=args.levers,
                      lora_rank=args.rank, lora_targets=DEFAULT_TARGETS, num_processes=args.gpus,
                      deepspeed=args.deepspeed, main_process_port=29517, num_workers=0,
                      gradient_checkpointing=not args.no_gradient_checkpointing,
                      dtype="bf16" if torch.cuda.is_available() else "fp32")
    log("launch:", launch.shell(launch.command(cfg)))
    # The launched processes run this checkout too, and --tiny's model table names a class in
    # tools/ (development only, not installed), which DiffSynth imports by its dotted path.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    t = time.perf_counter()
    if args.kill_at:
        return kill_at(cfg, run, args)
    code = launch.launch_phase2(cfg)
    wall = time.perf_counter() - t
    if code != 0:
        log(f"accelerate launch exited with {code}")
        return code
    summ = json.loads((run / "summary.json").read_text())
    steps = summ["step_seconds"][args.warmup:] or summ["step_seconds"]
    result = {"gpu": summ.get("gpu", "cpu"), "num_gpus": args.gpus, "deepspeed": args.deepspeed, "model": label,
              "levers": summ.get("levers"),
              "frames": args.frames, "height": args.height, "width": args.width, "lora_rank": args.rank,
              "torch": torch.__version__, "s_per_step": statistics.median(steps), "step_s": summ["step_seconds"],
              "peak_gib_per_gpu": summ.get("peak_gib_per_gpu"), "encode": summ.get("encode"),
              "load_seconds": summ.get("load_seconds"), "wall_seconds": wall, "losses": summ["losses"],
              "start_step": summ.get("start_step", 0),
              "checkpoints": summ["checkpoints"], "date": _dt.date.today().isoformat()}
    print(f"\n{label}, phase 2 on {args.gpus} GPUs ({result['gpu']}), DeepSpeed {args.deepspeed}, LoRA rank "
          f"{args.rank}, one {args.frames}x{args.height}x{args.width} clip per GPU per step, cached inputs")
    print(f"s/step (median of {len(steps)}): {result['s_per_step']:.3f}; peak GiB per GPU: {result['peak_gib_per_gpu']}")
    print(f"LoRA saved: {', '.join(Path(c).name for c in summ['checkpoints'])}; losses {summ['losses']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


def kill_at(cfg, run: Path, args) -> int:
    """Start the run, wait until checkpoint K's resume state is on disk (one process or DDP:
    step-K.state.safetensors; DeepSpeed: step-K.state/wandata.json, which the main process writes
    after accelerate's save_state), then SIGKILL every process: the launcher's group and the
    workers, which torchrun starts in sessions of their own."""
    import signal
    import subprocess

    import psutil

    from wandata.train import launch
    from wandata.train.trainer import check_output_dir

    check_output_dir(cfg)
    cfg.save(launch.config_path(cfg))
    env = dict(os.environ, **launch.environment(cfg))
    proc = subprocess.Popen(launch.command(cfg), env=env, start_new_session=True)
    marks = [run / f"step-{args.kill_at}.state.safetensors", run / f"step-{args.kill_at}.state" / "wandata.json"]
    t = time.perf_counter()
    while not any(m.exists() for m in marks) and proc.poll() is None:
        time.sleep(0.05)
    if proc.poll() is not None:
        log(f"the run ended (exit {proc.returncode}) before checkpoint {args.kill_at} was written")
        return 1
    tree = psutil.Process(proc.pid).children(recursive=True)
    os.killpg(proc.pid, signal.SIGKILL)
    for p in tree:
        try:
            os.killpg(p.pid, signal.SIGKILL) if os.getpgid(p.pid) == p.pid else p.kill()
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
    proc.wait()
    psutil.wait_procs(tree, timeout=60)
    left = [p.pid for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    done = sorted(p.name for p in run.glob("step-*.safetensors") if not p.name.endswith((".state.safetensors",
                                                                                          ".comfyui.safetensors")))
    rows = (run / "loss.csv").read_text().splitlines()[1:] if (run / "loss.csv").exists() else []
    result = {"killed_after_s": round(time.perf_counter() - t, 1), "kill_at": args.kill_at, "checkpoints": done,
              "loss_rows": len(rows), "survivors": left}
    print(json.dumps(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result) + "\n", encoding="utf-8")
    return 0 if not left else 1


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


# --- issue 16: DiffSynth's path vs wandata's levers ----------------------------------------------

def _shape(args):
    """(model name, DiT kwargs, frames, height, width, rank, text_dim) of the run."""
    if args.tiny:
        from tools.tiny_wan import ARCHS, TINY_DIT
        f, h, w = (args.frames, args.height, args.width)
        if (f, h, w) in ((81, 480, 832), (17, 480, 832), (33, 480, 832), (121, 704, 1280)):
            f, h, w = 5, 32, 32
        if args.model == "5B":
            return "Wan2.2-TI2V-5B", dict(TINY_DIT, **ARCHS["ti2v"]), f, h, w, min(args.rank, 8), TINY_DIT["text_dim"]
        return "Wan2.1-T2V-1.3B", TINY_DIT, f, h, w, min(args.rank, 8), TINY_DIT["text_dim"]
    name, kwargs = DITS[args.model or "1.3B"]
    return name, kwargs, args.frames, args.height, args.width, args.rank, 4096


def _build_pipe(kwargs, device, dtype):
    from diffsynth.models.wan_video_dit import WanModel
    from diffsynth.pipelines.wan_video import WanVideoPipeline

    pipe = WanVideoPipeline(device=device, torch_dtype=dtype)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        torch.manual_seed(0)   # the same random DiT for every mode
        with torch.device(device):
            pipe.dit = WanModel(**kwargs)
    finally:
        torch.set_default_dtype(old)
    return pipe


def _write_cache(folder: Path, n: int, frames, height, width, text_dim, model: str | None = None) -> tuple:
    """``n`` synthetic clips (latents, context) in a wandata encode cache on disk, as ``encode`` leaves them.
    TI2V-5B (``model`` 5B): 48 x ((F-1)/4+1) x H/16 x W/16 latents and the first frame's latents
    with the fuse flag, as its ImageEmbedderFused unit caches them (the step then runs the
    per-token timestep path, the first latent frame at t = 0)."""
    from wandata.train import cache as C

    ch, stride = LATENT.get(model or "1.3B", (16, 8))
    cache = C.EncodeCache(folder)
    keys = []
    for k in range(n):
        g = torch.Generator().manual_seed(1000 + k)
        lat = torch.randn(1, ch, (frames - 1) // 4 + 1, height // stride, width // stride, generator=g).to(torch.bfloat16)
        ctx = torch.randn(1, 512, text_dim, generator=g).to(torch.bfloat16)
        shared = {"height": height, "width": width, "num_frames": frames, "cfg_scale": 1, "cfg_merge": False,
                  "tiled": False, "vace_scale": 1, "seed": 0, "rand_device": "cpu", "input_latents": lat}
        if ch == 48:
            shared.update(first_frame_latents=lat[:, :, :1].clone(), fuse_vae_embedding_in_latents=True)
        key = f"{k:032x}"
        cache.put(key, (shared, {"prompt": PROMPT, "context": ctx}, {}))
        keys.append(key)
    return cache, keys


def _mfu(model, frames, height, width, rank, s_per_step, peak_tflops):
    from wandata.train import estimate as E
    if model not in E.ARCH or not s_per_step:
        return None, None
    w = E.work(E.Spec(model=model, frames=frames, height=height, width=width, rank=rank, gc=False))
    flops = w["linear"] + w["attention"]
    return flops, flops / s_per_step / (peak_tflops * 1e12)


class _Marks:
    """Timestamps of step ends; a GPU sync only where a timed window opens or closes."""

    def __init__(self, device, warm: int, n: int):
        self.device, self.warm, self.n = device, warm, n
        self.done, self.t = 0, {}
        sync(device)
        self.t[0] = time.perf_counter()

    def step(self):
        self.done += 1
        if self.done in (1, 1 + self.warm, 1 + self.warm + self.n):
            sync(self.device)
            self.t[self.done] = time.perf_counter()

    def result(self) -> dict:
        t = self.t
        first = t[1] - t[0] if 1 in t else None
        end = 1 + self.warm + self.n
        s = (t[end] - t[1 + self.warm]) / self.n if end in t and (1 + self.warm) in t else None
        return {"first_step_s": round(first, 3) if first else None, "s_per_step": s}


def _diffsynth_mode(args, pipe, cache, keys, accelerator, steps_total, marks, cfg_shape):
    """(a) DiffSynth's example path: its training module recipe and its own training loop."""
    from diffsynth.diffusion import DiffusionTrainingModule, FlowMatchSFTLoss, ModelLogger
    from diffsynth.diffusion.runner import launch_training_task

    from wandata.train.config import DEFAULT_TARGETS

    class WanTrainingModule(DiffusionTrainingModule):
        # examples/wanvideo/model_training/train.py (DiffSynth 2.x), task sft:train (from its cache)
        def __init__(self, pipe):
            super().__init__()
            self.pipe = self.split_pipeline_units("sft:train", pipe, None, "dit")
            self.switch_pipe_to_training_mode(self.pipe, None, lora_base_model="dit",
                                              lora_target_modules=DEFAULT_TARGETS, lora_rank=cfg_shape["rank"],
                                              task="sft:train")

        def forward(self, data, inputs=None):
            shared, posi, nega = self.transfer_data_to_device(inputs, self.pipe.device, self.pipe.torch_dtype)
            shared = dict(shared, use_gradient_checkpointing=True, use_gradient_checkpointing_offload=False,
                          max_timestep_boundary=1.0, min_timestep_boundary=0.0)
            inputs = (shared, posi, nega)
            for unit in self.pipe.units:
                inputs = self.pipe.unit_runner(unit, self.pipe, *inputs)
            return FlowMatchSFTLoss(self.pipe, **inputs[0], **inputs[1])

    class Data(torch.utils.data.Dataset):
        load_from_cache = True

        def __len__(self):
            return steps_total

        def __getitem__(self, i):
            return cache.get(keys[i % len(keys)])

    class Timing(ModelLogger):
        def on_step_end(self, accelerator, model, save_steps=None, **kwargs):
            marks.step()

        def on_epoch_end(self, *a, **k):   # no checkpoint file: not part of a step
            pass

        def on_training_end(self, *a, **k):
            pass

    torch.manual_seed(0)
    model = WanTrainingModule(pipe)
    launch_training_task(accelerator, Data(), model, Timing(tempfile.mkdtemp(prefix="ds-")), learning_rate=1e-4,
                         weight_decay=1e-2, num_workers=0, save_steps=None, num_epochs=1)
    return {"levers": "DiffSynth 2.1.12 example path (launch_training_task, gradient checkpointing on, "
                      "torch AdamW, default SDPA)"}, model


def _wandata_loop(args, pipe, cache, keys, accelerator, levers_mode, steps_total, cfg_shape, marks=None,
                  order=None, log_losses=False, overrides=None):
    """(b)/(c): wandata's step (``trainer.train_step``) with the levers of ``levers_mode``;
    ``overrides``: lever fields forced on top of it (one lever at a time, to measure each)."""
    from wandata.train import levers as L
    from wandata.train.config import DEFAULT_TARGETS, TrainConfig
    from wandata.train.module import DTYPES, WanLoRAModule
    from wandata.train.trainer import step_seed, train_step

    device = args.device
    cfg = TrainConfig(model=cfg_shape["model"], dtype="bf16" if str(device).startswith("cuda") else "fp32",
                      lora_rank=cfg_shape["rank"], lora_targets=DEFAULT_TARGETS, num_frames=cfg_shape["frames"],
                      height=cfg_shape["height"], width=cfg_shape["width"], gradient_checkpointing=True,
                      levers=levers_mode, steps=steps_total, **(overrides or {}))
    torch.manual_seed(0)   # the LoRA's initial weights
    module = WanLoRAModule(pipe, cfg)
    module.to(device)
    lv = L.resolve(cfg, device)
    L.announce(lv)
    L.apply(module, lv)
    params = list(module.trainable_modules())
    optimizer = L.make_optimizer(params, lv, 1e-4, 1e-2)
    module, optimizer = accelerator.prepare(module, optimizer)
    order = order or (lambda s: s % len(keys))
    load = lambda s: cache.get(keys[order(s)])   # noqa: E731
    dtype = DTYPES[cfg.dtype]
    if lv.prefetch:
        pre = L.Prefetcher(range(steps_total), load)
        items = ((s, L.to_device(got, device, dtype, non_blocking=True)) for s, got in pre)
    else:
        pre, items = None, ((s, load(s)) for s in range(steps_total))
    log = L.LossLog(lv.lazy_loss)
    losses = []
    module.train()
    try:
        with L.context(lv):
            for s, inputs in items:
                torch.manual_seed(step_seed(0, s, 0, 1))
                loss = train_step(accelerator, module, optimizer, params, cfg, inputs=inputs)
                losses += [v for _, v, _ in log.add(s, loss)]
                if marks:
                    marks.step()
            losses += [v for _, v, _ in log.flush()]
    finally:
        if pre:
            pre.close()
    return {"levers": lv.to_dict(), "losses": losses if log_losses else None}, module


def compare(args) -> int:
    from accelerate import Accelerator

    device = args.device
    cuda = str(device).startswith("cuda")
    dtype = torch.bfloat16 if cuda else torch.float32
    model, kwargs, frames, height, width, rank, text_dim = _shape(args)
    shape = {"model": model, "frames": frames, "height": height, "width": width, "rank": rank}
    accelerator = Accelerator(cpu=not cuda)
    tmp = tempfile.TemporaryDirectory(prefix="wandata-cmp-")
    cache, keys = _write_cache(Path(tmp.name) / "cache", 2, frames, height, width, text_dim, args.model)
    common = {"gpu": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__,
              "diffsynth": _pkg_version("diffsynth"), "attention_libs": attention_impl(),
              "dtype": "bf16" if cuda else "fp32", "model": model if not args.tiny else "tiny random Wan DiT",
              "frames": frames, "height": height, "width": width, "lora_rank": rank,
              "warmup_steps": args.warmup, "steps_timed": args.steps, "peak_tflops": args.peak_tflops,
              "date": _dt.date.today().isoformat(),
              "source": "bench/train_step.py --compare (DiT built in memory, random weights, synthetic cached inputs "
                        "read from a safetensors cache)"}
    total = 1 + args.warmup + args.steps
    start = time.perf_counter()
    rows = []
    for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
        base, *forced = mode.split("+")   # e.g. off+compile=on: levers none, compile forced on
        overrides = dict(f.split("=", 1) for f in forced if "=" in f)
        if base not in ("diffsynth", "off", "auto") or len(overrides) != len(forced) or \
                (overrides and base == "diffsynth"):
            log(f"unknown mode {mode!r} (diffsynth, off, auto, or off+LEVER=VALUE[+...])")
            return 2
        if time.perf_counter() - start > args.deadline:
            log(f"deadline: skipping {mode}")
            continue
        reset_peak(device)
        t = time.perf_counter()
        pipe = _build_pipe(kwargs, device, dtype)
        build_s = time.perf_counter() - t
        reset_peak(device)
        marks = _Marks(device, args.warmup, args.steps)
        row = dict(common, mode=mode, build_s=round(build_s, 1))
        module = None
        try:
            if mode == "diffsynth":
                info, module = _diffsynth_mode(args, pipe, cache, keys, accelerator, total, marks, shape)
            else:
                info, module = _wandata_loop(args, pipe, cache, keys, accelerator, "none" if base == "off" else "auto",
                                             total, shape, marks, overrides=overrides)
            row.update(info, **marks.result(), peak_gib=peak_gib(device))
            flops, mfu = _mfu(model, frames, height, width, rank, row["s_per_step"], args.peak_tflops)
            row.update(model_tflop_per_step=round(flops / 1e12, 1) if flops else None,
                       mfu=round(mfu, 4) if mfu and not args.tiny else None)
        except torch.cuda.OutOfMemoryError as e:
            row.update(error=f"out of memory: {str(e).splitlines()[0]}")
        except Exception as e:   # one mode failing must not lose the others' figures
            import traceback
            traceback.print_exc()
            row.update(error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        finally:
            accelerator.free_memory()
            if module is not None:
                from wandata.train import levers as L
                if hasattr(module, "pipe"):
                    L.unapply(module)
            del module, pipe
            reset_peak(device)
        row.pop("losses", None)
        rows.append(row)
        log(f"{mode}: {row.get('s_per_step', row.get('error'))} s/step, peak {row.get('peak_gib')} GiB, "
            f"first step {row.get('first_step_s')} s, MFU {row.get('mfu')} ({time.perf_counter() - start:.0f} s so far)")
        _append(args.json_lines, row)
    print(f"\n{common['model']} {frames}x{height}x{width} rank {rank}, {common['gpu']}, torch {common['torch']}, "
          f"diffsynth {common['diffsynth']}; MFU against {args.peak_tflops:.0f} TFLOP/s dense bf16")
    print(f"{'path':<34}{'s/step':>9}{'first step':>12}{'peak GiB':>10}{'MFU':>8}{'vs DiffSynth':>14}")
    base = next((r.get("s_per_step") for r in rows if r["mode"] == "diffsynth"), None)
    names = {"diffsynth": "(a) DiffSynth example path", "off": "(b) wandata, levers none",
             "auto": "(c) wandata, levers auto"}
    for r in rows:
        sps = r.get("s_per_step")
        f = lambda v, spec: "-" if v is None else format(v, spec)   # noqa: E731
        print(f"{names.get(r['mode'], '    ' + r['mode']):<34}{f(sps, '.3f'):>9}{f(r.get('first_step_s'), '.1f'):>12}"
              f"{f(r.get('peak_gib'), '.1f'):>10}{(f(100 * r['mfu'], '.1f') + '%') if r.get('mfu') else '-':>8}"
              f"{(f(base / sps, '.2f') + 'x') if base and sps else '-':>14}" + (f"  {r['error']}" if 'error' in r else ""))
    tmp.cleanup()
    return 0


RENDER_STEPS = 10   # sampling steps of the validation renders (flow matching, Wan's shift 5)


def _render(pipe, item, device, dtype, vae) -> torch.Tensor:
    """A validation render with ``pipe``'s DiT (LoRA included) from the cached clip's text
    context: fixed noise, ``RENDER_STEPS`` steps of DiffSynth's own scheduler and model
    function, decoded by ``vae``; frames in [0, 255] as float."""
    from diffsynth.pipelines.wan_video import model_fn_wan_video

    shared, posi, _ = item
    lat, ctx = shared["input_latents"], posi["context"].to(device, dtype)
    g = torch.Generator("cpu").manual_seed(1234)
    x = torch.randn(lat.shape, generator=g).to(device, dtype)
    pipe.scheduler.set_timesteps(RENDER_STEPS, denoising_strength=1.0, shift=5.0)
    with torch.no_grad():
        for t in pipe.scheduler.timesteps:
            ts = t.unsqueeze(0).to(device, dtype)
            v = model_fn_wan_video(dit=pipe.dit, latents=x, timestep=ts, context=ctx)
            x = pipe.scheduler.step(v, t, x)
        video = vae.decode(x, device=device, tiled=False)
    return ((video.float().clamp(-1, 1) + 1) * 127.5).cpu()


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a - b) ** 2).mean())
    return float("inf") if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def _random_vae(args, device, dtype):
    """A Wan2.1 VAE with random weights (the renders are compared with each other, so any fixed
    decoder will do); the tiny one under --tiny."""
    torch.manual_seed(7)
    if args.tiny:
        from tools.tiny_wan import TinyWanVideoVAE as VAE
    else:
        from diffsynth.models.wan_video_vae import WanVideoVAE as VAE
    return VAE(z_dim=16).to(device=device, dtype=dtype).eval()


def loss_curve(args) -> int:
    """N steps levers off, then levers auto, on the same 4 synthetic cached clips, seed, timesteps;
    then a validation render with each LoRA (and with none), compared frame by frame."""
    from accelerate import Accelerator

    device = args.device
    cuda = str(device).startswith("cuda")
    dtype = torch.bfloat16 if cuda else torch.float32
    model, kwargs, frames, height, width, rank, text_dim = _shape(args)
    shape = {"model": model, "frames": frames, "height": height, "width": width, "rank": rank}
    accelerator = Accelerator(cpu=not cuda)
    tmp = tempfile.TemporaryDirectory(prefix="wandata-loss-")
    cache, keys = _write_cache(Path(tmp.name) / "cache", 4, frames, height, width, text_dim, args.model)
    out = {"gpu": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__,
           "diffsynth": _pkg_version("diffsynth"), "model": model if not args.tiny else "tiny random Wan DiT",
           "frames": frames, "height": height, "width": width, "lora_rank": rank, "steps": args.loss_curve,
           "clips": len(keys), "seed": 0, "date": _dt.date.today().isoformat(), "runs": {}}
    start = time.perf_counter()
    renders = {}
    vae = _random_vae(args, device, dtype) if args.render else None
    if args.render:
        renders["base"] = _render(_build_pipe(kwargs, device, dtype), cache.get(keys[0]), device, dtype, vae)
    for mode in ("none", "auto"):
        if time.perf_counter() - start > args.deadline:
            log(f"deadline: skipping levers {mode}")
            continue
        pipe = _build_pipe(kwargs, device, dtype)
        reset_peak(device)
        t = time.perf_counter()
        info, module = _wandata_loop(args, pipe, cache, keys, accelerator, mode, args.loss_curve, shape,
                                     log_losses=True)
        sync(device)
        info["seconds"] = round(time.perf_counter() - t, 1)
        info["peak_gib"] = peak_gib(device)
        out["runs"][mode] = info
        log(f"levers {mode}: {args.loss_curve} steps in {info['seconds']} s; last losses {info['losses'][-3:]}")
        accelerator.free_memory()
        from wandata.train import levers as L
        L.unapply(module)   # renders run eager in both modes: they compare the LoRAs, not the levers
        if args.render:
            module.eval()
            renders[mode] = _render(pipe, cache.get(keys[0]), device, dtype, vae)
        del module, pipe
        reset_peak(device)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(out) + "\n", encoding="utf-8")
    runs = out["runs"]
    if "none" in runs and "auto" in runs:
        a, b = runs["none"]["losses"], runs["auto"]["losses"]
        diff = [abs(x - y) for x, y in zip(a, b)]
        out["mean_abs_diff"] = statistics.mean(diff)
        out["max_abs_diff"] = max(diff)
        out["mean_loss"] = {"none": statistics.mean(a), "auto": statistics.mean(b)}
        print(f"loss over {len(a)} steps: mean {out['mean_loss']['none']:.4f} (levers none) vs "
              f"{out['mean_loss']['auto']:.4f} (auto); per-step |diff| mean {out['mean_abs_diff']:.4g}, "
              f"max {out['max_abs_diff']:.4g}")
        if args.json:
            args.json.write_text(json.dumps(out) + "\n", encoding="utf-8")
    if {"base", "none", "auto"} <= renders.keys():
        # Close means: the two LoRAs' renders differ far less than either differs from the base
        # model's, i.e. the levers change bf16 rounding, not what the LoRA learned.
        out["render"] = {"steps": RENDER_STEPS, "frames": list(renders["none"].shape),
                         "psnr_tuned_vs_untuned": _psnr(renders["auto"], renders["none"]),
                         "psnr_untuned_vs_base": _psnr(renders["none"], renders["base"]),
                         "psnr_tuned_vs_base": _psnr(renders["auto"], renders["base"]),
                         "max_abs_tuned_vs_untuned": float((renders["auto"] - renders["none"]).abs().max())}
        r = out["render"]
        print(f"renders ({RENDER_STEPS} steps, {r['frames']}): PSNR tuned vs untuned {r['psnr_tuned_vs_untuned']:.2f} dB; "
              f"each LoRA vs the base model {r['psnr_untuned_vs_base']:.2f} / {r['psnr_tuned_vs_base']:.2f} dB")
        if args.json:
            args.json.write_text(json.dumps(out) + "\n", encoding="utf-8")
    tmp.cleanup()
    return 0


def _append(path, row) -> None:
    if not path:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


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
