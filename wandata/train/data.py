"""The clips, read by DiffSynth's own ``UnifiedDataset`` exactly as the export says.

Fixed mode passes ``height``/``width``; dynamic mode leaves them unset and passes
``max_pixels`` (at least every clip's area), so each clip keeps its own bucket size and
orientation. Frames are the first ``num_frames`` of each clip. The columns in
``data_file_keys`` (VACE's and Fun-Control's control video and reference image) load with the
clip's operator, as DiffSynth's train.py loads them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from wandata.train.config import TrainConfig


def build_dataset(cfg: TrainConfig):
    from diffsynth.core import UnifiedDataset

    base = cfg.dataset_base_path
    ds = UnifiedDataset(
        base_path=base, metadata_path=cfg.metadata_path, repeat=1, data_file_keys=list(cfg.data_file_keys or ["video"]),
        main_data_operator=UnifiedDataset.default_video_operator(
            base_path=base, max_pixels=cfg.max_pixels, height=cfg.height, width=cfg.width,
            height_division_factor=cfg.size_multiple, width_division_factor=cfg.size_multiple,
            num_frames=cfg.num_frames,
            time_division_factor=4, time_division_remainder=1))
    if len(ds.data) == 0:
        raise ValueError(f"{cfg.metadata_path} lists no clips")
    return ds


def clip_path(ds, index: int, column: str = "video") -> Path:
    from wandata.confine import inside
    return inside(Path(ds.base_path), ds.data[index][column], f"column {column}")


def clip_prompt(ds, index: int):
    return ds.data[index].get("prompt")


def encode_settings(cfg: TrainConfig, dit_flags: dict | None = None) -> dict:
    """What, besides the clip (and its conditioning files) and the encoders, decides the encoded
    tensors: the shape, the inputs given, and the DiT's flags that choose the image encodings."""
    out = {"num_frames": cfg.num_frames, "height": cfg.height, "width": cfg.width,
           "max_pixels": None if cfg.height else cfg.max_pixels, "task": cfg.task, "dtype": cfg.dtype,
           "tiled": False}
    if cfg.inputs():   # (absent for T2V, so a T2V cache made before these fields stays valid)
        out.update(inputs=cfg.inputs(), size_multiple=cfg.size_multiple, dit_flags=dit_flags or {})
    return out


class Order:
    """Which clip each process trains on at each step: a fresh permutation per epoch,
    from the seed, so a resumed run continues exactly where it stopped."""

    def __init__(self, n: int, seed: int, world_size: int = 1, rank: int = 0):
        self.n, self.seed, self.world, self.rank = n, seed, world_size, rank
        self._perm: dict[int, np.ndarray] = {}

    def epoch_of(self, step: int) -> int:
        return (step * self.world + self.rank) // self.n

    def __call__(self, step: int) -> int:
        epoch, pos = divmod(step * self.world + self.rank, self.n)
        if epoch not in self._perm:
            self._perm = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.n)}
        return int(self._perm[epoch][pos])

