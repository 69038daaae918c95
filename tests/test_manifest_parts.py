"""The manifest in parts (issue 17 point 3): appended per source, read as one table (latest
wins), folded by compaction into the same table, and readable whatever a crash left."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from wandata.dataset import manifest as mf
from wandata.dataset.manifest import MANIFEST_NAME, PARTS_NAME, Manifest, ReadOnly, read_table
from wandata.dataset.records import ClipRecord, SourceRecord


def source(i: int, n_clips: int = 3, tag: str = "") -> tuple[SourceRecord, list[ClipRecord]]:
    path = f"/raw/s{i:03d}.mp4"
    src = SourceRecord(path=path, source_id=f"id{i}{tag}", shots=[[0.0, 1.0]])
    return src, [ClipRecord(f"c{i}_{j}{tag}", src.source_id, path, 0, j, 0.0, 1.0, caption=f"clip {j}{tag}",
                            src_frames=[j, j + 1], phash=["ab" * 8]) for j in range(n_clips)]


def parts(ds: Path) -> list[str]:
    return sorted(n for n in os.listdir(ds / PARTS_NAME) if not n.startswith(".")) if (ds / PARTS_NAME).exists() else []


def test_each_source_is_a_new_part_and_reads_back_as_one_table_latest_wins(tmp_path, monkeypatch):
    monkeypatch.setattr(mf, "MIN_FOLD", 10 ** 9)
    m = Manifest(tmp_path)
    for i in range(6):
        m.put(*source(i))
        m.append([source(i)[0].path])
    base = (tmp_path / MANIFEST_NAME).read_bytes()
    m.put(*source(2, n_clips=1, tag="new"))   # source 2 again (a retry): its new rows replace all old ones
    m.append([source(2)[0].path])
    assert (tmp_path / MANIFEST_NAME).read_bytes() == base   # the base file was not rewritten
    assert parts(tmp_path) and all(p.endswith(".parquet") for p in parts(tmp_path))
    again = Manifest(tmp_path)
    assert again.rows() == m.rows()
    assert [c.clip_id for c in again.clips["/raw/s002.mp4"]] == ["c2_0new"]
    assert again.sources["/raw/s002.mp4"].source_id == "id2new"
    t = read_table(tmp_path)
    assert t.to_pylist() == pa.Table.from_pylist(m.rows(), schema=mf.SCHEMA).to_pylist()
    assert t.column("kind").to_pylist().count("source") == 6


def test_compaction_gives_the_same_table_in_one_file_and_the_same_bytes(tmp_path, monkeypatch):
    monkeypatch.setattr(mf, "MIN_FOLD", 10 ** 9)
    m = Manifest(tmp_path)
    for i in range(5):
        m.put(*source(i))
        m.append([source(i)[0].path])
    before = read_table(tmp_path).to_pylist()
    r = CliRunner().invoke(__import__("wandata.cli", fromlist=["main"]).main, ["compact", "-d", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert parts(tmp_path) == [] and read_table(tmp_path).to_pylist() == before
    one = (tmp_path / MANIFEST_NAME).read_bytes()
    mf.compact(tmp_path)                              # nothing to fold: the same bytes
    assert (tmp_path / MANIFEST_NAME).read_bytes() == one
    # and save() of the same records writes the same bytes as the compaction did
    Manifest(tmp_path).save()
    assert (tmp_path / MANIFEST_NAME).read_bytes() == one
    r = CliRunner().invoke(__import__("wandata.cli", fromlist=["main"]).main, ["compact", "-d", str(tmp_path / "none")])
    assert r.exit_code != 0


def test_parts_fold_into_the_base_by_themselves_and_stay_few(tmp_path, monkeypatch):
    monkeypatch.setattr(mf, "MIN_FOLD", 60)
    m = Manifest(tmp_path)
    for i in range(40):
        m.put(*source(i))
        m.append([source(i)[0].path])
        assert len(parts(tmp_path)) <= 6
    assert Manifest(tmp_path).rows() == m.rows()


def test_a_truncated_temporary_part_and_a_killed_compaction_leave_a_readable_manifest(tmp_path, monkeypatch):
    monkeypatch.setattr(mf, "MIN_FOLD", 10 ** 9)
    m = Manifest(tmp_path)
    for i in range(3):
        m.put(*source(i))
        m.append([source(i)[0].path])
    want = Manifest(tmp_path).rows()
    # a writer killed mid-write leaves its temporary: half a Parquet file, never read
    good = (tmp_path / PARTS_NAME / parts(tmp_path)[-1]).read_bytes()
    stale = tmp_path / PARTS_NAME / ".0000000099.parquet.1234.abcd.tmp"
    stale.write_bytes(good[: len(good) // 2])
    assert Manifest(tmp_path).rows() == want
    # a compaction killed after writing the new base, before removing the parts it folded:
    # the base names the parts it holds, and they are ignored
    kept_parts = {p: (tmp_path / PARTS_NAME / p).read_bytes() for p in parts(tmp_path)}
    assert mf.compact(tmp_path)["temporaries_removed"] == 1
    for p, data in kept_parts.items():
        (tmp_path / PARTS_NAME / p).write_bytes(data)
    m2 = Manifest(tmp_path)
    assert m2.rows() == want
    m2.put(*source(1, tag="x"))                        # a later part still wins over the base
    m2.append(["/raw/s001.mp4"])
    assert Manifest(tmp_path).sources["/raw/s001.mp4"].source_id == "id1x"
    assert not [n for n in os.listdir(tmp_path / PARTS_NAME) if n.endswith(".tmp")], os.listdir(tmp_path / PARTS_NAME)


WRITER = """
import sys, time
from pathlib import Path
from wandata.dataset.manifest import Manifest
from wandata.dataset.records import ClipRecord, SourceRecord
m = Manifest(Path(sys.argv[1]))
for i in range(100000):
    p = f"/raw/k{i:06d}.mp4"
    m.put(SourceRecord(path=p, source_id=str(i)), [ClipRecord(f"k{i}_{j}", str(i), p, 0, j, 0.0, 1.0) for j in range(50)])
    m.append([p])
    print(i, flush=True)
"""


def test_a_writer_killed_at_any_moment_leaves_every_source_it_finished(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parent.parent)
    finished = -1
    deadline = time.time() + 60
    while finished < 25 and time.time() < deadline:
        finished = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    m = Manifest(tmp_path)
    got = sorted(m.sources)
    assert len(got) >= finished + 1
    assert got[: finished + 1] == [f"/raw/k{i:06d}.mp4" for i in range(finished + 1)]
    assert all(len(m.clips[p]) == 50 for p in got)
    Manifest(tmp_path).remove_stale_temporaries()
    assert not [n for n in os.listdir(tmp_path / PARTS_NAME) if n.endswith(".tmp")]


def test_an_old_single_file_manifest_reads_unchanged(tmp_path):
    rows = []
    for i in range(3):
        src, clips = source(i)
        rows += [src.row(), *(c.row() for c in clips)]
    # as the code before parts wrote it: one file, no parts metadata, and missing a newer column
    table = pa.Table.from_pylist(rows, schema=mf.SCHEMA).drop_columns(["orientation"])
    pq.write_table(table, tmp_path / MANIFEST_NAME)
    m = Manifest(tmp_path)
    assert [c.clip_id for c in m.all_clips()] == [r["clip_id"] for r in rows if r["kind"] == "clip"]
    assert all(c.orientation == "" for c in m.all_clips())
    assert read_table(tmp_path).column("clip_id").to_pylist() == [r.get("clip_id") for r in rows]
    m.put(*source(7))
    m.append(["/raw/s007.mp4"])
    assert len(Manifest(tmp_path).sources) == 4 and len(parts(tmp_path)) == 1


def test_the_reader_leaves_per_frame_columns_out_and_refuses_to_write(tmp_path):
    m = Manifest(tmp_path)
    m.put(*source(0))
    m.save()
    r = Manifest.reader(tmp_path)
    c = r.all_clips()[0]
    assert c.src_frames is None and c.phash is None and c.caption == "clip 0"
    with pytest.raises(ReadOnly):
        r.save()
    with pytest.raises(ReadOnly):
        r.append(["/raw/s000.mp4"])
    assert Manifest.sources_only(tmp_path).sources["/raw/s000.mp4"].shots == [[0.0, 1.0]]
