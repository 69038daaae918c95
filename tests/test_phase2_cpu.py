"""Phase 2 for real on the CPU: two processes through `accelerate launch`, gloo, the tiny model.

`wandata train --phase 2 --deepspeed none` with a MULTI_CPU accelerate config: accelerate's own
DDP (DeepSpeed cannot run here: accelerate 1.15 gives a DeepSpeed process without a GPU no
distributed state, see docs/train.md). One run is killed with SIGKILL, every process of it,
right after a checkpoint; the same command resumes it, and its losses, optimizer state and
LoRA equal those of an uninterrupted run to the bit (fp32, gloo, fixed seeds). The saved LoRA
loads in `wandata validate` and changes the decoded frames.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import psutil
import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open
from safetensors.torch import load_file

from tests.test_export import set_captions, tiny_dataset
from tools.tiny_wan import WORDS, build_tiny_stack
from wandata.cli import main
from wandata.export import export

REPO = Path(__file__).resolve().parents[1]
STEPS, EVERY = 8, 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("phase2cpu")
    stack = build_tiny_stack(root / "models")
    (root / "registry.json").write_text(json.dumps(stack["registry"]))
    ds = tiny_dataset(root / "dataset", 4)
    set_captions(ds, [" ".join(WORDS[i:i + 6]) for i in range(0, 24, 6)])
    export(ds, "jsonl")
    return root, stack, ds


def command(setup, out: Path) -> tuple[list[str], dict]:
    root, stack, ds = setup
    acc = out.parent / f"{out.name}-accelerate.yaml"
    # accelerate's MULTI_CPU config; the port is this run's, so runs never share a rendezvous
    acc.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_CPU\nnum_processes: 2\n"
                   f"num_machines: 1\nmachine_rank: 0\nmain_process_port: {free_port()}\n"
                   "mixed_precision: 'no'\nuse_cpu: true\n")
    cmd = [sys.executable, "-m", "wandata", "train", "-d", str(ds), "-o", str(out), "--phase", "2",
           "--deepspeed", "none", "--accelerate-config", str(acc), "--cache-dir", str(out) + "-cache",
           "--dit", stack["dit"], "--text-encoder", stack["text_encoder"], "--vae", stack["vae"],
           "--tokenizer", stack["tokenizer"], "--model-registry", str(root / "registry.json"),
           "--size", "32x32", "--num-frames", "5", "--dtype", "fp32", "--workers", "0", "--steps", str(STEPS),
           "--save-every", str(EVERY), "--lr", "1e-2", "--quiet"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")   # CPU processes wherever the test runs
    return cmd, env


def summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL every process of the run: its process group and the workers, which torchrun
    starts in sessions of their own (so a kill of the launcher's group alone leaves them
    training)."""
    tree = psutil.Process(proc.pid).children(recursive=True)
    os.killpg(proc.pid, signal.SIGKILL)
    for p in tree:
        try:
            os.killpg(p.pid, signal.SIGKILL) if os.getpgid(p.pid) == p.pid else p.kill()
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
    proc.wait()
    psutil.wait_procs(tree, timeout=30)
    assert not [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def optimizer_tensors(path: Path) -> dict:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def frames_of(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)]).astype(int)


def test_two_cpu_processes_killed_after_a_checkpoint_resume_exactly(setup, tmp_path):
    ref, part = tmp_path / "ref", tmp_path / "part"
    cmd_ref, env_ref = command(setup, ref)
    cmd, env = command(setup, part)
    # the uninterrupted run and the one to kill start together: two launches' start-up overlap
    straight = subprocess.Popen(cmd_ref, env=env_ref, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    victim = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              start_new_session=True)
    first = part / f"step-{EVERY}.state.safetensors"
    deadline = time.monotonic() + 240
    while not first.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert first.exists(), victim.stderr.read().decode()[-3000:] if victim.poll() is not None else "timeout"
    kill_tree(victim)
    victim.stderr.close()
    # killed mid-run: the last checkpoint was never reached
    assert not (part / f"step-{STEPS}.safetensors").exists()
    saved = sorted(int(p.name.split("-")[1].split(".")[0]) for p in part.glob("step-*.state.safetensors"))
    assert saved and saved[-1] < STEPS
    start = saved[-1]

    o, e = straight.communicate(timeout=300)
    assert straight.returncode == 0, e.decode()[-3000:]
    r = subprocess.run(cmd + ["--resume", "auto"], env=env, capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode()[-3000:]

    a, b = summary(ref), summary(part)
    assert a["world_size"] == b["world_size"] == 2
    # the step counter continues from the checkpoint ...
    assert b["start_step"] == start and len(b["losses"]) == STEPS - start
    rows = (part / "loss.csv").read_text().splitlines()[1:]
    assert [r.split(",")[0] for r in rows] == [str(s) for s in range(1, STEPS + 1)]
    # ... with the losses of the uninterrupted run, to the bit (fp32 on the CPU, gloo)
    assert b["losses"] == a["losses"][start:]
    # the optimizer state was restored, not restarted: AdamW's moments and step count equal
    sa, ma = optimizer_tensors(ref / f"step-{STEPS}.state.safetensors")
    sb, mb = optimizer_tensors(part / f"step-{STEPS}.state.safetensors")
    assert sa.keys() == sb.keys() and any(k.endswith("/exp_avg_sq") for k in sa)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert json.loads(ma["scalars"]) == json.loads(mb["scalars"]) and mb["step"] == str(STEPS)
    la, lb = load_file(str(ref / f"step-{STEPS}.safetensors")), load_file(str(part / f"step-{STEPS}.safetensors"))
    assert la.keys() == lb.keys() and all(torch.equal(la[k], lb[k]) for k in la)

    # the saved LoRA loads in `wandata validate` and changes what the model renders
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(" ".join(WORDS[:6]) + "\n")
    v = CliRunner().invoke(main, ["validate", "--lora", str(part / f"step-{STEPS}.safetensors"), "--prompts",
                                  str(prompts), "--seeds", "0", "--num-frames", "5", "--size", "32x32", "--steps", "2",
                                  "--device", "cpu", "--json", "--quiet", "-o", str(tmp_path / "val")])
    assert v.exit_code == 0, v.output
    assert json.loads(v.stdout)["columns"] == ["base", f"step-{STEPS}"]
    base = frames_of(tmp_path / "val" / "base" / "p0_s0.mp4")
    lora = frames_of(tmp_path / "val" / f"step-{STEPS}" / "p0_s0.mp4")
    assert base.shape == lora.shape == (5, 32, 32, 3)
    diff = np.abs(lora - base)
    assert diff.mean() > 1.0 and (diff > 2).mean() > 0.2, diff.mean()
