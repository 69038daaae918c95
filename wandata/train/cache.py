"""The encode-once cache: text-encoder and VAE outputs per clip, as safetensors.

DiffSynth's split training (``sft:data_process``) saves each clip's pipeline inputs
with ``torch.save`` and reads them back with ``torch.load(weights_only=False)``, so a
cache folder can run code. Here every tensor goes into a safetensors file and the few
plain values (sizes, flags) into its JSON metadata: reading a cache file cannot run code.

A file is named by its key, a hash of everything that decides its content: the clip's
bytes, its prompt, the encoder files (text encoder, VAE, image encoder, tokenizer), and
the settings that shape the encoded tensors (frames, size, task, dtype). Change any of
them and the key changes, so a stale entry is never read; the same data re-uses it.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

FORMAT = "wandata.encode/1"
PARTS = ("shared", "posi", "nega")
# Raw inputs the encoders consumed (PIL frames), and tensors the loss recomputes.
DROP = frozenset({"input_video", "input_image", "end_image", "noise", "latents"})
# Training knobs: set by the trainer at every step, never read from the cache.
KNOBS = frozenset({"use_gradient_checkpointing", "use_gradient_checkpointing_offload",
                   "max_timestep_boundary", "min_timestep_boundary"})


def file_hash(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def cache_key(clip_hash: str, prompt: str, model_fingerprint: str, settings: dict) -> str:
    blob = json.dumps({"format": FORMAT, "clip": clip_hash, "prompt": prompt, "models": model_fingerprint,
                       "settings": settings}, sort_keys=True, ensure_ascii=True)
    return hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()


def _plain(v) -> bool:
    if v is None or isinstance(v, (bool, int, float, str)):
        return True
    if isinstance(v, (list, tuple)):
        return all(_plain(x) for x in v)
    return False


def strip(inputs: tuple[dict, dict, dict]) -> tuple[dict, dict, dict]:
    """Keep what the DiT step needs: tensors and plain values; drop raw frames and knobs.

    Applied with and without the cache, so both paths hand the loss the same inputs."""
    out = []
    posi = inputs[1]
    for n, part in enumerate(inputs):
        kept = {}
        for k, v in part.items():
            if k in DROP or k in KNOBS:
                continue
            if n == 2 and k in posi and posi[k] is v:
                continue   # with cfg_scale 1 the negative side aliases the positive one
            if isinstance(v, torch.Tensor) or _plain(v):
                kept[k] = v
        out.append(kept)
    return tuple(out)


def save(path: Path, inputs: tuple[dict, dict, dict], key: str, info: dict | None = None) -> None:
    """Write one clip's stripped inputs; atomic (temporary name, then rename)."""
    from safetensors.torch import save_file

    tensors, values = {}, {}
    for name, part in zip(PARTS, strip(inputs)):
        values[name] = {}
        for k, v in part.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{name}/{k}"] = v.detach().to("cpu").contiguous()
            else:
                values[name][k] = list(v) if isinstance(v, tuple) else v
    meta = {"format": FORMAT, "key": key, "values": json.dumps(values), "info": json.dumps(info or {})}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load(path: Path, key: str | None = None) -> tuple[dict, dict, dict] | None:
    """One clip's inputs, or None when the file is missing, foreign or for another key."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT or (key is not None and meta.get("key") != key):
                return None
            values = json.loads(meta["values"])
            parts = {name: dict(values.get(name, {})) for name in PARTS}
            for k in f.keys():
                name, _, sub = k.partition("/")
                parts[name][sub] = f.get_tensor(k)
    except Exception:   # a truncated or foreign file is a miss: it is re-encoded and replaced
        return None
    return tuple(parts[name] for name in PARTS)


class EncodeCache:
    """Files ``DIR/<key[:2]>/<key>.safetensors``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.safetensors"

    def get(self, key: str):
        return load(self.path(key), key)

    def put(self, key: str, inputs, info: dict | None = None) -> Path:
        p = self.path(key)
        save(p, inputs, key, info)
        return p

    def has(self, key: str) -> bool:
        return self.get_meta(key) is not None

    def get_meta(self, key: str) -> dict | None:
        from safetensors import safe_open
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            with safe_open(str(p), framework="pt", device="cpu") as f:
                meta = f.metadata() or {}
        except Exception:
            return None
        return meta if meta.get("format") == FORMAT and meta.get("key") == key else None
