"""The training module: a ``WanVideoPipeline`` with a LoRA on its DiT (VACE: on its VACE blocks).

Built on DiffSynth's public API: ``DiffusionTrainingModule`` (LoRA injection through
``switch_pipe_to_training_mode``, trainable-state export, device transfer), the
pipeline's own units, split with ``split_pipeline_units`` into the encoder part (text
encoder, VAE, image encoder: run once per clip, see ``wandata.train.cache``) and the DiT part
(run every step), and ``FlowMatchSFTLoss``.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from diffsynth.diffusion import DiffusionTrainingModule, FlowMatchSFTLoss

from wandata.train import cache as C
from wandata.train import models as M
from wandata.train.config import TrainConfig

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
ENCODER_ROLES = ("text_encoder", "vae", "image_encoder")
LORA_PREFIX = "pipe.dit."
# The WanModel flags the encode units read from ``pipe.dit`` (diffsynth pipelines/wan_video.py:
# ImageEmbedderCLIP, ImageEmbedderVAE, ImageEmbedderFused; FunControl sizes the zero part of
# ``y`` from ``in_dim``) and WanModel's defaults for them.
DIT_FLAGS = {"require_clip_embedding": True, "require_vae_embedding": True, "fuse_vae_embedding_in_latents": False,
             "has_image_pos_emb": False, "has_image_input": False, "seperated_timestep": False}
CONTROL_FLAGS = {"in_dim": 16}
# The single images a row gives, loaded by DiffSynth's operator as a one-frame list.
IMAGE_COLUMNS = ("vace_reference_image", "reference_image")


def lora_prefix(cfg: TrainConfig) -> str:
    return f"pipe.{cfg.lora_base_model}."


def dit_flags(dit_files: list[str], registry: list | None = None, inputs=None) -> dict:
    """The DiT's conditioning flags, from the model-table entry DiffSynth loads it with (matched
    by the checkpoint's key hash, as its loader matches it): the encode pass runs without the
    DiT, and these decide which image encodings a clip gets (CLIP features, ``y``, fused first
    frame). Part of the cache key."""
    from diffsynth.configs import MODEL_CONFIGS
    from diffsynth.core.loader import hash_model_file

    M.register_models(registry or [])
    h = hash_model_file(dit_files if len(dit_files) > 1 else dit_files[0])
    rows = [c for c in MODEL_CONFIGS if c.get("model_hash") == h and c.get("model_name") == "wan_video_dit"]
    if not rows:
        raise M.ModelError(f"{', '.join(dit_files)}: DiffSynth's model table has no Wan DiT with these weights' "
                           "shapes; pass its entry with --model-registry")
    kw = rows[0].get("extra_kwargs") or {}
    flags = {k: kw.get(k, v) for k, v in DIT_FLAGS.items()}
    # Only where it decides an encoding, so that the keys of other caches stay as they were.
    if "control_video" in (inputs or ()):
        flags.update({k: kw.get(k, v) for k, v in CONTROL_FLAGS.items()})
    return flags


class DiTFlags:
    """Stands in for ``pipe.dit`` while only the encoders are loaded: the flags, nothing else."""

    def __init__(self, flags: dict):
        self.__dict__.update(flags)


def resolve_files(cfg: TrainConfig, roles, main_first=None) -> dict[str, list[str]]:
    """Local files for ``roles``, downloading through DiffSynth's ModelConfig unless offline.

    ``main_first`` is a context manager (``accelerator.main_process_first``) so that one
    process downloads while the others wait."""
    specs = cfg.specs()
    wanted = {r: specs[r] for r in roles if r in specs}
    if cfg.offline:
        M.check_offline(wanted, cfg.models_root)
    with (main_first() if main_first else contextlib.nullcontext()):
        return {r: M.fetch(s, cfg.models_root, cfg.offline, cfg.download_source) for r, s in wanted.items()}


def load_pipeline(cfg: TrainConfig, files: dict[str, list[str]], device="cpu", no_zero3_init=None):
    """A WanVideoPipeline holding the models in ``files`` (roles absent are None)."""
    from diffsynth.core import ModelConfig
    from diffsynth.pipelines.wan_video import WanVideoPipeline

    M.register_models(cfg.model_registry)
    configs = [ModelConfig(path=p if len(p) > 1 else p[0]) for r, p in files.items() if r != "tokenizer"]
    tok = files.get("tokenizer")
    tok_cfg = ModelConfig(path=tok[0]) if tok else None
    ctx = no_zero3_init() if no_zero3_init else contextlib.nullcontext()
    with ctx:
        pipe = WanVideoPipeline.from_pretrained(torch_dtype=DTYPES[cfg.dtype], device=device, model_configs=configs,
                                                tokenizer_config=tok_cfg, redirect_common_files=False)
    return pipe


def _column(data: dict, name: str):
    value = data.get(name)
    if not isinstance(value, list) or not value:
        raise ValueError(f"clip {data.get('video_path', data.get('video', '?'))}: column {name} is {value!r}, not a "
                         f"loaded file; export with --with {name}")
    return value


class WanLoRAModule(DiffusionTrainingModule):
    """``forward(data)`` encodes and steps; ``forward(inputs=cached)`` steps from the cache."""

    def __init__(self, pipe, cfg: TrainConfig, with_lora: bool = True, flags: dict | None = None):
        super().__init__()
        self.pipe = pipe
        self.cfg = cfg
        base = cfg.lora_base_model
        has_base = isinstance(getattr(pipe, base, None), torch.nn.Module)
        if with_lora and pipe.dit is not None and not has_base:
            raise M.ModelError(f"{cfg.model} trains its LoRA on the pipeline's {base}, and the loaded checkpoints "
                               f"hold none (DiffSynth's model table maps no file to wan_video_{base})")
        self.switch_pipe_to_training_mode(
            pipe, trainable_models=None,
            lora_base_model=base if (has_base and with_lora) else None,
            lora_target_modules=cfg.lora_targets, lora_rank=cfg.lora_rank, task="sft:train")
        if pipe.dit is None and flags is not None:
            pipe.dit = DiTFlags(flags)   # only the encoders are loaded: their units read these flags
        # The timestep of each step, as the DiT receives it (FlowMatchSFTLoss draws it inside):
        # the trainer logs it (timesteps.csv), so a run shows which range each expert trained on.
        self.last_timestep = None
        model_fn = pipe.model_fn

        def recording_model_fn(*args, **kwargs):
            t = kwargs.get("timestep")
            self.last_timestep = float(t.reshape(-1)[0]) if isinstance(t, torch.Tensor) else t
            return model_fn(*args, **kwargs)
        pipe.model_fn = recording_model_fn
        # Units that touch the DiT run at every step; all others only encode.
        self.train_units, self.encode_units = pipe.split_pipeline_units(["dit"])
        # DiffSynth's own checkpointing flag; wandata.train.levers.apply may take checkpointing over.
        self.use_gradient_checkpointing = cfg.gradient_checkpointing

    # --- inputs ---------------------------------------------------------------------------
    def pipeline_inputs(self, data: dict) -> tuple[dict, dict, dict]:
        video = data["video"]
        prompt = data.get("prompt")
        if not isinstance(prompt, str):
            raise ValueError(f"clip {data.get('video_path', '?')}: prompt is {prompt!r}, not text")
        shared = {
            "input_video": video, "height": video[0].size[1], "width": video[0].size[0], "num_frames": len(video),
            "cfg_scale": 1, "cfg_merge": False, "tiled": False, "vace_scale": 1,
            # A seeded noise generator: encoding never draws from the global RNG, so a step
            # from the cache and a step that encodes first see the same random numbers.
            "seed": 0, "rand_device": "cpu",
        }
        # DiffSynth's train.py parse_extra_inputs: the I2V / FLF2V images are the loaded clip's
        # first and last frames (as cropped for training); VACE's and Fun-Control's columns are
        # loaded files (the control video's frames, the reference image).
        for name in self.cfg.inputs():
            if name == "input_image":
                shared["input_image"] = video[0]
            elif name == "end_image":
                shared["end_image"] = video[-1]
            elif name in IMAGE_COLUMNS:
                shared[name] = _column(data, name)[0]
            else:
                shared[name] = _column(data, name)
        return shared, {"prompt": prompt}, {}

    @torch.no_grad()
    def encode(self, data: dict) -> tuple[dict, dict, dict]:
        """Run the text encoder, VAE (and image encoder) for one clip."""
        inputs = self.pipeline_inputs(data)
        inputs = self.transfer_data_to_device(inputs, self.pipe.device, self.pipe.torch_dtype)
        for unit in self.encode_units:
            inputs = self.pipe.unit_runner(unit, self.pipe, *inputs)
        return C.strip(inputs)

    # --- step -----------------------------------------------------------------------------
    def forward(self, data: dict | None = None, inputs=None):
        if inputs is None:
            inputs = self.encode(data)
        shared, posi, nega = self.transfer_data_to_device(inputs, self.pipe.device, self.pipe.torch_dtype)
        shared = dict(shared, use_gradient_checkpointing=self.use_gradient_checkpointing,
                      use_gradient_checkpointing_offload=self.cfg.gradient_checkpointing_offload,
                      max_timestep_boundary=self.cfg.max_timestep_boundary,
                      min_timestep_boundary=self.cfg.min_timestep_boundary)
        inputs = (shared, dict(posi), dict(nega))
        for unit in self.train_units:
            inputs = self.pipe.unit_runner(unit, self.pipe, *inputs)
        return FlowMatchSFTLoss(self.pipe, **inputs[0], **inputs[1])

    # --- LoRA state -----------------------------------------------------------------------
    def lora_state_dict(self, state_dict: dict | None = None) -> dict:
        """Trainable (LoRA) weights with DiffSynth's keys: ``blocks.0.self_attn.q.lora_A.default.weight``."""
        sd = self.state_dict() if state_dict is None else state_dict
        return self.export_trainable_state_dict(sd, remove_prefix=lora_prefix(self.cfg))

    def load_lora_weights(self, path: str | Path) -> int:
        """Load a LoRA file written by ``lora_state_dict`` back into the injected LoRA."""
        self.resume_from_checkpoint(str(path), remove_prefix_in_ckpt=lora_prefix(self.cfg))
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as f:
            return len(list(f.keys()))

    def free_encoders(self) -> None:
        if isinstance(self.pipe.dit, DiTFlags):
            self.pipe.dit = None
        for role in ENCODER_ROLES:
            setattr(self.pipe, role, None)
        self.pipe.tokenizer = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
