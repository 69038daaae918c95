"""How many threads one source's work may use (``--threads``).

Each library picks its own default from the machine's cores: PyAV's frame threads, x264's
encoder threads, OpenCV's pool, torch's intra-op pool. One source alone then uses about four
cores; sixteen ``--workers`` on sixteen cores each start all of them, and the threads fight
over the cores. A budget set once per source (in whichever process runs it, local pool or Ray
worker) caps all four. 0 leaves every library at its default, as before the option existed.
"""
from __future__ import annotations

import sys

_budget = 0
_defaults: dict[str, int] = {}   # the pools' sizes before the first budget, put back by a budget of 0


def set_budget(n: int) -> None:
    global _budget
    _budget = max(0, int(n or 0))
    import cv2
    torch = sys.modules.get("torch")   # only where a detector already loaded it: never import torch for this
    if _budget:
        _defaults.setdefault("cv2", cv2.getNumThreads())
        cv2.setNumThreads(_budget)
        if torch is not None:
            _defaults.setdefault("torch", torch.get_num_threads())
            torch.set_num_threads(_budget)
        return
    # 0 in a process that ran a budget before (a library caller, the tests): every library's own default again
    if "cv2" in _defaults:
        cv2.setNumThreads(_defaults.pop("cv2"))
    if torch is not None and "torch" in _defaults:
        torch.set_num_threads(_defaults.pop("torch"))


def budget() -> int:
    return _budget


def apply_to_stream(stream) -> None:
    """PyAV decoding: frame threads of the budget (AUTO otherwise)."""
    stream.thread_type = "AUTO"
    if _budget:
        stream.thread_count = _budget


def encoder_args() -> list[str]:
    return ["-threads", str(_budget)] if _budget else []
