"""The key layouts of a Wan LoRA file, in one table.

A LoRA adds ``scale * up @ down`` to the weight of each Linear layer it targets
(``down``: rank x in, ``up``: out x rank, ``scale = alpha / rank``, 1 without an alpha).
The layouts differ only in how they spell three things: the module (Wan's own names or
diffusers'), the two factors (``lora_A``/``lora_B``, ``lora_down``/``lora_up``) and a
prefix. The canonical form here is the module in Wan's own names (the original Wan
repository's, which DiffSynth's ``WanModel`` and ComfyUI's ``comfy/ldm/wan/model.py`` keep),
plus down, up and alpha. docs/lora.md cites where each layout is defined.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# (Wan's name, diffusers' WanTransformer3DModel name) of every Linear layer a LoRA may
# target; ``{i}`` is a block index. The pairs are those of diffusers'
# ``_convert_non_diffusers_wan_lora_to_diffusers`` (loaders/lora_conversion_utils.py).
MODULES = (
    ("blocks.{i}.self_attn.q", "blocks.{i}.attn1.to_q"),
    ("blocks.{i}.self_attn.k", "blocks.{i}.attn1.to_k"),
    ("blocks.{i}.self_attn.v", "blocks.{i}.attn1.to_v"),
    ("blocks.{i}.self_attn.o", "blocks.{i}.attn1.to_out.0"),
    ("blocks.{i}.cross_attn.q", "blocks.{i}.attn2.to_q"),
    ("blocks.{i}.cross_attn.k", "blocks.{i}.attn2.to_k"),
    ("blocks.{i}.cross_attn.v", "blocks.{i}.attn2.to_v"),
    ("blocks.{i}.cross_attn.o", "blocks.{i}.attn2.to_out.0"),
    ("blocks.{i}.cross_attn.k_img", "blocks.{i}.attn2.add_k_proj"),
    ("blocks.{i}.cross_attn.v_img", "blocks.{i}.attn2.add_v_proj"),
    ("blocks.{i}.ffn.0", "blocks.{i}.ffn.net.0.proj"),
    ("blocks.{i}.ffn.2", "blocks.{i}.ffn.net.2"),
    ("text_embedding.0", "condition_embedder.text_embedder.linear_1"),
    ("text_embedding.2", "condition_embedder.text_embedder.linear_2"),
    ("time_embedding.0", "condition_embedder.time_embedder.linear_1"),
    ("time_embedding.2", "condition_embedder.time_embedder.linear_2"),
    ("time_projection.1", "condition_embedder.time_proj"),
    ("head.head", "proj_out"),
    ("img_emb.proj.1", "condition_embedder.image_embedder.ff.net.0.proj"),
    ("img_emb.proj.3", "condition_embedder.image_embedder.ff.net.2"),
    # VACE's blocks (Wan2.1-VACE, Wan2.2-VACE-Fun): the hint blocks beside the DiT's, where
    # DiffSynth's VACE scripts put the LoRA (its ``VaceWanModel.vace_blocks``, saved without the
    # ``pipe.vace.`` prefix). ComfyUI's ``VaceWanModel`` (comfy/ldm/wan/model.py) holds them
    # under the same names in the one diffusion model, so its generic rule maps
    # ``diffusion_model.vace_blocks.N.<layer>``; diffusers' ``WanVACETransformer3DModel``
    # (models/transformers/transformer_wan_vace.py) names them as its own blocks, with
    # before_proj / after_proj as proj_in / proj_out (single_file_utils.py,
    # convert_wan_transformer_to_diffusers).
    ("vace_blocks.{i}.self_attn.q", "vace_blocks.{i}.attn1.to_q"),
    ("vace_blocks.{i}.self_attn.k", "vace_blocks.{i}.attn1.to_k"),
    ("vace_blocks.{i}.self_attn.v", "vace_blocks.{i}.attn1.to_v"),
    ("vace_blocks.{i}.self_attn.o", "vace_blocks.{i}.attn1.to_out.0"),
    ("vace_blocks.{i}.cross_attn.q", "vace_blocks.{i}.attn2.to_q"),
    ("vace_blocks.{i}.cross_attn.k", "vace_blocks.{i}.attn2.to_k"),
    ("vace_blocks.{i}.cross_attn.v", "vace_blocks.{i}.attn2.to_v"),
    ("vace_blocks.{i}.cross_attn.o", "vace_blocks.{i}.attn2.to_out.0"),
    ("vace_blocks.{i}.ffn.0", "vace_blocks.{i}.ffn.net.0.proj"),
    ("vace_blocks.{i}.ffn.2", "vace_blocks.{i}.ffn.net.2"),
    ("vace_blocks.{i}.before_proj", "vace_blocks.{i}.proj_in"),
    ("vace_blocks.{i}.after_proj", "vace_blocks.{i}.proj_out"),
)

DOWN, UP, ALPHA = "down", "up", "alpha"


def _pattern(template: str) -> re.Pattern:
    return re.compile(r"(\d+)".join(re.escape(p) for p in template.split("{i}")))


class _Names:
    """Module names in one spelling <-> Wan's names."""

    def __init__(self, spell):
        pairs = [(wan, spell(wan, diffusers)) for wan, diffusers in MODULES]
        self.theirs = [(_pattern(theirs), wan) for wan, theirs in pairs]
        self.wan = [(_pattern(wan), theirs) for wan, theirs in pairs]

    @staticmethod
    def _map(table, name: str) -> str | None:
        for pattern, other in table:
            m = pattern.fullmatch(name)
            if m:
                return other.format(i=int(m.group(1))) if m.groups() else other
        return None

    def to_wan(self, name: str) -> str | None:
        return self._map(self.theirs, name)

    def from_wan(self, module: str) -> str:
        out = self._map(self.wan, module)
        if out is None:
            raise KeyError(module)
        return out


WAN = _Names(lambda wan, diffusers: wan)
# kohya's networks name a module by its path with every "." turned into "_"
# (musubi-tuner networks/lora.py); Wan's own names hold "_" too, so only the table can
# read them back.
FLAT = _Names(lambda wan, diffusers: wan.replace(".", "_"))
DIFFUSERS = _Names(lambda wan, diffusers: diffusers)


@dataclass(frozen=True)
class Layout:
    name: str
    prefix: str
    names: _Names
    reads: dict           # key suffix -> DOWN / UP / ALPHA, as the layout's readers accept them
    writes: dict          # DOWN / UP (/ ALPHA) -> the suffix this layout writes
    title: str

    @property
    def has_alpha(self) -> bool:
        return ALPHA in self.writes

    def parse(self, key: str) -> tuple[str, str] | None:
        """(Wan module name, DOWN/UP/ALPHA) of ``key``, or None if it is not of this layout."""
        if not key.startswith(self.prefix):
            return None
        rest = key[len(self.prefix):]
        for suffix, part in self.reads.items():
            if rest.endswith(suffix):
                module = self.names.to_wan(rest[:-len(suffix)])
                return (module, part) if module is not None else None
        return None

    def key(self, module: str, part: str) -> str:
        return f"{self.prefix}{self.names.from_wan(module)}{self.writes[part]}"


_PEFT = {".lora_A.default.weight": DOWN, ".lora_B.default.weight": UP,
         ".lora_A.weight": DOWN, ".lora_B.weight": UP}
_KOHYA = {".lora_down.weight": DOWN, ".lora_up.weight": UP, ".alpha": ALPHA}

LAYOUTS = {
    # What DiffSynth's training saves (peft's adapter "default", prefix pipe.dit. removed);
    # its GeneralLoRALoader also reads lora_down/lora_up and an alpha.
    "diffsynth": Layout("diffsynth", "", WAN, {**_PEFT, **_KOHYA},
                        {DOWN: ".lora_A.default.weight", UP: ".lora_B.default.weight"},
                        "DiffSynth-Studio (peft names, no alpha)"),
    # ComfyUI maps "diffusion_model.<module>" (its model's state-dict key without ".weight")
    # to the weight and reads lora_up/lora_down/alpha (or lora_B/lora_A) beside it.
    "comfyui": Layout("comfyui", "diffusion_model.", WAN, {**_PEFT, **_KOHYA},
                      {DOWN: ".lora_down.weight", UP: ".lora_up.weight", ALPHA: ".alpha"},
                      "ComfyUI (diffusion_model.<module>.lora_down/lora_up/alpha)"),
    "musubi": Layout("musubi", "lora_unet_", FLAT, dict(_KOHYA),
                     {DOWN: ".lora_down.weight", UP: ".lora_up.weight", ALPHA: ".alpha"},
                     "musubi-tuner / kohya (lora_unet_<module_with_underscores>)"),
    "diffusers": Layout("diffusers", "transformer.", DIFFUSERS, dict(_PEFT),
                        {DOWN: ".lora_A.weight", UP: ".lora_B.weight"},
                        "diffusers (transformer.<WanTransformer3DModel module>, no alpha)"),
}
NAMES = tuple(LAYOUTS)
