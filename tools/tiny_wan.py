"""A tiny, randomly initialised Wan stack built from DiffSynth's own model classes.

Development only (tests and smoke runs on a CPU; not in the wheel): a few-layer
``WanModel`` DiT, a few-layer ``WanTextEncoder`` (UMT5 architecture), a ``WanVideoVAE``
whose inner width is 8 instead of 96, and a word-level tokenizer saved as a Hugging Face
tokenizer folder. ``arch`` picks the DiT of each Wan family (``ARCHS``): the I2V/FLF2V DiT
(image input, 36 channels in) with a two-block CLIP image encoder (``WanImageEncoder``'s
ViT-H/14 at its real width and 257 tokens, which the DiT's image projection and FLF2V's
position table are built for), the TI2V-5B DiT (48 channels, separated timesteps, the
first frame's latents fused in) with a narrow ``WanVideoVAE38`` (Wan2.2 VAE, 16x), an
A14B pair (two DiTs, high and low noise), a VACE DiT (``VaceWanModel`` blocks in the
DiT's file, as the real checkpoint holds them; ``vace-a14b``: a pair of them, as
Wan2.2-VACE-Fun-A14B) and the Fun-Control DiTs (``control``: Wan2.1-Fun-Control, 48 channels in,
with the CLIP encoder; ``control-v1.1``: plus the reference image's ``ref_conv``;
``control-a14b``: a Wan2.2-Fun-A14B-Control pair, 52 channels, no CLIP), with the flags of
diffsynth's model table for the real checkpoints.
The files are written the way the real checkpoints are (DiT and text encoder with
their own keys, the VAE without the ``model.`` prefix its state-dict converter adds),
so they load through ``WanVideoPipeline.from_pretrained`` like the real ones.

DiffSynth recognises a checkpoint by the md5 of its sorted ``key:shape`` list
(``diffsynth.configs.MODEL_CONFIGS``). Tiny shapes are unknown to it, so
``build_tiny_stack`` returns the table entries (``registry``) that
``wandata.train.models.register_models`` appends at run time, in every process.
The VAE's entry names ``tools.tiny_wan.TinyWanVideoVAE``, which DiffSynth imports by that
dotted path: every process that loads the stack must be able to import ``tools``
(the repository root on its path; launched processes: ``PYTHONPATH``, set by the caller).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from diffsynth.models.wan_video_image_encoder import WanImageEncoder, clip_xlm_roberta_vit_h_14
from diffsynth.models.wan_video_vae import VideoVAE38_, VideoVAE_, WanVideoVAE, WanVideoVAE38

# Head dim (dim / num_heads) must split into Wan's three RoPE parts: 12, 24, 32 or 128.
TINY_DIT = {"has_image_input": False, "patch_size": [1, 2, 2], "in_dim": 16, "dim": 96,
            "ffn_dim": 192, "freq_dim": 32, "text_dim": 32, "out_dim": 16, "num_heads": 4,
            "num_layers": 2, "eps": 1e-6}
TINY_TEXT = {"vocab": 64, "dim": 32, "dim_attn": 32, "dim_ffn": 64, "num_heads": 2,
             "num_layers": 2, "num_buckets": 8, "shared_pos": False, "dropout": 0.0}
TINY_VAE_DIM = 8
# The ViT-H/14 keeps its width (1280: the DiT's img_emb takes 1280-d features) and its 224 px
# input (257 tokens: FLF2V's img_emb adds a 2 x 257 position table); two blocks, of which
# Wan uses all but the last (use_31_block), a narrow MLP and a token-sized text tower.
TINY_CLIP = {"embed_dim": 32, "vision_mlp_ratio": 1, "vision_layers": 2, "vocab_size": 64, "max_text_len": 16,
             "text_dim": 32, "text_heads": 2, "text_layers": 1}
# DiT settings per family, over TINY_DIT; the flags are those of diffsynth's model_configs.py
# for the real checkpoints (Wan2.1-I2V-14B, FLF2V-14B, Wan2.2-TI2V-5B, Wan2.2-I2V-A14B).
ARCHS = {
    "t2v": {},
    "i2v": {"has_image_input": True, "in_dim": 36},
    "flf2v": {"has_image_input": True, "in_dim": 36, "has_image_pos_emb": True},
    "ti2v": {"in_dim": 48, "out_dim": 48, "seperated_timestep": True, "require_clip_embedding": False,
             "require_vae_embedding": False, "fuse_vae_embedding_in_latents": True},
    "t2v-a14b": {},
    "i2v-a14b": {"in_dim": 36, "require_clip_embedding": False},
    "vace": {},
    "vace-a14b": {},
    # Fun-Control: 16 noise + 16 control-video + 16 (1.3B/14B; A14B: 20, mask + image) latent
    # channels in; V1.1 and the A14B add the reference image's conv (has_ref_conv).
    "control": {"has_image_input": True, "in_dim": 48},
    "control-v1.1": {"has_image_input": True, "in_dim": 48, "has_ref_conv": True},
    "control-a14b": {"in_dim": 52, "has_ref_conv": True, "require_clip_embedding": False},
}
IMAGE_ENCODER_ARCHS = ("i2v", "flf2v", "control", "control-v1.1")
PAIR_ARCHS = ("t2v-a14b", "i2v-a14b", "vace-a14b", "control-a14b")
VACE_ARCHS = ("vace", "vace-a14b")
# VACE hints enter after DiT block 0 (the real 1.3B model: every second block of 30).
TINY_VACE = {"vace_layers": (0,), "vace_in_dim": 96, "patch_size": (1, 2, 2), "has_image_input": False}
WORDS = ("a the of and in on with red green blue cat dog fox car tree sky sea city road "
         "running walking flying sitting night day slow fast close wide shot camera pan zoom "
         "bright dark small big water light people street field").split()


class TinyWanVideoVAE(WanVideoVAE):
    """``WanVideoVAE`` with a narrow inner width (``WanVideoVAE`` hard-codes 96)."""

    def __init__(self, z_dim=16, dim=TINY_VAE_DIM):
        super().__init__(z_dim=z_dim)
        self.model = VideoVAE_(dim=dim, z_dim=z_dim).eval().requires_grad_(False)


class TinyWanVideoVAE38(WanVideoVAE38):
    """``WanVideoVAE38`` (the Wan2.2 VAE: 48 channels, 16x) with narrow encoder and decoder."""

    def __init__(self, z_dim=48, dim=TINY_VAE_DIM):
        super().__init__(z_dim=z_dim, dim=dim)
        self.model = VideoVAE38_(dim=dim, z_dim=z_dim, dec_dim=dim).eval().requires_grad_(False)


class TinyWanImageEncoder(WanImageEncoder):
    """``WanImageEncoder`` (open-clip XLM-RoBERTa ViT-H/14) with the ``TINY_CLIP`` sizes."""

    def __init__(self):
        torch.nn.Module.__init__(self)
        self.model, self.transforms = clip_xlm_roberta_vit_h_14(
            pretrained=False, return_transforms=True, return_tokenizer=False, dtype=torch.float32, device="cpu",
            **TINY_CLIP)


def _save(state_dict: dict, path: Path) -> None:
    from safetensors.torch import save_file
    save_file({k: v.detach().contiguous().clone() for k, v in state_dict.items()}, str(path))


def write_tokenizer(folder: Path) -> Path:
    """A word-level tokenizer with a pad and an unknown token, saved with
    ``PreTrainedTokenizerFast.save_pretrained`` so ``AutoTokenizer`` loads it."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for w in WORDS:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(folder))
    return folder


def registry_entry(path: Path, model_name: str, model_class: str, extra_kwargs: dict | None = None,
                   state_dict_converter: str | None = None) -> dict:
    entry = {"file": str(path), "model_name": model_name, "model_class": model_class}
    if extra_kwargs is not None:
        entry["extra_kwargs"] = extra_kwargs
    if state_dict_converter is not None:
        entry["state_dict_converter"] = state_dict_converter
    return entry


def build_tiny_stack(folder: Path, seed: int = 0, dit: dict | None = None, arch: str = "t2v") -> dict:
    """Write a tiny DiT (two for an A14B pair), text encoder, VAE, tokenizer (and image
    encoder for I2V/FLF2V) under ``folder``.

    Returns ``{"dit", "text_encoder", "vae", "tokenizer", "registry"}`` (plus ``"dit2"`` for
    the low-noise expert of a pair and ``"image_encoder"``): paths, and the model-table entries
    to pass as ``model_registry`` (see ``wandata.train.models``)."""
    from diffsynth.models.wan_video_dit import WanModel
    from diffsynth.models.wan_video_text_encoder import WanTextEncoder
    from diffsynth.models.wan_video_vace import VaceWanModel

    if arch not in ARCHS:
        raise ValueError(f"arch {arch!r}: choose one of {', '.join(ARCHS)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dit_kwargs = dict(TINY_DIT, **ARCHS[arch], **(dit or {}))
    wide = arch == "ti2v"
    vae_cls = TinyWanVideoVAE38 if wide else TinyWanVideoVAE
    g = torch.random.fork_rng()
    with g:
        torch.manual_seed(seed)
        dit_model = WanModel(**dit_kwargs)
        dit2_model = WanModel(**dit_kwargs) if arch in PAIR_ARCHS else None
        vace_kwargs = dict(TINY_VACE, dim=dit_kwargs["dim"], num_heads=dit_kwargs["num_heads"],
                           ffn_dim=dit_kwargs["ffn_dim"], eps=dit_kwargs["eps"])
        vace = VaceWanModel(**vace_kwargs) if arch in VACE_ARCHS else None
        vace2 = VaceWanModel(**vace_kwargs) if arch in VACE_ARCHS and dit2_model is not None else None
        text = WanTextEncoder(**TINY_TEXT)
        vae = vae_cls()
        image = TinyWanImageEncoder() if arch in IMAGE_ENCODER_ARCHS else None
    paths = {"dit": folder / "dit.safetensors", "text_encoder": folder / "text_encoder.safetensors",
             "vae": folder / "vae.safetensors"}
    dit_sd = dit_model.state_dict()
    if vace is not None:   # one file, as Wan2.1-VACE ships it; DiffSynth loads it twice
        dit_sd = {**dit_sd, **vace.state_dict()}
    _save(dit_sd, paths["dit"])
    if dit2_model is not None:
        paths["dit2"] = folder / "dit2.safetensors"
        _save({**dit2_model.state_dict(), **(vace2.state_dict() if vace2 is not None else {})}, paths["dit2"])
    _save(text.state_dict(), paths["text_encoder"])
    _save(vae.model.state_dict(), paths["vae"])   # the converter adds "model."
    if image is not None:
        paths["image_encoder"] = folder / "image_encoder.safetensors"
        _save(image.model.state_dict(), paths["image_encoder"])   # the converter adds "model."
    tokenizer = write_tokenizer(folder / "tokenizer")
    conv = "diffsynth.utils.state_dict_converters."
    dits = [paths["dit"]] + ([paths["dit2"]] if dit2_model is not None else [])
    registry = [
        registry_entry(d, "wan_video_dit", "diffsynth.models.wan_video_dit.WanModel", dit_kwargs,
                       conv + "wan_video_dit.WanVideoDiTStateDictConverter" if vace is not None else None)
        for d in dits] + [
        registry_entry(paths["text_encoder"], "wan_video_text_encoder",
                       "diffsynth.models.wan_video_text_encoder.WanTextEncoder", TINY_TEXT),
        registry_entry(paths["vae"], "wan_video_vae", f"tools.tiny_wan.{vae_cls.__name__}", {},
                       conv + "wan_video_vae.WanVideoVAEStateDictConverter"),
    ]
    if vace is not None:
        registry += [registry_entry(d, "wan_video_vace", "diffsynth.models.wan_video_vace.VaceWanModel",
                                    {**vace_kwargs, "vace_layers": list(vace_kwargs["vace_layers"]),
                                     "patch_size": list(vace_kwargs["patch_size"])},
                                    conv + "wan_video_vace.VaceWanModelDictConverter") for d in dits]
    if image is not None:
        registry.append(registry_entry(paths["image_encoder"], "wan_video_image_encoder",
                                       "tools.tiny_wan.TinyWanImageEncoder", {},
                                       conv + "wan_video_image_encoder.WanImageEncoderStateDictConverter"))
    (folder / "registry.json").write_text(json.dumps(registry, indent=1), encoding="utf-8")
    return {**{k: str(v) for k, v in paths.items()}, "tokenizer": str(tokenizer), "registry": registry}
