"""Render prompts with the base model and with a LoRA (same seeds) and put them side by side.

The LoRA is hot-loaded through DiffSynth (``enable_lora_hot_loading`` + ``load_lora(...,
hotload=True)``, ``clear_lora()`` between checkpoints), so the base weights are never
changed and every checkpoint of a run is compared with the same base renders.

Output folder: ``base/`` and one folder per checkpoint with ``p{prompt}_s{seed}.mp4``; per
checkpoint ``preview.mp4`` (base | LoRA, one row per prompt and seed); ``preview.png``
(the middle frame of every render: rows prompt x seed, columns base and each checkpoint);
``validation.json`` listing prompts, seeds and files.
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
    image: object = None     # PIL first frame (I2V)
    source: str = ""


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


def held_out_prompts(cfg: TrainConfig, limit: int, with_images: bool) -> tuple[list[Prompt], list[str]]:
    """Captions of the export's validation clips; without a split, the first training ones."""
    from wandata.export import read_settings

    notes = []
    s = read_settings(Path(cfg.settings_path))
    meta = s.get("validation_metadata_path")
    if not meta:
        meta = s["metadata_path"]
        notes.append("the export has no validation split (`wandata export --split`): using training captions")
    rows = _read_rows(Path(meta))[:limit]
    prompts = []
    for r in rows:
        image = None
        if with_images:
            image = _first_frame(Path(s["dataset_base_path"]) / r["video"])
        prompts.append(Prompt(str(r["prompt"]), image, r["video"]))
    return prompts, notes


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
    roles = ["dit", "text_encoder", "vae", "tokenizer"] + (["image_encoder"] if cfg.task == "i2v" else [])
    pipe = load_pipeline(cfg, resolve_files(cfg, roles), device=device)
    pipe.dit = pipe.enable_lora_hot_loading(pipe.dit)
    return pipe


def render(pipe, plan: Plan, prompt: Prompt, seed: int, device: str) -> list:
    kw = {"prompt": prompt.text, "negative_prompt": plan.negative_prompt, "seed": seed, "height": plan.height,
          "width": plan.width, "num_frames": plan.num_frames, "num_inference_steps": plan.steps,
          "cfg_scale": plan.cfg_scale, "tiled": device.startswith("cuda"), "progress_bar_cmd": lambda x: x}
    if prompt.image is not None:
        kw["input_image"] = prompt.image.convert("RGB").resize((plan.width, plan.height))
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
    for name, lora in [("base", None)] + [(p.stem, p) for p in plan.loras]:
        if lora is not None:
            pipe.clear_lora(verbose=0)
            pipe.load_lora(pipe.dit, str(lora), hotload=True, verbose=0)
        renders[name] = {}
        for pi, prompt, seed in jobs:
            frames = render(pipe, plan, prompt, seed, device)
            path = out / name / f"p{pi}_s{seed}.mp4"
            write_mp4(frames, path, plan.fps)
            renders[name][(pi, seed)] = frames
            summary["renders"].setdefault(name, []).append({"prompt": pi, "seed": seed, "file": str(path),
                                                            "frames": len(frames), "size": list(frames[0].size)})
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
