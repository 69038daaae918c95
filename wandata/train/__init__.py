"""wandata's thin LoRA trainer for Wan video models, on DiffSynth-Studio's public API.

Phase 1: Wan2.1-T2V-1.3B on one GPU. Phase 2: the 14B models through ``accelerate
launch`` with DeepSpeed (configs in ``wandata/train/configs``). The text encoder and VAE run
once per clip before training (``wandata.train.cache``); the DiT trains from the cache.
See docs/train.md. Needs the ``train`` extra: ``pip install -e .[train]``.
"""
from wandata import __version__

__all__ = ["__version__"]
