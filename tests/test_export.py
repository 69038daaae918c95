"""`wandata export`: read back by the trainers' own loaders, exactly as curated."""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import av
import numpy as np
import pytest

from wandata import export as ex
from wandata.dataset.manifest import Manifest
from wandata.dataset.records import ClipRecord, SourceRecord

SPECIAL = [
    'a fox, running; then "stopping", then \'looking\'',
    "first line\nsecond line\r\nthird, after CRLF",
    "café ☕ 日本語 — naïve Ünïcödé, emoji 🦊",
    "  leading and trailing spaces  ",
    '"""only quotes"""',
    "NA NA: a prompt that merely contains NaN words, null and None",
    " NA",          # pandas keeps the space, so this one is CSV-safe
    "tab\tseparated, back\\slash",
]
NAN_WORDS = sorted(w for w in ex.PANDAS_NA if w)


# --- a tiny dataset: real clips, a real manifest, fast to decode --------------------------

def write_clip(path: Path, width: int, height: int, frames: int, fps: int = 16) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.options = {"preset": "ultrafast"}
        for i in range(frames):
            img = np.full((height, width, 3), (i * 20) % 256, np.uint8)
            c.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        c.mux(s.encode())


def tiny_dataset(root: Path, n: int, frames: int = 9, sources: int = 3) -> Path:
    """``n`` kept clips over ``sources`` sources; every third clip is portrait 64x112."""
    m = Manifest(root)
    for s in range(sources):
        sid = f"{s:x}" * 16
        src = SourceRecord(path=f"/raw/source{s}.mp4", source_id=sid)
        clips = []
        for k in range(s, n, sources):
            w, h = (64, 112) if k % 3 == 2 else (112, 64)
            rel = f"clips/src{s}/clip{k:03d}.mp4"
            write_clip(root / rel, w, h, frames)
            clips.append(ClipRecord(clip_id=f"{sid[:12]}-s{k:03d}-w00", source_id=sid, source_path=src.path,
                                    shot_index=k, window_index=0, shot_start_s=0.0, shot_end_s=1.0,
                                    num_frames=frames, fps=16.0, bucket=f"{w}x{h}", width=w, height=h,
                                    orientation="portrait" if h > w else "landscape", path=rel,
                                    caption=f"clip {k}"))
        m.put(src, clips)
    m.save()
    return root


def set_captions(dataset: Path, captions) -> dict[str, str]:
    """Give kept clips these captions in order (cycling); returns path -> caption."""
    m = Manifest(dataset)
    kept = [c for c in m.all_clips() if c.status == "kept"]
    for i, c in enumerate(kept):
        c.caption = captions[i % len(captions)]
    m.save()
    return {c.path: c.caption for c in kept}


def diffsynth_dataset(settings_path: Path, which: str = "metadata_path"):
    """DiffSynth's own dataset class, set up exactly as the recorded trainer settings say
    (the same call DiffSynth's Wan train.py makes with those arguments)."""
    from diffsynth.core import UnifiedDataset

    s = ex.read_settings(settings_path)
    ds = UnifiedDataset(
        base_path=s["dataset_base_path"], metadata_path=s[which], repeat=1, data_file_keys=["video"],
        main_data_operator=UnifiedDataset.default_video_operator(
            base_path=s["dataset_base_path"], max_pixels=s["max_pixels"], height=s["height"], width=s["width"],
            height_division_factor=16, width_division_factor=16, num_frames=s["num_frames"],
            time_division_factor=4, time_division_remainder=1))
    return ds, s


# --- DiffSynth: the acceptance test on the real sample data ------------------------------

@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl"])
def test_diffsynth_reads_sample_export_as_curated(sample_dataset, fmt):
    prompts = SPECIAL if fmt == "csv" else SPECIAL[:4] + NAN_WORDS[:4]
    want = set_captions(sample_dataset, prompts)
    summary = ex.export(sample_dataset, fmt)
    assert summary["resolution_mode"] == "dynamic"          # 832x480 and 480x832 are mixed
    ds, s = diffsynth_dataset(Path(summary["settings"]))
    assert s["height"] is None and s["width"] is None and s["max_pixels"] >= 832 * 480
    assert s["mixed_orientations"] and s["orientations"] == {"landscape": 7, "portrait": 1}
    clips = {c.path: c for c in Manifest(sample_dataset).all_clips() if c.status == "kept"}
    assert len(ds) == len(clips) == 8
    rows = [json.loads(line) for line in Path(summary["metadata"]).read_text().splitlines()] if fmt == "jsonl" else None
    portrait = 0
    for i in range(len(ds)):
        item = ds[i]
        video = rows[i]["video"] if rows else ds.data[i]["video"]
        clip = clips[video]
        frames = item["video"]
        assert len(frames) == s["num_frames"] == clip.num_frames == 81
        assert {f.size for f in frames} == {(clip.width, clip.height)}
        assert item["prompt"] == want[video] and isinstance(item["prompt"], str)
        portrait += frames[0].size[1] > frames[0].size[0]
    assert portrait == 1


def test_diffsynth_fixed_mode_for_one_bucket(sample_dataset):
    m = Manifest(sample_dataset)
    for c in m.all_clips():
        if c.orientation == "portrait":
            c.status, c.reason = "dropped", "test: one bucket only"
    m.save()
    set_captions(sample_dataset, ["a landscape clip"])
    summary = ex.export(sample_dataset, "jsonl")
    ds, s = diffsynth_dataset(Path(summary["settings"]))
    assert (s["resolution_mode"], s["height"], s["width"]) == ("fixed", 480, 832)
    assert not s["mixed_orientations"] and len(ds) == 7   # the dropped clip is not exported
    item = ds[0]
    assert len(item["video"]) == 81 and item["video"][0].size == (832, 480)
    assert ex.diffsynth_args(s)[-6:] == ["--height", "480", "--width", "832", "--max_pixels", "399360"]


# --- prompts: every awkward text, through DiffSynth, on tiny clips -------------------------

@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_nan_words_and_special_prompts_survive_json(tmp_path, fmt):
    prompts = SPECIAL + NAN_WORDS
    d = tiny_dataset(tmp_path / "ds", len(prompts))
    want = set_captions(d, prompts)
    summary = ex.export(d, fmt)
    ds, s = diffsynth_dataset(Path(summary["settings"]))
    assert s["num_frames"] == 9 and s["resolution_mode"] == "dynamic"
    clips = {c.path: c for c in Manifest(d).all_clips()}
    got = {}
    for i in range(len(ds)):
        item = ds[i]
        video = ds.data[i]["video"]
        assert len(item["video"]) == 9
        assert item["video"][0].size == (clips[video].width, clips[video].height)
        got[video] = item["prompt"]
    assert got == want
    # The file is plain ASCII, so DiffSynth's locale-dependent open() reads it anywhere.
    Path(summary["metadata"]).read_bytes().decode("ascii")


def test_special_prompts_survive_csv_through_diffsynth(tmp_path):
    d = tiny_dataset(tmp_path / "ds", len(SPECIAL))
    want = set_captions(d, SPECIAL)
    summary = ex.export(d, "csv")
    ds, _ = diffsynth_dataset(Path(summary["settings"]))
    got = {ds.data[i]["video"]: ds[i]["prompt"] for i in range(len(ds))}
    assert got == want


def test_csv_refuses_nan_words_and_points_to_jsonl(tmp_path):
    d = tiny_dataset(tmp_path / "ds", len(NAN_WORDS) + 2)
    set_captions(d, NAN_WORDS + ["42", "True"])
    (d / "metadata.csv").write_text("video,prompt\nold.mp4,old\n")
    with pytest.raises(ex.ExportError) as e:
        ex.export(d, "csv")
    assert "--format jsonl" in str(e.value)
    assert len(e.value.items) == len(NAN_WORDS) + 2
    assert all("clips/" in line for line in e.value.items)
    # Refused before anything was written: the old export is intact, no temp files remain.
    assert (d / "metadata.csv").read_text() == "video,prompt\nold.mp4,old\n"
    assert sorted(p.name for p in d.iterdir()) == ["clips", "manifest.parquet", "metadata.csv"]


def test_pandas_has_no_csv_spelling_for_the_nan_words():
    """Why CSV refuses rather than escapes: quoting does not help, padding changes the text."""
    import pandas as pd
    for word in NAN_WORDS:
        for cell in (word, f'"{word}"'):
            v = pd.read_csv(io.StringIO(f"video,prompt\na.mp4,{cell}\nb.mp4,text\n")).iloc[0]["prompt"]
            assert v != v, (cell, v)     # NaN
        v = pd.read_csv(io.StringIO(f'video,prompt\na.mp4," {word}"\n')).iloc[0]["prompt"]
        assert v == f" {word}" != word
    assert all(ex.csv_hazard(w) for w in NAN_WORDS + ["", "12", "1e3", "True", "false", "nan", "inf"])
    assert not any(ex.csv_hazard(p) for p in SPECIAL)


def test_csv_is_what_the_csv_module_and_pandas_agree_on(tmp_path):
    d = tiny_dataset(tmp_path / "ds", len(SPECIAL))
    want = set_captions(d, SPECIAL)
    path = Path(ex.export(d, "csv")["metadata"])
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert {r["video"]: r["prompt"] for r in rows} == want
    assert all(not Path(r["video"]).is_absolute() and (d / r["video"]).is_file() for r in rows)


# --- captions, selection, split --------------------------------------------------------------

def test_uncaptioned_clips_are_refused_with_a_list_or_given_the_fallback(tmp_path):
    d = tiny_dataset(tmp_path / "ds", 4)
    set_captions(d, ["a caption", "   ", "", "another"])
    with pytest.raises(ex.ExportError) as e:
        ex.export(d, "jsonl")
    assert "2 of 4" in str(e.value) and "--fallback-caption" in str(e.value)
    assert len(e.value.items) == 2 and not (d / "metadata.jsonl").exists()
    ex.export(d, "jsonl", fallback_caption="a video")
    prompts = [json.loads(line)["prompt"] for line in (d / "metadata.jsonl").read_text().splitlines()]
    assert sorted(prompts) == ["a caption", "a video", "a video", "another"]


def test_only_kept_clips_with_files_are_exported(tmp_path):
    d = tiny_dataset(tmp_path / "ds", 6)
    m = Manifest(d)
    clips = m.all_clips()
    clips[0].status = "dropped"
    clips[1].status = "failed"
    m.save()
    summary = ex.export(d, "json")
    rows = json.loads(Path(summary["metadata"]).read_text())
    assert len(rows) == 4 and {r["video"] for r in rows}.isdisjoint({clips[0].path, clips[1].path})
    (d / clips[2].path).unlink()
    with pytest.raises(ex.ExportError, match="have no file") as e:
        ex.export(d, "json")
    assert clips[2].path in e.value.items[0]


def test_split_holds_out_whole_sources_deterministically(tmp_path):
    d = tiny_dataset(tmp_path / "ds", 12, sources=4)
    first = ex.export(d, "jsonl", split=0.25)
    train = (d / "metadata.jsonl").read_text()
    val = (d / "metadata_val.jsonl").read_text()
    src = {c.path: c.source_id for c in Manifest(d).all_clips()}
    t_src = {src[json.loads(x)["video"]] for x in train.splitlines()}
    v_src = {src[json.loads(x)["video"]] for x in val.splitlines()}
    assert t_src and v_src and not t_src & v_src
    assert first["validation"] == 3 and first["train"] == 9
    again = ex.export(d, "jsonl", split=0.25)
    assert (d / "metadata_val.jsonl").read_text() == val and again["validation"] == 3
    s = ex.read_settings(d / ex.SETTINGS_NAME)
    assert s["validation_metadata_path"] == str((d / "metadata_val.jsonl").resolve())
    assert s["split"]["validation_sources"] == sorted(v_src)
    ds, _ = diffsynth_dataset(d / ex.SETTINGS_NAME, "validation_metadata_path")
    assert len(ds) == 3 and len(ds[0]["video"]) == 9
    # Without --split the old validation list goes: it would now overlap training.
    ex.export(d, "jsonl")
    assert not (d / "metadata_val.jsonl").exists()
    assert len((d / "metadata.jsonl").read_text().splitlines()) == 12


def test_split_refuses_what_it_cannot_do(tmp_path):
    d = tiny_dataset(tmp_path / "ds", 3, sources=1)
    with pytest.raises(ex.ExportError, match="at least 2 sources"):
        ex.export(d, "jsonl", split=0.3)
    with pytest.raises(ex.ExportError, match="between 0 and 1"):
        ex.export(d, "jsonl", split=1.5)


def test_settings_file_is_small_relative_and_explains_itself(tmp_path):
    d = tiny_dataset(tmp_path / "ds", 3)
    out = tmp_path / "elsewhere" / "train.csv"
    ex.export(d, "csv", out=out)
    raw = json.loads((out.parent / ex.SETTINGS_NAME).read_text())
    assert raw["schema"] == ex.SCHEMA and raw["format"] == "csv"
    assert raw["dataset_base_path"] == "../ds" and raw["metadata_path"] == "train.csv"
    assert raw["num_frames"] == 9 and raw["fps"] == 16.0 and raw["max_pixels"] == 832 * 480
    assert [(b["width"], b["height"], b["clips"]) for b in raw["buckets"]] == [(112, 64, 2), (64, 112, 1)]
    # The video paths stay relative to the dataset dir, which the settings point at.
    ds, s = diffsynth_dataset(out.parent / ex.SETTINGS_NAME)
    assert s["dataset_base_path"] == str(d.resolve()) and len(ds[2]["video"]) == 9
    with pytest.raises(ex.ExportError, match="must end in .csv"):
        ex.export(d, "csv", out=tmp_path / "train.txt")


# --- musubi-tuner -------------------------------------------------------------------------------

# kohya-ss/musubi-tuner src/musubi_tuner/dataset/config_utils.py (ConfigSanitizer) @1a1f7246:
# the only keys its voluptuous schema accepts, with their types.
MUSUBI_GENERAL = {"caption_extension": str, "batch_size": int, "num_repeats": int, "resolution": list,
                  "enable_bucket": bool, "bucket_no_upscale": bool, "skip_corrupted_cache": bool}
MUSUBI_VIDEO = {**MUSUBI_GENERAL, "video_directory": str, "video_jsonl_file": str, "control_directory": str,
                "target_frames": list, "frame_extraction": str, "frame_stride": int, "frame_sample": int,
                "max_frames": int, "cache_directory": str, "source_fps": float, "fp_latent_window_size": int}


def _parse_toml(path: Path) -> dict:
    data = tomllib.loads(path.read_text())
    try:
        import toml  # the parser musubi-tuner and diffusion-pipe use
    except ImportError:
        return data
    assert toml.loads(path.read_text()) == data
    return data


def _typed(d: dict, schema: dict) -> None:
    for k, v in d.items():
        assert k in schema, f"{k} is not a musubi-tuner dataset key"
        assert isinstance(v, schema[k]) and not (schema[k] is int and isinstance(v, bool)), (k, v)


def test_musubi_export_matches_documented_schema(tmp_path):
    d = tiny_dataset(tmp_path / "ds", 9)
    want = set_captions(d, SPECIAL + ["NA"])
    summary = ex.export(d, "musubi", split=0.3)
    out = d / "export" / "musubi"
    clips = {str((d / c.path).resolve()): c for c in Manifest(d).all_clips()}
    seen, caches = {}, []
    for name in ("dataset.toml", "dataset_val.toml"):
        cfg = _parse_toml(out / name)
        assert set(cfg) == {"general", "datasets"}
        _typed(cfg["general"], MUSUBI_GENERAL)
        for ds in cfg["datasets"]:
            _typed(ds, MUSUBI_VIDEO)
            assert ds["frame_extraction"] == "head" and ds["target_frames"] == [9]
            w, h = ds["resolution"]                       # musubi's order is [width, height]
            caches.append(ds["cache_directory"])
            jsonl = Path(ds["video_jsonl_file"])
            assert jsonl.is_absolute() and jsonl.is_file()
            for line in jsonl.read_text().splitlines():
                row = json.loads(line)
                assert set(row) == {"video_path", "caption"}
                assert Path(row["video_path"]).is_absolute() and Path(row["video_path"]).is_file()
                c = clips[row["video_path"]]
                assert (c.width, c.height) == (w, h)
                seen[c.path] = row["caption"]
    assert len(set(caches)) == len(caches)               # musubi requires unique cache dirs
    assert seen == want                                   # every clip once, caption unchanged
    assert summary["validation"] > 0 and (out / ex.SETTINGS_NAME).exists()


# --- diffusion-pipe --------------------------------------------------------------------------

# tdrussell/diffusion-pipe examples/dataset.toml: top-level keys and [[directory]] keys.
DP_TOP = {"resolutions", "enable_ar_bucket", "min_ar", "max_ar", "num_ar_buckets", "ar_buckets",
          "frame_buckets", "directory", "cache_shuffle_num", "cache_shuffle_delimiter", "skip_empty_caption"}
DP_DIR = {"path", "num_repeats", "mask_path", "ar_buckets", "resolutions", "frame_buckets", "enable_ar_bucket",
          "min_ar", "max_ar", "num_ar_buckets"}


def test_diffusion_pipe_frame_bucket_matches_its_frame_count():
    # diffusion-pipe counts int(16 * duration) with ffmpeg's 1/100 s duration: 81 -> 5.06 s -> 80.
    assert ex.dp_frame_bucket(81, 16) == 77
    assert ex.dp_frame_bucket(49, 16) == 45
    assert ex.dp_frame_bucket(82, 16) == 81


def test_diffusion_pipe_export_matches_documented_layout(sample_dataset):
    import imageio.v3 as iio

    want = set_captions(sample_dataset, SPECIAL)
    summary = ex.export(sample_dataset, "diffusion-pipe", split=0.2)
    out = sample_dataset / "export" / "diffusion-pipe"
    clips = {Path(c.path).name: c for c in Manifest(sample_dataset).all_clips() if c.status == "kept"}
    seen = {}
    for name in ("dataset.toml", "eval_dataset.toml"):
        cfg = _parse_toml(out / name)
        assert set(cfg) <= DP_TOP and "resolutions" in cfg   # read as the default: must exist
        bucket = cfg["frame_buckets"][-1]
        assert cfg["frame_buckets"] == [1, bucket] and bucket % 4 == 1
        for dcfg in cfg["directory"]:
            assert set(dcfg) <= DP_DIR
            folder = Path(dcfg["path"])
            assert folder.is_absolute() and folder.is_dir()
            media = sorted(folder.glob("*.mp4"))
            assert media
            for f in media:
                c = clips[f.name]
                assert [[c.width, c.height]] == dcfg["resolutions"] == dcfg["ar_buckets"]
                assert dcfg["frame_buckets"] == [1, bucket]
                # Same-name caption, read the way diffusion-pipe reads it (text mode, stripped).
                with open(f.with_suffix(".txt"), encoding="utf-8") as fh:
                    seen[c.path] = fh.read().strip()
                # Its own frame count (int(framerate * imageio's duration)) reaches the bucket.
                assert int(16 * iio.immeta(f)["duration"]) >= bucket
                assert os.stat(f).st_ino == os.stat(sample_dataset / c.path).st_ino   # hard link
    # All it changes is what its own reader changes: line endings and outer whitespace.
    assert seen == {k: v.replace("\r\n", "\n").strip() for k, v in want.items()}
    assert summary["linked"] == {"hardlink": 8} and summary["frame_bucket"] == 77
    # A re-export replaces the folder whole; a foreign folder is never replaced.
    ex.export(sample_dataset, "diffusion-pipe")
    assert not (out / "eval_dataset.toml").exists() and not (out / "val").exists()
    foreign = sample_dataset / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    with pytest.raises(ex.ExportError, match="not written by"):
        ex.export(sample_dataset, "diffusion-pipe", out=foreign)
    assert (foreign / "keep.txt").exists()


# --- CLI ---------------------------------------------------------------------------------------

def _cli(*args):
    return subprocess.run([sys.executable, "-m", "wandata.cli", *map(str, args)], capture_output=True, text=True)


def test_cli_export_help_refusal_and_json(tmp_path):
    r = _cli("export", "--help")
    assert r.returncode == 0 and "--fallback-caption" in r.stdout and "--split" in r.stdout
    d = tiny_dataset(tmp_path / "ds", 3)
    set_captions(d, ["ok", "", "NA"])
    r = _cli("export", "--dataset", d, "--format", "csv")
    assert r.returncode == 1 and "no caption" in r.stderr and "clips/" in r.stderr
    r = _cli("export", "-d", d, "-f", "csv", "--fallback-caption", "a clip")
    assert r.returncode == 1 and "--format jsonl" in r.stderr and "'NA'" in r.stderr
    r = _cli("export", "-d", d, "--fallback-caption", "a clip", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["format"] == "jsonl" and summary["train"] == 3 and Path(summary["settings"]).exists()
    r = _cli("export", "-d", tmp_path / "nothing")
    assert r.returncode == 1 and "no manifest" in r.stderr and "wandata ingest" in r.stderr


def test_a_format_is_one_class_and_one_entry_point(tmp_path, monkeypatch):
    """A plugin format registered under wandata.exporters is written by `export` and read back
    by `check` like a built-in; a built-in name cannot be taken over."""
    from wandata.export import registry
    from wandata.export.check import check

    # What `pip install` of a plugin leaves in site-packages: its module, and a dist-info whose
    # entry_points.txt registers it (and tries, and fails, to replace the built-in csv).
    site = tmp_path / "site"
    info = site / "wandata_lines_format-0.1.dist-info"
    info.mkdir(parents=True)
    (site / "wandata_lines_format.py").write_text(textwrap.dedent("""
        from wandata.export.common import SETTINGS_NAME, Exporter, Row, write_text


        class Lines(Exporter):
            name = "lines"

            def paths(self, out, has_val):
                return out / SETTINGS_NAME, out / "clips.txt", None

            def write(self, o, settings_text, prepared):
                write_text(o.metadata, "".join(f"{it.file}\\t{it.prompt}\\n" for it in o.train))
                write_text(o.settings, settings_text)
                return {}

            def read(self, path, split, root=None):
                rows = [Row(f"{path.name} row {i}", *line.split("\\t"), split=split)
                        for i, line in enumerate(path.read_text().splitlines(), 1)]
                return rows, [], [str(path)]
    """))
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: wandata-lines-format\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[wandata.exporters]\nlines = wandata_lines_format:Lines\n"
                                           "csv = wandata_lines_format:Lines\n")
    monkeypatch.syspath_prepend(str(site))
    assert ex.available() == ex.FORMATS + ("lines",)
    assert type(registry.load("csv")).__name__ == "Csv"
    ds = tiny_dataset(tmp_path / "ds", 4)
    summary = ex.export(ds, "lines")
    assert summary["metadata"] == str(ds / "export" / "lines" / "clips.txt") and summary["train"] == 4
    report = check(ds / "export" / "lines", jobs=1)
    assert report["rows"] == 4 and report["videos_decoded"] == 4 and report["ok"], report["problems"]
    with pytest.raises(ex.ExportError, match="unknown format 'nope'; choose from csv, json, jsonl, musubi, "
                                             "diffusion-pipe, lines"):
        ex.export(ds, "nope")
