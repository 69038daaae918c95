"""--engine ray gives the local engine's result, also after a task dies or the driver is killed."""
import os
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from wandata.settings import Settings  # noqa: E402
from wandata.engine import LocalEngine, RayEngine  # noqa: E402
from wandata.dataset.manifest import Manifest  # noqa: E402
from wandata.ingest.run import ingest  # noqa: E402

from .conftest import SAMPLE  # noqa: E402
from .media import dataset_state, small_sources  # noqa: E402

SETTINGS = Settings(frames=33, buckets=((416, 240),), detector="adaptive", min_source_scale=0.5,
                    preset="veryfast")
ARGS = ["--frames", "33", "--bucket", "416x240", "--detector", "adaptive", "--min-source-scale", "0.5",
        "--preset", "veryfast", "--quiet"]
VICTIM = "src1.mp4"


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    return small_sources(tmp_path_factory.mktemp("raw"), [90, 70])


@pytest.fixture(scope="module")
def ray_runtime():
    # One GPU declared, not present: enough for Ray to place tasks that ask for a GPU share.
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False)
    # The injected faults below live in this test module, which Ray's workers cannot import.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    ray.shutdown()


@pytest.fixture(scope="module")
def reference(raw, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "ds"
    ingest([raw], out, SETTINGS, progress=False, engine=LocalEngine())
    rows, files = dataset_state(out)
    kept = [r for r in rows if r["kind"] == "clip" and r["status"] == "kept"]
    assert len(kept) >= 3 and all(r["decoded_digest"] for r in kept)
    return rows, files


def test_ray_engine_from_the_cli_matches_the_local_engine(raw, reference, ray_runtime, tmp_path):
    out = tmp_path / "ds"
    # --ray-address auto: the command joins the runtime this test started, as on a cluster.
    run = subprocess.run([sys.executable, "-m", "wandata.cli", "ingest", str(raw), "-o", str(out), *ARGS,
                          "--engine", "ray", "--ray-address", "auto"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert dataset_state(out) == reference  # same rows, same files, same decoded pictures (decoded_digest)


def test_ray_engine_on_the_sample_data_matches_the_local_engine(sample_dataset_ro, ray_runtime, tmp_path):
    # Default settings: the shot model runs (the cascade on this CPU), not only the adaptive detector.
    out = tmp_path / "ds"
    ingest([SAMPLE], out, Settings(), progress=False, engine=RayEngine())
    assert dataset_state(out) == dataset_state(sample_dataset_ro)


def test_a_rerun_after_the_driver_is_killed_resumes_to_the_same_result(raw, reference, ray_runtime, tmp_path):
    out = tmp_path / "ds"
    cmd = [sys.executable, "-m", "wandata.cli", "ingest", str(raw), "-o", str(out), *ARGS,
           "--engine", "ray", "--ray-address", "auto"]
    driver = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / "clips").rglob("*.part")):  # a clip half-written
        time.sleep(0.01)
    driver.kill()
    assert driver.wait(timeout=60) != 0  # really killed mid-run
    rerun = subprocess.run(cmd, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert dataset_state(out) == reference
    assert not list(out.rglob("*.part"))


def _first_attempt_fails(job, markers: str, how: str, path: str, on_progress=None):
    """Fail VICTIM's task as ``how`` says; the marker file counts the attempts."""
    if Path(path).name == VICTIM:
        marker = Path(markers) / VICTIM
        attempts = len(marker.read_text()) if marker.exists() else 0
        marker.write_text("x" * (attempts + 1))
        if how == "crash" and attempts == 0:
            os._exit(1)  # the worker process dies mid-task, as when a node is OOM-killed
        if how == "oserror" and attempts == 0:
            raise OSError("injected: stale file handle on the shared filesystem")
        if how == "bug":
            raise ValueError("injected: a bug that fails this file every time")
    return job(path, on_progress=on_progress)


class FaultyRay(RayEngine):
    def __init__(self, markers: Path, how: str):
        super().__init__(cpus_per_task=1)  # two tasks at once on the 2-CPU runtime
        self.markers, self.how = markers, how

    def results(self, job, failed, paths, **kwargs):
        return super().results(partial(_first_attempt_fails, job, str(self.markers), self.how),
                               failed, paths, **kwargs)


@pytest.mark.parametrize("how", ["crash", "oserror"])
def test_a_task_that_dies_or_hits_a_transient_error_is_retried(raw, reference, ray_runtime, tmp_path, how):
    out, markers = tmp_path / "ds", tmp_path / "markers"
    markers.mkdir()
    summary = ingest([raw], out, SETTINGS, progress=False, engine=FaultyRay(markers, how))
    assert (markers / VICTIM).read_text() == "xx"  # failed once, then succeeded
    assert summary.processed == 3 and not summary.problems
    assert dataset_state(out) == reference


def test_a_deterministic_error_is_not_retried_and_is_recorded(raw, reference, ray_runtime, tmp_path):
    out, markers = tmp_path / "ds", tmp_path / "markers"
    markers.mkdir()
    ingest([raw], out, SETTINGS, progress=False, engine=FaultyRay(markers, "bug"))
    assert (markers / VICTIM).read_text() == "x"
    victim = next(s for p, s in Manifest(out).sources.items() if Path(p).name == VICTIM)
    assert victim.status == "failed"
    assert "ValueError: injected: a bug that fails this file every time" in victim.reason
    assert "Traceback" not in victim.reason
    others = [r for r in dataset_state(out)[0] if VICTIM not in (r["source_path"] or r["path"])]
    assert others == [r for r in reference[0] if VICTIM not in (r["source_path"] or r["path"])]


def _visible_gpus(path, on_progress=None):
    return path, ray.get_gpu_ids()


@pytest.mark.parametrize("gpu, expect", [(None, [0]), (True, [0]), (False, [])])
def test_a_task_asks_for_a_gpu_share_when_the_detector_runs_on_one(ray_runtime, gpu, expect):
    # None ("one if there is one", --device auto): this cluster declares a GPU, so ask for it.
    got = list(RayEngine().results(_visible_gpus, None, ["a"], gpu=gpu))
    assert got == [("a", expect)]
