"""Seconds per step and peak GPU memory for a training run, each figure labelled by how it
was obtained.

Labels (every figure carries one):

* ``measured``: this exact configuration was measured: GPU, model, clip shape, LoRA rank,
  cached or not, gradient checkpointing, dtype, GPU count and DeepSpeed mode. The figure is
  that measurement (``wandata/train/measured.json``).
* ``model``: computed by the model below from named measurements.
* ``unknown``: no basis: no measurement on this GPU kind, a dtype or a DeepSpeed mode that
  was never measured. No figure is given (at most a lower bound, said as such).

The model of one training step (one clip per GPU) counts the work of the Wan DiT from its
shapes (``ARCH``: layers, width, FFN width, heads, as in DiffSynth's model table) and the
clip's latent tokens ``L = ((F-1)/4+1) * H/16 * W/16``, in three parts that grow differently:

* matmul FLOPs of the linear layers (q, k, v, o of self- and cross-attention, the FFN, the
  patch embedding and head; the LoRA's own matmuls at its rank): ``∝ L`` x parameters;
* attention FLOPs (``4 L^2 d`` per layer for self-attention, ``4 L 512 d`` for the text
  cross-attention): ``∝ L^2``; about 70 % of the DiT's FLOPs at 81x480x832 on the 1.3B;
* memory-bound element-wise work (norms, RoPE in float64, modulation, GELU, residuals),
  counted as the bytes of activations a layer writes per token, ``2 (17 d + 2 f)``: ``∝ L d``.

A step is the forward pass, the backward pass (frozen linear layers only pass the gradient
on: 1x their forward; attention backward 2.5x its forward; element-wise 2x) and, with
gradient checkpointing, the forward of every block once more. Each part has its own
efficiency (seconds per FLOP or per byte) fitted per GPU on the ``fit`` measurements, and a
step cannot be shorter than its kernel launches: ``c x layers x passes`` (the floor where
short clips leave the GPU waiting on Python). Where a GPU has too few measurements to fit
three efficiencies, one factor scales the reference GPU's model to its measurements.

Peak memory: weights (parameters x dtype bytes, sharded over the GPUs under ZeRO-3), the
LoRA's weights and AdamW state (3 x its parameters x dtype bytes), activations (with
checkpointing: each block's input, ``L d`` per layer, plus one block's saved activations
and their gradients while it is recomputed; without: every block's), a constant, and under
ZeRO-3 the gather buffers, taken from the ZeRO-3 measurement. The activation factor and
the constant are fitted on the ``fit`` measurements.

The ``held_out`` measurements are never fitted on: ``check()`` predicts each of them and
reports the error; ``python -m wandata.train.estimate`` prints that table.
"""
from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np

MEASURED = Path(__file__).with_name("measured.json")
GIB = 2 ** 30
TEXT_TOKENS = 512          # the UMT5 context is padded to 512 tokens
TEXT_DIM = 4096
CLIP_TOKENS = 257          # I2V: CLIP image tokens ahead of the text context
DEFAULT_TARGETS = "q,k,v,o,ffn.0,ffn.2"
DTYPE_BYTES = {"bf16": 2, "fp32": 4}
ATT_BWD = 2.5              # attention backward / forward FLOPs (flash-style: 5 matmuls vs 2)
ELEM_BWD = 2.0             # element-wise backward / forward bytes (read grad and input, write grad)


@dataclass(frozen=True)
class Arch:
    """A Wan DiT's shapes: ``extra_kwargs`` of its entry in ``diffsynth.configs.MODEL_CONFIGS``
    (diffsynth 2.1.12; tests/test_train.py checks these against it)."""
    dim: int
    ffn_dim: int
    num_heads: int
    num_layers: int
    in_dim: int = 16
    out_dim: int = 16
    freq_dim: int = 256
    has_image_input: bool = False

    def params(self) -> int:
        d, f, n = self.dim, self.ffn_dim, self.num_layers
        attn = 4 * (d * d + d) + 2 * d                                  # q, k, v, o + norm_q, norm_k
        img = (2 * (d * d + d) + d) if self.has_image_input else 0     # k_img, v_img, norm_k_img
        block = 2 * attn + img + (d * f + f + f * d + d) + 2 * d + 6 * d   # + ffn, norm3, modulation
        embed = (self.in_dim * 4 * d + d) + (TEXT_DIM * d + d + d * d + d) \
            + (self.freq_dim * d + d + d * d + d) + (d * 6 * d + 6 * d)
        head = d * self.out_dim * 4 + self.out_dim * 4 + 2 * d
        clip = (2 * 1280 + 1280 * 1280 + 1280 + 1280 * d + d + 2 * d) if self.has_image_input else 0
        return n * block + embed + head + clip


ARCH = {
    "Wan2.1-T2V-1.3B": Arch(dim=1536, ffn_dim=8960, num_heads=12, num_layers=30),
    "Wan2.1-T2V-14B": Arch(dim=5120, ffn_dim=13824, num_heads=40, num_layers=40),
    "Wan2.1-I2V-14B-480P": Arch(dim=5120, ffn_dim=13824, num_heads=40, num_layers=40, in_dim=36,
                                has_image_input=True),
}
# Parameters of the encoders that sit on the GPU when every step encodes (uncached mode):
# UMT5-XXL encoder, the Wan2.1 VAE, the I2V CLIP image encoder (counted from DiffSynth's classes).
TEXT_ENCODER_PARAMS = 5_680_910_336
VAE_PARAMS = 126_892_531
IMAGE_ENCODER_PARAMS = 632_076_801


def latent_tokens(frames: int, height: int, width: int) -> int:
    """Tokens the Wan DiT attends over: VAE 4x time / 8x space, then 2x2 patches."""
    return ((frames - 1) // 4 + 1) * (height // 16) * (width // 16)


def run_shape(cfg) -> tuple[int, int, int]:
    """The largest clip shape of the run (dynamic mode: the largest bucket)."""
    if cfg.height and cfg.width:
        return cfg.num_frames, cfg.height, cfg.width
    if cfg.buckets:
        b = max(cfg.buckets, key=lambda b: b["width"] * b["height"])
        return cfg.num_frames, b["height"], b["width"]
    return cfg.num_frames, 480, 832


# --- the configuration a figure is for -------------------------------------------------------

@dataclass(frozen=True)
class Spec:
    model: str
    frames: int
    height: int
    width: int
    rank: int = 32
    targets: str = DEFAULT_TARGETS
    gc: bool = True
    dtype: str = "bf16"
    mode: str = "cached"
    num_gpus: int = 1
    deepspeed: str | None = None      # None: one process, no DeepSpeed; "zero3" | "zero2-offload"

    @property
    def tokens(self) -> int:
        return latent_tokens(self.frames, self.height, self.width)

    def describe(self) -> str:
        ds = f", {self.num_gpus} GPUs {self.deepspeed}" if self.deepspeed else ""
        return (f"{self.model.replace('Wan2.1-', '')} {self.frames}x{self.height}x{self.width} r{self.rank} "
                f"{'ckpt' if self.gc else 'no-ckpt'} {self.dtype} {self.mode}{ds}")


def spec_of_entry(e: dict) -> Spec:
    phase2 = e.get("phase") == 2 or e.get("deepspeed")
    return Spec(model=e["model"], frames=e["frames"], height=e["height"], width=e["width"],
                rank=e.get("lora_rank", 32), targets=_targets(e.get("lora_targets", DEFAULT_TARGETS)),
                gc=e.get("gradient_checkpointing", True), dtype=e.get("dtype", "bf16"),
                mode=e.get("mode", "cached"), num_gpus=e.get("num_gpus", 1),
                deepspeed=(e.get("deepspeed") or "zero3") if phase2 else None)


def spec_of_config(cfg, num_gpus: int = 1) -> Spec:
    frames, height, width = run_shape(cfg)
    phase2 = not cfg.in_process()   # one-gpu trains as phase 1 does (one process, no DeepSpeed)
    return Spec(model=cfg.model, frames=frames, height=height, width=width, rank=cfg.lora_rank,
                targets=_targets(cfg.lora_targets), gc=cfg.gradient_checkpointing, dtype=cfg.dtype,
                mode="cached" if cfg.use_cache else "uncached", num_gpus=num_gpus if phase2 else 1,
                deepspeed=cfg.deepspeed_mode() if phase2 else None)


def _targets(t: str) -> str:
    return ",".join(sorted(x.strip() for x in t.split(",") if x.strip()))


# --- work and memory from the shapes ---------------------------------------------------------

def _lora_shapes(arch: Arch, targets: str) -> list[tuple[int, int, int]]:
    """(in, out, tokens it runs on) of every LoRA'd linear of one block; peft matches a target
    name against the end of a module's name, so ``q`` is both attentions' q."""
    d, f = arch.dim, arch.ffn_dim
    mods = {"q": [(d, d, "video")] * 2, "o": [(d, d, "video")] * 2,
            "k": [(d, d, "video"), (d, d, "text")], "v": [(d, d, "video"), (d, d, "text")],
            "ffn.0": [(d, f, "video")], "ffn.2": [(f, d, "video")]}
    if arch.has_image_input:
        mods.update({"k_img": [(d, d, "image")], "v_img": [(d, d, "image")]})
    names = set(targets.split(","))
    return [m for name in names for m in mods.get(name, [])]


def work(spec: Spec) -> dict:
    """One training step's work: matmul FLOPs (``linear``, LoRA included), attention FLOPs,
    element-wise bytes (``elementwise``) and kernel-launch units (``launch``), each counted
    over forward, backward and (with checkpointing) recompute."""
    a = ARCH[spec.model]
    d, f, n, L = a.dim, a.ffn_dim, a.num_layers, spec.tokens
    T = TEXT_TOKENS
    I = CLIP_TOKENS if a.has_image_input else 0
    gc = 1 if spec.gc else 0
    # forward FLOPs
    lin_video = n * 2 * L * (6 * d * d + 2 * d * f) + 2 * L * (a.in_dim * 4 * d + d * a.out_dim * 4)
    lin_text = n * 2 * (T + I) * 2 * d * d + 2 * T * (TEXT_DIM * d + d * d)
    att = n * (4 * L * L * d + 4 * L * (T + I) * d)
    tok = {"video": L, "text": T, "image": I}
    lora = n * sum(2 * tok[kind] * spec.rank * (i + o) for i, o, kind in _lora_shapes(a, spec.targets))
    elem = n * L * 2 * (17 * d + 2 * f)      # activation bytes written per block, see module doc
    return {
        # frozen base: forward + input gradient (+ recompute); the text side needs no gradient
        "linear": lin_video * (2 + gc) + lin_text * (1 + gc) + lora * (3 + gc),
        "attention": att * (1 + ATT_BWD + gc),
        "elementwise": elem * (1 + ELEM_BWD + gc),
        "launch": n * (2 + gc),
        "forward_flops": lin_video + lin_text + att + lora,
        "attention_share": att / (lin_video + lin_text + att + lora),
    }


def lora_params(spec: Spec) -> int:
    a = ARCH[spec.model]
    return a.num_layers * sum(spec.rank * (i + o) for i, o, _ in _lora_shapes(a, spec.targets))


def memory_terms(spec: Spec) -> dict:
    """Bytes that do not depend on a fitted factor, and the activation bytes that do."""
    a = ARCH[spec.model]
    b = DTYPE_BYTES.get(spec.dtype, 2)
    L, n, d = spec.tokens, a.num_layers, a.dim
    weights = a.params() * b
    encoders = 0
    if spec.mode == "uncached":
        encoders = (TEXT_ENCODER_PARAMS + VAE_PARAMS + (IMAGE_ENCODER_PARAMS if a.has_image_input else 0)) * b
    lora_state = 3 * lora_params(spec) * b          # weights + AdamW's two moments, in the model dtype
    video_targets = sum(1 for *_, kind in _lora_shapes(a, spec.targets) if kind == "video")
    block = L * (b * (17 * d + 2 * a.ffn_dim) + video_targets * spec.rank * b)   # one block's saved activations
    if spec.gc:
        saved, block_factor = n * L * d * b, 1.0
    else:
        saved, block_factor = 0, float(n)
    return {"weights": weights, "encoders": encoders, "lora_state": lora_state, "saved": saved,
            "block": block, "block_factor": block_factor}


# --- measurements ----------------------------------------------------------------------------

def load(path: Path | None = None) -> list[dict]:
    data = json.loads(Path(path or MEASURED).read_text(encoding="utf-8"))
    return list(data.get("entries", []))


def _ours(entries: list[dict]) -> list[dict]:
    """wandata's untuned measurements of known architectures: what the model is fitted and
    checked on (tuned runs are another path; they are looked up by ``tuned``)."""
    return [e for e in entries if e.get("trainer", "wandata") == "wandata" and e.get("model") in ARCH
            and e.get("role") != "tuned"]


def tuned(entries: list[dict], gpu: str, spec: Spec) -> dict | None:
    """The speed levers' figure (levers auto) measured for exactly this configuration on this
    GPU, if any. The levers depend on the GPU's memory and the shape, so nothing is scaled."""
    hits = [e for e in entries if e.get("role") == "tuned" and e.get("gpu") == gpu and e.get("model") in ARCH
            and spec_of_entry(e) == spec]
    if not hits:
        return None
    e = max(hits, key=lambda e: e.get("date") or "")
    return {"s_per_step": round(e["s_per_step"], 2), "peak_gib": round(e["peak_gib"], 1),
            "levers": e.get("levers_chosen", ""), "how": name(e)}


def name(e: dict) -> str:
    return f"{e['gpu']}: {spec_of_entry(e).describe()}" + (f" ({e['date']})" if e.get("date") else "")


def _single(e: dict) -> bool:
    s = spec_of_entry(e)
    return s.deepspeed is None and s.mode == "cached"


# --- time: fitting ---------------------------------------------------------------------------

@dataclass
class TimeFit:
    gpu: str
    coef: tuple[float, float, float]   # seconds per linear FLOP, per element-wise byte, per attention FLOP
    floor: float                       # seconds per launch unit
    entries: list[dict]
    scale: float = 1.0
    reference: str | None = None       # the GPU whose efficiencies were scaled

    def gpu_seconds(self, spec: Spec) -> float:
        w = work(spec)
        return self.scale * (self.coef[0] * w["linear"] + self.coef[1] * w["elementwise"]
                             + self.coef[2] * w["attention"])

    def seconds(self, spec: Spec) -> float:
        return max(self.scale * self.floor * work(spec)["launch"], self.gpu_seconds(spec))

    def describe(self) -> str:
        if self.reference:
            return (f"the {self.reference} model scaled by {self.scale:.3f} to {len(self.entries)} "
                    f"{self.gpu} measurement(s)")
        lin, el, att = self.coef
        rate = lambda c: f"{1 / c / 1e12:.0f} TFLOP/s" if c > 0 else "not fitted"   # noqa: E731
        return (f"FLOP model, efficiencies fitted on {len(self.entries)} {self.gpu} measurements: linear layers "
                f"{rate(lin)}, attention {rate(att)}, element-wise {(1 / el / 1e12 if el > 0 else 0):.2f} TB/s "
                f"of activations written, launch floor {self.floor * 1e3:.1f} ms per layer and pass")


def _nnls_rel(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative least squares on relative error, by trying every subset of the columns
    (three of them)."""
    Xw, yw = X / y[:, None], np.ones_like(y)
    best, best_err = np.zeros(X.shape[1]), math.inf
    for k in range(1, X.shape[1] + 1):
        for cols in combinations(range(X.shape[1]), k):
            c, *_ = np.linalg.lstsq(Xw[:, cols], yw, rcond=None)
            if (c < 0).any():
                continue
            full = np.zeros(X.shape[1])
            full[list(cols)] = c
            err = float(((Xw @ full - 1) ** 2).sum())
            if err < best_err:
                best, best_err = full, err
    return best


def _fit_full(gpu: str, entries: list[dict]) -> TimeFit | None:
    specs = [spec_of_entry(e) for e in entries]
    if len({s.model for s in specs}) < 2 or len({(s.model, s.tokens) for s in specs}) < 4:
        return None   # matmul and element-wise time both grow with L: two DiT widths tell them apart
    y = np.array([e["s_per_step"] for e in entries])
    W = [work(s) for s in specs]
    X = np.array([[w["linear"], w["elementwise"], w["attention"]] for w in W])
    launch = np.array([w["launch"] for w in W])
    order = list(np.argsort(y))
    best = None
    # The shortest steps may sit on the launch floor: try 0, 1 or 2 of them there.
    for k in range(0, 3):
        on_floor, rest = order[:k], order[k:]
        if len(rest) < 3:
            break
        coef = _nnls_rel(X[rest], y[rest])
        floor = max((y[i] / launch[i] for i in on_floor), default=0.0)
        pred = np.maximum(floor * launch, X @ coef)
        if any(X[i] @ coef > y[i] * 1.02 for i in on_floor):
            continue   # a step said to be launch-bound must not need more GPU time than it took
        err = float((((pred - y) / y) ** 2).sum())
        if best is None or err < best[0]:
            best = (err, coef, floor)
    if best is None:
        return None
    _, coef, floor = best
    return TimeFit(gpu, tuple(float(c) for c in coef), float(floor), entries)


def fit_time(entries: list[dict], gpu: str) -> TimeFit | None:
    """The step-time model for ``gpu``, from its ``fit`` entries (one GPU, cached)."""
    ours = _ours(entries)
    mine = [e for e in ours if e.get("role") == "fit" and e["gpu"] == gpu and _single(e) and e.get("s_per_step")]
    full = _fit_full(gpu, mine)
    if full is not None or not mine:
        return full
    # Too few to fit three efficiencies: scale the best-measured GPU's model to these.
    ref = reference_gpu(entries)
    if ref is None or ref == gpu:
        return None
    base = fit_time(entries, ref)
    if base is None:
        return None
    ratios = [e["s_per_step"] / base.seconds(spec_of_entry(e)) for e in mine]
    s = statistics.median(ratios)
    return TimeFit(gpu, base.coef, base.floor, mine, scale=s, reference=ref)


def reference_gpu(entries: list[dict]) -> str | None:
    counts: dict[str, int] = {}
    for e in _ours(entries):
        if e.get("role") == "fit" and _single(e):
            counts[e["gpu"]] = counts.get(e["gpu"], 0) + 1
    return max(counts, key=lambda g: counts[g]) if counts else None


def _zero3_entry(entries: list[dict], gpu: str | None, model: str | None = None) -> dict | None:
    c = [e for e in _ours(entries) if spec_of_entry(e).deepspeed == "zero3" and e.get("s_per_step")
         and (gpu is None or e["gpu"] == gpu)]
    c.sort(key=lambda e: (e["model"] != model, e.get("date") or ""))
    return c[0] if c else None


# --- memory: fitting -------------------------------------------------------------------------

@dataclass
class MemFit:
    block_factor: float     # one block's live bytes during its recompute + backward, / its saved bytes
    const: float            # bytes
    entries: list[dict]

    def bytes(self, spec: Spec, shard: int = 1) -> float:
        m = memory_terms(spec)
        per_block = m["block"] * (m["block_factor"] - 1 + self.block_factor)
        return (m["weights"] + m["lora_state"]) / shard + m["encoders"] + m["saved"] + per_block + self.const


def fit_memory(entries: list[dict]) -> MemFit | None:
    """Peak memory is GPU-independent (the same allocations), so every ``fit`` entry counts."""
    mine = [e for e in _ours(entries) if e.get("role") == "fit" and _single(e) and e.get("peak_gib")]
    if len({latent_tokens(e["frames"], e["height"], e["width"]) for e in mine}) < 2:
        return None
    rows, ys = [], []
    for e in mine:
        m = memory_terms(spec_of_entry(e))
        rows.append([m["block"], 1.0])
        ys.append(e["peak_gib"] * GIB - m["weights"] - m["lora_state"] - m["encoders"] - m["saved"]
                  - m["block"] * (m["block_factor"] - 1))
    X, y = np.array(rows), np.array(ys)
    w = 1 / np.array([e["peak_gib"] for e in mine])
    c, *_ = np.linalg.lstsq(X * w[:, None], y * w, rcond=None)
    return MemFit(float(c[0]), float(c[1]), mine)


# --- predictions -----------------------------------------------------------------------------

def _figure(value, basis: str, how: str, **extra) -> dict:
    return {"value": value, "basis": basis, "how": how, **extra}


def _exact(entries: list[dict], gpu: str, spec: Spec, key: str) -> dict | None:
    hits = [e for e in _ours(entries) if e["gpu"] == gpu and e.get(key) is not None and spec_of_entry(e) == spec]
    return max(hits, key=lambda e: e.get("date") or "") if hits else None


def _encode_seconds(entries: list[dict], gpu: str, spec: Spec) -> dict:
    """Text encoder + VAE once per clip. All T2V models share the same two encoders, so any
    T2V measurement on this GPU with the same number of processes is the basis."""
    if ARCH[spec.model].has_image_input:
        return _figure(None, "unknown", "no I2V encode (CLIP + text encoder + VAE) was measured")
    pool = [e for e in _ours(entries) if e["gpu"] == gpu and e.get("encode_s_per_clip")
            and not ARCH[e["model"]].has_image_input and e.get("dtype", "bf16") == spec.dtype]
    if not pool:
        return _figure(None, "unknown", f"no {spec.dtype} encode was measured on {gpu}")
    px = spec.frames * spec.height * spec.width
    e = min(pool, key=lambda e: (abs(e.get("num_gpus", 1) - spec.num_gpus),
                                 abs(math.log(px / (e["frames"] * e["height"] * e["width"]))),
                                 -(int((e.get("date") or "0").replace("-", "") or 0))))
    epx = e["frames"] * e["height"] * e["width"]
    what = f"text encoder + VAE, measured with {name(e)}"
    if (e["frames"], e["height"], e["width"]) == (spec.frames, spec.height, spec.width) \
            and e.get("num_gpus", 1) == spec.num_gpus:
        return _figure(round(e["encode_s_per_clip"], 2), "measured", what)
    how = f"{what}, scaled by frames x pixels (the VAE's work; the text encoder's share is scaled along)"
    if e.get("num_gpus", 1) != spec.num_gpus:
        how += f"; measured with {e.get('num_gpus', 1)} process(es), taken as the time per process"
    return _figure(round(e["encode_s_per_clip"] * px / epx, 2), "model", how)


def step_seconds(entries: list[dict], gpu: str, spec: Spec, use_exact: bool = True) -> dict:
    if use_exact:
        e = _exact(entries, gpu, spec, "s_per_step")
        if e is not None:
            return _figure(round(e["s_per_step"], 2), "measured", name(e))
    if spec.deepspeed == "zero2-offload":
        return _figure(None, "unknown", "ZeRO-2 with the optimizer on the CPU was never measured")
    fit = fit_time(entries, gpu)
    if fit is None:
        return _figure(None, "unknown", f"no step was measured on {gpu}; run bench/train_step.py --sweep there")
    fit_dtypes = {spec_of_entry(e).dtype for e in fit.entries}
    if spec.dtype not in fit_dtypes:
        return _figure(None, "unknown", f"no {spec.dtype} step was measured on {gpu}")
    one = Spec(**{**spec.__dict__, "mode": "cached", "num_gpus": 1, "deepspeed": None})
    s = fit.seconds(one)
    how = [fit.describe()]
    if spec.deepspeed == "zero3":
        z = _zero3_entry(entries, gpu, spec.model)
        if z is None or z.get("num_gpus", 1) < 2:
            return _figure(None, "unknown", f"no ZeRO-3 run was measured on {gpu}")
        zs = spec_of_entry(z)
        over = z["s_per_step"] - fit.seconds(Spec(**{**zs.__dict__, "mode": "cached", "num_gpus": 1,
                                                      "deepspeed": None}))
        share = lambda g: (g - 1) / g   # noqa: E731  (what each GPU gathers of the others' shards)
        over = max(0.0, over) * share(spec.num_gpus) / share(zs.num_gpus)
        s += over
        how.append(f"+ ZeRO-3 parameter traffic {over:.2f} s (from {name(z)}, scaled by (N-1)/N)")
    if spec.mode == "uncached":
        enc = _encode_seconds(entries, gpu, spec)
        if enc["value"] is None:
            return _figure(None, "unknown", "uncached: " + enc["how"])
        s += enc["value"]
        how.append(f"+ encode every step {enc['value']} s ({enc['basis']})")
    return _figure(round(s, 2), "model", "; ".join(how))


def peak_gib(entries: list[dict], gpu: str, spec: Spec, use_exact: bool = True) -> dict:
    if use_exact:
        e = _exact(entries, gpu, spec, "peak_gib")
        if e is not None:
            return _figure(round(e["peak_gib"], 1), "measured", name(e))
    if spec.deepspeed == "zero2-offload":
        m = memory_terms(spec)
        low = (m["weights"] + m["saved"]) / GIB
        return _figure(None, "unknown", "ZeRO-2 with the optimizer on the CPU was never measured; each GPU holds "
                       f"the whole DiT, so at least {low:.1f} GiB", lower_bound=round(low, 1))
    fit = fit_memory(entries)
    if fit is None:
        return _figure(None, "unknown", "too few measurements with peak memory to fit the model")
    shard = spec.num_gpus if spec.deepspeed == "zero3" else 1
    b = fit.bytes(spec, shard)
    how = (f"weights, LoRA + AdamW state, activations (factor {fit.block_factor:.2f} on one block's saved "
           f"activations, constant {fit.const / GIB:.2f} GiB) fitted on {len(fit.entries)} measurements")
    if spec.deepspeed == "zero3":
        z = _zero3_entry(entries, None, spec.model)
        if z is None or not z.get("peak_gib"):
            return _figure(None, "unknown", "no ZeRO-3 run with peak memory was measured")
        zs = spec_of_entry(z)
        extra = max(0.0, z["peak_gib"] * GIB - fit.bytes(zs, zs.num_gpus))
        b += extra
        how += f"; + ZeRO-3 gather buffers {extra / GIB:.1f} GiB (from {name(z)})"
    return _figure(round(b / GIB, 1), "model", how)


# --- the model's error on what it was not fitted on -------------------------------------------

def check(entries: list[dict] | None = None) -> list[dict]:
    """Predict every ``fit`` and ``held_out`` entry with the model alone (never the entry
    itself): the fit residuals and the held-out error, per entry."""
    entries = load() if entries is None else entries
    rows = []
    for e in _ours(entries):
        if e.get("role") not in ("fit", "held_out"):
            continue
        s = spec_of_entry(e)
        t = step_seconds(entries, e["gpu"], s, use_exact=False)
        m = peak_gib(entries, e["gpu"], s, use_exact=False)
        row = {"gpu": e["gpu"], "entry": s.describe(), "role": e["role"], "tokens": s.tokens,
               "s_measured": e.get("s_per_step"), "s_model": t["value"], "gib_measured": e.get("peak_gib"),
               "gib_model": m["value"]}
        for k, meas, mod in (("s_err_pct", row["s_measured"], t["value"]), ("gib_err_pct", row["gib_measured"], m["value"])):
            row[k] = round(100 * (mod - meas) / meas, 1) if meas and mod is not None else None
        rows.append(row)
    return rows


def held_out_summary(rows: list[dict], gpu: str) -> dict:
    mine = [r for r in rows if r["role"] == "held_out" and r["gpu"] == gpu]
    out = {"gpu": gpu, "entries": len(mine)}
    for k, label in (("s_err_pct", "time"), ("gib_err_pct", "memory")):
        errs = [abs(r[k]) for r in mine if r[k] is not None]
        out[label] = ({"n": len(errs), "median_abs_pct": round(statistics.median(errs), 1),
                       "max_abs_pct": round(max(errs), 1)} if errs else {"n": 0})
    return out


# --- the estimate for a run ------------------------------------------------------------------

def estimate(cfg, num_gpus: int = 1, gpu: str | None = None, entries: list[dict] | None = None) -> dict | None:
    entries = load() if entries is None else entries
    ref = reference_gpu(entries)
    if ref is None:
        return None
    target = gpu or ref
    spec = spec_of_config(cfg, num_gpus)
    if spec.model not in ARCH:
        t = _figure(None, "unknown", f"no shapes known for model {spec.model}")
        return {"gpu": target, "gpu_assumed": gpu is None, "s_per_step": t, "peak_gib": t,
                "encode_s_per_clip": None, "config": spec.__dict__}
    w = work(spec)
    out = {
        "gpu": target, "gpu_assumed": gpu is None, "config": {**spec.__dict__, "tokens": spec.tokens},
        "s_per_step": step_seconds(entries, target, spec),
        "peak_gib": peak_gib(entries, target, spec),
        "encode_s_per_clip": _encode_seconds(entries, target, spec) if spec.mode == "cached" else None,
        "work": {"forward_tflop": round(w["forward_flops"] / 1e12, 1),
                 "attention_share_of_forward": round(w["attention_share"], 2)},
    }
    fit = fit_time(entries, target)
    if fit is not None and not fit.reference:
        one = Spec(**{**spec.__dict__, "mode": "cached", "num_gpus": 1, "deepspeed": None})
        w1 = work(one)
        out["model_parts_s"] = {"linear": round(fit.coef[0] * w1["linear"], 3),
                                "elementwise": round(fit.coef[1] * w1["elementwise"], 3),
                                "attention": round(fit.coef[2] * w1["attention"], 3),
                                "launch_floor": round(fit.floor * w1["launch"], 3)}
    out["held_out"] = held_out_summary(check(entries), target)
    if getattr(cfg, "levers", "none") == "auto" and spec.deepspeed is None:
        out["levers_auto"] = tuned(entries, target, spec)
    return out


def _value(fig: dict, unit: str, fmt: str = "{}") -> str:
    if fig["value"] is None:
        lb = f" (at least {fig['lower_bound']} {unit})" if fig.get("lower_bound") is not None else ""
        return f"unknown{lb} [{fig['how']}]"
    return f"{fmt.format(fig['value'])} {unit} [{fig['basis']}: {fig['how']}]"


def describe(est: dict | None, steps: int | None, clips: int) -> list[str]:
    if est is None:
        return ["no measured figures (wandata/train/measured.json); run bench/train_step.py --sweep on your GPU to add some"]
    c = est["config"]
    gpu = est["gpu"] + (" (no GPU here: figures for the best-measured GPU)" if est["gpu_assumed"] else "")
    ds = f", {c['num_gpus']} GPUs, DeepSpeed {c['deepspeed']}" if c.get("deepspeed") else ", 1 GPU"
    lines = [f"for {gpu}: {c['model']}, {c['frames']}x{c['height']}x{c['width']} ({c.get('tokens')} tokens), "
             f"LoRA rank {c['rank']}, gradient checkpointing {'on' if c['gc'] else 'off'}, {c['dtype']}, "
             f"{c['mode']}{ds}"]
    if est.get("work"):
        lines.append(f"work: {est['work']['forward_tflop']} TFLOP forward per clip, attention "
                     f"{est['work']['attention_share_of_forward']:.0%} of it")
    lines.append("step: " + _value(est["s_per_step"], "s"))
    lines.append("peak GPU memory: " + _value(est["peak_gib"], "GiB per GPU"))
    if "levers_auto" in est:
        t = est["levers_auto"]
        lines.append("the figures above are the untuned path (--levers none); " + (
            f"with the speed levers (auto, the default), measured: step {t['s_per_step']} s, peak "
            f"{t['peak_gib']} GiB [{t['how']}; {t['levers']}]" if t else
            "levers auto was not measured for this configuration on this GPU: the untuned step is its upper bound"))
    s = est["s_per_step"]
    t = est.get("levers_auto")
    if steps and t:
        lines.append(f"training: {steps} steps, ~{steps * t['s_per_step'] / 60:.0f} min with the levers [measured] "
                     + (f"(~{steps * s['value'] / 60:.0f} min untuned)" if s["value"] is not None else ""))
    elif steps and s["value"] is not None:
        lines.append(f"training: {steps} steps, ~{steps * s['value'] / 60:.0f} min [{s['basis']}]")
    enc = est.get("encode_s_per_clip")
    if enc and enc["value"] is not None:
        lines.append(f"encode once: {clips} clips, ~{clips * enc['value'] / 60:.1f} min [{enc['basis']}: {enc['how']}] "
                     "(skipped for clips already in the cache)")
    h = est.get("held_out") or {}
    if h.get("time", {}).get("n"):
        t, m = h["time"], h["memory"]
        mem = (f"; peak memory median {m['median_abs_pct']} %, at most {m['max_abs_pct']} %" if m.get("n") else "")
        lines.append(f"model check on {h['entries']} held-back {h['gpu']} measurements (not fitted on): step time "
                     f"off by median {t['median_abs_pct']} %, at most {t['max_abs_pct']} %{mem} "
                     "(table: python -m wandata.train.estimate)")
    else:
        lines.append(f"model check: no held-back measurement on {est['gpu']}; its error there is unknown")
    return lines


def table(rows: list[dict]) -> list[str]:
    def f(v, spec):
        return "-" if v is None else format(v, spec)
    out = [f"| GPU | configuration | role | tokens | s/step measured | model | error | peak GiB measured | model | error |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["gpu"], r["role"] != "fit", r["entry"])):
        out.append(f"| {r['gpu']} | {r['entry']} | {r['role']} | {r['tokens']} | {f(r['s_measured'], '.3f')} | "
                   f"{f(r['s_model'], '.2f')} | {f(r['s_err_pct'], '+.1f')} % | {f(r['gib_measured'], '.2f')} | "
                   f"{f(r['gib_model'], '.1f')} | {f(r['gib_err_pct'], '+.1f')} % |")
    return out


def main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(description="The estimator's fit and its error on held-back measurements.")
    ap.add_argument("--measured", type=Path, default=MEASURED)
    args = ap.parse_args(argv)
    entries = load(args.measured)
    rows = check(entries)
    gpus = sorted({r["gpu"] for r in rows})
    for g in gpus:
        fit = fit_time(entries, g)
        print(f"{g}: {fit.describe() if fit else 'no time model'}")
    mem = fit_memory(entries)
    if mem:
        print(f"memory: block factor {mem.block_factor:.3f}, constant {mem.const / GIB:.2f} GiB, "
              f"fitted on {len(mem.entries)} measurements")
    print()
    print("\n".join(table(rows)))
    print()
    for g in gpus:
        h = held_out_summary(rows, g)
        print(f"{g}: held out {h['entries']}: time {h['time']}, memory {h['memory']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
