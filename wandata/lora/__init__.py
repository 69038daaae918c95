"""Wan LoRA files between the key layouts of DiffSynth-Studio, ComfyUI, diffusers and
musubi-tuner (docs/lora.md): ``layouts`` is the table, ``convert`` reads and writes."""
from wandata.lora.convert import (FORMAT, LoRAError, convert_file, convert_state_dict, default_output, detect,
                                  owned, read_modules, save, write_modules)
from wandata.lora.layouts import LAYOUTS, NAMES

__all__ = ["FORMAT", "LAYOUTS", "NAMES", "LoRAError", "convert_file", "convert_state_dict", "default_output",
           "detect", "owned", "read_modules", "save", "write_modules"]
