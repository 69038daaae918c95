"""``wandata train`` and ``wandata validate``: thin shells over the ``train`` package.

Both need the ``train`` extra (``pip install -e .[train]``: diffsynth and its stack).
See docs/train.md.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from pathlib import Path

import click

from wandata.cli.options import EXIT_ERROR
from wandata.profiles import NAMES as PROFILE_NAMES
from wandata.settings import SettingsError, parse_bucket


def _size(ctx, param, value):
    if not value:
        return None
    try:
        return parse_bucket(value)
    except SettingsError as e:
        raise click.BadParameter(str(e)) from None


def _seeds(ctx, param, value):
    try:
        seeds = [int(s) for s in value.split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0:
        raise click.BadParameter(f"{value!r}: comma-separated integers >= 0, e.g. 0,1")
    return seeds


def _frames(ctx, param, value):
    if value is not None and (value < 1 or (value - 1) % 4):
        raise click.BadParameter(f"{value} is not of the form 4k+1 (1, 5, ..., 81), which Wan's VAE needs")
    return value


def _device(ctx, param, value):
    if value is not None and not re.fullmatch(r"cpu|cuda(:\d+)?", value):
        raise click.BadParameter(f"{value!r}: choose cpu, cuda or cuda:N")
    return value


# What each phase needs installed, and the extra that brings it (pyproject.toml).
TRAIN_EXTRA = "pip install 'wandata[train]'"
PHASE_MODULES = {1: ("diffsynth", "peft", "safetensors"),
                 2: ("diffsynth", "peft", "safetensors", "accelerate", "deepspeed")}


def missing_modules(phase: int) -> list[str]:
    """The modules of the phase's stack that cannot be imported, each with why. A real import
    (not a lookup of the name): a package that is there but broken is as missing as one that
    is not. DeepSpeed logs to stdout on import, which must not mix into --json."""
    import importlib

    missing = []
    with contextlib.redirect_stdout(sys.stderr):
        for name in PHASE_MODULES[phase]:
            try:
                importlib.import_module(name)
            except Exception as e:  # noqa: BLE001 - ImportError, or a package that fails to initialise
                missing.append(f"{name} ({type(e).__name__}: {e})")
    return missing


def _need_train_extra(phase: int = 1, as_json: bool = False):
    missing = missing_modules(phase)
    if missing:
        what = "phase 2 (accelerate + DeepSpeed)" if phase == 2 else "training"
        _fail(f"{what} needs the `train` extra, which is not (completely) installed: {TRAIN_EXTRA} "
              "(or `pip install -e '.[train]'` in a checkout)", missing, as_json)


def _was_given(ctx, name: str) -> bool:
    return ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)


def _refuse(ctx, name: str, why: str):
    flag = next(o for p in ctx.command.params if p.name == name for o in p.opts if o.startswith("--"))
    raise click.UsageError(f"{flag} has no effect here: {why}")


def _refuse_ignored(ctx, phase: int, cfg=None, **given) -> None:
    """Options that would change nothing in this run are refused, not ignored. With ``cfg`` (the
    resolved config), the checks that need what the export and the launch config say."""
    def was_given(name):
        return _was_given(ctx, name)

    def refuse(name, why):
        _refuse(ctx, name, why)

    if cfg is not None:
        if was_given("max_pixels") and cfg.height is not None:
            refuse("max_pixels", f"this run trains at the fixed size {cfg.width}x{cfg.height} (from --size or "
                                 "the export); --max-pixels bounds dynamic resolution")
        if cfg.phase == 2 and cfg.accelerate_config:
            from wandata.train.launch import user_config_is_deepspeed
            if user_config_is_deepspeed(cfg.accelerate_config):
                for name in ("deepspeed", "max_grad_norm"):
                    if was_given(name):
                        refuse(name, f"{cfg.accelerate_config} is a DeepSpeed accelerate config, which "
                                     "replaces wandata's (set it there)")
        return
    if phase == 1:
        for name in ("num_processes", "num_machines", "machine_rank", "main_process_ip", "main_process_port",
                     "deepspeed", "accelerate_config"):
            if was_given(name):
                refuse(name, "it is a phase 2 launch setting; phase 1 trains in this process on one GPU "
                             "(add --phase 2 for the 14B model through accelerate + DeepSpeed)")
    if (given.get("machine_rank") or 0) >= (given.get("num_machines") or 1) and was_given("machine_rank"):
        raise click.UsageError(f"--machine-rank {given['machine_rank']} must be below --num-machines "
                               f"{given.get('num_machines') or 1} (ranks count from 0)")
    if was_given("epochs") and was_given("steps"):
        refuse("epochs", "--steps sets the length of the run; give one of them")
    if was_given("cache_dir") and given.get("no_cache"):
        refuse("cache_dir", "--no-cache runs the encoders at every step and keeps no cache")
    if given.get("gradient_checkpointing_offload") and given.get("no_gradient_checkpointing"):
        refuse("gradient_checkpointing_offload", "it offloads the checkpointed activations, and "
                                                 "--no-gradient-checkpointing keeps none")
    if was_given("checkpointing") and given.get("no_gradient_checkpointing"):
        refuse("checkpointing", "--no-gradient-checkpointing already turns checkpointing off")
    if was_given("download_source") and given.get("offline"):
        refuse("download_source", "--offline downloads nothing")
    if was_given("image_encoder") and given.get("task") not in ("i2v", None):   # None: --profile decides
        refuse("image_encoder", "only --task i2v uses an image encoder")


def _check_levers(cfg) -> None:
    """A GPU-only lever forced on where this process has no CUDA GPU is refused (exit 2)."""
    import torch

    from wandata.train import levers as L
    try:
        L.check(cfg, "cuda" if torch.cuda.is_available() else "cpu")
    except L.LeverError as e:
        raise click.UsageError(str(e)) from None


def _fail(message: str, items=(), as_json: bool = False) -> None:
    if as_json:
        click.echo(json.dumps({"ok": False, "error": message, "items": list(items)}, indent=2))
    else:
        click.echo(f"error: {message}", err=True)
        for line in list(items)[:50]:
            click.echo(f"  {line}", err=True)
    sys.exit(EXIT_ERROR)


def _registry(path):
    if not path:
        return None
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise click.BadParameter(f"{path}: {e}") from None
    if not isinstance(data, list):
        raise click.BadParameter(f"{path}: a JSON list of model-table entries")
    return data


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--phase", type=click.IntRange(1, 2), default=1, show_default=True,
              help="1: Wan2.1-T2V-1.3B in this process. 2: the 14B model through accelerate + DeepSpeed.")
@click.option("-d", "--dataset", type=click.Path(path_type=Path), default="dataset", show_default=True,
              help="Exported dataset folder (holds wandata_export.json).")
@click.option("--settings", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The export's wandata_export.json, when it is not in --dataset.")
@click.option("--task", type=click.Choice(["t2v", "i2v"]), default="t2v", show_default=True,
              help="i2v: Wan2.1-I2V-14B-480P, conditioned on each clip's first frame.")
@click.option("--model", help="Model preset: Wan2.1-T2V-1.3B, Wan2.1-T2V-14B, Wan2.1-I2V-14B-480P "
                              "(default by phase and task).")
@click.option("--profile", type=click.Choice(PROFILE_NAMES),
              help="Model profile (`wandata profiles`): the export's clips must fit it, and it names the model, "
                   "task and inputs (docs/train.md lists the profiles wandata trains).")
@click.option("--expert", type=click.Choice(["high", "low"]),
              help="Wan2.2 A14B: train only this expert (default: both, one after the other), in OUTPUT/high_noise "
                   "or OUTPUT/low_noise; run one command per GPU to train them side by side.")
@click.option("--allow-profile-mismatch", is_flag=True, help="Train even when the clips do not fit --profile.")
@click.option("--model-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Local folder with the model's files (as in its hub repo) instead of downloading.")
@click.option("--dit", help="Local DiT file(s), comma-separated (Wan2.2 A14B: the high-noise expert's).")
@click.option("--dit2", help="Wan2.2 A14B: the low-noise expert's local DiT file(s), comma-separated.")
@click.option("--text-encoder", help="Local text encoder file.")
@click.option("--vae", help="Local VAE file.")
@click.option("--image-encoder", help="Local CLIP image encoder file (i2v).")
@click.option("--tokenizer", help="Local tokenizer folder.")
@click.option("--models-root", help="Where hub models are downloaded / looked up (DiffSynth's layout; "
                                    "default $DIFFSYNTH_MODEL_BASE_PATH or ./models).")
@click.option("--download-source", type=click.Choice(["modelscope", "huggingface"]),
              help="Hub for model ids (DiffSynth's default: modelscope).")
@click.option("--offline", is_flag=True, help="Never touch the network: models must already be on disk.")
@click.option("--model-registry", type=click.Path(exists=True, dir_okay=False),
              help="JSON list of extra DiffSynth model-table entries (custom checkpoints).")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path),
              help="Run folder (default DATASET/train/phaseN-MODEL).")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Encode cache (default DATASET/.wandata-cache/encode).")
@click.option("--no-cache", is_flag=True, help="Run the text encoder and VAE at every step (DiffSynth's default).")
@click.option("--num-frames", type=int, callback=_frames, help="Override the export's frames per clip (4k+1).")
@click.option("--size", callback=_size, help="Train at this fixed WIDTHxHEIGHT (crops other buckets).")
@click.option("--max-pixels", type=click.IntRange(min=16 * 16), help="Override the dynamic-resolution pixel limit.")
@click.option("--rank", "lora_rank", type=click.IntRange(min=1), help="LoRA rank (default 32).")
@click.option("--targets", "lora_targets", help="LoRA target modules (default q,k,v,o,ffn.0,ffn.2).")
@click.option("--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True), help="Learning rate (default 1e-4).")
@click.option("--weight-decay", type=click.FloatRange(min=0), help="AdamW weight decay (default 0.01).")
@click.option("--epochs", type=click.IntRange(min=1), help="Passes over the clips (default 10), unless --steps.")
@click.option("--steps", type=click.IntRange(min=1), help="Training steps (one clip per GPU per step).")
@click.option("--save-every", type=click.IntRange(min=1), help="Checkpoint every N steps (default 250); always at the end.")
@click.option("--seed", type=click.IntRange(min=0), help="Seed for the LoRA init, clip order, timesteps and noise (default 0).")
@click.option("--grad-accum", type=click.IntRange(min=1), help="Gradient accumulation steps (default 1).")
@click.option("--max-grad-norm", type=click.FloatRange(min=0, min_open=True),
              help="Clip gradients to this norm (default: none in phase 1, 1.0 in phase 2, where DeepSpeed clips).")
@click.option("--no-gradient-checkpointing", is_flag=True, help="Faster, much more memory.")
@click.option("--gradient-checkpointing-offload", is_flag=True, help="Keep checkpointed activations on the CPU.")
@click.option("--dtype", type=click.Choice(["bf16", "fp32"]), help="Model dtype (default bf16).")
@click.option("--levers", type=click.Choice(["auto", "none"]),
              help="Speed levers (docs/train.md): auto (default) chooses each from the GPU, its memory and the "
                   "clip shape, all off without a GPU; none: every auto lever off (the untuned path).")
@click.option("--gradient-checkpointing", "checkpointing", type=click.Choice(["auto", "on", "selective", "off"]),
              help="auto (default): only as much as memory needs (whole blocks, selective: attention kept, or none); on: every block whole; selective: every block keeps its attention outputs; off: none.")
@click.option("--compile", type=click.Choice(["auto", "on", "off"]),
              help="torch.compile of the DiT block (regional, once per clip shape). GPU only.")
@click.option("--attention", type=click.Choice(["auto", "default", "cudnn", "flash", "efficient"]),
              help="SDPA attention backend; auto probes them at start. GPU only.")
@click.option("--fused-adamw", type=click.Choice(["auto", "on", "off"]), help="Fused AdamW kernel. GPU only.")
@click.option("--lazy-loss", type=click.Choice(["auto", "on", "off"]),
              help="Read the loss back every 25 steps instead of every step (no host sync per step).")
@click.option("--prefetch", type=click.Choice(["auto", "on", "off"]),
              help="Read cached clips ahead on a thread into pinned memory. GPU only.")
@click.option("--cudnn-benchmark", type=click.Choice(["auto", "on", "off"]),
              help="cuDNN's fastest convolution algorithms (VAE encode, patch embedding). GPU only.")
@click.option("--workers", "num_workers", type=click.IntRange(min=0), help="Clip-decoding worker processes (default 2).")
@click.option("--min-timestep", "min_timestep_boundary", type=click.FloatRange(0, 1), help="Lowest timestep fraction (default 0).")
@click.option("--max-timestep", "max_timestep_boundary", type=click.FloatRange(0, 1), help="Highest timestep fraction (default 1).")
@click.option("--resume", help="A step-N.safetensors checkpoint, a run folder, or `auto` (the run's latest).")
@click.option("--gpus", "num_processes", type=click.IntRange(min=1), help="Phase 2: processes (GPUs) in all (default: the accelerate "
                                                        "config's, else every visible GPU).")
@click.option("--num-machines", type=click.IntRange(min=1), help="Phase 2: nodes.")
@click.option("--machine-rank", type=click.IntRange(min=0), help="Phase 2: this node's rank.")
@click.option("--main-process-ip", help="Phase 2: address of rank 0's node.")
@click.option("--main-process-port", type=click.IntRange(1, 65535), help="Phase 2: port on rank 0's node.")
@click.option("--deepspeed", type=click.Choice(["auto", "one-gpu", "zero3", "zero2-offload", "none"]),
              help="Phase 2: auto (default): one-gpu where the run has one GPU that holds the model alone, "
                   "else zero3; one-gpu: this process, no DeepSpeed, the speed levers on; zero3: ZeRO-3; "
                   "zero2-offload: ZeRO-2 with the optimizer state on the CPU; none: accelerate's plain DDP "
                   "(every process holds the whole DiT; CPU processes: gloo).")
@click.option("--accelerate-config", type=click.Path(exists=True, dir_okay=False),
              help="Phase 2: your accelerate config file (GPU count, nodes; a DeepSpeed one replaces ours).")
@click.option("--dry-run", is_flag=True, help="Print the resolved config, the command and the estimate; train nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.pass_context
def train(ctx, phase, dataset, settings, task, model, model_dir, dit, dit2, text_encoder, vae, image_encoder, tokenizer,
          models_root, download_source, offline, model_registry, output, cache_dir, no_cache, num_frames, size,
          max_pixels, no_gradient_checkpointing, gradient_checkpointing_offload, dry_run, as_json, quiet,
          **overrides):
    """Train a Wan LoRA on an exported dataset (phase 1: one GPU; phase 2: 14B, DeepSpeed).

    Reads num_frames, buckets and the resolution mode from the export's
    wandata_export.json. The text encoder and VAE run once per clip into a
    safetensors cache; the DiT trains from it. Checkpoints are LoRA-only
    step-N.safetensors files that DiffSynth's load_lora reads. See docs/train.md.

    Every option acts or is refused: a value out of range, or an option this run would not
    use (a phase 2 launch setting with --phase 1, --epochs with --steps, ...), exits 2 naming it.
    Phase 2 checks that accelerate and DeepSpeed import before anything starts (also with
    --dry-run); they come with the `train` extra.

    Exit status: 0 done (or dry run), 1 failed (the message says why), 2 bad usage.
    """
    from wandata.train import config as TC

    if overrides.get("allow_profile_mismatch") and not overrides.get("profile"):
        raise click.UsageError("--allow-profile-mismatch has no effect here: no --profile to mismatch")
    if overrides.get("profile") and not _was_given(ctx, "task"):
        task = None   # the profile's
    _refuse_ignored(ctx, phase, no_cache=no_cache, no_gradient_checkpointing=no_gradient_checkpointing,
                    gradient_checkpointing_offload=gradient_checkpointing_offload, offline=offline, task=task,
                    machine_rank=overrides.get("machine_rank"), num_machines=overrides.get("num_machines"))

    if model_registry:
        overrides["model_registry"] = _registry(model_registry)
    overrides.update(offline=offline or None, download_source=download_source,
                     use_cache=False if no_cache else None,
                     gradient_checkpointing=False if no_gradient_checkpointing else None,
                     gradient_checkpointing_offload=True if gradient_checkpointing_offload else None)
    files = {"dit": dit, "dit2": dit2, "text_encoder": text_encoder, "vae": vae, "image_encoder": image_encoder,
             "tokenizer": tokenizer}
    try:
        cfg = TC.resolve(dataset=dataset, settings=settings, phase=phase, task=task, model=model, model_dir=model_dir,
                         files=files, models_root=models_root, output_dir=output, cache_dir=cache_dir,
                         num_frames=num_frames, size=size, max_pixels=max_pixels, **overrides)
    except TC.ConfigError as e:
        _fail(str(e), e.items, as_json)
    _refuse_ignored(ctx, phase, cfg)
    from wandata.train import launch
    engine_why = None
    if phase == 2:
        if cfg.deepspeed == "one-gpu" and ((cfg.num_processes or 1) > 1 or cfg.num_machines > 1
                                           or cfg.accelerate_config):
            raise click.UsageError("--deepspeed one-gpu trains in this process on one GPU: it contradicts "
                                   "--gpus/--num-machines/--accelerate-config (drop them, or choose zero3)")
        cfg.deepspeed, engine_why = launch.choose_engine(cfg)
        if not as_json:
            click.echo(f"phase 2 engine: {cfg.deepspeed} ({engine_why})", err=True)
    if cfg.in_process():
        _check_levers(cfg)
    if phase == 2 and not cfg.in_process():
        # Before anything is written or launched, and also for a dry run, which should not
        # print a launch command that would fail.
        _need_train_extra(2, as_json)
        from wandata.train.launch import missing_files
        if missing_files(cfg):
            _fail("phase 2 cannot start: files of the package are missing", missing_files(cfg), as_json)
    if dry_run:
        _dry_run(cfg, as_json, engine_why)
        return
    _need_train_extra(1 if cfg.in_process() else phase, as_json)
    if not cfg.in_process():
        code = launch.launch_phase2(cfg)
        sys.exit(code)
    _train_here(cfg, launch.environment(cfg), quiet, as_json)


def _train_here(cfg, environment: dict, quiet: bool, as_json: bool) -> None:
    """Phase 1: train in this process and print what came of it."""
    for k, v in environment.items():
        os.environ.setdefault(k, v)
    from wandata.train.models import ModelError
    from wandata.train.trainer import TrainError, run

    try:
        with contextlib.redirect_stdout(sys.stderr):   # DiffSynth's loader talks on stdout
            summary = run(cfg, progress=not quiet and not as_json)
    except (TrainError, ModelError) as e:
        _fail(str(e), getattr(e, "items", []), as_json)
    short = {k: v for k, v in summary.items() if k not in ("losses", "step_seconds")}
    if summary["losses"]:
        short["final_loss"] = summary["losses"][-1]
    if as_json:
        click.echo(json.dumps(short, indent=2))
        return
    enc = summary.get("encode")
    if enc:
        click.echo(f"encode: {enc['encoded']} clips encoded ({enc['seconds']:.1f} s), {enc['cached']} from the cache")
    n = len(summary["losses"])
    if n:
        click.echo(f"trained steps {summary['start_step'] + 1}-{summary['steps']} in {summary['train_seconds']:.1f} s; "
                   f"last loss {summary['losses'][-1]:.4f}; loss log {Path(cfg.output_dir) / 'loss.csv'}")
    for c in summary["checkpoints"]:
        click.echo(f"checkpoint: {c}")
    click.echo(f"validate with: wandata validate --lora {summary['final']}")


def _dry_run(cfg, as_json: bool, engine_why: str | None = None) -> None:
    from wandata.train import estimate as E
    from wandata.train import launch

    gpu = None
    try:
        import torch
        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name()
    except Exception:
        pass
    num_gpus = 1
    if not cfg.in_process():
        num_gpus = cfg.num_processes or max(1, launch.visible_gpus())
    world = num_gpus
    steps = cfg.total_steps(world)
    cmd = launch.command(cfg)
    try:
        est = E.estimate(cfg, num_gpus=num_gpus, gpu=gpu)
    except (OSError, ValueError, KeyError) as e:
        est = None
        click.echo(f"warning: no estimate: {e}", err=True)
    out = {"config": cfg.to_dict(), "config_file": str(launch.config_path(cfg)), "command": cmd,
           "command_line": launch.shell(cmd), "environment": launch.environment(cfg), "steps": steps,
           "estimate": est, "measured_file": str(E.MEASURED), "this_gpu": gpu, "engine": engine_why}
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    title = ("phase 1: one process" if cfg.phase == 1 else "phase 2: one GPU, this process, no DeepSpeed"
             if cfg.in_process() else f"phase 2: accelerate + DeepSpeed {cfg.deepspeed}")
    click.echo(f"wandata train (dry run) -- {title}; {cfg.model}, task {cfg.task}")
    click.echo("\nresolved configuration (written to the run folder as train_config.json when training starts):")
    click.echo(json.dumps(cfg.to_dict(), indent=2))
    env = " ".join(f"{k}={v}" for k, v in launch.environment(cfg).items())
    click.echo("\nlaunch command:" if not cfg.in_process() else "\ncommand (run in this process):")
    click.echo(f"  {env + ' ' if env else ''}{launch.shell(cmd)}")
    click.echo(f"\nestimate (from {E.MEASURED}):")
    for line in E.describe(est, steps, cfg.num_clips):
        click.echo(f"  {line}")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--lora", required=True, type=click.Path(exists=True, path_type=Path),
              help="A step-N.safetensors checkpoint, or a run folder (each of its checkpoints).")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The run's train_config.json (default: beside the LoRA).")
@click.option("--prompts", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Prompts, one per line (or jsonl with a prompt field). Default: held-out captions.")
@click.option("--num-prompts", type=click.IntRange(min=1), default=4, show_default=True, help="Held-out captions to render.")
@click.option("--seeds", default="0", show_default=True, callback=_seeds, help="Comma-separated seeds.")
@click.option("--num-frames", type=int, callback=_frames, help="Frames to render, 4k+1 (default: the run's).")
@click.option("--size", callback=_size, help="WIDTHxHEIGHT (default: the run's size or largest bucket).")
@click.option("--steps", type=click.IntRange(min=1), default=30, show_default=True, help="Denoising steps.")
@click.option("--cfg-scale", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="Classifier-free guidance scale (1: no guidance).")
@click.option("--negative-prompt", help="Negative prompt (default: a generic quality one).")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (default RUN/validation).")
@click.option("--device", callback=_device, help="cpu, cuda or cuda:N (default cuda when available).")
@click.option("--offline", is_flag=True, help="Never touch the network.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def validate(ctx, lora, config_path, prompts, num_prompts, seeds, num_frames, size, steps, cfg_scale, negative_prompt,
             output, device, offline, as_json, quiet):
    """Render prompts with the base model and with the LoRA, same seeds, side by side.

    Writes base/ and one folder per checkpoint of mp4s, a side-by-side
    preview.mp4 per checkpoint and a preview.png contact sheet.
    """
    if prompts and ctx.get_parameter_source("num_prompts") != click.core.ParameterSource.DEFAULT:
        raise click.UsageError("--num-prompts has no effect here: it counts held-out captions, and --prompts "
                               "renders every prompt of its file")
    _need_train_extra(1, as_json)
    if offline:
        from wandata.train.models import offline_env
        for k, v in offline_env().items():
            os.environ.setdefault(k, v)
    from wandata.train import validate as V
    from wandata.train.estimate import run_shape
    from wandata.train.models import ModelError

    try:
        cfg, loras, loras2 = V.resolve_loras(lora, config_path)
        cfg.offline = cfg.offline or offline
        notes = []
        if prompts:
            if cfg.inputs():
                raise V.ValidateError(f"{cfg.model} renders from held-out clips ({', '.join(cfg.inputs())} come "
                                      "from them); leave out --prompts")
            plist = V.read_prompts(prompts)
        else:
            plist, notes = V.held_out_prompts(cfg, num_prompts)
        frames, h, w = run_shape(cfg)
        if size:
            w, h = size
        plan = V.Plan(cfg=cfg, loras=loras, prompts=plist, seeds=seeds, num_frames=num_frames or frames,
                      height=h, width=w, steps=steps, cfg_scale=cfg_scale,
                      negative_prompt=V.NEGATIVE if negative_prompt is None else negative_prompt,
                      out_dir=Path(output or (Path(lora) if loras2 else loras[0].parent) / "validation"), fps=cfg.fps,
                      notes=notes, loras2=loras2)
        with contextlib.redirect_stdout(sys.stderr):   # DiffSynth's loader talks on stdout
            summary = V.run(plan, device=device, progress=not quiet and not as_json)
    except (V.ValidateError, ModelError) as e:
        _fail(str(e), getattr(e, "items", []), as_json)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    for n in summary["notes"]:
        click.echo(f"note: {n}", err=True)
    click.echo(f"rendered {len(summary['prompts'])} prompts x {len(summary['seeds'])} seeds, "
               f"{summary['num_frames']} frames at {summary['width']}x{summary['height']}: "
               f"{', '.join(summary['columns'])}")
    for p in summary.get("previews", []):
        click.echo(f"side by side: {p}")
    click.echo(f"contact sheet: {summary['preview_png']}")
