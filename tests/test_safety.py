"""Outputs never destroy what wandata did not write; paths read from files stay inside their root.

Real files and real commands (click's CliRunner over ``wandata.cli.main``). Every file that
must survive is compared by content hash and mtime before and after.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from wandata import atomic
from wandata import export as ex
from wandata.cli import main as cli
from wandata.confine import OUTSIDE_ROOT
from wandata.dataset.manifest import MANIFEST_NAME, Manifest

from .test_export import tiny_dataset, write_clip

N_CLIPS = 6
FORMATS = ex.FORMATS


@pytest.fixture(scope="module")
def tiny_ro(tmp_path_factory) -> Path:
    """Six kept, captioned 9-frame clips over three sources; copy it before changing anything."""
    return tiny_dataset(tmp_path_factory.mktemp("tiny") / "ds", N_CLIPS)


@pytest.fixture
def world(tiny_ro, tmp_path) -> Path:
    """``tmp_path/parent/ds``: a private dataset one folder below a parent of its own."""
    dst = tmp_path / "parent" / "ds"
    shutil.copytree(tiny_ro, dst)
    return dst


def state(root: Path) -> dict[str, tuple[str, int]]:
    """Every file below ``root``: relative path -> (sha256, mtime_ns)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[p.relative_to(root).as_posix()] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
    return out


def dataset_state(ds: Path) -> dict:
    """The part of a dataset an export must never change: the manifest and every clip."""
    return {k: v for k, v in state(ds).items() if k == MANIFEST_NAME or k.startswith("clips/")}


def run(*args) -> tuple[int, str, dict | None]:
    r = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    out = r.stdout
    try:
        parsed = json.loads(out)
    except ValueError:
        parsed = None
    return r.exit_code, out + r.stderr, parsed


def export(ds: Path, fmt: str, *more) -> tuple[int, str, dict | None]:
    return run("export", "-d", ds, "-f", fmt, "--json", *more)


def set_paths(ds: Path, new: dict[int, str]) -> list[str]:
    """Rewrite the ``path`` of the kept clips at these positions straight in manifest.parquet
    (as a hand edit or another tool would); returns their clip ids."""
    table = pq.read_table(ds / MANIFEST_NAME)
    rows = table.to_pylist()
    clips = [r for r in rows if r["kind"] == "clip"]
    for i, value in new.items():
        clips[i]["path"] = value
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), ds / MANIFEST_NAME)
    return [clips[i]["clip_id"] for i in new]


# --- 1. an export never replaces or writes into the dataset ------------------------------------

TARGETS = {
    "dataset": lambda ds: ds,
    "parent": lambda ds: ds.parent,
    "clips": lambda ds: ds / "clips",
    "clip_folder": lambda ds: ds / "clips" / "src0",
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("target", list(TARGETS))
def test_dataset_survives_every_export_target_at_or_above_it(world, fmt, target):
    before = dataset_state(world)
    out = TARGETS[target](world)
    code, text, summary = export(world, fmt, "-o", out)
    assert dataset_state(world) == before, text
    if fmt in ex.DIFFSYNTH_FORMATS and target in ("dataset", "parent"):
        # A metadata file beside (or above) the dataset folder: allowed, and nothing in it replaced.
        assert code == 0, text
        assert summary["train"] == N_CLIPS and Path(summary["metadata"]).parent == out
    else:
        assert code == 1, text
        assert summary["ok"] is False and "refusing to write" in summary["error"]
        assert "Nothing was changed" in summary["error"]
    # Nothing of ours was left in the dataset's clips folder either.
    assert not [p for p in (world / "clips").rglob("*") if p.is_file() and p.suffix != ".mp4"]


@pytest.mark.parametrize("fmt", ["musubi", "diffusion-pipe"])
@pytest.mark.parametrize("target", ["dataset", "parent"])
def test_a_folder_export_onto_an_exported_dataset_keeps_every_file(world, fmt, target):
    """The data loss of issue 11: after a DiffSynth export into the dataset folder (the default),
    its wandata_export.json made `export -f diffusion-pipe -o DATASET` take the dataset for an
    old export: it was renamed away and removed."""
    out = TARGETS[target](world)
    code, text, _ = export(world, "jsonl", "-o", out)          # leaves OUT/wandata_export.json
    assert code == 0 and (out / ex.SETTINGS_NAME).is_file(), text
    everything = state(out)
    code, text, summary = export(world, fmt, "-o", out)
    assert code == 1 and str(out) in summary["error"], text
    assert state(out) == everything
    assert sorted(p.name for p in out.parent.iterdir()) == sorted([out.name])   # no temp folder beside it


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_folder_of_user_files_is_refused_and_untouched(world, tmp_path, fmt):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes\n")
    for ext in ex.DIFFSYNTH_FORMATS:
        (mine / f"metadata.{ext}").write_text(f"my own {ext} metadata\n")
    before = state(mine)
    code, text, summary = export(world, fmt, "-o", mine)
    assert code == 1 and "was not written by wandata" in summary["error"], text
    assert state(mine) == before and sorted(p.name for p in mine.iterdir()) == sorted(
        ["notes.txt", "metadata.csv", "metadata.json", "metadata.jsonl"])


def test_a_hand_made_settings_file_is_not_overwritten(world, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / ex.SETTINGS_NAME).write_text('{"my": "settings"}\n')
    before = state(out)
    code, text, summary = export(world, "jsonl", "-o", out / "train.jsonl")
    assert code == 1 and ex.SETTINGS_NAME in summary["error"], text
    assert state(out) == before


@pytest.mark.parametrize("fmt", ["musubi", "diffusion-pipe"])
def test_a_folder_marked_as_another_format_or_holding_a_dataset_is_refused(world, tmp_path, fmt):
    other = "musubi" if fmt == "diffusion-pipe" else "diffusion-pipe"
    code, text, _ = export(world, other, "-o", tmp_path / "x")
    assert code == 0, text
    before = state(tmp_path / "x")
    code, text, summary = export(world, fmt, "-o", tmp_path / "x")
    assert code == 1 and "refusing" in summary["error"] and state(tmp_path / "x") == before
    # A folder that carries our marker but holds a dataset below it is not replaced either.
    code, text, _ = export(world, fmt, "-o", tmp_path / "y")
    assert code == 0, text
    shutil.copytree(world, tmp_path / "y" / "someone")
    before = state(tmp_path / "y")
    code, text, summary = export(world, fmt, "-o", tmp_path / "y")
    assert code == 1 and "holds a dataset" in summary["error"] and state(tmp_path / "y") == before


def test_reexport_replaces_our_folder_and_only_after_the_new_one_is_complete(world, tmp_path):
    out = tmp_path / "dp"
    code, text, summary = export(world, "diffusion-pipe", "-o", out, "--split", "0.3")
    assert code == 0 and (out / "eval_dataset.toml").is_file(), text
    (out / "cache").mkdir()
    (out / "cache" / "latents.bin").write_bytes(b"diffusion-pipe's cache")
    first = state(out)
    # A build that fails half way (two clips with one file name in a bucket) leaves the old export whole.
    original = Manifest(world).all_clips()[1].path
    dup = world / "clips" / "src1" / "clip000.mp4"
    write_clip(dup, 112, 64, 9)
    set_paths(world, {1: "clips/src1/clip000.mp4"})
    code, text, summary = export(world, "diffusion-pipe", "-o", out)
    assert code == 1 and "both named clip000.mp4" in summary["error"], text
    assert state(out) == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dp", "parent"]   # no temp or old folder left
    # Once it can be built, the new export replaces the old one whole.
    set_paths(world, {1: original})
    code, text, summary = export(world, "diffusion-pipe", "-o", out)
    assert code == 0 and summary["train"] == N_CLIPS, text
    assert not (out / "eval_dataset.toml").exists() and not (out / "cache").exists()
    assert len(list((out / "train").rglob("*.mp4"))) == N_CLIPS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dp", "parent"]


# --- 2. paths read back from files stay inside their root --------------------------------------

@pytest.fixture
def victims(tmp_path) -> list[Path]:
    """Clips outside the dataset that a planted manifest path points at."""
    out = []
    for name in ("victim.mp4", "abs_victim.mp4"):
        write_clip(tmp_path / name, 112, 64, 9)
        out.append(tmp_path / name)
    return out


def _exported_files(summary: dict, fmt: str, ds: Path) -> set[Path]:
    """The clip files an export points a trainer at (resolved)."""
    if fmt in ex.DIFFSYNTH_FORMATS:
        meta = Path(summary["metadata"])
        if fmt == "csv":
            import csv
            with open(meta, newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
        elif fmt == "json":
            rows = json.loads(meta.read_text())
        else:
            rows = [json.loads(line) for line in meta.read_text().splitlines()]
        return {(ds / r["video"]).resolve() for r in rows}
    if fmt == "musubi":
        return {Path(json.loads(line)["video_path"]).resolve()
                for f in Path(summary["settings"]).parent.glob("*.jsonl") for line in f.read_text().splitlines()}
    return set(Path(summary["settings"]).parent.rglob("*.mp4"))


@pytest.mark.parametrize("fmt", FORMATS)
def test_planted_outside_clip_paths_are_refused_and_the_rest_exported(world, tmp_path, victims, fmt):
    rel = os.path.relpath(victims[0], world)               # ../../victim.mp4
    ids = set_paths(world, {0: rel, 3: str(victims[1])})    # a `..` path and an absolute one
    link = world / "clips" / "src2" / "clip002.mp4"         # and a link that leads out
    link.unlink()
    link.symlink_to(victims[0])
    outside = {v: (hashlib.sha256(v.read_bytes()).hexdigest(), v.stat().st_mtime_ns, v.stat().st_nlink)
               for v in victims}
    out = tmp_path / "out" / (f"metadata.{fmt}" if fmt in ex.DIFFSYNTH_FORMATS else fmt)
    code, text, summary = export(world, fmt, "-o", out)
    assert code == 3, text                                   # written, with refused rows
    refused = {r["clip_id"]: r for r in summary["refused"]}
    link_id = [c.clip_id for c in Manifest(world).all_clips() if c.path == "clips/src2/clip002.mp4"][0]
    assert set(refused) == set(ids) | {link_id}
    assert {r["code"] for r in refused.values()} == {OUTSIDE_ROOT}
    assert all("leads outside" in r["message"] for r in refused.values())
    assert summary["train"] == N_CLIPS - 3
    files = _exported_files(summary, fmt, world)
    assert len(files) == N_CLIPS - 3
    assert all(world.resolve() in f.parents or (out in f.parents) for f in files)
    for v in victims:
        assert (hashlib.sha256(v.read_bytes()).hexdigest(), v.stat().st_mtime_ns, v.stat().st_nlink) == outside[v]
        assert v.resolve() not in files and not any(os.path.samefile(f, v) for f in files)


def test_refused_rows_are_printed_with_their_code(world, tmp_path, victims):
    set_paths(world, {0: str(victims[1])})
    r = CliRunner().invoke(cli, ["export", "-d", str(world), "-o", str(tmp_path / "m.jsonl")])
    assert r.exit_code == 3 and f"refused {OUTSIDE_ROOT}" in r.stderr and str(victims[1]) in r.stderr


def test_only_refused_clips_is_an_error_that_writes_nothing(world, tmp_path, victims):
    set_paths(world, {i: str(victims[1]) for i in range(N_CLIPS)})
    code, text, summary = export(world, "diffusion-pipe", "-o", tmp_path / "dp")
    assert code == 1 and "nothing to export" in summary["error"] and len(summary["items"]) == N_CLIPS
    assert not (tmp_path / "dp").exists()


@pytest.mark.parametrize("fmt", ["jsonl", "musubi", "diffusion-pipe"])
def test_a_planted_validation_path_is_never_deleted(world, tmp_path, fmt):
    victim = tmp_path / "victim"
    victim.write_text("not yours to delete\n")
    out = tmp_path / "exp" / ("metadata.jsonl" if fmt == "jsonl" else fmt)
    code, text, summary = export(world, fmt, "-o", out, "--split", "0.3")
    assert code == 0, text
    settings = Path(summary["settings"])
    data = json.loads(settings.read_text())
    data["validation_metadata_path"] = os.path.relpath(victim, settings.parent)   # ../victim or ../../victim
    settings.write_text(json.dumps(data))
    before = victim.stat().st_mtime_ns
    code, text, summary = export(world, fmt, "-o", out)      # no --split: the old list would go
    assert code == 3, text
    assert victim.read_text() == "not yours to delete\n" and victim.stat().st_mtime_ns == before
    assert [r["code"] for r in summary["refused"]] == [OUTSIDE_ROOT]
    assert "not removed" in summary["refused"][0]["message"]


def test_a_validation_path_naming_the_manifest_is_not_deleted(world):
    """The default export sits in the dataset folder: its settings must not be able to delete the manifest."""
    code, text, summary = export(world, "jsonl", "--split", "0.3")
    assert code == 0, text
    settings = world / ex.SETTINGS_NAME
    data = json.loads(settings.read_text())
    data["validation_metadata_path"] = MANIFEST_NAME
    settings.write_text(json.dumps(data))
    before = dataset_state(world)
    code, text, summary = export(world, "jsonl")
    assert code == 3, text
    assert dataset_state(world) == before
    assert [r["code"] for r in summary["refused"]] == [atomic.REFUSED]


def test_read_settings_refuses_metadata_outside_its_folder(world, tmp_path):
    code, text, summary = export(world, "jsonl", "-o", tmp_path / "e" / "m.jsonl")
    assert code == 0, text
    settings = Path(summary["settings"])
    data = json.loads(settings.read_text())
    data["metadata_path"] = "/etc/hostname"
    settings.write_text(json.dumps(data))
    with pytest.raises(ex.ExportError, match=OUTSIDE_ROOT):
        ex.read_settings(settings)


# --- 3. report, captions and train outputs follow the same rules --------------------------------

def _foreign_file(path: Path, text: str = "my own notes, not a wandata file\n") -> tuple[str, int]:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def _same(path: Path, before: tuple[str, int]) -> bool:
    return (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns) == before


def test_report_refuses_a_foreign_file_and_replaces_its_own(world, tmp_path):
    page = tmp_path / "page.html"
    before = _foreign_file(page, "<html><body>my page</body></html>\n")
    code, text, _ = run("report", "--dataset", world, "-o", page)
    assert code == 1 and "refusing to write" in text and str(page) in text
    assert _same(page, before)
    manifest = dataset_state(world)
    code, text, _ = run("report", "--dataset", world, "-o", world / MANIFEST_NAME)
    assert code == 1 and "refusing" in text and dataset_state(world) == manifest
    ours = tmp_path / "ours.html"
    assert run("report", "--dataset", world, "-o", ours)[0] == 0
    assert run("report", "--dataset", world, "-o", ours)[0] == 0       # a report of ours is replaced


def test_report_reads_no_clip_outside_the_dataset(world, victims):
    from wandata.report.html import build
    rel = os.path.relpath(victims[0], world)
    set_paths(world, {0: rel})
    page = build(world)
    card, = [c for c in page.split('<div class="clip">')[1:] if rel in c]
    assert OUTSIDE_ROOT in card and "data:image/jpeg" not in card
    assert page.count("data:image/jpeg;base64,") == 3 * (N_CLIPS - 1)


def test_captions_export_refuses_a_foreign_file_and_the_manifest(world, tmp_path):
    mine = tmp_path / "captions.csv"
    before = _foreign_file(mine, "name,notes\nfox,my spreadsheet\n")
    code, text, _ = run("captions", "export", mine, "-d", world)
    assert code == 1 and "refusing to write" in text and _same(mine, before)
    manifest = dataset_state(world)
    code, text, _ = run("captions", "export", world / MANIFEST_NAME, "-d", world)
    assert code == 1 and dataset_state(world) == manifest
    code, text, _ = run("captions", "export", world / "clips" / "c.csv", "-d", world)
    assert code == 1 and not (world / "clips" / "c.csv").exists()
    ours = tmp_path / "ours.csv"
    assert run("captions", "export", ours, "-d", world)[0] == 0
    assert run("captions", "export", ours, "-d", world)[0] == 0       # an export of ours is replaced


def test_caption_sidecars_are_not_read_outside_their_folder(world, tmp_path, victims):
    """A planted clip path beside a .txt outside the dataset, and a clip id that climbs out of
    the sidecar folder: neither outside file becomes a caption."""
    victims[0].with_suffix(".txt").write_text("SECRET beside the victim")
    side = tmp_path / "side"
    side.mkdir()
    (tmp_path / "secret.txt").write_text("SECRET above the sidecar folder")
    rel = os.path.relpath(victims[0], world)
    table = pq.read_table(world / MANIFEST_NAME)
    rows = table.to_pylist()
    clips = [r for r in rows if r["kind"] == "clip"]
    clips[0]["path"] = rel
    clips[1]["clip_id"] = "../secret"
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), world / MANIFEST_NAME)
    code, text, s = run("caption", "-d", world, "-c", "sidecar", "--opt", f"dir={side}", "--recaption", "--json")
    assert code == 3, text
    errors = {e["clip_id"]: e for e in s["errors"]}
    assert errors[clips[0]["clip_id"]]["code"] == OUTSIDE_ROOT
    assert errors["../secret"]["code"] == "caption_failed"
    assert not [c for c in Manifest(world).all_clips() if "SECRET" in c.caption]


def test_train_refuses_a_foreign_output_folder(world, tmp_path):
    pytest.importorskip("diffsynth")
    code, text, _ = export(world, "jsonl")
    assert code == 0, text
    mine = tmp_path / "mine"
    before = _foreign_file(mine / "notes.txt")
    listing = sorted(p.name for p in mine.iterdir())
    for out in (mine, world, world.parent):
        r = CliRunner().invoke(cli, ["train", "-d", str(world), "-o", str(out), "--offline", "--models-root",
                                     str(tmp_path / "none"), "--quiet", "--workers", "0"])
        assert r.exit_code == 1 and "refusing to write" in r.output and str(out) in r.output, r.output
    assert _same(mine / "notes.txt", before) and sorted(p.name for p in mine.iterdir()) == listing
    assert not (world / "train_config.json").exists() and not (world.parent / "train_config.json").exists()


def test_validate_refuses_a_foreign_output_folder(world, tmp_path):
    pytest.importorskip("torch")
    from wandata.train import validate as V
    from wandata.train.config import TrainConfig

    mine = tmp_path / "renders"
    before = _foreign_file(mine / "holiday.mp4", "my video")
    plan = V.Plan(cfg=TrainConfig(dataset_base_path=str(world)), loras=[], prompts=[], seeds=[0],
                  out_dir=mine, num_frames=5, height=32, width=32)
    with pytest.raises(V.ValidateError, match="refusing to write"):
        V.run(plan, device="cpu", pipe=object())
    assert _same(mine / "holiday.mp4", before) and sorted(p.name for p in mine.iterdir()) == ["holiday.mp4"]
    plan.out_dir = world / "clips" / "renders"
    with pytest.raises(V.ValidateError, match="clips folder"):
        V.run(plan, device="cpu", pipe=object())
    assert not plan.out_dir.exists()
