"""Read a Wan LoRA in any known layout, write it in another (docs/lora.md).

Every key of the input must belong to one layout (``layouts.LAYOUTS``); a key of none, or
keys of two, are refused with the keys named. Down and up weights are copied as they are;
rank and alpha are kept:

* into a layout with an alpha (ComfyUI, musubi): the input's alpha, or ``alpha = rank``
  when the input has none (the scale stays 1);
* into a layout without one (DiffSynth, diffusers): the scale ``alpha / rank`` is folded
  into the up weight (computed in float32, stored in the up weight's dtype); nothing
  changes when the scale is 1.
"""
from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from wandata import atomic
from wandata.lora.layouts import ALPHA, DOWN, LAYOUTS, NAMES, UP, Layout

FORMAT = "wandata.lora/1"      # safetensors metadata "wandata.format" of every LoRA wandata writes
MAX_LISTED = 8                 # keys named in a refusal; the count says how many more
# Metadata that describes the scale or the layout of the input, wrong once converted.
STALE_METADATA = ("lora_alpha", "ss_network_alpha", "lora_adapter_metadata", "wandata.layout",
                  "wandata.converted_from")
DIFFUSERS_METADATA = "lora_adapter_metadata"   # diffusers' LORA_ADAPTER_METADATA_KEY (peft LoraConfig)


class LoRAError(ValueError):
    """The file cannot be converted; the message names the file, what is wrong and what to do."""


@dataclass
class Module:
    down: object              # torch.Tensor, rank x in
    up: object                # torch.Tensor, out x rank
    alpha: object = None      # torch.Tensor (one value) or None: scale 1

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])

    def alpha_value(self) -> float | None:
        return None if self.alpha is None else float(self.alpha.reshape(-1)[0])

    def scale(self) -> float:
        a = self.alpha_value()
        return 1.0 if a is None else a / self.rank


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_LISTED])
    return shown + (f" and {len(keys) - MAX_LISTED} more" if len(keys) > MAX_LISTED else "")


def detect(keys, source: str = "the state dict") -> Layout:
    """The one layout every key belongs to; ``LoRAError`` naming the keys otherwise."""
    keys = list(keys)
    if not keys:
        raise LoRAError(f"{source} holds no tensors: it is not a LoRA")
    by_layout: dict[str, list[str]] = {}
    unknown = []
    for k in keys:
        found = [name for name, layout in LAYOUTS.items() if layout.parse(k) is not None]
        if found:
            by_layout.setdefault(found[0], []).append(k)
        else:
            unknown.append(k)
    if unknown:
        raise LoRAError(f"{source}: {len(unknown)} of {len(keys)} keys are in no known Wan LoRA layout "
                        f"({', '.join(NAMES)}): {_listed(unknown)}. Only LoRA factors (down/up, A/B) and "
                        "alphas of Wan DiT Linear layers are converted; see docs/lora.md for the layouts")
    if len(by_layout) > 1:
        parts = "; ".join(f"{len(ks)} keys in the {name} layout (e.g. {ks[0]})" for name, ks in by_layout.items())
        raise LoRAError(f"{source} mixes key layouts: {parts}. A file holds one layout; "
                        "split it, or fix the tool that wrote it")
    return LAYOUTS[next(iter(by_layout))]


def _diffusers_alpha(metadata: dict, source: str):
    """diffusers saves peft's LoraConfig in the metadata: its lora_alpha is every module's."""
    raw = (metadata or {}).get(DIFFUSERS_METADATA)
    if not raw:
        return None
    try:
        cfg = json.loads(raw)
    except ValueError:
        raise LoRAError(f"{source}: metadata {DIFFUSERS_METADATA} is not JSON") from None
    if cfg.get("alpha_pattern") or cfg.get("rank_pattern"):
        raise LoRAError(f"{source}: per-module alpha_pattern/rank_pattern in {DIFFUSERS_METADATA} "
                        "is not supported; convert with diffusers first (docs/lora.md)")
    return cfg.get("lora_alpha")


def read_modules(state_dict: dict, metadata: dict | None = None,
                 source: str = "the state dict") -> tuple[Layout, dict[str, Module]]:
    """The input's layout and its modules (Wan names), every module checked whole."""
    import torch

    layout = detect(state_dict, source)
    parts: dict[str, dict] = {}
    for key, tensor in state_dict.items():
        module, part = layout.parse(key)
        if part in parts.setdefault(module, {}):
            raise LoRAError(f"{source}: module {module} has its {part} weight twice "
                            f"({key} and another spelling); keep one")
        parts[module][part] = tensor
    modules, bad = {}, []
    meta_alpha = _diffusers_alpha(metadata, source) if layout.name == "diffusers" else None
    for module, p in parts.items():
        down, up, alpha = p.get(DOWN), p.get(UP), p.get(ALPHA)
        if down is None or up is None:
            bad.append(f"{module}: no {'down (A)' if down is None else 'up (B)'} weight")
        elif down.ndim != 2 or up.ndim != 2 or down.shape[0] != up.shape[1]:
            bad.append(f"{module}: down {tuple(down.shape)} and up {tuple(up.shape)} are not "
                       "rank x in and out x rank")
        elif alpha is not None and alpha.numel() != 1:
            bad.append(f"{module}: alpha has {alpha.numel()} values, not one")
        else:
            if alpha is None and meta_alpha is not None:
                alpha = torch.tensor(float(meta_alpha), dtype=torch.float32)
            modules[module] = Module(down, up, alpha)
    if bad:
        raise LoRAError(f"{source}: {len(bad)} modules are not whole LoRA layers: {_listed(bad)}")
    return layout, modules


def write_modules(modules: dict[str, Module], to: Layout) -> dict:
    """The state dict of ``modules`` in the layout ``to`` (see the module docstring for alpha)."""
    import torch

    out = {}
    for module in sorted(modules, key=_order):
        m = modules[module]
        up = m.up
        if to.has_alpha:
            out[to.key(module, ALPHA)] = (m.alpha if m.alpha is not None
                                          else torch.tensor(float(m.rank), dtype=torch.float32))
        elif m.scale() != 1.0:
            up = (m.up.float() * m.scale()).to(m.up.dtype)
        out[to.key(module, DOWN)] = m.down
        out[to.key(module, UP)] = up
    return out


def _order(module: str):
    # blocks in number order, then the rest by name: a readable file, the same bytes every run
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in module.split("."))


def convert_state_dict(state_dict: dict, to: str, metadata: dict | None = None,
                       source: str = "the state dict") -> tuple[dict, dict]:
    """``(converted state dict, summary)``; ``to`` is a layout name."""
    if to not in LAYOUTS:
        raise LoRAError(f"--to {to!r}: choose one of {', '.join(NAMES)}")
    layout, modules = read_modules(state_dict, metadata, source)
    out = write_modules(modules, LAYOUTS[to])
    ranks = sorted({m.rank for m in modules.values()})
    alphas = sorted({a for m in modules.values() if (a := m.alpha_value()) is not None})
    folded = not LAYOUTS[to].has_alpha and any(m.scale() != 1.0 for m in modules.values())
    summary = {"layout_in": layout.name, "layout_out": to, "modules": len(modules),
               "rank": ranks[0] if len(ranks) == 1 else ranks, "alpha_in": alphas or None,
               "scale_folded_into_up": folded, "tensors": len(out)}
    return out, summary


# --- files -------------------------------------------------------------------------------

def header_metadata(path: Path) -> dict | None:
    """The ``__metadata__`` of a safetensors file (header only), or None if it is not one."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) != 8:
                return None
            n = struct.unpack("<Q", head)[0]
            if n > 100 * 2 ** 20:
                return None
            header = json.loads(f.read(n))
    except (OSError, ValueError):
        return None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return meta if isinstance(meta, dict) else {}


def owned(path: Path) -> bool:
    """A LoRA file wandata wrote (training or convert): its metadata says ``FORMAT``."""
    meta = header_metadata(path)
    return bool(meta) and meta.get("wandata.format") == FORMAT


def default_output(src: Path, to: str) -> Path:
    """``NAME.safetensors`` -> ``NAME.<layout>.safetensors`` beside it (a layout suffix the
    name already carries is replaced, not stacked)."""
    stem = src.name[:-len(".safetensors")] if src.name.endswith(".safetensors") else src.stem
    base, dot, last = stem.rpartition(".")
    if dot and last in LAYOUTS:
        stem = base
    return src.with_name(f"{stem}.{to}.safetensors")


def output_metadata(metadata: dict | None, layout_in: str, to: str) -> dict:
    meta = {k: v for k, v in (metadata or {}).items() if k not in STALE_METADATA}
    meta.update({"format": "pt", "wandata.format": FORMAT, "wandata.layout": to})
    if layout_in != to:
        meta["wandata.converted_from"] = layout_in
    return meta


def save(path: Path, state_dict: dict, metadata: dict) -> None:
    """Atomic; ``check_file`` first: never over a file wandata did not write."""
    from safetensors.torch import save

    atomic.check_file(path, owned, what="LoRA file",
                      how=f"wandata's LoRA files carry \"wandata.format\": \"{FORMAT}\" in their metadata")
    data = save({k: v.contiguous() for k, v in state_dict.items()}, metadata=metadata)
    atomic.write_bytes(path, _sorted_header(data))
    _readable(path)


def _sorted_header(data: bytes) -> bytes:
    """The same file with its JSON header in sorted key order: safetensors writes the metadata
    in hash order, which changes from run to run; the same LoRA gives the same bytes."""
    n = struct.unpack("<Q", data[:8])[0]
    text = json.dumps(json.loads(data[8:8 + n]), sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)   # the data stays 8-byte aligned, as safetensors writes it
    return struct.pack("<Q", len(text)) + text + data[8 + n:]


def _readable(path: Path) -> None:
    """A LoRA is meant to be shared: the umask's mode, as any new file gets, not the temp file's 0600."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def load(src: Path) -> tuple[dict, dict]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(src), framework="pt", device="cpu") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as e:
        raise LoRAError(f"{src}: cannot be read as safetensors ({e}); give a LoRA .safetensors file") from None


def convert_file(src: str | os.PathLike, to: str, out: str | os.PathLike | None = None) -> dict:
    """Convert the LoRA file ``src`` into the layout ``to``; write ``out`` (default
    ``default_output``). Returns the summary with ``input`` and ``output``."""
    src = Path(src)
    if to not in LAYOUTS:
        raise LoRAError(f"--to {to!r}: choose one of {', '.join(NAMES)}")
    if not src.is_file():
        raise LoRAError(f"{src}: no such file; give a LoRA .safetensors file")
    out = Path(out) if out is not None else default_output(src, to)
    if out.is_dir() and not out.is_symlink():
        out = out / default_output(src, to).name
    if not out.name.endswith(".safetensors"):
        raise LoRAError(f"-o {out}: a LoRA is written as .safetensors; give a name ending in .safetensors")
    if out.exists() and os.path.samefile(out, src):
        raise LoRAError(f"-o {out} is the input file; converting in place would lose the original. "
                        "Give another output name")
    state_dict, metadata = load(src)
    converted, summary = convert_state_dict(state_dict, to, metadata, source=str(src))
    save(out, converted, output_metadata(metadata, summary["layout_in"], to))
    return {"input": str(src), "output": str(out), **summary}
