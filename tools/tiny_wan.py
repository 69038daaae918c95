"""A tiny, randomly initialised Wan stack built from DiffSynth's own model classes.

Development only (tests and smoke runs on a CPU; not in the wheel): a few-layer
``WanModel`` DiT, a few-layer ``WanTextEncoder`` (UMT5 architecture), a ``WanVideoVAE``
whose inner width is 8 instead of 96, and a word-level tokenizer saved as a Hugging Face
tokenizer folder.
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

from diffsynth.models.wan_video_vae import VideoVAE_, WanVideoVAE

# Head dim (dim / num_heads) must split into Wan's three RoPE parts: 12, 24, 32 or 128.
TINY_DIT = {"has_image_input": False, "patch_size": [1, 2, 2], "in_dim": 16, "dim": 96,
            "ffn_dim": 192, "freq_dim": 32, "text_dim": 32, "out_dim": 16, "num_heads": 4,
            "num_layers": 2, "eps": 1e-6}
TINY_TEXT = {"vocab": 64, "dim": 32, "dim_attn": 32, "dim_ffn": 64, "num_heads": 2,
             "num_layers": 2, "num_buckets": 8, "shared_pos": False, "dropout": 0.0}
TINY_VAE_DIM = 8
WORDS = ("a the of and in on with red green blue cat dog fox car tree sky sea city road "
         "running walking flying sitting night day slow fast close wide shot camera pan zoom "
         "bright dark small big water light people street field").split()


class TinyWanVideoVAE(WanVideoVAE):
    """``WanVideoVAE`` with a narrow inner width (``WanVideoVAE`` hard-codes 96)."""

    def __init__(self, z_dim=16, dim=TINY_VAE_DIM):
        super().__init__(z_dim=z_dim)
        self.model = VideoVAE_(dim=dim, z_dim=z_dim).eval().requires_grad_(False)


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


def build_tiny_stack(folder: Path, seed: int = 0, dit: dict | None = None) -> dict:
    """Write a tiny DiT, text encoder, VAE and tokenizer under ``folder``.

    Returns ``{"dit", "text_encoder", "vae", "tokenizer", "registry"}``: paths, and the
    model-table entries to pass as ``model_registry`` (see ``wandata.train.models``)."""
    from diffsynth.models.wan_video_dit import WanModel
    from diffsynth.models.wan_video_text_encoder import WanTextEncoder

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dit_kwargs = dict(TINY_DIT, **(dit or {}))
    g = torch.random.fork_rng()
    with g:
        torch.manual_seed(seed)
        dit_model = WanModel(**dit_kwargs)
        text = WanTextEncoder(**TINY_TEXT)
        vae = TinyWanVideoVAE()
    paths = {"dit": folder / "dit.safetensors", "text_encoder": folder / "text_encoder.safetensors",
             "vae": folder / "vae.safetensors"}
    _save(dit_model.state_dict(), paths["dit"])
    _save(text.state_dict(), paths["text_encoder"])
    _save(vae.model.state_dict(), paths["vae"])   # the converter adds "model."
    tokenizer = write_tokenizer(folder / "tokenizer")
    registry = [
        registry_entry(paths["dit"], "wan_video_dit", "diffsynth.models.wan_video_dit.WanModel", dit_kwargs),
        registry_entry(paths["text_encoder"], "wan_video_text_encoder",
                       "diffsynth.models.wan_video_text_encoder.WanTextEncoder", TINY_TEXT),
        registry_entry(paths["vae"], "wan_video_vae", "tools.tiny_wan.TinyWanVideoVAE", {},
                       "diffsynth.utils.state_dict_converters.wan_video_vae.WanVideoVAEStateDictConverter"),
    ]
    (folder / "registry.json").write_text(json.dumps(registry, indent=1), encoding="utf-8")
    return {**{k: str(v) for k, v in paths.items()}, "tokenizer": str(tokenizer), "registry": registry}
