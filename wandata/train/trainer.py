"""One training run: encode once, then train the DiT's LoRA from the cache.

1. Encode: every clip whose cache entry is missing goes through the text encoder and
   VAE (and CLIP image encoder for I2V) once; each process takes its share. Only those
   models are loaded, and they are freed before the DiT is.
2. Train: the DiT with a LoRA, through accelerate (one process in phase 1; DeepSpeed
   in phase 2). Each step reads one clip's cached tensors. Step ``s`` of process ``r``
   uses the clip an epoch permutation assigns it and a seed derived from (seed, s, r),
   so a resumed run, or one without the cache, draws the same timesteps and noise.
3. Checkpoints every ``save_every`` steps and at the end: ``step-N.safetensors``
   (LoRA weights only, keys DiffSynth's ``load_lora`` reads), the same weights in ComfyUI's
   layout (``step-N.comfyui.safetensors``, see wandata.lora) and the optimizer state
   for resuming (``step-N.state.safetensors``; DeepSpeed: accelerate's folder
   ``step-N.state/``). ``loss.csv`` gets one row per step, ``timesteps.csv`` the timestep
   the DiT was trained at in each step.
4. A Wan2.2 A14B pair (``cfg.is_pair``) trains its experts one after the other, each a run
   of the above in ``OUTPUT/high_noise`` and ``OUTPUT/low_noise`` with its own DiT and
   timestep range; both read the same cache (the encoders are the pair's).
"""
from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from diffsynth.diffusion import ModelLogger

from wandata.lora.convert import FORMAT as LORA_FORMAT
from wandata.lora.convert import convert_state_dict, default_output, output_metadata
from wandata.lora.convert import save as save_lora
from wandata.train import __version__
from wandata.train import cache as C
from wandata.train import data as D
from wandata.train import levers as L
from wandata.train import models as M
from wandata.train.config import TrainConfig
from wandata.lora.convert import LoRAError
from wandata.train.module import (DTYPES, ENCODER_ROLES, WanLoRAModule, dit_flags, load_pipeline, lora_prefix,
                                  resolve_files)

STATE_FORMAT = "wandata.train-state/1"
CKPT_RE = re.compile(r"^step-(\d+)\.safetensors$")
KEEP_STATES = 2   # optimizer states kept for resuming (LoRA checkpoints are all kept)


class TrainError(Exception):
    """The run cannot go on; the message says why, ``items`` lists what."""

    def __init__(self, message: str, items: list[str] | None = None):
        super().__init__(message)
        self.items = list(items or [])


def step_seed(seed: int, step: int, rank: int, world: int) -> int:
    return (seed * 1_000_003 + step * world + rank) % (2 ** 63)


def is_zero3(accelerator) -> bool:
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    return plugin is not None and plugin.zero_stage == 3


def no_zero3_init(accelerator):
    """A context in which models load whole, not ZeRO-3 partitioned.

    accelerate (1.15) registers its DeepSpeed config with transformers whatever
    ``zero3_init_flag`` says, and DiffSynth's loader then builds every model inside
    ``deepspeed.zero.Init``. The encoders run outside the DeepSpeed engine and must be
    whole; the DiT is memory-mapped and partitioned by the engine when it starts."""
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    if plugin is None:
        return None

    @contextlib.contextmanager
    def whole():
        from transformers.integrations import unset_hf_deepspeed_config
        unset_hf_deepspeed_config()
        try:
            yield
        finally:
            plugin.set_deepspeed_weakref()
    return whole


# --- checkpoints ------------------------------------------------------------------------

def checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    out = Path(output_dir)
    found = [(int(m.group(1)), p) for p in out.glob("step-*.safetensors") if (m := CKPT_RE.match(p.name))]
    return sorted(found)


def state_path(ckpt: Path) -> Path:
    """One process or DDP: ``step-N.state.safetensors``; DeepSpeed: the folder ``step-N.state``."""
    return ckpt.with_name(ckpt.name.replace(".safetensors", ".state.safetensors"))


def state_dir(ckpt: Path) -> Path:
    return ckpt.with_name(ckpt.name.replace(".safetensors", ".state"))


def is_run_dir(folder: Path) -> bool:
    """Whether ``folder`` is a training run's folder: its train_config.json is one of ours."""
    from wandata.train.config import CONFIG_NAME
    try:
        data = json.loads((Path(folder) / CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    # Keys every version has written; not a full parse, so a run of an older version resumes.
    return isinstance(data, dict) and {"phase", "settings_path", "output_dir", "lora_rank"} <= set(data)


def check_output_dir(cfg: TrainConfig) -> None:
    """Refuse (``TrainError``, nothing written) an output folder that holds files of someone
    else's, or is the dataset or a folder holding it: a run writes its config, loss log and
    checkpoints there. New, empty, or an earlier run's folder (resume) are fine."""
    from wandata import atomic
    from wandata.train.config import CONFIG_NAME
    try:
        atomic.check_dir(Path(cfg.output_dir), is_run_dir, dataset=cfg.dataset_base_path or None,
                         what="training run folder", how=f"a run folder holds wandata's {CONFIG_NAME}")
    except atomic.OutputRefused as e:
        raise TrainError(f"--output: {e}") from None


def find_resume(cfg: TrainConfig) -> Path | None:
    if not cfg.resume:
        return None
    if cfg.resume == "auto" or Path(cfg.resume).is_dir():
        root = Path(cfg.output_dir if cfg.resume == "auto" else cfg.resume)
        cks = [p for _, p in checkpoints(root) if state_path(p).exists() or state_dir(p).exists()]
        if not cks and cfg.resume != "auto":
            cks = [p for _, p in checkpoints(root)]
        return cks[-1] if cks else None
    p = Path(cfg.resume)
    if not p.is_file():
        raise TrainError(f"--resume {p}: no such checkpoint")
    return p


def lora_metadata(cfg: TrainConfig, step: int) -> dict:
    return {"format": "pt", "wandata.format": LORA_FORMAT, "wandata.version": __version__,
            "base_model": cfg.model, "task": cfg.task, "lora_rank": str(cfg.lora_rank),
            "lora_alpha": str(cfg.lora_rank), "lora_targets": cfg.lora_targets, "step": str(step),
            "num_frames": str(cfg.num_frames), "height": str(cfg.height), "width": str(cfg.width),
            "lora_base_model": cfg.lora_base_model, "expert": cfg.expert, "profile": cfg.profile,
            "min_timestep_boundary": str(cfg.min_timestep_boundary),
            "max_timestep_boundary": str(cfg.max_timestep_boundary)}


def _readable(path: Path) -> None:
    """safetensors writes 0600; a LoRA is meant to be shared: use the umask's mode."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def save_optimizer_state(path: Path, optimizer, step: int, extra: dict) -> None:
    """AdamW state as safetensors (tensors) + JSON metadata (hyper-parameters)."""
    from safetensors.torch import save_file

    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for name, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"state/{idx}/{name}"] = v.detach().to("cpu").contiguous()
            else:
                scalars[f"{idx}/{name}"] = v
    meta = {"wandata.format": STATE_FORMAT, "step": str(step), "param_groups": json.dumps(sd["param_groups"]),
            "scalars": json.dumps(scalars), "extra": json.dumps(extra)}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)


def load_optimizer_state(path: Path, optimizer) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as f:
        meta = f.metadata() or {}
        if meta.get("wandata.format") != STATE_FORMAT:
            raise TrainError(f"{path} is not a wandata training state")
        state: dict = {}
        for k in f.keys():
            _, idx, name = k.split("/", 2)
            state.setdefault(int(idx), {})[name] = f.get_tensor(k)
    for k, v in json.loads(meta["scalars"]).items():
        idx, name = k.split("/", 1)
        state.setdefault(int(idx), {})[name] = v
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
    return {"step": int(meta["step"]), **json.loads(meta.get("extra", "{}"))}


class RunLogger(ModelLogger):
    """DiffSynth's ModelLogger cadence (every ``save_steps`` and at the end), saving
    LoRA-only safetensors with metadata plus the state needed to resume."""

    def __init__(self, cfg: TrainConfig, optimizer, start_step: int):
        super().__init__(cfg.output_dir, remove_prefix_in_ckpt=lora_prefix(cfg))
        self.cfg = cfg
        self.optimizer = optimizer
        self.num_steps = start_step
        self.saved: list[str] = []
        self.comfyui_skipped: str = ""

    def _lora(self, accelerator, model) -> dict:
        unwrapped = accelerator.unwrap_model(model)
        named = [(n, p) for n, p in unwrapped.named_parameters() if p.requires_grad]
        if is_zero3(accelerator):   # gather only the LoRA shards, not the frozen base
            import deepspeed
            with deepspeed.zero.GatheredParameters([p for _, p in named], modifier_rank=None):
                sd = {n: p.detach().to("cpu").clone() for n, p in named} if accelerator.is_main_process else {}
        else:
            sd = {n: p.detach().to("cpu").clone() for n, p in named}
        return unwrapped.lora_state_dict(sd)

    def save_model(self, accelerator, model, file_name):
        from safetensors.torch import save_file

        accelerator.wait_for_everyone()
        lora = self._lora(accelerator, model)
        path = Path(self.output_path) / file_name
        step = self.num_steps
        if accelerator.is_main_process:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp")
            save_file({k: v.contiguous() for k, v in lora.items()}, str(tmp), metadata=lora_metadata(self.cfg, step))
            _readable(tmp)
            os.replace(tmp, path)
            self.saved.append(str(path))
            # The same weights in ComfyUI's key layout beside it (docs/lora.md), named as
            # `wandata lora convert step-N.safetensors --to comfyui` would name it.
            try:
                comfy, summary = convert_state_dict(lora, "comfyui")
            except LoRAError as e:   # VACE blocks: no layout of wandata.lora names them yet
                self.comfyui_skipped = f"no ComfyUI copy: {e}"
            else:
                save_lora(default_output(path, "comfyui"), comfy, output_metadata(
                    lora_metadata(self.cfg, step), summary["layout_in"], "comfyui"))
        extra = {"seed": self.cfg.seed, "world_size": accelerator.num_processes}
        if getattr(accelerator.state, "deepspeed_plugin", None) is not None:
            accelerator.save_state(str(state_dir(path)), exclude_frozen_parameters=True)
            if accelerator.is_main_process:
                (state_dir(path) / "wandata.json").write_text(json.dumps({"step": step, **extra}), encoding="utf-8")
        elif accelerator.is_main_process:
            # One process, or DDP, where every process holds the same optimizer state: ours, not
            # accelerate's save_state, which would also write the whole frozen DiT each time.
            save_optimizer_state(state_path(path), self.optimizer, step, extra)
        if accelerator.is_main_process:
            self._prune_states()
        accelerator.wait_for_everyone()

    def _prune_states(self) -> None:
        with_state = [p for _, p in checkpoints(self.output_path) if state_path(p).exists() or state_dir(p).exists()]
        for p in with_state[:-KEEP_STATES]:
            state_path(p).unlink(missing_ok=True)
            shutil.rmtree(state_dir(p), ignore_errors=True)


# --- the loss log -----------------------------------------------------------------------

class LossCSV:
    FIELDS = ["step", "epoch", "loss", "lr", "seconds"]

    def __init__(self, path: Path, start_step: int, fields: list[str] | None = None):
        self.path = path
        self.FIELDS = list(fields or self.FIELDS)
        rows = []
        if start_step and path.exists():   # a resumed run drops what came after its checkpoint
            with open(path, newline="", encoding="utf-8") as f:
                rows = [r for r in csv.DictReader(f) if r.get("step", "").isdigit() and int(r["step"]) <= start_step]
        path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(path, "w", newline="", encoding="utf-8")
        self.w = csv.DictWriter(self.f, fieldnames=self.FIELDS, lineterminator="\n")
        self.w.writeheader()
        for r in rows:
            self.w.writerow({k: r.get(k, "") for k in self.FIELDS})
        self.f.flush()

    def log(self, **row) -> None:
        self.w.writerow(row)
        self.f.flush()

    def close(self) -> None:
        self.f.close()


# --- encode -------------------------------------------------------------------------------

def _first(batch):
    return batch[0]


def clip_keys(cfg: TrainConfig, ds, encoder_files: dict[str, list[str]], flags: dict | None = None) -> list[str]:
    from wandata.confine import OutsideRoot

    fp = M.fingerprint(encoder_files)
    settings = D.encode_settings(cfg, flags)
    columns = [k for k in (cfg.data_file_keys or ["video"]) if k != "video"]
    keys, bad = [], []
    for i in range(len(ds.data)):
        prompt = D.clip_prompt(ds, i)
        if not isinstance(prompt, str) or not prompt.strip():
            bad.append(f"{ds.data[i].get('video')}: prompt {prompt!r}")
        try:
            # the clip, and each conditioning file read beside it (VACE), by content
            content = "+".join(C.file_hash(D.clip_path(ds, i, col)) for col in ["video", *columns])
        except (OutsideRoot, KeyError, TypeError, OSError) as e:
            raise TrainError(f"{cfg.metadata_path}: row {i} ({ds.data[i].get('video')}): {e}; re-export") from None
        keys.append(C.cache_key(content, prompt if isinstance(prompt, str) else "", fp, settings))
    if bad:
        raise TrainError(f"{len(bad)} clips have no text prompt; caption them and re-export "
                         f"(`wandata export` refuses empty captions)", bad)
    return keys


def encode_missing(cfg: TrainConfig, accelerator, ds, keys: list[str], cache: C.EncodeCache,
                   encoder_files: dict, progress: bool, flags: dict | None = None) -> dict:
    """Encode this process's share of the clips whose cache entry is missing."""
    missing = [i for i, k in enumerate(keys) if not cache.has(k)]
    mine = missing[accelerator.process_index::accelerator.num_processes]
    stats = {"clips": len(keys), "cached": len(keys) - len(missing), "encoded": 0, "seconds": 0.0}
    if mine:
        from tqdm import tqdm

        t0 = time.perf_counter()
        # accelerate names a MULTI_CPU process's device cpu:N, which safetensors (DiffSynth's
        # loader) refuses: the CPU is one device
        device = "cpu" if accelerator.device.type == "cpu" else accelerator.device
        pipe = load_pipeline(cfg, encoder_files, device=device, no_zero3_init=no_zero3_init(accelerator))
        enc = WanLoRAModule(pipe, cfg, with_lora=False, flags=flags)
        stats["load_seconds"] = time.perf_counter() - t0
        loader = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, mine), batch_size=1, shuffle=False,
                                             collate_fn=_first, num_workers=cfg.num_workers)
        t0 = time.perf_counter()
        bar = tqdm(total=len(mine), desc="encode", unit="clip", disable=not progress, file=sys.stderr)
        for i, item in zip(mine, loader):
            encoded = enc.encode(item)
            cache.put(keys[i], encoded, info={"video": ds.data[i]["video"], "frames": len(item["video"]),
                                              "size": list(item["video"][0].size), "inputs": cfg.inputs(),
                                              "tensors": sorted(k for k, v in encoded[0].items()
                                                                if isinstance(v, torch.Tensor))})
            stats["encoded"] += 1
            bar.update(1)
        bar.close()
        stats["seconds"] = time.perf_counter() - t0
        enc.free_encoders()
        del enc, pipe
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    accelerator.wait_for_everyone()
    return stats


# --- the run ------------------------------------------------------------------------------

def train_step(accelerator, module, optimizer, params, cfg: TrainConfig, item=None, inputs=None):
    """One step: the loss on one clip (encoded now, or ``inputs`` from the cache), backward,
    optimizer update. Returns the loss tensor."""
    with accelerator.accumulate(module):
        loss = module(item, inputs=inputs) if inputs is not None else module(item)
        accelerator.backward(loss)
        if cfg.max_grad_norm and accelerator.sync_gradients:
            accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad()
    return loss


def make_accelerator(cfg: TrainConfig):
    from accelerate import Accelerator

    return Accelerator(gradient_accumulation_steps=cfg.grad_accum)


@dataclass
class Run:
    """What the stages of one run share: set by ``prepare``, filled in by ``build``."""
    cfg: TrainConfig
    accelerator: Any
    show: bool              # progress bars: asked for, and this is the main process
    ds: Any                 # DiffSynth's UnifiedDataset over the export's metadata
    order: D.Order
    total: int
    ckpt: Path | None       # the checkpoint resumed from
    start: int
    summary: dict
    keys: list[str] | None = None          # cache keys, one per clip (None: no cache)
    cache: C.EncodeCache | None = None
    module: Any = None
    optimizer: Any = None
    params: list = field(default_factory=list)
    logger: RunLogger | None = None
    levers: L.Levers | None = None

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def out(self) -> Path:
        return Path(self.cfg.output_dir)


def run(cfg: TrainConfig, accelerator=None, progress: bool = True) -> dict:
    """Train; returns a summary (checkpoints, losses, timings). A Wan2.2 A14B pair trains its
    high-noise expert, then its low-noise one (``run_pair``)."""
    if cfg.is_pair:
        return run_pair(cfg, accelerator, progress)
    r = prepare(cfg, accelerator, progress)
    build(r)
    restore(r)
    losses, times, seconds = loop(r)
    return finish(r, losses, times, seconds)


def run_pair(cfg: TrainConfig, accelerator=None, progress: bool = True) -> dict:
    """Both experts of an A14B model, one after the other, each in OUTPUT/<expert> with its own
    DiT, timestep range and LoRA; the pair's config stays in OUTPUT (what `wandata validate
    --lora OUTPUT` reads). Separate GPUs: one `wandata train --expert high|low` each."""
    cfg.validate()
    check_output_dir(cfg)
    accelerator = accelerator or make_accelerator(cfg)
    if accelerator.is_main_process:
        cfg.save()
    summary = {"output_dir": cfg.output_dir, "experts": {}, "checkpoints": [], "losses": [], "step_seconds": [],
               "train_seconds": 0.0}
    for e in cfg.experts:
        one = cfg.expert_config(e["name"])
        if one.resume == "auto":   # an expert that already reached its last step is done
            done = [n for n, _ in checkpoints(one.output_dir)]
            if done and done[-1] >= one.total_steps(accelerator.num_processes):
                summary["experts"][e["name"]] = {"skipped": f"already trained to step {done[-1]}"}
                continue
        s = run(one, accelerator, progress)
        summary["experts"][e["name"]] = {k: v for k, v in s.items() if k not in ("losses", "step_seconds")}
        for k in ("checkpoints", "losses", "step_seconds"):
            summary[k] += s[k]
        summary["train_seconds"] += s["train_seconds"]
        for k in ("steps", "start_step", "world_size", "encode"):
            summary.setdefault(k, s.get(k))
        summary["final"] = cfg.output_dir   # validate takes the pair's folder
    if accelerator.is_main_process:
        (Path(cfg.output_dir) / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def prepare(cfg: TrainConfig, accelerator=None, progress: bool = True) -> Run:
    """Check the config and the output folder, write the config there, read the clip list,
    and find where the run starts: everything that can refuse the run before a model loads."""
    cfg.validate()
    check_output_dir(cfg)   # before cfg.save() writes into it (phase 2: launch wrote ours there)
    M.register_models(cfg.model_registry)
    accelerator = accelerator or make_accelerator(cfg)
    world, rank = accelerator.num_processes, accelerator.process_index
    try:
        lv = L.resolve(cfg, accelerator.device)
    except L.LeverError as e:
        raise TrainError(str(e)) from None
    cfg.levers_chosen = lv.to_dict()   # recorded in the run folder's train_config.json
    if accelerator.is_main_process:
        if progress:
            L.announce(lv)
        cfg.save()
    ds = D.build_dataset(cfg)
    total = cfg.total_steps(world)
    ckpt = find_resume(cfg)
    start = int(CKPT_RE.match(ckpt.name).group(1)) if ckpt else 0
    if start >= total:
        raise TrainError(f"checkpoint {ckpt} is at step {start}, and the run has {total} steps: nothing to do "
                         "(raise --steps to train on)")
    summary = {"output_dir": str(Path(cfg.output_dir)), "steps": total, "start_step": start, "world_size": world,
               "levers": lv.to_dict()}
    order = D.Order(len(ds.data), cfg.seed, world, rank)
    return Run(cfg, accelerator, progress and accelerator.is_main_process, ds, order, total, ckpt, start, summary,
               levers=lv)


def build(r: Run) -> None:
    """The data (encoded once into the cache, unless ``use_cache`` is off), then the DiT with
    its LoRA (from the checkpoint's weights when resuming) and the optimizer, through
    ``accelerator.prepare``."""
    cfg, accelerator = r.cfg, r.accelerator
    with L.context(r.levers):   # cudnn benchmark for the VAE's convolutions
        roles = _encode(r)
    files = resolve_files(cfg, roles, accelerator.main_process_first)
    t0 = time.perf_counter()
    pipe = load_pipeline(cfg, files, device="cpu", no_zero3_init=no_zero3_init(accelerator))
    torch.manual_seed(cfg.seed)     # the LoRA's initial weights
    module = WanLoRAModule(pipe, cfg)
    if r.ckpt is not None:   # now: once prepared, ZeRO-3 has partitioned the weights
        module.load_lora_weights(r.ckpt)
    if is_zero3(accelerator):
        # DeepSpeed moves and partitions the (memory-mapped) weights when the engine starts;
        # moving the whole DiT to each GPU first would only raise the peak.
        module.pipe.device = accelerator.device
    else:
        module.to(accelerator.device)
    L.apply(module, r.levers)
    r.summary["load_seconds"] = time.perf_counter() - t0
    r.params = list(module.trainable_modules())
    r.summary["trainable_params"] = sum(p.numel() for p in r.params)
    optimizer = L.make_optimizer(r.params, r.levers, cfg.learning_rate, cfg.weight_decay)
    r.module, r.optimizer = accelerator.prepare(module, optimizer)


def _encode(r: Run) -> list[str]:
    """Encode the clips the cache lacks; returns the model roles the run still loads."""
    cfg = r.cfg
    encoder_roles = [role for role in (*ENCODER_ROLES, "tokenizer") if role in cfg.models]
    if not cfg.use_cache:
        prompts = [D.clip_prompt(r.ds, i) for i in range(len(r.ds.data))]
        if any(not isinstance(p, str) or not p.strip() for p in prompts):
            raise TrainError("some clips have no text prompt; caption them and re-export")
        return ["dit", *encoder_roles]
    encoder_files = resolve_files(cfg, encoder_roles, r.accelerator.main_process_first)
    flags = None
    if cfg.inputs():   # the DiT's flags choose the image encodings (its weights load after encoding)
        dit = resolve_files(cfg, ["dit"], r.accelerator.main_process_first)["dit"]
        try:
            flags = dit_flags(dit, cfg.model_registry, cfg.inputs())
        except M.ModelError as e:
            raise TrainError(str(e)) from None
    r.cache = C.EncodeCache(cfg.cache_dir)
    r.keys = clip_keys(cfg, r.ds, encoder_files, flags)
    r.summary["encode"] = encode_missing(cfg, r.accelerator, r.ds, r.keys, r.cache, encoder_files, r.show, flags)
    return ["dit"]


def restore(r: Run) -> None:
    """Resume the optimizer (and, distributed, accelerate's whole state) from the checkpoint's
    state; its LoRA weights were loaded by ``build``."""
    ckpt, accelerator = r.ckpt, r.accelerator
    if ckpt is None:
        return
    if state_dir(ckpt).is_dir():
        kwargs = {"load_module_strict": False} if getattr(accelerator.state, "deepspeed_plugin", None) else {}
        accelerator.load_state(str(state_dir(ckpt)), **kwargs)
    elif state_path(ckpt).is_file():
        load_optimizer_state(state_path(ckpt), r.optimizer)
    elif r.main:
        print(f"warning: {ckpt} has no optimizer state beside it; resuming with a fresh optimizer",
              file=sys.stderr)


def _items(r: Run):
    """``(step, cached inputs, None)`` or ``(step, None, clip)`` for the steps still to run."""
    steps = range(r.start, r.total)
    if r.cache is not None:
        def load(s):
            i = r.order(s)
            got = r.cache.get(r.keys[i])
            if got is None:
                raise TrainError(f"cache entry for {r.ds.data[i]['video']} vanished from {r.cfg.cache_dir}")
            return got
        if r.levers is not None and r.levers.prefetch:
            # read ahead on a thread into pinned memory; the copy to the GPU does not block the host
            pre = L.Prefetcher(steps, load)
            try:
                for s, got in pre:
                    yield s, L.to_device(got, r.accelerator.device, DTYPES[r.cfg.dtype], non_blocking=True), None
            finally:
                pre.close()
            return
        for s in steps:
            yield s, load(s), None
    else:
        idx = [r.order(s) for s in steps]
        loader = torch.utils.data.DataLoader(torch.utils.data.Subset(r.ds, idx), batch_size=1, shuffle=False,
                                             collate_fn=_first, num_workers=r.cfg.num_workers)
        yield from ((s, None, item) for s, item in zip(steps, loader))


def loop(r: Run) -> tuple[list[float], list[float], float]:
    """The steps from ``start`` to ``total``: loss log, progress bar, checkpoints every
    ``save_every``. Returns the losses, each step's seconds and the loop's seconds."""
    from tqdm import tqdm

    cfg, accelerator, module, optimizer = r.cfg, r.accelerator, r.module, r.optimizer
    world, rank = accelerator.num_processes, accelerator.process_index
    r.logger = RunLogger(cfg, optimizer, r.start)
    csv_log = LossCSV(r.out / "loss.csv", r.start) if r.main else None
    t_log = LossCSV(r.out / "timesteps.csv", r.start, ["step", "timestep"]) if r.main else None
    inner = accelerator.unwrap_model(module)
    if _on_cuda(accelerator):
        torch.cuda.reset_peak_memory_stats(accelerator.device)
    bar = tqdm(total=r.total, initial=r.start, desc="train", unit="step", disable=not r.show, file=sys.stderr)
    losses, times, ema = [], [], None
    module.train()
    lazy = r.levers is not None and r.levers.lazy_loss
    log = L.LossLog(lazy)
    reduce = lambda x: accelerator.reduce(x, reduction="mean")   # noqa: E731

    def record(rows):
        nonlocal ema
        for s, value, dt in rows:
            losses.append(value)
            times.append(dt)
            ema = value if ema is None else 0.9 * ema + 0.1 * value
            if csv_log:
                csv_log.log(step=s + 1, epoch=r.order.epoch_of(s), loss=f"{value:.6g}",
                            lr=f"{optimizer.param_groups[0]['lr']:.3g}", seconds=f"{dt:.3f}")
        if rows:
            bar.set_postfix(loss=f"{rows[-1][1]:.4f}", avg=f"{ema:.4f}")

    t_loop = time.perf_counter()
    with L.context(r.levers or L.Levers()):
        for s, inputs, item in _items(r):
            torch.manual_seed(step_seed(cfg.seed, s, rank, world))
            loss = train_step(accelerator, module, optimizer, r.params, cfg, item=item, inputs=inputs)
            if t_log and inner.last_timestep is not None:
                t_log.log(step=s + 1, timestep=f"{inner.last_timestep:.4f}")
            record(log.add(s, loss, reduce))
            if lazy and ((s + 1) % cfg.save_every == 0 or s + 1 == r.total):
                record(log.flush())   # the loss log reaches each checkpoint's step before it is saved
            bar.update(1)
            r.logger.on_step_end(accelerator, module, cfg.save_every, loss=loss)
        record(log.flush())
        r.logger.on_training_end(accelerator, module, cfg.save_every)
    bar.close()
    if csv_log:
        csv_log.close()
        t_log.close()
    return losses, times, time.perf_counter() - t_loop


def finish(r: Run, losses: list[float], times: list[float], seconds: float) -> dict:
    """The summary (written to ``summary.json`` by the main process) of a run whose last
    checkpoint ``loop`` has saved."""
    accelerator, summary = r.accelerator, r.summary
    summary.update({"checkpoints": r.logger.saved, "losses": losses, "step_seconds": times,
                    "train_seconds": seconds, "final": str(r.out / f"step-{r.total}.safetensors")})
    if r.cfg.expert:
        summary["expert"] = r.cfg.expert
    if r.logger.comfyui_skipped:
        summary["comfyui"] = r.logger.comfyui_skipped
    if _on_cuda(accelerator):   # per-GPU peak (torch.cuda.max_memory_allocated) over the training steps
        peak = torch.tensor([torch.cuda.max_memory_allocated(accelerator.device) / 2 ** 30], device=accelerator.device)
        summary["peak_gib_per_gpu"] = [round(float(v), 2) for v in accelerator.gather(peak)]
        summary["gpu"] = torch.cuda.get_device_name(accelerator.device)
    if r.main:
        later = times[1:] or times
        summary["median_step_seconds"] = sorted(later)[len(later) // 2] if later else None
        (r.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    accelerator.wait_for_everyone()
    return summary


def _on_cuda(accelerator) -> bool:
    return torch.cuda.is_available() and accelerator.device.type == "cuda"
