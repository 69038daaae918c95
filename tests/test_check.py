"""`wandata check`: finds every planted problem in a hand-made dataset, and passes ours."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from wandata import export as ex
from wandata.export.check import check
from wandata.dataset.manifest import Manifest

from .test_export import SPECIAL, set_captions, tiny_dataset, write_clip

SETTINGS = {"num_frames": 9, "height": 64, "width": 96, "fps": 16}


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "wandata.cli", *map(str, args)], capture_output=True, text=True)


def _found(report) -> set[tuple[str, str]]:
    return {(p["code"], p["where"]) for p in report["problems"]}


@pytest.fixture(scope="module")
def broken(tmp_path_factory) -> Path:
    """A hand-made DiffSynth dataset with one planted problem per row (see ROWS)."""
    d = tmp_path_factory.mktemp("handmade")
    for name, w, h, n, fps in [("good.mp4", 96, 64, 9, 16), ("short.mp4", 96, 64, 5, 16),
                               ("fast.mp4", 96, 64, 9, 24), ("odd.mp4", 104, 64, 9, 16),
                               ("portrait.mp4", 64, 96, 9, 16), ("nan1.mp4", 96, 64, 9, 16),
                               ("nan2.mp4", 96, 64, 9, 16), ("num.mp4", 96, 64, 9, 16),
                               ("long.mp4", 96, 64, 13, 16)]:
        write_clip(d / name, w, h, n, fps)
    (d / "broken.mp4").write_bytes(b"this is not a video\n" * 50)
    (d / "notes.txt").write_text("a text file")
    with open(d / "metadata.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["video", "prompt"])
        w.writerows(ROWS)
    return d


ROWS = [  # (video, prompt); the problem each row plants is in PLANTED
    ("good.mp4", "a good clip, with a comma"),
    ("missing.mp4", "gone"),
    ("short.mp4", "too short"),
    ("fast.mp4", "24 fps"),
    ("odd.mp4", "104 wide"),
    ("portrait.mp4", "portrait in a landscape run"),
    ("good.mp4", "a good clip, with a comma"),
    ("good.mp4", "another prompt for the same clip"),
    ("nan1.mp4", "NA"),
    ("nan2.mp4", ""),
    ("broken.mp4", "not a video"),
    ("notes.txt", "wrong kind of file"),
    ("", "no video path"),
    ("num.mp4", "42"),
    ("long.mp4", "longer than num_frames"),
]
PLANTED = {
    ("missing_file", "metadata.csv row 2"),
    ("too_few_frames", "metadata.csv row 3"),
    ("fps", "metadata.csv row 4"),
    ("not_multiple_of_16", "metadata.csv row 5"),
    ("size_vs_settings", "metadata.csv row 5"),
    ("size_vs_settings", "metadata.csv row 6"),
    ("duplicate_row", "metadata.csv row 7"),
    ("duplicate_video", "metadata.csv row 8"),
    ("nan_prompt", "metadata.csv row 9"),
    ("nan_prompt", "metadata.csv row 10"),
    ("undecodable", "metadata.csv row 11"),
    ("unsupported_extension", "metadata.csv row 12"),
    ("missing_video_path", "metadata.csv row 13"),
    ("numeric_prompt", "metadata.csv row 14"),
    ("extra_frames", "metadata.csv row 15"),
}


def test_check_finds_every_planted_problem(broken):
    report = check(broken / "metadata.csv", **SETTINGS)
    assert _found(report) == PLANTED
    assert not report["ok"] and report["errors"] == len(PLANTED) - 1 and report["warnings"] == 1
    by = {(p["code"], p["where"]): p for p in report["problems"]}
    assert "cropped to the other orientation" in by[("size_vs_settings", "metadata.csv row 6")]["message"]
    assert "24.000 fps" in by[("fps", "metadata.csv row 4")]["message"]
    assert "5 frames" in by[("too_few_frames", "metadata.csv row 3")]["message"]
    assert all(p["fix"] for p in report["problems"])


def test_check_cli_exit_status_and_json(broken):
    r = _cli("check", broken, "--num-frames", 9, "--height", 64, "--width", 96, "--fps", 16, "--json")
    assert r.returncode == 3, r.stderr
    assert _found(json.loads(r.stdout)) == PLANTED
    r = _cli("check", broken / "metadata.csv", "--num-frames", 9)
    assert r.returncode == 3 and "missing_file" in r.stdout and "fix:" in r.stdout
    r = _cli("check", broken, "--height", 64)
    assert r.returncode == 2 and "--width" in r.stderr
    r = _cli("check", "--help")
    assert r.returncode == 0 and "DIR_OR_METADATA" in r.stdout


def test_dynamic_mode_flags_only_what_it_would_change(broken):
    report = check(broken / "metadata.csv", num_frames=9, max_pixels=96 * 64)
    codes = {c for c, _ in _found(report)}
    assert "size_vs_settings" in codes      # 104x64 is over max_pixels and would be downscaled
    assert ("size_vs_settings", "metadata.csv row 6") not in _found(report)  # portrait kept as is


def test_json_metadata_problems(tmp_path):
    write_clip(tmp_path / "a.mp4", 96, 64, 9)
    write_clip(tmp_path / "b.mp4", 96, 64, 9)
    (tmp_path / "metadata.json").write_text(json.dumps([
        {"video": "a.mp4", "prompt": None}, {"video": "b.mp4", "prompt": 5}, {"video": "a.mp4"}]))
    report = check(tmp_path / "metadata.json", num_frames=9)
    assert _found(report) == {("empty_prompt", "metadata.json row 1"), ("non_text_prompt", "metadata.json row 2"),
                              ("empty_prompt", "metadata.json row 3"), ("duplicate_row", "metadata.json row 3")}
    # In JSON a NaN word is just text: nothing to report.
    (tmp_path / "metadata.json").write_text(json.dumps([{"video": "a.mp4", "prompt": "NA"}]))
    assert check(tmp_path / "metadata.json", num_frames=9)["ok"]
    (tmp_path / "metadata.jsonl").write_text('{"video": "a.mp4", "prompt": "x"}\n\n')
    report = check(tmp_path / "metadata.jsonl")
    assert [p["code"] for p in report["problems"]] == ["unreadable_metadata"]
    assert "blank lines" in report["problems"][0]["message"]


def test_check_passes_our_exports(sample_dataset):
    set_captions(sample_dataset, SPECIAL[:4] + ["NA", "None", "null", "n/a"])
    ex.export(sample_dataset, "jsonl", split=0.2)
    r = _cli("check", sample_dataset)
    assert r.returncode == 0, r.stdout + r.stderr
    report = check(sample_dataset)
    assert report["ok"] and report["rows"] == 8 and report["videos_decoded"] == 8 and not report["problems"]
    assert report["settings"]["num_frames"] == 81 and report["settings"]["max_pixels"] >= 832 * 480
    # The raw dataset directory too (manifest only): uncaptioned clips are warnings until export.
    set_captions(sample_dataset, SPECIAL)
    for fmt in ("musubi", "diffusion-pipe"):
        ex.export(sample_dataset, fmt)
        report = check(sample_dataset / "export" / fmt)
        assert report["ok"] and report["rows"] == 8, report["problems"]
    (sample_dataset / ex.SETTINGS_NAME).unlink()
    (sample_dataset / "metadata.jsonl").unlink()
    (sample_dataset / "metadata_val.jsonl").unlink()
    assert check(sample_dataset)["ok"]


def test_check_compares_clips_with_the_manifest(tmp_path):
    d = tiny_dataset(tmp_path / "ds", 3)
    ex.export(d, "jsonl")
    clips = Manifest(d).all_clips()
    write_clip(d / clips[0].path, clips[0].width, clips[0].height, 5)       # replaced behind its back
    write_clip(d / clips[1].path, 128, 64, 9)
    report = check(d)
    found = {(p["code"], Path(p["file"]).name) for p in report["problems"]}
    assert ("frame_count", Path(clips[0].path).name) in found
    assert ("too_few_frames", Path(clips[0].path).name) in found
    assert ("size", Path(clips[1].path).name) in found
    msg = next(p["message"] for p in report["problems"] if p["code"] == "frame_count")
    assert "manifest.parquet says 9" in msg


def test_check_catches_a_validation_leak(tmp_path):
    d = tiny_dataset(tmp_path / "ds", 6)
    ex.export(d, "jsonl", split=0.3)
    first_train = (d / "metadata.jsonl").read_text().splitlines()[0]
    with open(d / "metadata_val.jsonl", "a") as f:
        f.write(first_train + "\n")
    codes = {p["code"] for p in check(d)["problems"]}
    assert {"train_validation_overlap", "source_in_both_splits"} <= codes


def test_nothing_to_check_is_an_error(tmp_path):
    r = _cli("check", tmp_path)
    assert r.returncode == 1 and "wandata export" in r.stderr


def test_paths_leading_out_of_a_wandata_dataset_or_export_are_not_opened(tmp_path):
    """A manifest clip path and an exported row that climb out of the dataset, and a musubi JSONL
    that lies outside its export folder: reported as path_outside_root, never decoded."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = tiny_dataset(tmp_path / "ds", 3)
    write_clip(tmp_path / "victim.mp4", 112, 64, 9)
    table = pq.read_table(d / "manifest.parquet")
    rows = table.to_pylist()
    clip_rows = [r for r in rows if r["kind"] == "clip"]
    clip_rows[0]["path"] = "../victim.mp4"
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), d / "manifest.parquet")
    report = check(d)
    outside = [p for p in report["problems"] if p["code"] == "path_outside_root"]
    assert len(outside) == 1 and "../victim.mp4" in outside[0]["message"] and outside[0]["severity"] == "error"
    assert report["videos_decoded"] == 2 and not report["ok"]
    # An export whose metadata was edited to point out of the dataset.
    clip_rows[0]["path"] = "clips/src0/clip000.mp4"
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), d / "manifest.parquet")
    ex.export(d, "jsonl")
    lines = (d / "metadata.jsonl").read_text().splitlines()
    lines[0] = json.dumps({"video": "../victim.mp4", "prompt": "x"})
    (d / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    report = check(d)
    assert [p["where"] for p in report["problems"] if p["code"] == "path_outside_root"] == ["metadata.jsonl row 1"]
    assert report["videos_decoded"] == 2
    # A musubi export whose dataset.toml names a JSONL outside the export folder.
    ex.export(d, "musubi")
    out = d / "export" / "musubi"
    (tmp_path / "evil.jsonl").write_text(json.dumps({"video_path": str(tmp_path / "victim.mp4"), "caption": "x"}) + "\n")
    toml = (out / "dataset.toml").read_text()
    first = next(line for line in toml.splitlines() if line.startswith("video_jsonl_file"))
    (out / "dataset.toml").write_text(toml.replace(first, f'video_jsonl_file = "{tmp_path / "evil.jsonl"}"', 1))
    report = check(out)
    assert [p["where"] for p in report["problems"] if p["code"] == "path_outside_root"] == ["video_jsonl_file"]
    assert str(tmp_path / "victim.mp4") not in {p["file"] for p in report["problems"]}
