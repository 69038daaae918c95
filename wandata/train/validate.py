"""Render prompts with the base model and with a LoRA (same seeds) and put them side by side.

The LoRA is hot-loaded through DiffSynth (``enable_lora_hot_loading`` + ``load_lora(...,
hotload=True)``, ``clear_lora()`` between checkpoints), so the base weights are never
changed and every checkpoint of a run is compared with the same base renders.

Output folder: ``base/`` and one folder per checkpoint with ``p{prompt}_s{seed}.mp4``; per
checkpoint ``preview.mp4`` (base | LoRA, one row per prompt and seed); ``preview.png``
(the middle frame of every render: rows prompt x seed, columns base and each checkpoint);
``validation.json`` listing prompts, seeds and files.

The inputs follow the run: I2V / TI2V renders start from the held-out clip's first frame, FLF2V
from its first and last, VACE from its control video and reference image (the export's
columns). A Wan2.2 A14B pair's run folder renders with both experts' DiTs, each with its own
LoRA of the same step hot-loaded (DiffSynth's ``pipe.dit`` high noise, ``pipe.dit2`` low noise,
switching at the model's boundary); a VACE LoRA goes into ``pipe.vace``.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wandata.atomic import write_text as atomic_write_text

from wandata.train import config as TC
from wandata.train.config import TrainConfig

NEGATIVE = ("static, blurry, low quality, jpeg artifacts, distorted, deformed, watermark, text, subtitles, "
            "overexposed, worst quality")


class ValidateError(Exception):
    pass


MARKER = "validation.json"


def is_validation_dir(folder: Path) -> bool:
    """Whether ``folder`` holds renders of ours: its validation.json is one we wrote."""
    try:
        data = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and (data.get("created_by") == "wandata validate"
                                       or {"prompts", "seeds", "renders"} <= set(data))


def claim_output(plan: "Plan") -> None:
    """Refuse (nothing written) an output folder holding someone else's files, or the dataset;
    else mark it as ours before the first render, so an interrupted run can be redone there."""
    from wandata import atomic
    out = Path(plan.out_dir)
    try:
        atomic.check_dir(out, is_validation_dir, dataset=plan.cfg.dataset_base_path or None,
                         what="validation folder", how=f"a validation folder holds wandata's {MARKER}")
    except atomic.OutputRefused as e:
        raise ValidateError(f"--output: {e}") from None
    if not is_validation_dir(out):
        atomic.write_text(out / MARKER, json.dumps({"created_by": "wandata validate", "status": "rendering"}) + "\n")


@dataclass
class Prompt:
    text: str
    image: object = None     # PIL first frame (I2V, TI2V, FLF2V)
    source: str = ""
    end_image: object = None             # PIL last frame (FLF2V)
    vace_video: list | None = None       # PIL frames of the control video (VACE)
    vace_reference_image: object = None  # PIL (VACE)
    control_video: list | None = None    # PIL frames of the control video (Fun-Control)
    reference_image: object = None       # PIL (Fun-Control V1.1)


@dataclass
class Plan:
    cfg: TrainConfig
    loras: list[Path]
    prompts: list[Prompt]
    seeds: list[int]
    out_dir: Path
    num_frames: int
    height: int
    width: int
    steps: int = 30
    cfg_scale: float = 5.0
    negative_prompt: str = NEGATIVE
    fps: float = 16.0
    notes: list[str] = field(default_factory=list)
    loras2: list[Path] = field(default_factory=list)   # A14B pair: the low-noise expert's, step by step


def find_pairs(path: Path, cfg: TrainConfig) -> tuple[list[Path], list[Path]]:
    """A Wan2.2 A14B pair's run folder: the steps both experts have a LoRA for, as (high-noise
    LoRAs, low-noise LoRAs) in step order."""
    from wandata.train.trainer import checkpoints

    by = {e["role"]: dict(checkpoints(Path(path) / e["name"])) for e in cfg.experts}
    steps = sorted(set(by["dit"]) & set(by["dit2"]))
    if not steps:
        have = "; ".join(f"{e['name']}: {sorted(by[e['role']]) or 'none'}" for e in cfg.experts)
        raise ValidateError(f"{path}: no step has a LoRA of both experts ({have}); train both "
                            "(`wandata train` without --expert, or once with each)")
    return [by["dit"][n] for n in steps], [by["dit2"][n] for n in steps]


def find_loras(path: Path) -> list[Path]:
    """A LoRA file, or every ``step-N.safetensors`` of a run folder in step order."""
    from wandata.train.trainer import checkpoints

    path = Path(path)
    if path.is_dir():
        found = [p for _, p in checkpoints(path)]
        if not found:
            raise ValidateError(f"{path} holds no step-N.safetensors checkpoints")
        return found
    if not path.is_file():
        raise ValidateError(f"--lora {path}: no such file or folder")
    return [path]


def resolve_loras(path: Path, config: Path | None = None) -> tuple[TrainConfig, list[Path], list[Path]]:
    """(run config, LoRAs, the low-noise expert's LoRAs or []) for ``--lora PATH``: a file, a
    run folder, or the folder of a Wan2.2 A14B pair (both experts' runs below it)."""
    path = Path(path)
    cfg_path = Path(config) if config else path / TC.CONFIG_NAME
    if path.is_dir() and cfg_path.is_file():
        cfg = TC.load(cfg_path)
        if cfg.is_pair:
            high, low = find_pairs(path, cfg)
            return cfg, high, low
    loras = find_loras(path)
    return run_config(loras, config), loras, []


def run_config(loras: list[Path], config: Path | None) -> TrainConfig:
    path = Path(config) if config else loras[0].parent / TC.CONFIG_NAME
    if not path.exists():
        raise ValidateError(f"no {TC.CONFIG_NAME} beside {loras[0]}; pass the run's config with --config")
    return TC.load(path)


def read_prompts(path: Path) -> list[Prompt]:
    text = Path(path).read_text(encoding="utf-8")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("{"):
            row = json.loads(line)
            line = row.get("prompt") or row.get("caption") or ""
        if line:
            out.append(Prompt(line, source=str(path)))
    if not out:
        raise ValidateError(f"{path} has no prompts (one per line, or jsonl with a prompt field)")
    return out


def held_out_prompts(cfg: TrainConfig, limit: int, with_images: bool | None = None) -> tuple[list[Prompt], list[str]]:
    """Captions of the export's validation clips; without a split, the first training ones."""
    from wandata.export import read_settings

    notes = []
    s = read_settings(Path(cfg.settings_path))
    meta = s.get("validation_metadata_path")
    if not meta:
        meta = s["metadata_path"]
        notes.append("the export has no validation split (`wandata export --split`): using training captions")
    rows = _read_rows(Path(meta))[:limit]
    inputs = cfg.inputs() if with_images is None else (["input_image"] if with_images else [])
    base = Path(s["dataset_base_path"])
    prompts = []
    for r in rows:
        p = Prompt(str(r["prompt"]), source=r["video"])
        frames = _frames(_inside(base, r, "video")) if {"input_image", "end_image"} & set(inputs) else None
        if "input_image" in inputs:
            p.image = frames[0]
        if "end_image" in inputs:
            p.end_image = frames[-1]
        if "vace_video" in inputs:
            p.vace_video = _frames(_inside(base, r, "vace_video"))
        if "vace_reference_image" in inputs:
            p.vace_reference_image = _image(_inside(base, r, "vace_reference_image"))
        if "control_video" in inputs:
            p.control_video = _frames(_inside(base, r, "control_video"))
        if "reference_image" in inputs:
            p.reference_image = _image(_inside(base, r, "reference_image"))
        prompts.append(p)
    return prompts, notes


def _image(path: Path):
    from PIL import Image
    with Image.open(path) as im:
        return im.convert("RGB")


def _inside(base: Path, row: dict, column: str) -> Path:
    from wandata.confine import OutsideRoot, inside
    if not row.get(column):
        raise ValidateError(f"{row.get('video')}: no {column} column in the export; re-export with --with {column}")
    try:
        return inside(base, row[column], f"{column} in the export's metadata")
    except OutsideRoot as e:
        raise ValidateError(str(e)) from None


def _frames(path: Path) -> list:
    import av
    with av.open(str(path)) as c:
        frames = [f.to_image() for f in c.decode(video=0)]
    if not frames:
        raise ValidateError(f"{path}: no frame decoded")
    return frames


def _read_rows(path: Path) -> list[dict]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if path.suffix == ".json":
        return json.loads(path.read_text(encoding="utf-8"))
    import csv
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _first_frame(path: Path):
    import av
    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            return frame.to_image()
    raise ValidateError(f"{path}: no frame decoded")


# --- writing ------------------------------------------------------------------------------

def write_mp4(frames: list, path: Path, fps: float) -> None:
    """PIL frames -> H.264 mp4 (yuv420p; sizes are multiples of 16)."""
    import av
    from fractions import Fraction

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.mp4")
    with av.open(str(tmp), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        s.width, s.height = frames[0].size
        s.pix_fmt = "yuv420p"
        s.options = {"crf": "18", "preset": "veryfast"}
        for im in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.asarray(im.convert("RGB")), format="rgb24")))
        c.mux(s.encode())
    tmp.replace(path)


def side_by_side(columns: list[list], gap: int = 0) -> list:
    """Frames of several equally long renders, placed left to right."""
    from PIL import Image

    out = []
    for frames in zip(*columns):
        w = sum(f.size[0] for f in frames) + gap * (len(frames) - 1)
        h = max(f.size[1] for f in frames)
        canvas = Image.new("RGB", (w, h))
        x = 0
        for f in frames:
            canvas.paste(f, (x, 0))
            x += f.size[0] + gap
        out.append(canvas)
    return out


def stack_rows(rows: list[list]) -> list:
    from PIL import Image

    out = []
    for frames in zip(*rows):
        w = max(f.size[0] for f in frames)
        canvas = Image.new("RGB", (w, sum(f.size[1] for f in frames)))
        y = 0
        for f in frames:
            canvas.paste(f, (0, y))
            y += f.size[1]
        out.append(canvas)
    return out


def contact_sheet(grid: list[list], thumb_w: int = 256):
    """grid[row][col] = PIL image -> one image, thumbnails ``thumb_w`` wide."""
    from PIL import Image

    cells = [[im.resize((thumb_w, max(2, round(im.size[1] * thumb_w / im.size[0])))) for im in row] for row in grid]
    h = max(c.size[1] for row in cells for c in row)
    sheet = Image.new("RGB", (thumb_w * max(len(r) for r in cells), h * len(cells)), "white")
    for y, row in enumerate(cells):
        for x, c in enumerate(row):
            sheet.paste(c, (x * thumb_w, y * h))
    return sheet


# --- rendering ----------------------------------------------------------------------------

def load_pipe(cfg: TrainConfig, device: str):
    from wandata.train.module import load_pipeline, resolve_files

    cfg.dtype = "bf16" if device.startswith("cuda") else "fp32"
    # dit before dit2: DiffSynth hands the DiTs to pipe.dit / pipe.dit2 in the order it loads them
    roles = [r for r in ("dit", "dit2", "text_encoder", "vae", "tokenizer", "image_encoder")
             if r in cfg.models and (r != "dit2" or cfg.is_pair)]
    pipe = load_pipeline(cfg, resolve_files(cfg, roles), device=device)
    for name in ("dit", "dit2", cfg.lora_base_model):
        if getattr(pipe, name, None) is not None:
            setattr(pipe, name, pipe.enable_lora_hot_loading(getattr(pipe, name)))
    return pipe


def render(pipe, plan: Plan, prompt: Prompt, seed: int, device: str) -> list:
    kw = {"prompt": prompt.text, "negative_prompt": plan.negative_prompt, "seed": seed, "height": plan.height,
          "width": plan.width, "num_frames": plan.num_frames, "num_inference_steps": plan.steps,
          "cfg_scale": plan.cfg_scale, "tiled": device.startswith("cuda"), "progress_bar_cmd": lambda x: x}
    if prompt.image is not None:
        kw["input_image"] = prompt.image.convert("RGB").resize((plan.width, plan.height))
    if prompt.end_image is not None:
        kw["end_image"] = prompt.end_image.convert("RGB").resize((plan.width, plan.height))
    if prompt.vace_video is not None:
        frames = [f.convert("RGB").resize((plan.width, plan.height)) for f in prompt.vace_video]
        kw["vace_video"] = (frames + frames[-1:] * plan.num_frames)[:plan.num_frames]
    if prompt.vace_reference_image is not None:
        kw["vace_reference_image"] = prompt.vace_reference_image.resize((plan.width, plan.height))
    if prompt.control_video is not None:
        frames = [f.convert("RGB").resize((plan.width, plan.height)) for f in prompt.control_video]
        kw["control_video"] = (frames + frames[-1:] * plan.num_frames)[:plan.num_frames]
    if prompt.reference_image is not None:
        kw["reference_image"] = prompt.reference_image.resize((plan.width, plan.height))
    if getattr(pipe, "dit2", None) is not None and plan.cfg.boundary is not None:
        kw["switch_DiT_boundary"] = plan.cfg.boundary
    return pipe(**kw)


def run(plan: Plan, device: str | None = None, progress: bool = True, pipe=None) -> dict:
    import torch
    from tqdm import tqdm

    claim_output(plan)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipe = pipe or load_pipe(plan.cfg, device)
    out = plan.out_dir
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(pi, p, s) for pi, p in enumerate(plan.prompts) for s in plan.seeds]
    total = len(jobs) * (1 + len(plan.loras))
    bar = tqdm(total=total, desc="render", unit="video", disable=not progress, file=sys.stderr)
    summary = {"prompts": [p.text for p in plan.prompts], "seeds": plan.seeds, "num_frames": plan.num_frames,
               "height": plan.height, "width": plan.width, "steps": plan.steps, "cfg_scale": plan.cfg_scale,
               "base_model": plan.cfg.model, "notes": plan.notes, "renders": {}}
    renders: dict[str, dict] = {}
    target = getattr(pipe, plan.cfg.lora_base_model)
    for i, (name, lora) in enumerate([("base", None)] + [(p.stem, p) for p in plan.loras]):
        if lora is not None:
            pipe.clear_lora(verbose=0)
            pipe.load_lora(target, str(lora), hotload=True, verbose=0)
            if plan.loras2:   # the low-noise expert's LoRA of the same step, into its own DiT
                pipe.load_lora(pipe.dit2, str(plan.loras2[i - 1]), hotload=True, verbose=0)
        renders[name] = {}
        for pi, prompt, seed in jobs:
            frames = render(pipe, plan, prompt, seed, device)
            path = out / name / f"p{pi}_s{seed}.mp4"
            write_mp4(frames, path, plan.fps)
            renders[name][(pi, seed)] = frames
            summary["renders"].setdefault(name, []).append({"prompt": pi, "seed": seed, "file": str(path),
                                                            "frames": len(frames), "size": list(frames[0].size)})
        if lora is not None:
            summary.setdefault("loras", {})[name] = {plan.cfg.lora_base_model: str(lora)} if not plan.loras2 else \
                {"dit": str(lora), "dit2": str(plan.loras2[i - 1])}
            bar.update(1)
        if lora is not None:
            rows = [side_by_side([renders["base"][(pi, s)], renders[name][(pi, s)]], gap=4) for pi, _, s in jobs]
            preview = out / name / "preview.mp4"
            write_mp4(stack_rows(rows), preview, plan.fps)
            summary.setdefault("previews", []).append(str(preview))
            for key in list(renders[name]):
                renders[name][key] = [renders[name][key][len(renders[name][key]) // 2]]   # keep the middle frame
    pipe.clear_lora(verbose=0)
    bar.close()
    grid = [[renders[n][(pi, s)][len(renders[n][(pi, s)]) // 2] for n in renders] for pi, _, s in jobs]
    sheet = out / "preview.png"
    contact_sheet(grid).save(sheet)
    summary["preview_png"] = str(sheet)
    summary["columns"] = list(renders)
    atomic_write_text(out / MARKER, json.dumps({"created_by": "wandata validate", **summary}, indent=2) + "\n")
    return summary
