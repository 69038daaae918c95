"""Draw the loss curves of ``bench/train_step.py --loss-curve N --json loss.json``.

    python bench/plot_loss.py loss.json docs/img/loss_levers.png

Two lines, levers none and levers auto, same steps, seed, timesteps and noise; a lighter
running mean (window 10) over each, and the per-step difference in a second panel.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def running_mean(xs: list[float], w: int) -> list[float]:
    out, acc = [], 0.0
    for i, x in enumerate(xs):
        acc += x
        if i >= w:
            acc -= xs[i - w]
        out.append(acc / min(i + 1, w))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("json", type=Path)
    ap.add_argument("png", type=Path, nargs="?", default=Path("docs/img/loss_levers.png"))
    ap.add_argument("--window", type=int, default=10)
    args = ap.parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = json.loads(args.json.read_text(encoding="utf-8"))
    runs = d["runs"]
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    colors = {"none": "tab:blue", "auto": "tab:orange"}
    labels = {"none": "levers none (untuned)", "auto": "levers auto"}
    for mode, run in runs.items():
        ys = run["losses"]
        xs = list(range(1, len(ys) + 1))
        ax.plot(xs, ys, color=colors.get(mode), alpha=0.3, lw=0.8)
        ax.plot(xs, running_mean(ys, args.window), color=colors.get(mode), lw=1.8,
                label=f"{labels.get(mode, mode)}, mean of {args.window}")
    if "none" in runs and "auto" in runs:
        a, b = runs["none"]["losses"], runs["auto"]["losses"]
        ax2.plot(range(1, min(len(a), len(b)) + 1), [y - x for x, y in zip(a, b)], color="tab:gray", lw=0.8)
        ax2.axhline(0, color="black", lw=0.5)
        ax2.set_ylabel("auto - none")
    ax.set_ylabel("training loss")
    ax2.set_xlabel("step")
    ax.set_title(f"{d['model']} {d['frames']}x{d['height']}x{d['width']} rank {d['lora_rank']}, "
                 f"{d['clips']} clips, seed {d['seed']}; {d['gpu']}, torch {d['torch']}", fontsize=9)
    ax.legend()
    fig.tight_layout()
    args.png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.png, dpi=110)
    print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
