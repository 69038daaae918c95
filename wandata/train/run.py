"""Entry point of one training process: ``python -m wandata.train.run --config OUT/train_config.json``.

``wandata train --phase 2`` starts it in every process through ``accelerate launch``;
phase 1 calls the same ``main`` in the wandata process itself.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Train a Wan LoRA from a resolved wandata config.")
    ap.add_argument("--config", required=True, type=Path, help="train_config.json written by `wandata train`")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    from wandata.train.config import load
    from wandata.train.launch import environment

    cfg = load(args.config)
    for k, v in environment(cfg).items():   # before diffsynth / huggingface_hub are imported
        os.environ.setdefault(k, v)
    # DiffSynth's loader talks on stdout, and DeepSpeed's logger writes to the stdout it finds
    # when first imported (by diffsynth): both go to stderr, stdout carries the summary only.
    with contextlib.redirect_stdout(sys.stderr):
        from wandata.train.trainer import TrainError, run
    try:
        with contextlib.redirect_stdout(sys.stderr):
            summary = run(cfg, progress=not args.no_progress)
    except TrainError as e:
        print(f"error: {e}", file=sys.stderr)
        for item in e.items[:50]:
            print(f"  {item}", file=sys.stderr)
        return 1
    if summary.get("world_size", 1) == 1 or int(os.environ.get("RANK", "0")) == 0:
        short = {k: v for k, v in summary.items() if k not in ("losses", "step_seconds")}
        print(json.dumps(short, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
