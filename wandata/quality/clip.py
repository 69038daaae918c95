"""CLIP on clips: image embeddings, the LAION aesthetic score, text queries and text filters
(docs/quality.md, "CLIP"). Optional: ``pip install 'wandata[clip]'`` (open_clip, faiss).

Each kept clip is embedded once: ``FRAMES`` frames (first, middle, last) decoded with PyAV,
encoded by the CLIP image tower in batches (on the GPU when there is one), mean-pooled and
normalised. The vectors live in ``DATASET/clip_embeddings.parquet``, one row per clip keyed by
its id, the identity of its content (the decoded-picture digest ingest's verify stores) and the
model; a rerun embeds only clips that are new or changed, or all of them for another model.
"""
from __future__ import annotations

import hashlib
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from wandata import atomic
from wandata.confine import inside

EMBEDDINGS_NAME = "clip_embeddings.parquet"
FRAMES = 3
DEFAULT_MODEL, DEFAULT_PRETRAINED = "ViT-L-14", "openai"   # the aesthetic head's embeddings
# The improved aesthetic predictor (christophschuhmann/improved-aesthetic-predictor): an MLP on
# normalised CLIP ViT-L/14 image embeddings, trained on SAC + LAION-logos + AVA ratings (1-10).
AESTHETIC_FILE = "sac+logos+ava1-l14-linearMSE.pth"
AESTHETIC_URL = ("https://github.com/christophschuhmann/improved-aesthetic-predictor/raw/main/"
                 "sac%2Blogos%2Bava1-l14-linearMSE.pth")


class ClipError(RuntimeError):
    """What failed and what to do, for the command to print."""


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "wandata" / "clip"


def _open_clip():
    try:
        import open_clip
    except ImportError:
        raise ClipError("open_clip is not installed; install it with: pip install 'wandata[clip]'") from None
    return open_clip


def pick_device(device: str) -> str:
    import torch
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ClipError(f"--device {device}: no CUDA device is available; use --device cpu")
    return device


# --- the model ---------------------------------------------------------------------------------

class Embedder:
    """One open_clip model: images and texts to normalised embeddings, in batches. Counts what
    it encodes (``frames_encoded``), so a rerun that reuses the stored vectors shows 0."""

    def __init__(self, model, preprocess, tokenizer, device: str, batch_size: int = 48, key: str = ""):
        self.model, self.preprocess, self.tokenizer = model.eval(), preprocess, tokenizer
        self.device, self.batch_size, self.key = device, batch_size, key
        self.frames_encoded = 0
        self.texts_encoded = 0

    @property
    def dim(self) -> int:
        return int(self.model.text_projection.shape[1]) if getattr(self.model, "text_projection", None) is not None \
            else int(self.model.visual.output_dim)

    def images(self, pictures) -> np.ndarray:
        """PIL images -> (n, dim) float32, each row of unit length."""
        import torch
        out = []
        for lo in range(0, len(pictures), self.batch_size):
            batch = torch.stack([self.preprocess(p) for p in pictures[lo:lo + self.batch_size]]).to(self.device)
            with torch.inference_mode(), torch.autocast(self.device.split(":")[0], enabled=self.device != "cpu"):
                v = self.model.encode_image(batch).float()
            out.append(torch.nn.functional.normalize(v, dim=-1).cpu().numpy())
            self.frames_encoded += len(batch)
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def texts(self, prompts: list[str]) -> np.ndarray:
        import torch
        tokens = self.tokenizer(list(prompts)).to(self.device)
        with torch.inference_mode():
            v = self.model.encode_text(tokens).float()
        self.texts_encoded += len(prompts)
        return torch.nn.functional.normalize(v, dim=-1).cpu().numpy()


def load_embedder(model: str = DEFAULT_MODEL, pretrained: str | None = DEFAULT_PRETRAINED, *,
                  weights: Path | None = None, cache_dir: Path | None = None, device: str = "auto",
                  batch_size: int = 48) -> Embedder:
    """The model through open_clip's own constructor: ``weights`` (a local checkpoint, the
    offline path), else ``pretrained`` downloaded once into ``cache_dir`` (open_clip fetches from
    the Hugging Face hub or the original URLs), else random weights (``pretrained=None``)."""
    open_clip = _open_clip()
    if model not in open_clip.list_models():
        raise ClipError(f"--model {model}: open_clip has no such model; `python -c \"import open_clip; "
                        "print(open_clip.list_models())\"` lists them")
    device = pick_device(device)
    if weights is not None and not Path(weights).is_file():
        raise ClipError(f"--clip-weights {weights}: no such file")
    source = str(weights) if weights is not None else pretrained
    cache = Path(cache_dir) if cache_dir else default_cache()
    try:
        m, _, preprocess = open_clip.create_model_and_transforms(model, pretrained=source, device=device,
                                                                 cache_dir=str(cache))
    except Exception as e:  # noqa: BLE001 - download, checkpoint and config errors all end here
        where = f"file {weights}" if weights is not None else f"'{pretrained}' (cache {cache})"
        raise ClipError(f"cannot load CLIP {model} weights from {where}: {type(e).__name__}: {e}; "
                        "offline, download the checkpoint elsewhere and pass it with --clip-weights FILE") from e
    key = f"{model}/{Path(weights).name if weights is not None else pretrained or 'random'}"
    return Embedder(m, preprocess, open_clip.get_tokenizer(model), device, batch_size, key)


# --- the aesthetic head --------------------------------------------------------------------------

def aesthetic_head(dim: int = 768):
    """The improved aesthetic predictor's MLP, layer for layer (its ``layers`` Sequential, so the
    published state dict loads as is). No activations between the linears: that is the
    published model ("linearMSE"); the dropouts do nothing at inference."""
    from torch import nn

    class AestheticHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.Sequential(
                nn.Linear(dim, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
                nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1))

        def forward(self, x):
            return self.layers(x)

    return AestheticHead()


def download(url: str, dest: Path) -> Path:
    """``url`` to ``dest`` through a temporary file renamed into place, so a broken download
    never leaves a file that looks complete."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as f:  # noqa: S310 - fixed https URL
            while chunk := r.read(1 << 20):
                f.write(chunk)
        atomic.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def load_aesthetic(weights: Path | None = None, cache_dir: Path | None = None, dim: int = 768):
    """The head with the published weights: ``weights`` (offline), else the file in the cache,
    else downloaded into it. Refused when its input size is not the embeddings' (the published
    head is for ViT-L-14's 768)."""
    import torch
    if weights is None:
        weights = (Path(cache_dir) if cache_dir else default_cache()) / AESTHETIC_FILE
        if not weights.is_file():
            try:
                download(AESTHETIC_URL, weights)
            except OSError as e:
                raise ClipError(f"cannot download the aesthetic predictor ({e}); download {AESTHETIC_URL} "
                                f"elsewhere and pass it with --aesthetic-weights FILE (or put it at {weights}), "
                                "or run with --no-aesthetic") from e
    elif not Path(weights).is_file():
        raise ClipError(f"--aesthetic-weights {weights}: no such file")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
        got = int(state["layers.0.weight"].shape[1])
    except Exception as e:  # noqa: BLE001 - any unreadable file
        raise ClipError(f"{weights}: not an aesthetic predictor state dict ({type(e).__name__}: {e})") from e
    if got != dim:
        raise ClipError(f"{weights}: the aesthetic head takes {got}-dim embeddings, the CLIP model gives "
                        f"{dim}; use --model ViT-L-14 (its head) or --no-aesthetic")
    head = aesthetic_head(dim)
    head.load_state_dict(state)
    return head.eval()


def aesthetic_scores(head, emb: np.ndarray) -> np.ndarray:
    import torch
    out = []
    with torch.inference_mode():
        for lo in range(0, len(emb), 65536):
            out.append(head(torch.from_numpy(np.ascontiguousarray(emb[lo:lo + 65536], np.float32))).squeeze(-1).numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


# --- frames and the store --------------------------------------------------------------------------

def sample_frames(path: Path, k: int = FRAMES) -> list:
    """First, middle and last frame (for k=3) of a clip file, as PIL RGB images."""
    import av
    with av.open(str(path)) as container:
        frames = [f for f in container.decode(video=0)]
    if not frames:
        raise ClipError(f"{path}: no decodable frame")
    n = len(frames)
    picks = sorted({round(i * (n - 1) / max(k - 1, 1)) for i in range(k)})
    return [frames[i].to_image() for i in picks]


def identity(clip, dataset: Path) -> str:
    """What the clip's pictures are: the digest verify stored, else a hash of the file."""
    if clip.decoded_digest:
        return clip.decoded_digest
    h = hashlib.blake2b(digest_size=16)
    with open(inside(dataset, clip.path, "clip path"), "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "file:" + h.hexdigest()


@dataclass
class Store:
    """The embeddings file in memory: ids, identities, model key, vectors, aesthetic scores."""
    ids: list[str]
    identities: list[str]
    models: list[str]
    emb: np.ndarray           # (n, dim) float32, unit rows
    aesthetic: np.ndarray     # (n,) float32, NaN where not scored

    @classmethod
    def empty(cls, dim: int = 0) -> Store:
        return cls([], [], [], np.zeros((0, dim), np.float32), np.zeros(0, np.float32))

    @classmethod
    def read(cls, dataset: Path) -> Store:
        path = Path(dataset) / EMBEDDINGS_NAME
        if not path.exists():
            return cls.empty()
        t = pq.read_table(path)
        col = t.column("embedding").combine_chunks()
        dim = col.type.list_size
        flat = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        return cls(t.column("clip_id").to_pylist(), t.column("identity").to_pylist(),
                   t.column("model").to_pylist(), flat.reshape(-1, dim),
                   t.column("aesthetic").to_numpy(zero_copy_only=False).astype(np.float32))

    def write(self, dataset: Path) -> None:
        dim = self.emb.shape[1] if self.emb.ndim == 2 else 0
        table = pa.table({
            "clip_id": pa.array(self.ids, pa.string()),
            "identity": pa.array(self.identities, pa.string()),
            "model": pa.array(self.models, pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(
                pa.array(np.ascontiguousarray(self.emb, np.float32).reshape(-1)), dim),
            "aesthetic": pa.array(self.aesthetic.astype(np.float32)),
        })
        final = Path(dataset) / EMBEDDINGS_NAME
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        try:
            pq.write_table(table, tmp)
            atomic.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.ids)}


def kept_clips(manifest) -> list:
    return [c for c in manifest.all_clips() if c.status == "kept" and c.path]


def embed_clips(dataset: Path, clips: list, embedder: Embedder, store: Store | None = None,
                progress=None) -> tuple[Store, int]:
    """The store with a row for every clip in ``clips``: rows whose id, content and model match
    are reused, the others embedded now. Returns (store, clips embedded now). Rows of clips no
    longer listed are kept (a dropped clip's vector costs little and a rerun may need it)."""
    store = store if store is not None else Store.read(dataset)
    where = store.index()
    todo, idents = [], {}
    for c in clips:
        ident = identity(c, dataset)
        idents[c.clip_id] = ident
        i = where.get(c.clip_id)
        if i is None or store.identities[i] != ident or store.models[i] != embedder.key:
            todo.append(c)
    if not todo:
        return store, 0
    per = max(1, embedder.batch_size // FRAMES)
    ids, vecs = [], []
    for lo in range(0, len(todo), per):
        group = todo[lo:lo + per]
        pics, counts = [], []
        for c in group:
            fr = sample_frames(inside(dataset, c.path, "clip path"))
            pics.extend(fr)
            counts.append(len(fr))
        v = embedder.images(pics)
        at = 0
        for c, n in zip(group, counts):
            m = v[at:at + n].mean(0)
            vecs.append(m / max(float(np.linalg.norm(m)), 1e-12))
            ids.append(c.clip_id)
            at += n
        if progress:
            progress(len(group))
    new = np.stack(vecs).astype(np.float32)
    dim = new.shape[1]
    fresh = set(ids)
    keep = [i for i, cid in enumerate(store.ids) if cid not in fresh and store.emb.shape[1:] == (dim,)]
    merged = Store(
        [store.ids[i] for i in keep] + ids,
        [store.identities[i] for i in keep] + [idents[c] for c in ids],
        [store.models[i] for i in keep] + [embedder.key] * len(ids),
        np.concatenate([store.emb[keep].reshape(-1, dim), new]),
        np.concatenate([store.aesthetic[keep], np.full(len(ids), np.nan, np.float32)]))
    return merged, len(todo)


def vectors_of(store: Store, clips: list) -> np.ndarray:
    where = store.index()
    return store.emb[[where[c.clip_id] for c in clips]] if clips else store.emb[:0]


def rank(text_vec: np.ndarray, emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order (best first) and cosine similarities of unit rows ``emb`` to the unit ``text_vec``."""
    sims = emb @ text_vec.astype(np.float32)
    order = np.argsort(-sims, kind="stable")
    return order, sims


def text_filter(clips: list, emb: np.ndarray, embedder: Embedder, drop_if: list[str], drop_threshold: float,
                keep_if: list[str], keep_threshold: float) -> list[tuple[object, str, str]]:
    """(clip, reason code, message) for every clip a text prompt drops: ``drop_if`` drops a clip
    whose similarity to any of its prompts reaches ``drop_threshold``; ``keep_if`` drops a clip
    that reaches ``keep_threshold`` with none of its prompts."""
    from wandata.dataset.reasons import Reason
    out, done = [], set()
    if drop_if:
        sims = emb @ embedder.texts(drop_if).T
        for i, c in enumerate(clips):
            j = int(np.argmax(sims[i]))
            if sims[i, j] >= drop_threshold:
                out.append((c, Reason.clip_drop_if, "dropped by CLIP filter: " + Reason.clip_drop_if.message(
                    similarity=float(sims[i, j]), prompt=drop_if[j], bound=drop_threshold)))
                done.add(i)
    if keep_if:
        sims = emb @ embedder.texts(keep_if).T
        for i, c in enumerate(clips):
            j = int(np.argmax(sims[i]))
            if i not in done and sims[i, j] < keep_threshold:
                out.append((c, Reason.clip_keep_if, "dropped by CLIP filter: " + Reason.clip_keep_if.message(
                    similarity=float(sims[i, j]), prompt=keep_if[j], bound=keep_threshold)))
    return out
