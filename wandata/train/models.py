"""Which model files a run uses, and how DiffSynth is told about them.

A model role (``dit``, ``text_encoder``, ``vae``, ``image_encoder``, ``tokenizer``) is
either a hub id plus a file pattern, fetched by DiffSynth's own ``ModelConfig``
download path (ModelScope by default, Hugging Face with ``download_source``), or
local files. Presets name the checkpoints wandata trains, one per model profile
(wandata/profiles.py): which files, which inputs a row gives the model (DiffSynth's
``--extra_inputs``), which module carries the LoRA (DiffSynth's ``--lora_base_model``) and,
for the Wan2.2 A14B pair, the two experts (roles ``dit``: high noise, ``dit2``: low noise,
as DiffSynth's pipeline names them), each with its timestep range. docs/train.md cites
DiffSynth's example script for each preset.

Offline mode never touches the network: hub-id roles must already be under the
models root (DiffSynth's layout, ``ROOT/<model id>/<files>``), checked up front.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from wandata import profiles as P

ROLES = ("dit", "dit2", "text_encoder", "vae", "image_encoder", "tokenizer")

T5 = P.T5
VAE21 = P.VAE21
VAE22 = P.VAE22
CLIP = P.CLIP
DIT = P.DIT
TOKENIZER_ID, TOKENIZER_PATTERN = "Wan-AI/Wan2.1-T2V-1.3B", "google/umt5-xxl/"

# DiffSynth's from_pretrained swaps the .pth text encoder / VAE / CLIP files of any repo
# for its converted safetensors copies (``redirect_common_files``, pipelines/wan_video.py,
# diffsynth 2.1.12). We apply the same table ourselves, before downloading, so that the
# files we fingerprint and check offline are the ones loaded, and pass
# redirect_common_files=False. Safetensors also cannot run code when read.
REDIRECTS = {
    T5: ("DiffSynth-Studio/Wan-Series-Converted-Safetensors", "models_t5_umt5-xxl-enc-bf16.safetensors"),
    CLIP: ("DiffSynth-Studio/Wan-Series-Converted-Safetensors",
           "models_clip_open-clip-xlm-roberta-large-vit-huge-14.safetensors"),
    VAE21: ("DiffSynth-Studio/Wan-Series-Converted-Safetensors", "Wan2.1_VAE.safetensors"),
    VAE22: ("DiffSynth-Studio/Wan-Series-Converted-Safetensors", "Wan2.2_VAE.safetensors"),
}


@dataclass
class Expert:
    """One expert of an A14B pair: the pipeline role its DiT takes and the part of DiffSynth's
    training schedule it draws timesteps from (--min/--max_timestep_boundary, fractions of
    the schedule's index; wandata/profiles.py derives them from the model's boundary)."""
    name: str                      # "high_noise" | "low_noise"
    role: str                      # "dit" | "dit2"
    pattern: str
    min_timestep_boundary: float
    max_timestep_boundary: float
    timesteps: tuple[float, float]


@dataclass
class Preset:
    name: str
    model_id: str
    task: str
    params_b: float          # DiT parameters, billions (for estimates across models)
    image_encoder: bool = False
    profile: str = ""                    # the profile (wandata/profiles.py) it trains
    vae: str = VAE21
    extra_inputs: tuple[str, ...] = ()   # DiffSynth --extra_inputs
    data_file_keys: tuple[str, ...] = ("video",)   # DiffSynth --data_file_keys
    lora_base_model: str = "dit"         # DiffSynth --lora_base_model
    size_multiple: int = 16
    experts: tuple[Expert, ...] = ()
    boundary: float | None = None        # the experts' switch, a fraction of 1000 timesteps


def _preset(name: str, profile: str, params_b: float, lora_base_model: str = "dit") -> Preset:
    p = P.get(profile)
    repo = (p.dit or p.experts[0].dit).model_id
    experts = tuple(Expert(e.name, role, e.dit.pattern, e.min_timestep_boundary, e.max_timestep_boundary,
                           tuple(e.timesteps)) for e, role in zip(p.experts, ("dit", "dit2")))
    return Preset(name, repo, "i2v" if p.task == "i2v" else p.task, params_b, image_encoder=p.image_encoder is not None,
                  profile=profile, vae=p.vae.pattern, extra_inputs=p.extra_inputs, data_file_keys=p.data_file_keys,
                  lora_base_model=lora_base_model, size_multiple=p.size_multiple, experts=experts,
                  boundary=p.boundary)


# DiT parameters: diffsynth's WanModel with each model_configs.py entry's extra_kwargs, counted
# on the meta device (the A14B figure is one expert; VACE counts the DiT without its VACE blocks).
PRESETS = {p.name: p for p in (
    _preset("Wan2.1-T2V-1.3B", "wan2.1-t2v-1.3b", 1.42),
    _preset("Wan2.1-T2V-14B", "wan2.1-t2v-14b", 14.29),
    _preset("Wan2.1-I2V-14B-480P", "wan2.1-i2v-14b-480p", 16.39),
    _preset("Wan2.1-I2V-14B-720P", "wan2.1-i2v-14b-720p", 16.39),
    _preset("Wan2.1-FLF2V-14B-720P", "wan2.1-flf2v-14b-720p", 16.39),
    _preset("Wan2.2-TI2V-5B", "wan2.2-ti2v-5b", 5.0),
    _preset("Wan2.2-T2V-A14B", "wan2.2-t2v-a14b", 14.29),
    _preset("Wan2.2-I2V-A14B", "wan2.2-i2v-a14b", 14.29),
    # DiffSynth's Wan2.1-VACE-*.sh and Wan2.2-VACE-Fun-A14B.sh put the LoRA on the VACE blocks
    # (--lora_base_model vace); the 14B VACE blocks hold 3.05 B more parameters.
    _preset("Wan2.1-VACE-1.3B", "wan2.1-vace-1.3b", 1.42, lora_base_model="vace"),
    _preset("Wan2.1-VACE-14B", "wan2.1-vace-14b", 14.29, lora_base_model="vace"),
    _preset("Wan2.2-VACE-Fun-A14B", "wan2.2-vace-fun-a14b", 14.29, lora_base_model="vace"),
    # Fun-Control: the LoRA on the DiT (Wan2.*-Fun-*-Control.sh: --lora_base_model dit); the
    # control video's latents enter as channels of y (in_dim 48; the A14B: 52).
    _preset("Wan2.1-Fun-1.3B-Control", "wan2.1-fun-1.3b-control", 1.56),
    _preset("Wan2.1-Fun-14B-Control", "wan2.1-fun-14b-control", 16.40),
    _preset("Wan2.1-Fun-V1.1-1.3B-Control", "wan2.1-fun-v1.1-1.3b-control", 1.56),
    _preset("Wan2.1-Fun-V1.1-14B-Control", "wan2.1-fun-v1.1-14b-control", 16.40),
    _preset("Wan2.2-Fun-A14B-Control", "wan2.2-fun-a14b-control", 14.29),
)}


def preset_for_profile(profile: str) -> Preset | None:
    return next((p for p in PRESETS.values() if p.profile == profile), None)


def default_model(phase: int, task: str) -> str:
    if task == "i2v":
        return "Wan2.1-I2V-14B-480P"
    return "Wan2.1-T2V-1.3B" if phase == 1 else "Wan2.1-T2V-14B"


class ModelError(Exception):
    """A model could not be resolved; the message says what to do, ``items`` lists what."""

    def __init__(self, message: str, items: list[str] | None = None):
        super().__init__(message)
        self.items = list(items or [])


@dataclass
class ModelSpec:
    """One role: local ``paths``, or ``model_id`` + ``pattern`` for DiffSynth to fetch."""
    paths: list[str] = field(default_factory=list)
    model_id: str | None = None
    pattern: str | None = None

    def describe(self) -> str:
        if self.paths:
            return ", ".join(self.paths)
        return f"{self.model_id}:{self.pattern}"


def preset_specs(name: str) -> dict[str, ModelSpec]:
    if name not in PRESETS:
        raise ModelError(f"unknown model {name!r}; choose one of {', '.join(PRESETS)}")
    p = PRESETS[name]
    specs = {"dit": ModelSpec(model_id=p.model_id, pattern=DIT)}
    for e in p.experts:   # the pair: dit (high noise), dit2 (low noise)
        specs[e.role] = ModelSpec(model_id=p.model_id, pattern=e.pattern)
    specs.update({"text_encoder": ModelSpec(model_id=p.model_id, pattern=T5),
                  "vae": ModelSpec(model_id=p.model_id, pattern=p.vae),
                  "tokenizer": ModelSpec(model_id=TOKENIZER_ID, pattern=TOKENIZER_PATTERN)})
    if p.image_encoder:
        specs["image_encoder"] = ModelSpec(model_id=p.model_id, pattern=CLIP)
    for spec in specs.values():
        if spec.pattern in REDIRECTS:
            spec.model_id, spec.pattern = REDIRECTS[spec.pattern]
    return specs


def specs_from_dir(model_dir: Path, image_encoder: bool, preset: Preset | None = None) -> dict[str, ModelSpec]:
    """A local folder laid out like the hub repo (the original or the converted files)."""
    model_dir = Path(model_dir)

    def find(*patterns: str) -> list[str]:
        for pat in patterns:
            hits = sorted(glob.glob(str(model_dir / pat)))
            if hits:
                return hits
        raise ModelError(f"{model_dir}: no file matches {' or '.join(patterns)}; pass it with its own flag")

    vae = preset.vae if preset else VAE21
    specs = {e.role: ModelSpec(paths=find(e.pattern)) for e in (preset.experts if preset else ())}
    if not specs:
        specs["dit"] = ModelSpec(paths=find(DIT))
    specs.update({"text_encoder": ModelSpec(paths=find(REDIRECTS[T5][1], T5)),
                  "vae": ModelSpec(paths=find(REDIRECTS[vae][1], vae))})
    tok = model_dir / TOKENIZER_PATTERN
    if tok.is_dir():
        specs["tokenizer"] = ModelSpec(paths=[str(tok)])
    if image_encoder:
        specs["image_encoder"] = ModelSpec(paths=find(REDIRECTS[CLIP][1], CLIP))
    return specs


def models_root(flag: str | None = None) -> str:
    """Where hub files live: the flag, else DIFFSYNTH_MODEL_BASE_PATH, else ./models
    (DiffSynth's own default; its ModelConfig prefers the variable when it is set)."""
    return str(Path(flag or os.environ.get("DIFFSYNTH_MODEL_BASE_PATH") or "./models").resolve())


def offline_env() -> dict[str, str]:
    """Environment that keeps DiffSynth, modelscope and huggingface_hub off the network."""
    return {"DIFFSYNTH_SKIP_DOWNLOAD": "True", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "MODELSCOPE_OFFLINE": "1"}


def local_files(spec: ModelSpec, root: str) -> list[str]:
    """The files a hub spec resolves to under ``root`` (empty if not downloaded)."""
    if spec.paths:
        return list(spec.paths)
    pat = spec.pattern or ""
    if pat in ("", "./") or pat.endswith("/"):
        folder = Path(root) / spec.model_id / pat
        return [str(folder)] if folder.is_dir() and any(folder.iterdir()) else []
    return sorted(glob.glob(str(Path(root) / spec.model_id / pat)))


def check_offline(specs: dict[str, ModelSpec], root: str) -> None:
    missing = []
    for role, spec in specs.items():
        files = local_files(spec, root)
        if not files or not all(Path(f).exists() for f in files):
            missing.append(f"{role}: {spec.describe()} (looked under {root})")
    if missing:
        raise ModelError("offline mode: these model files are not on disk; download them once without "
                         "--offline, or pass local files (--model-dir, --dit, --text-encoder, ...)", missing)


def model_config(spec: ModelSpec, root: str, offline: bool, download_source: str | None = None):
    """DiffSynth's ModelConfig for one role."""
    from diffsynth.core import ModelConfig

    if spec.paths:
        path = spec.paths if len(spec.paths) > 1 else spec.paths[0]
        return ModelConfig(path=path)
    return ModelConfig(model_id=spec.model_id, origin_file_pattern=spec.pattern, local_model_path=root,
                       skip_download=True if offline else None, download_source=download_source)


def fetch(spec: ModelSpec, root: str, offline: bool, download_source: str | None = None) -> list[str]:
    """Download (unless offline or local) and return the role's files."""
    if spec.paths:
        return list(spec.paths)
    cfg = model_config(spec, root, offline, download_source)
    cfg.download_if_necessary()
    paths = cfg.path if isinstance(cfg.path, list) else [cfg.path]
    paths = [p for p in paths if p]
    if not paths:
        raise ModelError(f"{spec.describe()}: nothing found under {root} after download")
    return [str(p) for p in paths]


# --- model table registration -------------------------------------------------------------

def register_models(entries: list[dict]) -> list[str]:
    """Append entries to DiffSynth's model table (``diffsynth.configs.MODEL_CONFIGS``).

    DiffSynth picks a model class by the md5 of a checkpoint's sorted ``key:shape`` list;
    custom shapes (a tiny test model, a fine-tune with extra layers) need an entry. Each
    entry is ``{"file", "model_name", "model_class", "extra_kwargs"?, "state_dict_converter"?}``;
    the hash is computed from the file. Idempotent. Call it in every process."""
    from diffsynth.configs import MODEL_CONFIGS
    from diffsynth.core.loader import hash_model_file

    hashes = []
    for e in entries:
        files = e["file"] if isinstance(e["file"], list) else [e["file"]]
        h = hash_model_file(files if len(files) > 1 else files[0])
        row = {"model_hash": h, "model_name": e["model_name"], "model_class": e["model_class"]}
        if "extra_kwargs" in e:
            row["extra_kwargs"] = e["extra_kwargs"]
        if e.get("state_dict_converter"):
            row["state_dict_converter"] = e["state_dict_converter"]
        if not any(c.get("model_hash") == h and c.get("model_name") == row["model_name"]
                   and c.get("model_class") == row["model_class"] for c in MODEL_CONFIGS):
            MODEL_CONFIGS.append(row)
        hashes.append(h)
    return hashes


# --- fingerprints (cache keys) ------------------------------------------------------------

_SAMPLE = 1 << 20


def file_fingerprint(path: str) -> str:
    """A content fingerprint that is fast on multi-GB checkpoints: size plus the first,
    middle and last MiB (blake2b). Renaming or moving the file keeps it; retraining the
    weights changes it. Folders (tokenizers) hash every file in full."""
    p = Path(path)
    h = hashlib.blake2b(digest_size=16)
    if p.is_dir():
        for f in sorted(x for x in p.rglob("*") if x.is_file()):
            h.update(f.relative_to(p).as_posix().encode() + b"\0")
            h.update(f.read_bytes())
        return h.hexdigest()
    size = p.stat().st_size
    h.update(str(size).encode())
    with open(p, "rb") as f:
        for off in sorted({0, max(0, size // 2 - _SAMPLE // 2), max(0, size - _SAMPLE)}):
            f.seek(off)
            h.update(f.read(_SAMPLE))
    return h.hexdigest()


def fingerprint(files_by_role: dict[str, list[str]], roles=("text_encoder", "vae", "image_encoder", "tokenizer")) -> str:
    h = hashlib.blake2b(digest_size=16)
    for role in roles:
        for f in files_by_role.get(role) or []:
            h.update(f"{role}:{file_fingerprint(f)};".encode())
    return h.hexdigest()


def specs_to_json(specs: dict[str, ModelSpec]) -> dict:
    return {k: asdict(v) for k, v in specs.items()}


def specs_from_json(d: dict) -> dict[str, ModelSpec]:
    return {k: ModelSpec(**v) for k, v in d.items()}


def dumps(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))
