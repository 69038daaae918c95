"""Speed levers of the training step, each chosen at run time and recorded with the run.

Every lever is a setting of ``TrainConfig`` (``auto`` by default) with a flag of
``wandata train`` to force it. ``levers = "none"`` turns every ``auto`` lever off: the run is
then the untuned path (DiffSynth's own way of running the same code). On a machine without a
CUDA GPU every lever resolves to off, and forcing a GPU-only one there is refused.

* ``checkpointing`` (``--gradient-checkpointing``): activation checkpointing only where memory
  needs it, each block in one of three ways: whole (the block's forward runs again in
  backward), selective (its attention outputs are kept and everything else recomputed: the
  attention, about half a 14B block's forward at 81x480x832, is never run twice, for two
  activations of ``tokens x dim`` per block) or none. ``auto`` asks the estimator
  (``wandata.train.estimate``) for the peak with every block whole and with none, and picks
  the mix that saves the most recompute within 85 % of the GPU memory this process can have;
  per byte kept, selective saves more than none, so it comes first. ``on``: every block
  whole; ``selective``: every block selective; ``off``: none. Selective needs the attention
  to be PyTorch's SDPA (an installed flash_attn / SageAttention is an opaque call the policy
  cannot keep), which is what DiffSynth calls when neither is installed.
* ``compile``: ``torch.compile`` of the DiT block's forward (regional: one function, compiled
  once for all blocks, ``dynamic=False``; a new bucket shape compiles once more, never per
  batch). The checkpoint wrapper sits outside the compiled region, so checkpointed blocks
  recompute through the same compiled code.
* ``attention``: the scaled-dot-product backend. DiffSynth 2.1.12's ``wan_video_dit.flash_attention``
  calls ``flash_attn`` / ``flash_attn_interface`` / SageAttention when one is installed, else
  ``torch.nn.functional.scaled_dot_product_attention``; with none installed (as on our GPU
  image) PyTorch picks the kernel. ``auto`` probes cuDNN, flash and memory-efficient attention
  on the run's head shape (forward + backward, checked against the math kernel) and puts the
  fastest first; it holds for the whole loop, backward and recompute included.
* ``fused_adamw``: ``torch.optim.AdamW(fused=True)``: one kernel for the whole update. The
  LoRA weights and AdamW's moments stay in the model dtype (bf16), as DiffSynth keeps them
  (``upcast_dtype=pipe.torch_dtype``): the same numbers as the untuned path, half the memory of
  fp32 state.
* ``lazy_loss``: the loss is read back to the host every ``LOG_EVERY`` steps (and before each
  checkpoint) instead of with ``.item()`` at every step, which waits for the GPU to drain.
* ``prefetch``: the next cached clips are read by a background thread into pinned memory and
  copied with ``non_blocking``; the step never waits on the disk.
* ``cudnn_benchmark``: ``torch.backends.cudnn.benchmark`` during encode and training: the VAE's
  3-D convolutions (and the DiT's patch embedding) get cuDNN's fastest algorithm for the shape.
  The VAE runs untiled in both paths (``tiled: False``, as DiffSynth's training does).

Phase 2 (DeepSpeed) keeps checkpointing, compile and the fused optimizer as DiffSynth has them
under ``auto``: ZeRO partitions the parameters and owns the optimizer.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import queue
import sys
import threading
import time
from dataclasses import dataclass, field

import torch

NAMES = ("checkpointing", "compile", "attention", "fused_adamw", "lazy_loss", "prefetch", "cudnn_benchmark")
CHOICES = {
    "levers": ("auto", "none"),
    "checkpointing": ("auto", "on", "selective", "off"),
    "compile": ("auto", "on", "off"),
    "attention": ("auto", "default", "cudnn", "flash", "efficient"),
    "fused_adamw": ("auto", "on", "off"),
    "lazy_loss": ("auto", "on", "off"),
    "prefetch": ("auto", "on", "off"),
    "cudnn_benchmark": ("auto", "on", "off"),
}
# The command line's name of each setting (wandata/cli/train.py).
FLAGS = {"levers": "--levers", "checkpointing": "--gradient-checkpointing", "compile": "--compile",
         "attention": "--attention", "fused_adamw": "--fused-adamw", "lazy_loss": "--lazy-loss",
         "prefetch": "--prefetch", "cudnn_benchmark": "--cudnn-benchmark"}
GPU_ONLY = ("compile", "attention", "fused_adamw", "prefetch", "cudnn_benchmark")
MEMORY_SHARE = 0.85     # of the memory this process can have: the rest is the estimator's margin
LOG_EVERY = 25          # lazy_loss: steps between reads of the loss
PREFETCH_DEPTH = 2


class LeverError(Exception):
    """A lever cannot be used as asked; the message names its flag."""


@dataclass
class Levers:
    """What a run uses. ``checkpoint_blocks`` counts the blocks (from the first) that recompute
    whole, ``selective_blocks`` the blocks after them that keep their attention outputs;
    ``checkpoint_by`` is ``diffsynth`` (DiffSynth's own flag, every block or none) or ``wandata``
    (our per-block wrapper)."""
    device: str = "cpu"
    num_blocks: int | None = None
    checkpoint_by: str = "diffsynth"
    checkpoint_blocks: int | None = None
    selective_blocks: int = 0
    gradient_checkpointing: bool = True     # the flag handed to DiffSynth's model_fn
    compile: bool = False
    attention: str = "default"
    fused_adamw: bool = False
    lazy_loss: bool = False
    prefetch: bool = False
    cudnn_benchmark: bool = False
    why: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        if self.checkpoint_by == "diffsynth":
            ck = "every block (DiffSynth's flag)" if self.gradient_checkpointing else "off"
        else:
            ck = f"{self.checkpoint_blocks} of {self.num_blocks} blocks whole"
            if self.selective_blocks:
                ck += f", {self.selective_blocks} selective"
        onoff = lambda v: "on" if v else "off"   # noqa: E731
        parts = [f"checkpointing {ck}", f"compile {onoff(self.compile)}", f"attention {self.attention}",
                 f"fused AdamW {onoff(self.fused_adamw)}", f"lazy loss {onoff(self.lazy_loss)}",
                 f"prefetch {onoff(self.prefetch)}", f"cudnn benchmark {onoff(self.cudnn_benchmark)}"]
        return "levers: " + ", ".join(parts)


def _cuda(device) -> bool:
    return str(device).startswith("cuda")


def check(cfg, device) -> None:
    """Refuse (``LeverError``, naming the flag) a value outside its choices, or a GPU-only lever
    forced on where there is no CUDA device."""
    for name in ("levers", *NAMES):
        v = getattr(cfg, name)
        if v not in CHOICES[name]:
            raise LeverError(f"{FLAGS[name]} {v!r}: choose {', '.join(CHOICES[name])}")
    if not _cuda(device):
        for name in GPU_ONLY:
            v = getattr(cfg, name)
            if v not in ("auto", "off", "default"):
                raise LeverError(f"{FLAGS[name]} {v}: needs a CUDA GPU, and this run is on {device} "
                                 f"(leave it at auto, which is off here)")
    if cfg.checkpointing == "on" and not cfg.gradient_checkpointing:
        raise LeverError("--gradient-checkpointing on contradicts --no-gradient-checkpointing")


def off(cfg, device="cpu", num_blocks: int | None = None) -> Levers:
    """The untuned path: today's behaviour, DiffSynth's own checkpointing flag."""
    return Levers(device=str(device), num_blocks=num_blocks, checkpoint_by="diffsynth",
                  checkpoint_blocks=(num_blocks if cfg.gradient_checkpointing else 0) if num_blocks else None,
                  gradient_checkpointing=bool(cfg.gradient_checkpointing),
                  why={n: "off" for n in NAMES})


def resolve(cfg, device, free_bytes: int | None = None, probe: bool = True) -> Levers:
    """The levers this run uses on ``device``. ``free_bytes``: the GPU memory this process can
    have (default: free + what it already holds)."""
    from wandata.train import estimate as E

    check(cfg, device)
    arch = E.ARCH.get(cfg.model)
    n = arch.num_layers if arch else None
    lv = off(cfg, device, n)

    def want(name) -> str:
        v = getattr(cfg, name)
        if v == "auto":
            return "auto" if cfg.levers == "auto" else "off"
        return v

    cuda = _cuda(device)
    phase2 = not cfg.in_process()   # under DeepSpeed / accelerate (one-gpu trains as phase 1)
    # --- checkpointing
    forced = cfg.checkpointing
    if not cfg.gradient_checkpointing:
        lv.why["checkpointing"] = "off (--no-gradient-checkpointing)"
    elif cfg.gradient_checkpointing_offload:
        lv.why["checkpointing"] = "every block, DiffSynth's (--gradient-checkpointing-offload)"
    elif forced == "off":
        lv.gradient_checkpointing, lv.checkpoint_blocks = False, 0
        lv.why["checkpointing"] = "off (forced)"
    elif forced == "on":
        lv.why["checkpointing"] = "every block (forced)"
    elif forced == "selective":
        why = _selective_refused()
        if why:
            raise LeverError(f"--gradient-checkpointing selective: {why}; use on or auto")
        lv.checkpoint_by, lv.checkpoint_blocks, lv.gradient_checkpointing = "wandata", 0, False
        lv.selective_blocks = n or 0
        lv.why["checkpointing"] = "every block selective (forced)"
    elif want("checkpointing") == "off":
        lv.why["checkpointing"] = "every block, DiffSynth's (levers none)"
    elif not cuda or phase2 or arch is None:
        lv.why["checkpointing"] = "every block: " + ("no GPU" if not cuda else "phase 2 (DeepSpeed)" if phase2
                                                      else f"no memory model for {cfg.model}")
    else:
        if free_bytes is None:
            free, _ = torch.cuda.mem_get_info(torch.device(device))
            free_bytes = free + torch.cuda.memory_reserved(torch.device(device))
        plan = plan_checkpointing(cfg, free_bytes)
        if plan is not None:
            lv.checkpoint_by, lv.gradient_checkpointing = "wandata", False
            lv.checkpoint_blocks, lv.selective_blocks = plan["whole"], plan["selective"]
            lv.why["checkpointing"] = plan["why"]
        else:
            lv.why["checkpointing"] = "every block: no memory estimate (measured.json has too few figures)"
    # --- the GPU-only ones
    for name in ("compile", "fused_adamw", "cudnn_benchmark", "prefetch"):
        w = want(name)
        if w == "on":
            setattr(lv, name, True)
            lv.why[name] = "on (forced)"
        elif w == "off":
            lv.why[name] = "off" + (" (forced)" if getattr(cfg, name) == "off" else " (levers none)")
        elif not cuda:
            lv.why[name] = "off: no GPU"
        elif phase2 and name in ("compile", "fused_adamw"):
            lv.why[name] = "off: phase 2 (DeepSpeed owns the parameters and the optimizer)"
        else:
            setattr(lv, name, True)
            lv.why[name] = "on (auto)"
    if lv.compile and lv.checkpoint_by == "diffsynth" and lv.gradient_checkpointing \
            and not cfg.gradient_checkpointing_offload:
        # our wrapper checkpoints outside the compiled region; DiffSynth's would wrap it the same way
        lv.checkpoint_by, lv.checkpoint_blocks, lv.gradient_checkpointing = "wandata", n, False
    # --- lazy loss: not GPU-only (it changes when the host reads the loss, not what is computed)
    w = want("lazy_loss")
    if w == "on":
        lv.lazy_loss, lv.why["lazy_loss"] = True, "on (forced)"
    elif w == "off":
        lv.why["lazy_loss"] = "off (forced)" if cfg.lazy_loss == "off" else "off (levers none)"
    else:
        lv.lazy_loss = cuda
        lv.why["lazy_loss"] = "on (auto)" if cuda else "off: no GPU"
    # --- attention
    w = want("attention")
    if w in ("cudnn", "flash", "efficient"):
        lv.attention, lv.why["attention"] = w, f"{w} (forced)"
    elif w == "auto" and cuda:
        heads = arch.num_heads if arch else 12
        head_dim = arch.dim // arch.num_heads if arch else 128
        tokens = E.latent_tokens(*E.run_shape(cfg)) if arch else 8192
        if probe:
            best, times = probe_attention(device, heads, head_dim, min(tokens, 32760))
            lv.attention = best
            lv.why["attention"] = f"{best}: probe (ms fwd+bwd at {min(tokens, 32760)} tokens) " + \
                ", ".join(f"{k} {v}" for k, v in times.items())
        else:
            lv.why["attention"] = "default (not probed)"
    else:
        lv.why["attention"] = "default (PyTorch's choice)" + ("" if w != "off" else
                                                              " (levers none)" if cfg.attention == "auto" else "")
    return lv


def blocks_to_checkpoint(cfg, free_bytes: int) -> tuple[int | None, dict]:
    """Whole-block checkpointing alone: the fewest blocks to checkpoint whose estimated peak
    fits ``MEMORY_SHARE`` of ``free_bytes``, and the estimated peak (bytes) for each count."""
    terms = memory_plan_terms(cfg)
    if terms is None:
        return None, {}
    on, per_none, _, n, _ = terms
    peaks = {k: on + (n - k) * per_none for k in range(n + 1)}
    budget = MEMORY_SHARE * free_bytes
    for k in range(n + 1):
        if peaks[k] <= budget:
            return k, peaks
    return n, peaks


def _selective_refused() -> str:
    """Why selective checkpointing cannot run here ('' when it can)."""
    try:
        from diffsynth.models import wan_video_dit as w
    except Exception as e:   # noqa: BLE001 - the reason is reported, not hidden
        return f"DiffSynth's Wan DiT cannot be imported ({e})"
    found = [f for f in ("FLASH_ATTN_3_AVAILABLE", "FLASH_ATTN_2_AVAILABLE", "SAGE_ATTN_AVAILABLE")
             if getattr(w, f, False)]
    if found:
        return (f"DiffSynth calls {found[0].rsplit('_', 1)[0].lower()} instead of PyTorch's SDPA, an opaque "
                "kernel whose outputs the policy cannot keep")
    return ""


def memory_plan_terms(cfg):
    """(peak with every block whole, bytes each block adds without checkpointing, bytes each
    adds selective, blocks, share of a block's forward that is attention), or None."""
    from wandata.train import estimate as E

    fit = E.fit_memory(E.load())
    if fit is None:
        return None
    spec = E.spec_of_config(cfg)
    arch = E.ARCH[cfg.model]
    n = arch.num_layers
    on = fit.bytes(dataclasses.replace(spec, gc=True))
    none = fit.bytes(dataclasses.replace(spec, gc=False))
    b = E.DTYPE_BYTES.get(spec.dtype, 2)
    # kept per selective block: the self- and cross-attention outputs (tokens x dim each) and
    # their fp32 log-sum-exp rows (tokens x heads each)
    selective = 2 * spec.tokens * (arch.dim * b + arch.num_heads * 4)
    share = E.work(dataclasses.replace(spec, gc=False))["attention_share"]
    return on, (none - on) / n, selective, n, share


def plan_checkpointing(cfg, free_bytes: int) -> dict | None:
    """How many blocks to checkpoint whole and how many selective (the rest: none) so that the
    estimated peak fits ``MEMORY_SHARE`` of ``free_bytes`` with the least recompute. A block
    left out saves one block forward; a selective one saves its attention share of it."""
    terms = memory_plan_terms(cfg)
    if terms is None:
        return None
    on, per_none, per_sel, n, share = terms
    budget = MEMORY_SHARE * free_bytes
    refused = _selective_refused()
    best = None
    for none in range(n + 1):
        room = budget - on - none * per_none
        if room < 0:
            break
        sel = 0 if refused else min(n - none, int(room // per_sel))
        saved = none + sel * share
        if best is None or saved > best[0] + 1e-9:
            best = (saved, none, sel)
    if best is None:
        none, sel = 0, 0
    else:
        _, none, sel = best
    whole = n - none - sel
    peak = on + none * per_none + sel * per_sel
    why = (f"{whole} of {n} blocks whole, {sel} selective, {none} none: estimated peak {peak / 2**30:.1f} GiB "
           f"within {MEMORY_SHARE:.0%} of {free_bytes / 2**30:.1f} GiB (every block whole {on / 2**30:.1f}, "
           f"none {(on + n * per_none) / 2**30:.1f}; selective keeps {per_sel / 2**30:.2f} GiB a block and "
           f"skips {share:.0%} of its recompute)")
    if best is None:
        why = f"every block whole: estimated peak {on / 2**30:.1f} GiB is over {MEMORY_SHARE:.0%} of " \
              f"{free_bytes / 2**30:.1f} GiB (it may not fit)"
    if refused:
        why += f"; selective not used: {refused}"
    return {"whole": whole, "selective": sel, "none": none, "peak": peak, "why": why}


# --- attention --------------------------------------------------------------------------------

def _backend(name: str):
    from torch.nn.attention import SDPBackend
    return {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
            "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}[name]


def probe_attention(device, heads: int, head_dim: int, tokens: int, reps: int = 2) -> tuple[str, dict]:
    """Time forward + backward of each SDPA backend on the run's shape (bf16), after checking
    it against the math kernel on a small input; the fastest that runs and agrees wins."""
    import torch.nn.functional as F
    from torch.nn.attention import sdpa_kernel

    dev = torch.device(device)
    g = torch.Generator(device=dev).manual_seed(0)
    small = [torch.randn(1, heads, 256, head_dim, device=dev, dtype=torch.bfloat16, generator=g) for _ in range(3)]
    with sdpa_kernel([_backend("math")]):
        ref = F.scaled_dot_product_attention(*[t.float() for t in small])
    big = [torch.randn(1, heads, tokens, head_dim, device=dev, dtype=torch.bfloat16, generator=g).requires_grad_()
           for _ in range(3)]
    times: dict[str, object] = {}
    for name in ("cudnn", "flash", "efficient"):
        try:
            with sdpa_kernel([_backend(name)]):
                out = F.scaled_dot_product_attention(*small)
                err = (out.float() - ref).abs().max().item()
                if not err < 2e-2:
                    times[name] = f"wrong by {err:.3g}"
                    continue
                for i in range(1 + reps):
                    if i == 1:
                        torch.cuda.synchronize(dev)
                        t = time.perf_counter()
                    F.scaled_dot_product_attention(*big).sum().backward()
                torch.cuda.synchronize(dev)
                times[name] = round((time.perf_counter() - t) / reps * 1e3, 1)
        except RuntimeError as e:   # "No available kernel": the backend does not take this shape here
            times[name] = f"unavailable ({str(e).splitlines()[0][:60]})"
    ok = {k: v for k, v in times.items() if isinstance(v, float)}
    del big, small
    return (min(ok, key=ok.get) if ok else "default"), times


@contextlib.contextmanager
def context(lv: Levers):
    """Around the whole loop (forward, backward and recompute run inside): the attention
    backend first in SDPA's priority, cuDNN benchmark, and dynamo's settings for compile."""
    with contextlib.ExitStack() as stack:
        if lv.attention != "default":
            from torch.nn.attention import sdpa_kernel
            order = [lv.attention] + [b for b in ("flash", "efficient", "math") if b != lv.attention]
            backends = [_backend(b) for b in order]
            try:
                stack.enter_context(sdpa_kernel(backends, set_priority=True))
            except TypeError:   # a torch without priorities: the chosen one and its fallbacks only
                stack.enter_context(sdpa_kernel(backends))
        if lv.cudnn_benchmark:
            old = torch.backends.cudnn.benchmark
            torch.backends.cudnn.benchmark = True
            stack.callback(setattr, torch.backends.cudnn, "benchmark", old)
        if lv.compile:
            import torch._dynamo.config as dc
            for key, value in (("recompile_limit", 64), ("cache_size_limit", 64), ("accumulated_recompile_limit", 512)):
                if hasattr(dc, key):
                    old_v = getattr(dc, key)
                    setattr(dc, key, value)   # one compile per bucket shape, and buckets can be many
                    stack.callback(setattr, dc, key, old_v)
        yield


# --- the DiT ----------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _compiled(forward):
    # One compiled function for every block (the parameters are inputs, not constants), so 40
    # blocks compile once per shape.
    return torch.compile(forward, dynamic=False)


_SDPA_OPS = ("_scaled_dot_product_cudnn_attention", "_scaled_dot_product_flash_attention",
             "_scaled_dot_product_efficient_attention", "_scaled_dot_product_flash_attention_for_cpu")


@functools.lru_cache(maxsize=None)
def _keep_attention():
    """Selective checkpointing's policy: SDPA's outputs are saved, every other op recomputed."""
    from torch.utils.checkpoint import CheckpointPolicy, create_selective_checkpoint_contexts

    keep = {getattr(torch.ops.aten, name).default for name in _SDPA_OPS if hasattr(torch.ops.aten, name)}

    def policy(ctx, op, *args, **kwargs):
        return CheckpointPolicy.MUST_SAVE if op in keep else CheckpointPolicy.PREFER_RECOMPUTE
    return functools.partial(create_selective_checkpoint_contexts, policy)


@functools.lru_cache(maxsize=None)
def _selective(forward, compile_: bool):
    # Under torch.compile the checkpoint must sit inside the compiled region for the policy to
    # reach the partitioner; eager, the same function works as is.
    def fn(block, *args, **kwargs):
        return torch.utils.checkpoint.checkpoint(forward, block, *args, use_reentrant=False,
                                                 context_fn=_keep_attention(), **kwargs)
    return torch.compile(fn, dynamic=False) if compile_ else fn


def _block_forward(block, fn, whole: bool):
    # A selective block's ``fn`` checkpoints inside itself (``_selective``): it is called as is.
    if not whole:
        return functools.partial(fn, block)

    def forward(*args, **kwargs):
        return torch.utils.checkpoint.checkpoint(fn, block, *args, use_reentrant=False, **kwargs)
    return forward


def apply(module, lv: Levers) -> None:
    """Set the module's checkpointing flag and, for ``checkpoint_by == "wandata"`` or compile,
    give each DiT block its forward (an instance attribute: parameters, names and the LoRA's
    state dict are untouched)."""
    module.use_gradient_checkpointing = lv.gradient_checkpointing
    dit = module.pipe.dit
    if dit is None or (lv.checkpoint_by != "wandata" and not lv.compile):
        return
    blocks = list(dit.blocks)
    if not blocks:
        return
    cls_forward = type(blocks[0]).forward
    fn = _compiled(cls_forward) if lv.compile else cls_forward
    k, s = 0, 0
    if lv.checkpoint_by == "wandata":
        k = len(blocks) if lv.checkpoint_blocks is None else lv.checkpoint_blocks
        s = lv.selective_blocks or 0
    for i, block in enumerate(blocks):
        if i < k:
            block.forward = _block_forward(block, fn, whole=True)
        elif i < k + s:
            block.forward = _block_forward(block, _selective(cls_forward, lv.compile), whole=False)
        else:
            block.forward = _block_forward(block, fn, whole=False)


def unapply(module) -> None:
    dit = module.pipe.dit
    for block in list(getattr(dit, "blocks", [])):
        block.__dict__.pop("forward", None)


def make_optimizer(params, lv: Levers, lr: float, weight_decay: float):
    kwargs = {"fused": True} if lv.fused_adamw else {}
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **kwargs)


# --- inputs -----------------------------------------------------------------------------------

def to_device(data, device, dtype=None, non_blocking: bool = False):
    """DiffSynth's ``transfer_data_to_device`` (floats to the model dtype), with non-blocking copies."""
    if isinstance(data, torch.Tensor):
        float_ = data.dtype in (torch.float, torch.float16, torch.bfloat16)
        return data.to(device, dtype=dtype if (dtype is not None and float_) else None, non_blocking=non_blocking)
    if isinstance(data, tuple):
        return tuple(to_device(x, device, dtype, non_blocking) for x in data)
    if isinstance(data, list):
        return [to_device(x, device, dtype, non_blocking) for x in data]
    if isinstance(data, dict):
        return {k: to_device(v, device, dtype, non_blocking) for k, v in data.items()}
    return data


def pin(data):
    if isinstance(data, torch.Tensor):
        return data.pin_memory() if data.device.type == "cpu" else data
    if isinstance(data, (tuple, list)):
        return type(data)(pin(x) for x in data)
    if isinstance(data, dict):
        return {k: pin(v) for k, v in data.items()}
    return data


class Prefetcher:
    """``load(x)`` for each ``x`` of ``items``, ``depth`` ahead, on a background thread, pinned.
    An exception raised by ``load`` is raised again where the item is taken."""

    _END = object()

    def __init__(self, items, load, depth: int = PREFETCH_DEPTH, pinned: bool = True):
        self.q: queue.Queue = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._run, args=(iter(items), load, pinned), daemon=True,
                                  name="wandata-prefetch")
        self.t.start()

    def _run(self, items, load, pinned):
        try:
            for x in items:
                if self.stop.is_set():
                    return
                got = load(x)
                self._put((x, pin(got) if pinned else got, None))
        except BaseException as e:   # noqa: BLE001 - handed to the consumer, raised there
            self._put((None, None, e))
            return
        self._put(self._END)

    def _put(self, v):
        while not self.stop.is_set():
            try:
                self.q.put(v, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self):
        while True:
            v = self.q.get()
            if v is self._END:
                return
            x, got, err = v
            if err is not None:
                raise err
            yield x, got

    def close(self):
        self.stop.set()
        self.t.join(timeout=5)


class LossLog:
    """Losses kept on the device and read in one go every ``every`` steps (lazy), or at once."""

    def __init__(self, lazy: bool, every: int = LOG_EVERY):
        self.lazy, self.every = lazy, every
        self.pending: list = []
        self.t0 = time.perf_counter()

    def add(self, step: int, loss, reduce=lambda x: x) -> list[tuple[int, float, float]]:
        """Returns ``(step, loss, seconds)`` rows now readable (empty while deferred)."""
        self.pending.append((step, reduce(loss.detach().float())))
        if not self.lazy:
            return self.flush()
        return self.flush() if len(self.pending) >= self.every else []

    def flush(self) -> list[tuple[int, float, float]]:
        if not self.pending:
            return []
        values = torch.stack([v.reshape(()) for _, v in self.pending]).tolist()   # the one host sync
        now = time.perf_counter()
        dt = (now - self.t0) / len(self.pending)
        rows = [(s, float(v), dt) for (s, _), v in zip(self.pending, values)]
        self.pending, self.t0 = [], now
        return rows


def announce(lv: Levers, file=None) -> None:
    print(lv.describe(), file=file or sys.stderr, flush=True)
    for k, v in lv.why.items():
        print(f"  {k}: {v}", file=file or sys.stderr, flush=True)
