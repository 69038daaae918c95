"""An interrupted run (kill -9 or Ctrl-C) resumes to the same manifest and clips."""
import json
import signal
import subprocess
import sys
import time

import pytest

from wandata.manifest import read_table

from .media import dataset_state, small_sources

ARGS = ["--frames", "33", "--bucket", "416x240", "--detector", "adaptive", "--min-source-scale", "0.5",
        "--preset", "veryfast", "--quiet"]


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    return small_sources(tmp_path_factory.mktemp("raw"), [130, 110])


def _cmd(raw, out):
    return [sys.executable, "-m", "wandata.cli", "ingest", str(raw), "-o", str(out), *ARGS]


@pytest.fixture(scope="module")
def reference(raw, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "ds"
    subprocess.run(_cmd(raw, out), check=True, capture_output=True)
    return dataset_state(out)


def _interrupt_mid_clip(raw, out, sig):
    proc = subprocess.Popen(_cmd(raw, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    # Wait until the second source is being written: one source done, a clip half-written.
    while time.time() < deadline:
        done = (out / "manifest.parquet").exists()
        if done and list((out / "clips").rglob("*.part")):
            break
        time.sleep(0.02)
    else:
        proc.kill()
        pytest.fail("the run never reached the middle of its second source")
    proc.send_signal(sig)
    proc.wait(timeout=60)
    return proc.returncode


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_interrupted_run_resumes_to_the_same_result(raw, reference, tmp_path, sig):
    out = tmp_path / "ds"
    rc = _interrupt_mid_clip(raw, out, sig)
    assert rc != 0
    rows_before = read_table(out).to_pylist()
    assert 1 <= sum(r["kind"] == "source" for r in rows_before) < 3  # really interrupted mid-run
    resumed = subprocess.run(_cmd(raw, out), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    rows, files = dataset_state(out)
    ref_rows, ref_files = reference
    assert files == ref_files                # no duplicates, no half-written clips
    assert not list(out.rglob("*.part"))
    assert len(rows) == len(ref_rows)
    for a, b in zip(rows, ref_rows):
        assert a == b                        # same plan, same decoded pictures (decoded_digest)


def test_json_summary_of_a_rerun_reports_skipped_sources(raw, tmp_path):
    out = tmp_path / "ds"
    subprocess.run(_cmd(raw, out), check=True, capture_output=True)
    again = subprocess.run([*_cmd(raw, out), "--json"], capture_output=True, text=True, check=True)
    s = json.loads(again.stdout)
    assert s["skipped"] == 3 and s["processed"] == 0 and s["clips"]["kept"] >= 3
