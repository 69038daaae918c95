"""Model profiles: what each Wan model trains on, in one table.

A profile gives the clips a model wants (frame rate, frame count, bucket sizes, pixel budget),
the files DiffSynth loads for it (ModelScope ids and file patterns, as DiffSynth's example
scripts pass them), its VAE and encoders, the inputs a training row carries, and for the Wan2.2
A14B mixture-of-experts models the two experts and the timestep boundary between them. Every
number is checked against the model's own configuration or DiffSynth-Studio's examples:
docs/profiles.md cites the file beside each one.

Clips fit a profile when they have its frame rate, 4n+1 frames up to its length, and sides that
are multiples of its VAE stride times its patch size within its pixel budget. Shorter clips and
smaller buckets fit: DiffSynth's own scripts train TI2V-5B and the A14B experts on 49 frames and
the 720P FLF2V model at 832x480.

This module sits at the bottom of the stack (beside settings.py) and imports nothing of wandata.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

# DiffSynth's LoRA training draws a timestep index uniformly from its training schedule:
# 1000 steps of the Wan flow-match schedule with shift 5 (diffsynth/diffusion/flow_match.py,
# set_timesteps_wan; training_module.py: set_timesteps(1000, training=True)). Its
# --min/--max_timestep_boundary are fractions of that index range, not of the timestep.
DIFFSYNTH_TRAIN_STEPS = 1000
DIFFSYNTH_TRAIN_SHIFT = 5.0
NUM_TRAIN_TIMESTEPS = 1000  # Wan's num_train_timesteps (wan/configs/shared_config.py)

T5 = "models_t5_umt5-xxl-enc-bf16.pth"
CLIP = "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"
VAE21 = "Wan2.1_VAE.pth"
VAE22 = "Wan2.2_VAE.pth"
DIT = "diffusion_pytorch_model*.safetensors"
# DiffSynth takes these two from the clip itself (the first and last frame of `video`),
# so they are inputs of the model but no column of the metadata
# (examples/wanvideo/model_training/train.py, parse_extra_inputs).
FROM_VIDEO = ("input_image", "end_image")


@dataclass(frozen=True)
class ModelFile:
    """A file (or shard pattern) of a hub repository, as DiffSynth's ModelConfig names it."""
    model_id: str
    pattern: str

    def __str__(self) -> str:
        return f"{self.model_id}:{self.pattern}"


TOKENIZER = ModelFile("Wan-AI/Wan2.1-T2V-1.3B", "google/umt5-xxl/")


@dataclass(frozen=True)
class Expert:
    """One expert of an A14B model: the DiT that denoises the timesteps in ``timesteps``
    ([lo, hi) out of 1000; the high-noise expert's range includes 1000), and the
    ``--min/--max_timestep_boundary`` that make DiffSynth's trainer draw only those."""
    name: str                      # "high_noise" or "low_noise"
    dit: ModelFile
    timesteps: tuple[float, float]
    min_timestep_boundary: float
    max_timestep_boundary: float


@dataclass(frozen=True)
class Profile:
    name: str
    title: str                     # the model's own name
    task: str                      # t2v, i2v, flf2v, ti2v, vace, control
    dit: ModelFile | None          # None for the A14B pair: see experts
    text_encoder: ModelFile
    vae: ModelFile
    image_encoder: ModelFile | None
    fps: float                     # the rate the model was trained and samples at
    frames: int                    # its clip length, 4n+1; the most a clip may have
    buckets: tuple[tuple[int, int], ...]   # default ingest buckets (WIDTH, HEIGHT)
    pixel_budget: int              # most pixels a frame may have (its largest supported size)
    budget_size: tuple[int, int]   # that size, for messages
    vae_name: str = "Wan2.1 VAE"
    vae_stride: tuple[int, int, int] = (4, 8, 8)   # time, height, width compression
    vae_channels: int = 16
    patch_size: tuple[int, int, int] = (1, 2, 2)
    text_encoder_name: str = "umt5-xxl"
    image_encoder_name: str = ""
    extra_inputs: tuple[str, ...] = ()             # DiffSynth --extra_inputs
    experts: tuple[Expert, ...] = ()
    boundary: float | None = None  # the switch between experts, a fraction of 1000 timesteps
    tokenizer: ModelFile = TOKENIZER

    @property
    def size_multiple(self) -> int:
        """Bucket sides are multiples of the VAE's spatial stride times the DiT's patch (16 for
        the Wan2.1 VAE, 32 for the Wan2.2 VAE of TI2V-5B)."""
        return self.vae_stride[1] * self.patch_size[1]

    @property
    def allowed_frames(self) -> tuple[int, ...]:
        """4n+1 up to the profile's length (the VAE keeps the first frame and packs 4 after)."""
        t = self.vae_stride[0]
        return tuple(range(1, self.frames + 1, t))

    @property
    def inputs(self) -> tuple[str, ...]:
        """What one training row gives the model, by DiffSynth's names."""
        return ("video", "prompt") + self.extra_inputs

    @property
    def data_file_keys(self) -> tuple[str, ...]:
        """DiffSynth --data_file_keys: the metadata columns that name files to load."""
        return ("video",) + tuple(k for k in self.extra_inputs if k not in FROM_VIDEO)

    def fits_size(self, width: int, height: int) -> str:
        """Why a WIDTHxHEIGHT frame does not fit ('' if it does)."""
        m = self.size_multiple
        if width % m or height % m:
            return (f"{width}x{height}: {self.name} needs sides that are multiples of {m} "
                    f"({self.vae_name} {self.vae_stride[1]}x, patch {self.patch_size[1]}x)")
        if width * height > self.pixel_budget:
            bw, bh = self.budget_size
            return (f"{width}x{height} is {width * height} pixels a frame, over {self.name}'s budget of "
                    f"{self.pixel_budget} ({bw}x{bh})")
        return ""

    def misfits(self, fps: float | None = None, frames: int | None = None,
                sizes=(), size_multiple: int | None = None) -> list[tuple[str, str]]:
        """(setting, why) for each way clips of this shape do not fit the profile; [] if they do.
        The settings are ``fps``, ``frames``, ``buckets`` and ``size_multiple``."""
        out = []
        if fps is not None and abs(fps - self.fps) > 1e-3:
            out.append(("fps", f"{self.name} trains on {self.fps:g} fps clips, not {fps:g} fps"))
        if frames is not None and frames not in self.allowed_frames:
            out.append(("frames", f"{self.name} takes 4n+1 frames up to {self.frames}, not {frames}"))
        if size_multiple is not None and size_multiple % self.size_multiple:
            out.append(("size_multiple", f"{self.name} needs sides that are multiples of {self.size_multiple}, "
                                         f"so a size multiple of {size_multiple} does not do"))
        for w, h in sizes:
            if why := self.fits_size(w, h):
                out.append(("buckets", why))
        return out

    def summary(self) -> str:
        """One line: fps, frames, default buckets."""
        return (f"{self.fps:g} fps, {self.frames} frames, "
                + " ".join(f"{w}x{h}" for w, h in self.buckets))

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("dit", "text_encoder", "vae", "image_encoder", "tokenizer"):
            d[k] = str(getattr(self, k)) if getattr(self, k) is not None else None
        d["experts"] = [{**asdict(e), "dit": str(e.dit)} for e in self.experts]
        d["buckets"] = [f"{w}x{h}" for w, h in self.buckets]
        d["budget_size"] = "{}x{}".format(*self.budget_size)
        d.update(size_multiple=self.size_multiple, allowed_frames=list(self.allowed_frames),
                 inputs=list(self.inputs), data_file_keys=list(self.data_file_keys))
        return d


def diffsynth_boundary(boundary: float, steps: int = DIFFSYNTH_TRAIN_STEPS,
                       shift: float = DIFFSYNTH_TRAIN_SHIFT) -> float:
    """The fraction of DiffSynth's training schedule whose timesteps are at or above
    ``boundary`` x 1000: the --max_timestep_boundary of the high-noise expert and the
    --min_timestep_boundary of the low-noise one."""
    above = 0
    for i in range(steps):
        sigma = 1 - i / steps   # linspace(1, 0, steps + 1)[:-1]
        t = shift * sigma / (1 + (shift - 1) * sigma) * NUM_TRAIN_TIMESTEPS
        above += t >= boundary * NUM_TRAIN_TIMESTEPS
    return above / steps


def _experts(repo: str, boundary: float, index: float) -> tuple[Expert, ...]:
    b, top = boundary * NUM_TRAIN_TIMESTEPS, float(NUM_TRAIN_TIMESTEPS)
    return (Expert("high_noise", ModelFile(repo, f"high_noise_model/{DIT}"), (b, top), 0.0, index),
            Expert("low_noise", ModelFile(repo, f"low_noise_model/{DIT}"), (0.0, b), index, 1.0))


P480 = ((832, 480), (480, 832))
P720 = ((1280, 720), (720, 1280))
AREA480, AREA720 = 832 * 480, 1280 * 720
# VideoX-Fun's models are trained at "multi-resolution (512, 768, 1024)": areas up to 1024^2.
AREA_FUN = 1024 * 1024


def _wan(name, title, task, repo, *, buckets=P480, budget=(832, 480), clip=False, extra=(), fps=16.0,
         frames=81, experts=(), boundary=None, vae_file=VAE21, **kw) -> Profile:
    return Profile(name=name, title=title, task=task, dit=None if experts else ModelFile(repo, DIT),
                   text_encoder=ModelFile(repo, T5), vae=ModelFile(repo, vae_file),
                   image_encoder=ModelFile(repo, CLIP) if clip else None,
                   image_encoder_name="open-clip-xlm-roberta-large-vit-huge-14 (CLIP)" if clip else "",
                   fps=fps, frames=frames, buckets=buckets, pixel_budget=budget[0] * budget[1], budget_size=budget,
                   extra_inputs=tuple(extra), experts=experts, boundary=boundary, **kw)


VACE_INPUTS = ("vace_video", "vace_reference_image")
_T2V, _I2V = 0.875, 0.900   # Wan2.2 wan/configs/wan_t2v_A14B.py and wan_i2v_A14B.py: boundary

PROFILES: dict[str, Profile] = {p.name: p for p in (
    _wan("wan2.1-t2v-1.3b", "Wan2.1-T2V-1.3B", "t2v", "Wan-AI/Wan2.1-T2V-1.3B"),
    _wan("wan2.1-t2v-14b", "Wan2.1-T2V-14B", "t2v", "Wan-AI/Wan2.1-T2V-14B", budget=(1280, 720)),
    _wan("wan2.1-i2v-14b-480p", "Wan2.1-I2V-14B-480P", "i2v", "Wan-AI/Wan2.1-I2V-14B-480P", clip=True,
         extra=("input_image",)),
    _wan("wan2.1-i2v-14b-720p", "Wan2.1-I2V-14B-720P", "i2v", "Wan-AI/Wan2.1-I2V-14B-720P", clip=True,
         extra=("input_image",), buckets=P720, budget=(1280, 720)),
    _wan("wan2.1-flf2v-14b-720p", "Wan2.1-FLF2V-14B-720P", "flf2v", "Wan-AI/Wan2.1-FLF2V-14B-720P", clip=True,
         extra=("input_image", "end_image"), buckets=P720, budget=(1280, 720)),
    _wan("wan2.2-ti2v-5b", "Wan2.2-TI2V-5B", "ti2v", "Wan-AI/Wan2.2-TI2V-5B", fps=24.0, frames=121,
         buckets=((1280, 704), (704, 1280)), budget=(1280, 704), extra=("input_image",),
         vae_file=VAE22, vae_name="Wan2.2 VAE", vae_stride=(4, 16, 16), vae_channels=48),
    _wan("wan2.2-t2v-a14b", "Wan2.2-T2V-A14B", "t2v", "Wan-AI/Wan2.2-T2V-A14B", budget=(1280, 720),
         boundary=_T2V, experts=_experts("Wan-AI/Wan2.2-T2V-A14B", _T2V, 0.417)),
    _wan("wan2.2-i2v-a14b", "Wan2.2-I2V-A14B", "i2v", "Wan-AI/Wan2.2-I2V-A14B", budget=(1280, 720),
         extra=("input_image",), boundary=_I2V, experts=_experts("Wan-AI/Wan2.2-I2V-A14B", _I2V, 0.358)),
    _wan("wan2.1-vace-1.3b", "Wan2.1-VACE-1.3B", "vace", "Wan-AI/Wan2.1-VACE-1.3B", extra=VACE_INPUTS),
    _wan("wan2.1-vace-14b", "Wan2.1-VACE-14B", "vace", "Wan-AI/Wan2.1-VACE-14B", budget=(1280, 720),
         extra=VACE_INPUTS),
    # Built on Wan2.2-T2V-A14B: VideoX-Fun samples it with the T2V boundary (0.875); DiffSynth's
    # training script passes 0.358 (900) instead, which its own inference (0.875) does not use.
    _wan("wan2.2-vace-fun-a14b", "Wan2.2-VACE-Fun-A14B", "vace", "PAI/Wan2.2-VACE-Fun-A14B",
         budget=(1024, 1024), extra=VACE_INPUTS, boundary=_T2V,
         experts=_experts("PAI/Wan2.2-VACE-Fun-A14B", _T2V, 0.417)),
    _wan("wan2.1-fun-1.3b-control", "Wan2.1-Fun-1.3B-Control", "control", "PAI/Wan2.1-Fun-1.3B-Control",
         budget=(1024, 1024), clip=True, extra=("control_video",)),
    _wan("wan2.1-fun-14b-control", "Wan2.1-Fun-14B-Control", "control", "PAI/Wan2.1-Fun-14B-Control",
         budget=(1024, 1024), clip=True, extra=("control_video",)),
    _wan("wan2.1-fun-v1.1-1.3b-control", "Wan2.1-Fun-V1.1-1.3B-Control", "control",
         "PAI/Wan2.1-Fun-V1.1-1.3B-Control", budget=(1024, 1024), clip=True,
         extra=("control_video", "reference_image")),
    _wan("wan2.1-fun-v1.1-14b-control", "Wan2.1-Fun-V1.1-14B-Control", "control",
         "PAI/Wan2.1-Fun-V1.1-14B-Control", budget=(1024, 1024), clip=True,
         extra=("control_video", "reference_image")),
    _wan("wan2.2-fun-a14b-control", "Wan2.2-Fun-A14B-Control", "control", "PAI/Wan2.2-Fun-A14B-Control",
         budget=(1024, 1024), extra=("control_video", "reference_image"), boundary=_I2V,
         experts=_experts("PAI/Wan2.2-Fun-A14B-Control", _I2V, 0.358)),
)}

NAMES = tuple(PROFILES)
DEFAULT = "wan2.1-t2v-1.3b"   # today's clips: 16 fps, 81 frames, 832x480 / 480x832
# The settings a profile sets (settings.Settings fields).
KEYS = ("fps", "frames", "buckets", "size_multiple")


def get(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown profile {name!r}; choose one of {', '.join(NAMES)} "
                       "(`wandata profiles` lists them)") from None


def values(name: str) -> dict:
    """The settings a profile sets, as ``settings.Settings`` fields."""
    p = get(name)
    return {"fps": p.fps, "frames": p.frames, "buckets": p.buckets, "size_multiple": p.size_multiple}


def describe_clips(fps, frames, sizes) -> str:
    """'16 fps, 81 frames, 832x480 480x832' for the clips of a dataset (sets of each)."""
    def one(xs, fmt):
        xs = sorted(set(xs))
        return "/".join(fmt(x) for x in xs) if xs else "?"
    return (f"{one(fps, lambda v: f'{v:g}')} fps, {one(frames, str)} frames, "
            + (" ".join(f"{w}x{h}" for w, h in sorted(set(sizes))) or "no clips"))


def dataset_refusal(requested: str, recorded: list[str], fps, frames, sizes, what: str) -> str:
    """Why clips ingested as ``recorded`` cannot train ``requested`` ('' if they fit). ``fps``,
    ``frames`` and ``sizes`` are the clips' own values (sets); ``what`` names the dataset or
    export in the message. The recorded name alone never refuses: a wan2.1-t2v-1.3b dataset
    trains wan2.1-vace-1.3b, whose clips are the same."""
    p = get(requested)
    whys = [why for _, why in p.misfits(sizes=sorted(set(sizes)))]
    whys = [why for f in sorted(set(fps)) for _, why in p.misfits(fps=f)] + \
           [why for n in sorted(set(frames)) for _, why in p.misfits(frames=n)] + whys
    if not whys:
        return ""
    was = "/".join(sorted(set(recorded))) or DEFAULT
    return (f"{what} was ingested for {was} ({describe_clips(fps, frames, sizes)}); {'; '.join(whys)}: "
            f"re-ingest with --profile {requested}, or pass --allow-profile-mismatch")
