"""CLIP on clips (issue 17): stored embeddings, text queries and filters, the aesthetic head,
semantic dedup. The model is built by open_clip's own constructors from a tiny config with
random weights (saved to a checkpoint, loaded through the offline path --clip-weights)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from click.testing import CliRunner

open_clip = pytest.importorskip("open_clip")
pytest.importorskip("faiss")

from wandata.cli import main  # noqa: E402
from wandata.dataset.manifest import Manifest  # noqa: E402
from wandata.dataset.records import ClipRecord, SourceRecord  # noqa: E402
from wandata.quality import clip as qclip  # noqa: E402
from wandata.quality.duplicates import find_semantic_duplicates  # noqa: E402

TINY = "wandata-test-tiny"
TINY_CFG = {"embed_dim": 32,
            "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """The tiny config registered with open_clip, and a random-weight checkpoint of it."""
    root = tmp_path_factory.mktemp("tiny")
    (root / f"{TINY}.json").write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(root / f"{TINY}.json")
    torch.manual_seed(0)
    model = open_clip.create_model(TINY, pretrained=None)
    torch.save(model.state_dict(), root / "tiny.pt")
    return root / "tiny.pt"


def _video(path: Path, seed: int, n: int = 9, size: int = 64) -> None:
    """Frames of smooth random colour fields, different for every seed."""
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=16)
        s.width = s.height = size
        s.pix_fmt = "yuv420p"
        s.options = {"crf": "18", "preset": "ultrafast"}
        for i in range(n):
            small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
            img = np.kron(small, np.ones((size // 4, size // 4, 1), np.uint8))
            c.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        c.mux(s.encode(None))


def make_dataset(root: Path, seeds: list[int], copies: dict[int, int] | None = None) -> Path:
    """A dataset of one clip per seed (clip i from its own source and shot, one bucket, sharpness
    10*(i+1), shot length 5-i s); ``copies`` {i: j} makes clip i a byte copy of clip j."""
    ds = root / "ds"
    (ds / "clips").mkdir(parents=True)
    m = Manifest(ds)
    for i, seed in enumerate(seeds):
        rel = f"clips/c{i}.mp4"
        if copies and i in copies:
            shutil.copyfile(ds / f"clips/c{copies[i]}.mp4", ds / rel)
        else:
            _video(ds / rel, seed)
        src = SourceRecord(path=f"/src/s{i}.mp4", source_id=f"s{i}")
        m.put(src, [ClipRecord(clip_id=f"clip{i}", source_id=f"s{i}", source_path=src.path, shot_index=0,
                               window_index=0, shot_start_s=0.0, shot_end_s=5.0 - i, num_frames=9, fps=16,
                               bucket="64x64", path=rel, decoded_digest=f"d{i}", sharpness=10.0 * (i + 1))])
    m.save()
    return ds


def run(*args) -> dict | list:
    r = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def model_args(ds, tiny):
    return ["-d", str(ds), "--model", TINY, "--clip-weights", str(tiny), "--device", "cpu"]


def independent_embeddings(ds: Path, tiny: Path, paths: list[str]) -> tuple[np.ndarray, object]:
    """The same embeddings computed here, without wandata: PyAV frames 0, middle, last; open_clip's
    preprocessing and encode_image; mean; normalise."""
    model, _, pre = open_clip.create_model_and_transforms(TINY, pretrained=str(tiny))
    model.eval()
    out = []
    for p in paths:
        with av.open(str(ds / p)) as c:
            frames = [f.to_image() for f in c.decode(video=0)]
        pick = [frames[0], frames[len(frames) // 2], frames[-1]]
        with torch.no_grad():
            v = model.encode_image(torch.stack([pre(f) for f in pick]))
        v = torch.nn.functional.normalize(v, dim=-1).mean(0)
        out.append((v / v.norm()).numpy())
    return np.stack(out), model


def test_embeddings_are_stored_and_reused(tmp_path, tiny):
    ds = make_dataset(tmp_path, [1, 2, 3])
    clips = qclip.kept_clips(Manifest(ds))
    e = qclip.load_embedder(TINY, None, weights=tiny, device="cpu")
    store, n = qclip.embed_clips(ds, clips, e)
    assert n == 3 and e.frames_encoded == 9
    store.write(ds)
    again = qclip.load_embedder(TINY, None, weights=tiny, device="cpu")
    store2, n2 = qclip.embed_clips(ds, clips, again)
    assert n2 == 0 and again.frames_encoded == 0            # nothing computed the second time
    assert store2.ids == ["clip0", "clip1", "clip2"]
    np.testing.assert_array_equal(store2.emb, store.emb)
    expected, _ = independent_embeddings(ds, tiny, [c.path for c in clips])
    np.testing.assert_allclose(store2.emb, expected, atol=1e-5)
    clips[1].decoded_digest = "changed"                      # new content: only that clip again
    store3, n3 = qclip.embed_clips(ds, clips, again)
    assert n3 == 1 and again.frames_encoded == 3
    # The command says the same: a first run embeds, the next one reuses.
    (ds / qclip.EMBEDDINGS_NAME).unlink()
    args = ["clip", *model_args(ds, tiny), "--no-aesthetic", "--json"]
    assert run(*args)["embedded"] == 3
    assert run(*args)["embedded"] == 0


def test_query_orders_clips_by_cosine_with_the_models_own_text_encoder(tmp_path, tiny):
    ds = make_dataset(tmp_path, [5, 6, 7, 8], copies={3: 1})
    hits = run("query", "a cat on a sofa", *model_args(ds, tiny), "--top", "4", "--json")
    emb, model = independent_embeddings(ds, tiny, [f"clips/c{i}.mp4" for i in range(4)])
    with torch.no_grad():
        t = model.encode_text(open_clip.get_tokenizer(TINY)(["a cat on a sofa"]))
    t = torch.nn.functional.normalize(t, dim=-1)[0].numpy()
    sims = emb @ t
    order = [f"clip{i}" for i in np.argsort(-sims, kind="stable")]
    assert [h["clip_id"] for h in hits] == order
    np.testing.assert_allclose([h["similarity"] for h in hits], np.sort(sims)[::-1], atol=1e-4)
    # The byte copy (clip 3 of clip 1) has clip 1's similarity exactly: it sits right next to it.
    at = {h["clip_id"]: h["rank"] for h in hits}
    assert abs(at["clip1"] - at["clip3"]) == 1


def test_drop_if_marks_the_closest_clip_with_its_reason_code(tmp_path, tiny):
    ds = make_dataset(tmp_path, [11, 12, 13])
    prompt = "text overlay, watermark, logo"
    hits = run("query", prompt, *model_args(ds, tiny), "--json")
    bound = (hits[0]["similarity"] + hits[1]["similarity"]) / 2   # only the closest clip reaches it
    out = run("clip", *model_args(ds, tiny), "--no-aesthetic", "--drop-if", prompt,
              "--drop-threshold", f"{bound:.6f}", "--json")
    assert [d["clip_id"] for d in out["dropped"]] == [hits[0]["clip_id"]]
    rows = {c.clip_id: c for c in Manifest(ds).all_clips()}
    dropped = rows[hits[0]["clip_id"]]
    assert (dropped.status, dropped.reason_code) == ("dropped", "clip_drop_if")
    assert prompt in dropped.reason and "--drop-threshold" in dropped.reason
    assert (ds / dropped.path).exists()                      # review can still keep it
    assert [c.status for c in rows.values()].count("kept") == 2
    # keep-if with an impossible bound drops everything left, each with its own code
    out = run("clip", *model_args(ds, tiny), "--no-aesthetic", "--keep-if", "a dog", "--keep-threshold", "1",
              "--json", "--dry-run")
    assert sorted(d["reason_code"] for d in out["dropped"]) == ["clip_keep_if"] * 2
    assert sum(c.status == "kept" for c in Manifest(ds).all_clips()) == 2   # dry run: unchanged


def test_options_without_their_filter_are_refused(tmp_path, tiny):
    ds = make_dataset(tmp_path, [1])
    r = CliRunner().invoke(main, ["clip", *model_args(ds, tiny), "--drop-threshold", "0.3"])
    assert r.exit_code == 2 and "--drop-threshold" in r.output
    r = CliRunner().invoke(main, ["clip", *model_args(ds, tiny), "--keep-rule", "longest"])
    assert r.exit_code == 2 and "--keep-rule" in r.output
    r = CliRunner().invoke(main, ["clip", "-d", str(ds), "--model", TINY, "--clip-weights", str(ds / "nope.pt")])
    assert r.exit_code == 1 and "--clip-weights" in r.output


@pytest.mark.parametrize("rule,kept", [("sharpest", "clip3"), ("longest", "clip1")])
def test_semantic_dedup_keeps_the_best_of_a_group_by_the_rule(tmp_path, tiny, rule, kept):
    # clip 3 is a byte copy of clip 1: identical embeddings. Clip 3 is sharper (40 > 20), clip 1
    # comes from the longer shot (4 s > 2 s).
    ds = make_dataset(tmp_path, [21, 22, 23, 24], copies={3: 1})
    out = run("clip", *model_args(ds, tiny), "--no-aesthetic", "--dedup", "--min-similarity", "0.9999",
              "--keep-rule", rule, "--json")
    gone = "clip1" if kept == "clip3" else "clip3"
    assert [(d["clip_id"], d["kept"]) for d in out["dropped"]] == [(gone, kept)]
    rows = {c.clip_id: c for c in Manifest(ds).all_clips()}
    assert rows[gone].status == "dropped" and rows[gone].reason_code == "semantic_duplicate"
    assert f"clip {kept}" in rows[gone].reason and f"--keep-rule {rule}" in rows[gone].reason
    assert all(rows[c].status == "kept" for c in rows if c != gone)


def test_semantic_groups_are_transitive_and_bucket_bound():
    rng = np.random.default_rng(0)
    e0, e1, e2 = np.linalg.qr(rng.normal(size=(16, 3)))[0].T
    # a - b - c on a circle, 0.99 apart a step (0.96 end to end), d apart, e = a in another bucket
    t = np.arccos(0.99)
    a, b, c = e0, np.cos(t) * e0 + np.sin(t) * e1, np.cos(2 * t) * e0 + np.sin(2 * t) * e1
    vecs = np.stack([a, b, c, e2, a])
    vecs = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)
    assert vecs[0] @ vecs[2] < 0.985 < min(vecs[0] @ vecs[1], vecs[1] @ vecs[2])
    clips = [ClipRecord(clip_id=f"k{i}", source_id=f"s{i}", source_path="", shot_index=0, window_index=0,
                        shot_start_s=0, shot_end_s=1, bucket="x" if i < 4 else "y", sharpness=float(s))
             for i, s in enumerate([5, 9, 7, 1, 50])]
    out = find_semantic_duplicates(clips, vecs, 0.985, "sharpest")
    assert sorted((c.clip_id, k.clip_id) for c, k, *_ in out) == [("k0", "k1"), ("k2", "k1")]
    assert all(size == 3 for *_, size, _ in out)
    # the IVF path (forced by a low exact limit) finds the same groups on these few vectors
    more = np.concatenate([vecs, rng.normal(size=(300, 16)).astype(np.float32)])
    more /= np.linalg.norm(more, axis=1, keepdims=True)
    clips += [ClipRecord(clip_id=f"r{i}", source_id=f"r{i}", source_path="", shot_index=0, window_index=0,
                         shot_start_s=0, shot_end_s=1, bucket="x") for i in range(300)]
    out2 = find_semantic_duplicates(clips, more, 0.985, "sharpest", exact_limit=10)
    assert sorted((c.clip_id, k.clip_id) for c, k, *_ in out2) == [("k0", "k1"), ("k2", "k1")]


def test_aesthetic_head_matches_the_published_layout_and_loads_offline(tmp_path, tiny):
    head = qclip.aesthetic_head(768)
    assert {k: tuple(v.shape) for k, v in head.state_dict().items()} == {
        "layers.0.weight": (1024, 768), "layers.0.bias": (1024,), "layers.2.weight": (128, 1024),
        "layers.2.bias": (128,), "layers.4.weight": (64, 128), "layers.4.bias": (64,),
        "layers.6.weight": (16, 64), "layers.6.bias": (16,), "layers.7.weight": (1, 16), "layers.7.bias": (1,)}
    # Random weights in the published format (a torch.save'd state dict), for the tiny model's 32 dims.
    torch.manual_seed(1)
    published = qclip.aesthetic_head(32)
    weights = tmp_path / qclip.AESTHETIC_FILE
    torch.save(published.state_dict(), weights)
    loaded = qclip.load_aesthetic(weights, dim=32)
    x = torch.randn(5, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), published.eval()(x))
    # The cache path: a file already in the cache is used, nothing is downloaded.
    cache = tmp_path / "cache"
    cache.mkdir()
    qclip.download(weights.as_uri(), cache / qclip.AESTHETIC_FILE)   # the download code, from a file URL
    assert (cache / qclip.AESTHETIC_FILE).read_bytes() == weights.read_bytes()
    assert not list(cache.glob(".*part"))
    with torch.no_grad():
        assert torch.equal(qclip.load_aesthetic(None, cache, dim=32)(x), published(x))
    # A head for other embeddings is refused, naming both sizes.
    with pytest.raises(qclip.ClipError, match="32-dim .* 768"):
        qclip.load_aesthetic(weights, dim=768)
    # Through the command: every clip's stored score is the head on its stored embedding.
    ds = make_dataset(tmp_path, [31, 32])
    run("clip", *model_args(ds, tiny), "--aesthetic-weights", str(weights), "--json")
    store = qclip.Store.read(ds)
    with torch.no_grad():
        expected = published(torch.from_numpy(store.emb)).squeeze(-1).numpy()
    np.testing.assert_allclose(store.aesthetic, expected, rtol=1e-5)
