"""The resolved configuration of one training run.

Everything the dataset already knows (num_frames, buckets, resolution mode, max_pixels,
fps, the metadata path) comes from the export's ``wandata_export.json`` through
``wandata.export.read_settings``; flags only override. The resolved config is written
to ``OUTPUT/train_config.json`` and is all a launched process reads.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from wandata.train import models as M

DEFAULT_TARGETS = "q,k,v,o,ffn.0,ffn.2"
TASKS = ("t2v", "i2v", "flf2v", "ti2v", "vace", "control")
EXPERTS = ("high", "low")   # --expert: high_noise, low_noise
# auto: one-gpu where the model fits one visible GPU alone, else zero3 (wandata.train.launch.choose_engine);
# one-gpu: this process, no DeepSpeed, the speed levers as in phase 1; none: accelerate's plain DDP (gloo on CPU)
DEEPSPEED = ("auto", "one-gpu", "zero3", "zero2-offload", "none")
DTYPES = ("bf16", "fp32")
CONFIG_NAME = "train_config.json"


# The inputs the trainer gives the pipeline, by DiffSynth's names (train.py parse_extra_inputs).
KNOWN_INPUTS = ("input_image", "end_image", "vace_video", "vace_reference_image", "control_video",
                "reference_image")


class ConfigError(Exception):
    """A setting cannot work; the message says which and what to do."""

    def __init__(self, message: str, items: list[str] | None = None):
        super().__init__(message)
        self.items = list(items or [])


@dataclass
class TrainConfig:
    # what
    phase: int = 1
    task: str = "t2v"
    model: str = "Wan2.1-T2V-1.3B"
    models: dict = field(default_factory=dict)          # role -> ModelSpec as a dict
    models_root: str = "./models"
    offline: bool = False
    download_source: str | None = None                  # modelscope (DiffSynth's default) | huggingface
    model_registry: list = field(default_factory=list)  # extra DiffSynth model-table entries
    profile: str = ""                                   # --profile (wandata/profiles.py); "" when not named
    extra_inputs: list = field(default_factory=list)    # DiffSynth --extra_inputs (input_image, ...)
    data_file_keys: list = field(default_factory=lambda: ["video"])   # DiffSynth --data_file_keys
    lora_base_model: str = "dit"                        # DiffSynth --lora_base_model: dit | vace
    size_multiple: int = 16                             # bucket sides (32 for the Wan2.2 VAE)
    # Wan2.2 A14B: both experts ({name, role, min/max_timestep_boundary, timesteps}); ``expert``
    # is the one this config trains ("" = each in turn, in OUTPUT/<name>/), models["dit"/"dit2"]
    # their DiTs. ``boundary``: where sampling switches from dit to dit2 (a fraction of 1000).
    experts: list = field(default_factory=list)
    expert: str = ""
    boundary: float | None = None
    # data (from wandata_export.json)
    settings_path: str = ""
    dataset_base_path: str = ""
    metadata_path: str = ""
    num_frames: int = 81
    height: int | None = None
    width: int | None = None
    max_pixels: int = 832 * 480
    resolution_mode: str = "fixed"
    buckets: list = field(default_factory=list)
    fps: float = 16.0
    num_clips: int = 0
    # where
    output_dir: str = ""
    cache_dir: str = ""
    use_cache: bool = True
    # LoRA
    lora_rank: int = 32
    lora_targets: str = DEFAULT_TARGETS
    # optimisation
    learning_rate: float = 1e-4
    weight_decay: float = 1e-2
    epochs: int = 10
    steps: int | None = None             # None: epochs * ceil(clips / processes), fixed at start
    save_every: int = 250
    seed: int = 0
    grad_accum: int = 1
    max_grad_norm: float | None = None
    gradient_checkpointing: bool = True
    gradient_checkpointing_offload: bool = False
    dtype: str = "bf16"
    num_workers: int = 2
    min_timestep_boundary: float = 0.0
    max_timestep_boundary: float = 1.0
    resume: str | None = None
    # speed levers (wandata.train.levers): "auto" decides at run time, all off without a GPU
    levers: str = "auto"                 # auto | none (every auto lever off: the untuned path)
    checkpointing: str = "auto"          # auto | on | off  (--gradient-checkpointing)
    compile: str = "auto"                # auto | on | off
    attention: str = "auto"              # auto | default | cudnn | flash | efficient
    fused_adamw: str = "auto"            # auto | on | off
    lazy_loss: str = "auto"              # auto | on | off
    prefetch: str = "auto"               # auto | on | off
    cudnn_benchmark: str = "auto"        # auto | on | off
    levers_chosen: dict = field(default_factory=dict)   # what the run used (written by the trainer)
    # phase 2 launch
    num_processes: int | None = None
    num_machines: int = 1
    machine_rank: int = 0
    main_process_ip: str | None = None
    main_process_port: int | None = None
    deepspeed: str = "auto"
    accelerate_config: str | None = None

    def in_process(self) -> bool:
        """Phase 1, and phase 2 on one GPU without DeepSpeed, train in the wandata process."""
        return self.phase == 1 or self.deepspeed == "one-gpu"

    def deepspeed_mode(self) -> str:
        """``deepspeed`` with ``auto`` as its fallback, zero3: a config that did not go through
        ``launch.choose_engine`` (a caller of the library) launches that way."""
        return "zero3" if self.deepspeed == "auto" else self.deepspeed

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown training setting(s): {', '.join(unknown)}")
        return cls(**d)

    def inputs(self) -> list[str]:
        """The extra inputs of a row (configs from before presets named them: by task)."""
        return list(self.extra_inputs) or (["input_image"] if self.task == "i2v" else [])

    @property
    def is_pair(self) -> bool:
        """An A14B config that trains both experts in turn (a folder per expert)."""
        return bool(self.experts) and not self.expert

    def expert_config(self, name: str) -> "TrainConfig":
        """The config that trains one expert of the pair: its DiT as ``dit``, its timestep range,
        its own run folder OUTPUT/<name> beside the other's."""
        e = next((x for x in self.experts if x["name"] == name or x["name"].startswith(name + "_")), None)
        if e is None:
            raise ConfigError(f"expert {name!r}: this run has {', '.join(x['name'] for x in self.experts) or 'none'}")
        d = self.to_dict()
        models = dict(d["models"])
        models["dit"] = models.pop(e["role"])
        models.pop("dit2", None)
        out = Path(self.output_dir)
        d.update(models=models, expert=e["name"], min_timestep_boundary=e["min_timestep_boundary"],
                 max_timestep_boundary=e["max_timestep_boundary"], output_dir=str(out / e["name"]))
        return TrainConfig.from_dict(d)

    def specs(self) -> dict[str, M.ModelSpec]:
        return M.specs_from_json(self.models)

    def total_steps(self, world_size: int) -> int:
        if self.steps is not None:
            return self.steps
        return self.epochs * max(1, math.ceil(self.num_clips / max(1, world_size)))

    def save(self, path: Path | None = None) -> Path:
        path = Path(path or Path(self.output_dir) / CONFIG_NAME)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path

    def validate(self) -> None:
        problems = []
        if self.phase not in (1, 2):
            problems.append(f"phase {self.phase}: 1 (one GPU) or 2 (accelerate + DeepSpeed)")
        if self.task not in TASKS:
            problems.append(f"task {self.task!r}: choose {' or '.join(TASKS)}")
        preset = M.PRESETS.get(self.model)
        if (self.task == "i2v" and "image_encoder" not in self.models
                and (preset is None or preset.image_encoder or preset.task != "i2v")):
            problems.append("task i2v needs an image encoder (CLIP): use the Wan2.1-I2V-14B-480P model "
                            "or pass --image-encoder")
        unknown = sorted(set(self.inputs()) - set(KNOWN_INPUTS))
        if unknown:
            problems.append(f"extra_inputs {', '.join(unknown)}: the trainer feeds {', '.join(KNOWN_INPUTS)}")
        if self.lora_base_model not in ("dit", "vace"):
            problems.append(f"lora_base_model {self.lora_base_model!r}: dit or vace")
        if self.experts:
            names = [e["name"] for e in self.experts]
            if self.expert and self.expert not in names:
                problems.append(f"expert {self.expert!r}: choose one of {', '.join(names)}")
            roles = [e["role"] for e in self.experts] if not self.expert else ["dit"]
            for role in roles:
                if role not in self.models:
                    problems.append(f"no {role} model (the {names[roles.index(role)] if not self.expert else self.expert} expert)")
        if self.dtype not in DTYPES:
            problems.append(f"dtype {self.dtype!r}: choose {' or '.join(DTYPES)}")
        if self.deepspeed not in DEEPSPEED:
            problems.append(f"deepspeed {self.deepspeed!r}: choose {' or '.join(DEEPSPEED)}")
        if self.num_frames < 1 or (self.num_frames - 1) % 4:
            problems.append(f"num_frames {self.num_frames} is not 4k+1, which Wan's VAE needs")
        if (self.height is None) != (self.width is None):
            problems.append("height and width go together (a fixed size) or are both unset (dynamic)")
        for side in (self.height, self.width):
            if side is not None and side % self.size_multiple:
                problems.append(f"size {self.width}x{self.height}: sides must be multiples of {self.size_multiple}")
                break
        if self.lora_rank < 1:
            problems.append("lora rank must be at least 1")
        if not [t for t in self.lora_targets.split(",") if t.strip()]:
            problems.append("no LoRA target modules")
        if self.steps is not None and self.steps < 1:
            problems.append("steps must be at least 1")
        if self.save_every < 1:
            problems.append("save_every must be at least 1")
        if self.grad_accum < 1:
            problems.append("grad_accum must be at least 1")
        if not 0 <= self.min_timestep_boundary < self.max_timestep_boundary <= 1:
            problems.append("timestep boundaries must satisfy 0 <= min < max <= 1")
        # The same ranges as the command line's, for a train_config.json written by hand.
        if not self.learning_rate > 0:
            problems.append(f"learning_rate {self.learning_rate} must be > 0")
        if self.weight_decay < 0:
            problems.append(f"weight_decay {self.weight_decay} must be >= 0")
        if self.epochs < 1:
            problems.append("epochs must be at least 1")
        if self.seed < 0:
            problems.append("seed must be >= 0")
        if self.num_workers < 0:
            problems.append("num_workers must be >= 0 (0: clips decoded in the training process)")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            problems.append(f"max_grad_norm {self.max_grad_norm} must be > 0 (or unset: no clipping)")
        if self.max_pixels < 16 * 16:
            problems.append(f"max_pixels {self.max_pixels} must be at least 256")
        if self.num_processes is not None and self.num_processes < 1:
            problems.append("num_processes (--gpus) must be at least 1")
        if self.num_machines < 1 or not 0 <= self.machine_rank < self.num_machines:
            problems.append(f"machine_rank {self.machine_rank} must be in [0, num_machines={self.num_machines})")
        if self.main_process_port is not None and not 1 <= self.main_process_port <= 65535:
            problems.append(f"main_process_port {self.main_process_port} must be in [1, 65535]")
        for role in ("dit", "text_encoder", "vae", "tokenizer"):
            if role not in self.models:
                problems.append(f"no {role} model")
        from wandata.train.levers import CHOICES, FLAGS
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                problems.append(f"{name} {getattr(self, name)!r} ({FLAGS[name]}): choose {', '.join(choices)}")
        if problems:
            raise ConfigError("the training settings cannot work", problems)


def find_settings(dataset: Path | None, settings: Path | None) -> Path:
    """The export's settings file: given, or DATASET/wandata_export.json."""
    from wandata.export import SETTINGS_NAME

    if settings is not None:
        return Path(settings)
    dataset = Path(dataset or "dataset")
    path = dataset / SETTINGS_NAME if dataset.is_dir() or not dataset.suffix else dataset
    if not path.exists():
        raise ConfigError(f"no {SETTINGS_NAME} in {dataset}: run `wandata export -d {dataset}` first "
                          "(it records num_frames, buckets and the resolution mode the trainer needs)")
    return path


def _check_review(settings_path: Path, s: dict) -> None:
    """The trainer reads the export, not the manifest: decisions taken in `wandata review`
    after the export would be ignored (a rejected clip trained on), so refuse until re-exported."""
    from wandata.dataset.review import JOURNAL_NAME

    journal = Path(s.get("dataset_base_path") or ".") / JOURNAL_NAME
    if journal.is_file() and journal.stat().st_mtime_ns > settings_path.stat().st_mtime_ns:
        raise ConfigError(f"{journal} holds review decisions made after the export {settings_path} was "
                          "written, and training reads the export: re-run `wandata export` so that it "
                          "carries them")


def _profile_model(name: str, s: dict, allow_mismatch: bool, model: str | None, task: str | None):
    """Refuse an export whose clips do not fit profile ``name`` (docs/profiles.md), and give the
    (model preset, task) that trains it. The presets are the models wandata trains today; a
    profile without one is refused rather than trained on another model."""
    from wandata import profiles as P

    why = P.dataset_refusal(name, s.get("ingested_for") or [s.get("profile") or P.DEFAULT], {s.get("fps") or 16.0},
                            {s["num_frames"]}, {(b["width"], b["height"]) for b in s.get("buckets") or []},
                            f"dataset {s.get('dataset_base_path')}")
    if why and not allow_mismatch:
        raise ConfigError(why)
    p = P.get(name)
    preset = M.preset_for_profile(name)
    if preset is None:
        known = [x.profile for x in M.PRESETS.values()]
        raise ConfigError(f"wandata train has no model preset for profile {name} ({p.title}) yet; it trains "
                          f"{', '.join(known)}")
    if model and model != preset.name:
        raise ConfigError(f"--model {model} is not the model of --profile {name} ({preset.name}): give one of them")
    if task and task != preset.task:
        raise ConfigError(f"--task {task} is not the task of --profile {name} ({preset.task}): give one of them")
    return preset.name, preset.task


def _check_inputs(preset, s: dict, settings_path) -> None:
    """The files the model reads beside each clip (VACE: vace_video, vace_reference_image) must
    be columns of the export; the images I2V/FLF2V/TI2V take come from the clip itself."""
    have = set((s.get("conditioning") or {}).get("data_file_keys") or ["video"])
    need = [k for k in preset.data_file_keys if k not in have]
    if need:
        spec = ",".join(f"{k}:canny" if k.endswith("_video") else k for k in need)
        raise ConfigError(f"{preset.name} reads {', '.join(need)} beside each clip, and the export {settings_path} "
                          f"has no such column: re-export with `wandata export --with {spec}` (any control "
                          "extractor; docs/export.md)")


def resolve(*, dataset: Path | None = None, settings: Path | None = None, phase: int = 1, task: str = "t2v",
            model: str | None = None, model_dir: Path | None = None, files: dict[str, str | None] | None = None,
            models_root: str | None = None, output_dir: Path | None = None, cache_dir: Path | None = None,
            num_frames: int | None = None, size: tuple[int, int] | None = None, max_pixels: int | None = None,
            profile: str | None = None, allow_profile_mismatch: bool = False, expert: str | None = None,
            **overrides) -> TrainConfig:
    """Build a run's config from the export settings, the model choice and the flags. With
    ``profile`` (a model profile), the export's clips must fit it and it names the model."""
    from wandata.export import ExportError, read_settings

    settings_path = find_settings(dataset, settings)
    try:
        s = read_settings(settings_path)
    except ExportError as e:
        raise ConfigError(str(e)) from None
    _check_review(settings_path, s)
    if s.get("format") not in ("csv", "json", "jsonl"):
        raise ConfigError(f"{settings_path} describes a {s.get('format')} export; the trainer reads DiffSynth "
                          f"metadata: run `wandata export -f jsonl`")
    if profile:
        model, task = _profile_model(profile, s, allow_profile_mismatch, model, task)
    if model in M.PRESETS and M.PRESETS[model].task not in ("t2v", "i2v"):
        task = M.PRESETS[model].task   # FLF2V, TI2V, VACE: the model has one task
    task = task or "t2v"
    model = model or M.default_model(phase, task)
    if model not in M.PRESETS:
        raise ConfigError(f"unknown model {model!r}; choose one of {', '.join(M.PRESETS)}")
    preset = M.PRESETS[model]
    _check_inputs(preset, s, settings_path)
    image_encoder = preset.image_encoder or (task == "i2v" and preset.task != "i2v")
    try:
        specs = M.specs_from_dir(model_dir, image_encoder, preset) if model_dir else {}
    except M.ModelError as e:
        raise ConfigError(str(e), e.items) from None
    for role, spec in M.preset_specs(model).items():
        specs.setdefault(role, spec)
    files = files or {}
    if files.get("dit2") and not preset.experts:
        raise ConfigError(f"--dit2 is the low-noise expert of a Wan2.2 A14B model; {model} has one DiT")
    if files.get("image_encoder") and not image_encoder:
        raise ConfigError(f"--image-encoder: {model} takes no CLIP image encoder")
    for role, value in files.items():
        if value:
            specs[role] = M.ModelSpec(paths=[str(Path(p).resolve()) for p in str(value).split(",")])
    if not image_encoder:
        specs.pop("image_encoder", None)
    base = Path(s["dataset_base_path"])
    if size is not None:
        height, width, mode = size[1], size[0], "fixed"
    else:
        height, width, mode = s.get("height"), s.get("width"), s["resolution_mode"]
    out = Path(output_dir or base / "train" / f"phase{phase}-{model}").resolve()
    cfg = TrainConfig(
        phase=phase, task=task, model=model, models=M.specs_to_json(specs), models_root=M.models_root(models_root),
        settings_path=str(Path(settings_path).resolve()), dataset_base_path=str(base),
        metadata_path=s["metadata_path"], num_frames=num_frames or s["num_frames"], height=height, width=width,
        max_pixels=max_pixels or s["max_pixels"], resolution_mode=mode, buckets=s.get("buckets") or [],
        fps=s.get("fps") or 16.0, num_clips=(s.get("num_clips") or {}).get("train", 0),
        output_dir=str(out), cache_dir=str(Path(cache_dir or base / ".wandata-cache" / "encode").resolve()),
        profile=profile or "",
        extra_inputs=list(preset.extra_inputs) or (["input_image"] if task == "i2v" else []),
        data_file_keys=list(preset.data_file_keys), lora_base_model=preset.lora_base_model,
        size_multiple=preset.size_multiple, boundary=preset.boundary,
        experts=[{"name": e.name, "role": e.role, "min_timestep_boundary": e.min_timestep_boundary,
                  "max_timestep_boundary": e.max_timestep_boundary, "timesteps": list(e.timesteps)}
                 for e in preset.experts],
    )
    if expert:
        if not preset.experts:
            raise ConfigError(f"--expert {expert}: {model} has one DiT; --expert picks one of the two of a "
                              "Wan2.2 A14B model")
        # OUTPUT/<expert>, beside where the other expert's run goes, so validate finds both
        cfg = cfg.expert_config(expert)
    if preset.experts:
        given = [k for k in ("min_timestep_boundary", "max_timestep_boundary") if overrides.get(k) is not None]
        if given:
            raise ConfigError(f"{model} trains each expert on its own timestep range (docs/train.md); "
                              f"{' and '.join('--' + k.split('_')[0] + '-timestep' for k in given)} would move it: "
                              "leave them out")
    for k, v in overrides.items():
        if v is None:
            continue
        if not hasattr(cfg, k):
            raise ConfigError(f"unknown training setting {k!r}")
        setattr(cfg, k, v)
    cfg.validate()
    return cfg


def load(path: Path) -> TrainConfig:
    try:
        return TrainConfig.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read training config {path}: {e}") from None
