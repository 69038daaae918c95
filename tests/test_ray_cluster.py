"""`wandata ingest --engine ray` on a multi-node Ray cluster started as a user starts one: a head
and two worker nodes, each its own `ray start` process (own resources, own temp dir, own IP), the
sources and the dataset on storage every node sees (here a local folder). Checks that the command
joins the cluster by HOST:PORT, that the tasks run on the worker nodes, and that killing a worker
node mid-run loses and duplicates nothing: the result equals the local engine's.

The cluster is started once for the module and torn down by killing exactly the processes it
started (never `ray stop`, which would also stop every other Ray runtime on this machine).
"""
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

from wandata.dataset.manifest import read_table  # noqa: E402
from wandata.engine import LocalEngine  # noqa: E402
from wandata.ingest.run import ingest  # noqa: E402
from wandata.settings import Settings  # noqa: E402

from .media import dataset_state, small_sources  # noqa: E402

SETTINGS = Settings(frames=33, buckets=((416, 240),), detector="adaptive", min_source_scale=0.5,
                    preset="veryfast")
ARGS = ["--frames", "33", "--bucket", "416x240", "--detector", "adaptive", "--min-source-scale", "0.5",
        "--preset", "veryfast", "--quiet"]
# A task asks for 2 CPUs (RayEngine.cpus_per_task): the 1-CPU head can run none, so every source
# must go to a worker node, one at a time on each. The worker nodes get IPs of their own (any
# 127.x.y.z is this machine) like separate machines; the head keeps this machine's address, the one
# Ray resolves 127.0.0.1 to when a driver connects.
NODES = {"head": (None, 1), "a": ("127.0.0.2", 2), "b": ("127.0.0.3", 2)}
RAY = [sys.executable, "-m", "ray.scripts.scripts"]


def _free_port(ip: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d.name))
    return kids


def _tree(pid: int) -> list[int]:
    """pid and its descendants. Ray's worker processes start their own process group (setsid),
    so killing a node's process group alone would miss them."""
    kids, out, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _title(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return ""


class Cluster:
    """A head and worker nodes as separate `ray start --block` processes, each in its own session."""

    def __init__(self, root: Path):
        self.root, self.nodes, self.pids = root, {}, set()
        token = root / "token"  # token authentication, as a cluster reachable from a network should use
        token.write_text(secrets.token_hex(32))
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
                    "RAY_USAGE_STATS_ENABLED": "0",
                    # Declare a killed node dead within ~2 s instead of ~30 s, so its task is retried soon.
                    "RAY_health_check_period_ms": "500", "RAY_health_check_timeout_ms": "500",
                    "RAY_health_check_failure_threshold": "3", "RAY_health_check_initial_delay_ms": "0"}
        self.env.pop("RAY_ADDRESS", None)
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"

    def start_node(self, name: str) -> None:
        ip, cpus = NODES[name]
        temp = self.root / name  # short: Ray's socket paths under it must stay under 108 bytes
        cmd = [*RAY, "start", "--block", "--disable-usage-stats", *(["--node-ip-address", ip] if ip else []),
               "--num-cpus", str(cpus), "--num-gpus", "0", "--resources", json.dumps({f"node_{name}": 1}),
               "--object-store-memory", str(80 * 2**20), "--temp-dir", str(temp),
               # Every node of a real cluster has these ports to itself; here they share one host.
               "--node-manager-port", str(_free_port()), "--object-manager-port", str(_free_port()),
               "--dashboard-agent-listen-port", str(_free_port()), "--dashboard-agent-grpc-port", str(_free_port()),
               "--metrics-export-port", str(_free_port()), "--runtime-env-agent-port", str(_free_port())]
        if name == "head":
            cmd += ["--head", "--port", str(self.port), "--include-dashboard=false",
                    "--dashboard-port", str(_free_port())]
        else:
            cmd += ["--address", self.address]
        log = open(self.root / f"{name}.log", "wb")
        self.nodes[name] = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        log.close()

    def wait_for(self, names: list[str], timeout: float = 150) -> dict[str, str]:
        """Node name -> Ray node id, once every named node has joined (known by its resource)."""
        script = ("import json, sys, time, ray\n"
                  "ray.init(address=sys.argv[1], logging_level='ERROR')\n"
                  "want, deadline = set(sys.argv[2:]), time.time() + 100\n"
                  "while time.time() < deadline:\n"
                  "    nodes = {r[5:]: n['NodeID'] for n in ray.nodes() if n['Alive']\n"
                  "             for r in n['Resources'] if r.startswith('node_')}\n"
                  "    if want <= set(nodes): break\n"
                  "    time.sleep(0.2)\n"
                  "print(json.dumps(nodes))\n")
        deadline = time.time() + timeout
        while True:  # the head may not listen yet
            try:
                run = subprocess.run([sys.executable, "-c", script, self.address, *names], env=self.env,
                                     capture_output=True, text=True, timeout=max(10, deadline - time.time()))
            except subprocess.TimeoutExpired as e:
                raise AssertionError(f"the cluster did not come up: {e.stderr}" + self.logs()) from None
            dead = [n for n, p in self.nodes.items() if p.poll() is not None]
            if run.returncode == 0 or time.time() > deadline or dead:
                break
            time.sleep(1)
        assert run.returncode == 0, run.stderr[-3000:] + self.logs()
        nodes = json.loads(run.stdout.strip().splitlines()[-1])
        assert set(names) <= set(nodes), (nodes, self.logs())
        return {n: nodes[n] for n in names}

    def kill(self, name: str) -> list[int]:
        """SIGKILL a whole node: what a machine that loses power or is OOM-killed looks like."""
        proc = self.nodes[name]
        pids = _tree(proc.pid)
        self.pids.update(pids)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
        return pids

    def tasks_running(self, name: str) -> list[int]:
        """Worker processes of that node executing an ingest task (Ray titles them ray::<function>)."""
        return [p for p in _tree(self.nodes[name].pid) if _title(p) == "ray::_run_job"]

    def stop(self) -> list[int]:
        """Kill every process the nodes started; the pids still alive after 20 s."""
        for name in list(self.nodes):
            if self.nodes[name].poll() is None:
                self.kill(name)
        deadline = time.time() + 20
        while time.time() < deadline and any(_alive(p) for p in self.pids):
            time.sleep(0.2)
        return [p for p in self.pids if _alive(p)]

    def logs(self) -> str:
        return "".join(f"\n--- {p.name}\n" + p.read_text(errors="replace")[-1500:]
                       for p in sorted(self.root.glob("*.log")))


@pytest.fixture(scope="module")
def cluster():
    root = Path(tempfile.mkdtemp(prefix="wdray", dir="/tmp"))
    c = Cluster(root)
    try:
        c.start_node("head")
        c.start_node("a")
        c.start_node("b")
        c.ids = c.wait_for(list(NODES))
        yield c
    finally:
        left = c.stop()
        shutil.rmtree(root, ignore_errors=True)
        assert not left, f"Ray processes left behind: {[(p, _title(p)) for p in left]}"


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """The shared storage: sources and datasets (on a real cluster, an NFS mount on every node)."""
    from tools import synth

    root = tmp_path_factory.mktemp("shared")
    raw = root / "raw"
    raw.mkdir()
    small_sources(raw, [90, 70])

    # A fourth source, so that both worker nodes stay busy while the first results come back.
    synth.write_video(raw / "src3.mp4", synth.make_shots([90, 70], photos=["moon", "astronaut"], seed=3),
                      None, 640, 368, 25, crf=20)
    return root


@pytest.fixture(scope="module")
def reference(shared):
    out = shared / "local"
    ingest([shared / "raw"], out, SETTINGS, progress=False, engine=LocalEngine())
    state = dataset_state(out)
    kept = [r for r in state[0] if r["kind"] == "clip" and r["status"] == "kept"]
    assert len(kept) >= 4 and all(r["decoded_digest"] for r in kept)
    return state


def _cli(cluster, shared: Path, out: Path, *extra) -> list[str]:
    return [sys.executable, "-m", "wandata.cli", "ingest", str(shared / "raw"), "-o", str(out), *ARGS,
            "--engine", "ray", "--ray-address", cluster.address, *extra]


def _assert_each_source_once(out: Path, shared: Path) -> None:
    rows = read_table(out).to_pylist()
    sources = sorted(r["path"] for r in rows if r["kind"] == "source")
    assert sources == sorted(str(p) for p in (shared / "raw").resolve().glob("*.mp4"))
    clips = [r["path"] for r in rows if r["kind"] == "clip" and r["path"]]
    assert len(clips) == len(set(clips))
    on_disk = sorted(p.relative_to(out).as_posix() for p in (out / "clips").rglob("*") if p.is_file())
    assert on_disk == sorted(clips)  # every listed clip once, nothing unlisted, no *.part


def test_an_address_where_no_cluster_listens_fails_at_once_naming_it(tmp_path):
    address = f"127.0.0.1:{_free_port()}"
    raw = tmp_path / "raw"
    raw.mkdir()
    run = subprocess.run([sys.executable, "-m", "wandata.cli", "ingest", str(raw), "-o", str(tmp_path / "ds"),
                          "--engine", "ray", "--ray-address", address],
                         capture_output=True, text=True, timeout=60)  # ray.init alone retries for minutes
    assert run.returncode == 2, run.stderr
    assert f"cannot reach the Ray cluster at '{address}'" in run.stderr
    assert not (tmp_path / "ds").exists()


def test_the_cli_joins_the_cluster_by_address_and_matches_the_local_engine(cluster, shared, reference):
    out = shared / "cli"
    run = subprocess.run(_cli(cluster, shared, out), env=cluster.env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:] + cluster.logs()
    assert dataset_state(out) == reference  # same rows, same files, same decoded pictures
    _assert_each_source_once(out, shared)


def test_the_sources_run_on_the_worker_nodes(cluster, shared, reference):
    # The Python API on a driver process of its own, to read which node ran each source.
    out = shared / "api"
    script = ("import json, sys\n"
              "from wandata.engine import RayEngine\n"
              "from wandata.ingest.run import ingest\n"
              "from tests.test_ray_cluster import SETTINGS\n"
              "engine = RayEngine(sys.argv[1])\n"
              "ingest([sys.argv[2]], sys.argv[3], SETTINGS, progress=False, engine=engine)\n"
              "print(json.dumps(engine.placement))\n")
    run = subprocess.run([sys.executable, "-c", script, cluster.address, str(shared / "raw"), str(out)],
                         env=cluster.env, capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parent.parent)
    assert run.returncode == 0, run.stderr[-3000:] + cluster.logs()
    placement = json.loads(run.stdout.strip().splitlines()[-1])
    assert sorted(placement) == sorted(str(p) for p in (shared / "raw").resolve().glob("*.mp4"))
    # Both worker nodes took sources, the head none (it has 1 CPU, a task needs 2).
    assert set(placement.values()) == {cluster.ids["a"], cluster.ids["b"]}
    assert dataset_state(out) == reference


def test_a_worker_node_killed_mid_run_loses_and_duplicates_nothing(cluster, shared, reference):
    # Last in the module: the cluster has one worker node left afterwards.
    out = shared / "killed"
    driver = subprocess.Popen(_cli(cluster, shared, out), env=cluster.env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        # Mid-run: the first source is in the manifest and node a is executing another one.
        busy, deadline = [], time.time() + 180
        while not busy and time.time() < deadline and driver.poll() is None:
            time.sleep(0.05)
            if (out / "manifest.parquet").exists():
                busy = cluster.tasks_running("a")
        assert busy, "node a never ran a task while the run was going on"
        killed = cluster.kill("a")  # at once: the task seen running is still on its source
        done_before = {r["path"] for r in read_table(out).to_pylist() if r["kind"] == "source"}
        assert set(busy) <= set(killed)
        assert driver.poll() is None and len(done_before) < 4  # the kill came before the end
        _, err = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert driver.returncode == 0, err[-3000:] + cluster.logs()
    assert dataset_state(out) == reference  # Ray re-ran the lost source on node b: same rows, same bytes
    _assert_each_source_once(out, shared)
    # Nothing left to do: a rerun skips every source and leaves the dataset as it is.
    rerun = subprocess.run(_cli(cluster, shared, out, "--json"), env=cluster.env, capture_output=True,
                           text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert json.loads(rerun.stdout)["processed"] == 0
    assert dataset_state(out) == reference
