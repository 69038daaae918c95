"""Speed levers (wandata.train.levers, issue 16): chosen at run time, all off without a GPU.

The levers themselves only act on a GPU (bench/train_step.py --compare measures them there);
these tests check the choice, the refusals, the record in the run folder, that the deferred
loss read gives the same loss log, and that the bench's comparison runs end to end (tiny, CPU).
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffsynth")

from click.testing import CliRunner  # noqa: E402

from tests.test_train import cfg_for, exported, one_thread, run, stack  # noqa: E402,F401
from wandata.cli import main  # noqa: E402
from wandata.train import levers as L  # noqa: E402
from wandata.train.config import TrainConfig  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
GIB = 2 ** 30
FLAGS_OFF = dict(compile=False, attention="default", fused_adamw=False, lazy_loss=False, prefetch=False,
                 cudnn_benchmark=False)


def _cfg(**kw) -> TrainConfig:
    base = dict(model="Wan2.1-T2V-1.3B", num_frames=81, height=480, width=832, lora_rank=32)
    return TrainConfig(**dict(base, **kw))


def _chosen(lv: L.Levers) -> dict:
    d = lv.to_dict()
    d.pop("why")
    d.pop("device")
    return d


def test_auto_resolves_to_all_off_on_cpu():
    lv = L.resolve(_cfg(), "cpu")
    assert {k: getattr(lv, k) for k in FLAGS_OFF} == FLAGS_OFF
    # checkpointing stays DiffSynth's own flag, on every block, as before the levers
    assert (lv.checkpoint_by, lv.gradient_checkpointing, lv.checkpoint_blocks) == ("diffsynth", True, 30)


def test_levers_none_is_the_untuned_path_even_on_a_gpu():
    # No CUDA call is made for `none` (nothing is probed or measured), so this runs without a GPU.
    none = L.resolve(_cfg(levers="none"), "cuda:0", free_bytes=139 * GIB)
    assert _chosen(none) == _chosen(L.off(_cfg(), "cuda:0", 30))
    assert _chosen(none) == _chosen(L.resolve(_cfg(), "cpu"))
    # a per-lever flag still forces its lever under `none`
    forced = L.resolve(_cfg(levers="none", fused_adamw="on"), "cuda:0", free_bytes=139 * GIB)
    assert forced.fused_adamw and not forced.compile and forced.checkpoint_by == "diffsynth"


def test_auto_checkpoints_only_the_blocks_memory_needs():
    big = 139 * GIB
    lv = L.resolve(_cfg(), "cuda:0", free_bytes=big, probe=False)
    # 1.3B at 81x480x832 without checkpointing: 88 GiB measured, within 85 % of 139 GiB
    assert (lv.checkpoint_by, lv.checkpoint_blocks, lv.gradient_checkpointing) == ("wandata", 0, False)
    assert lv.compile and lv.fused_adamw and lv.lazy_loss and lv.prefetch and lv.cudnn_benchmark
    k14, peaks = L.blocks_to_checkpoint(_cfg(model="Wan2.1-T2V-14B"), big)
    assert 0 < k14 < 40 and peaks[k14] <= L.MEMORY_SHARE * big < peaks[k14 - 1]
    small = L.resolve(_cfg(), "cuda:0", free_bytes=24 * GIB, probe=False)
    # 24 GiB: not every block can go without; selective (attention kept) before whole blocks
    assert 0 < small.checkpoint_blocks + small.selective_blocks <= 30 and small.selective_blocks > 0
    # forced settings win over the estimate
    on = L.resolve(_cfg(checkpointing="on"), "cuda:0", free_bytes=big, probe=False)
    assert (on.checkpoint_by, on.checkpoint_blocks) == ("wandata", 30)   # every block, outside compile
    off = L.resolve(_cfg(checkpointing="off"), "cuda:0", free_bytes=big, probe=False)
    assert (off.gradient_checkpointing, off.checkpoint_blocks) == (False, 0)
    nock = L.resolve(_cfg(gradient_checkpointing=False), "cuda:0", free_bytes=big, probe=False)
    assert (nock.gradient_checkpointing, nock.checkpoint_blocks) == (False, 0)


@pytest.mark.parametrize("flag,value", [("--compile", "on"), ("--attention", "cudnn"), ("--fused-adamw", "on"),
                                        ("--prefetch", "on"), ("--cudnn-benchmark", "on")])
def test_gpu_only_lever_forced_on_cpu_is_refused(exported, tmp_path, flag, value):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    r = CliRunner().invoke(main, ["train", "-d", str(exported), "--dry-run", "-o", str(tmp_path / "r"), flag, value])
    assert r.exit_code == 2, r.output
    assert flag in r.output and "GPU" in r.output
    with pytest.raises(L.LeverError, match=flag):
        L.check(_cfg(**{L.NAMES[[L.FLAGS[n] for n in L.NAMES].index(flag)]: value}), "cpu")


def test_contradicting_checkpointing_flags_are_refused(exported, tmp_path):
    r = CliRunner().invoke(main, ["train", "-d", str(exported), "--dry-run", "--no-gradient-checkpointing",
                                  "--gradient-checkpointing", "on"])
    assert r.exit_code == 2 and "--gradient-checkpointing" in r.output
    r = CliRunner().invoke(main, ["train", "-d", str(exported), "--dry-run", "--levers", "none", "--json",
                                  "-o", str(tmp_path / "r")])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["config"]["levers"] == "none"


def test_run_records_its_levers_and_lazy_loss_logs_the_same_losses(exported, stack, tmp_path):
    eager = run(cfg_for(exported, stack, tmp_path / "a", steps=3, save_every=2))
    lazy = run(cfg_for(exported, stack, tmp_path / "b", steps=3, save_every=2, lazy_loss="on"))
    saved = json.loads((tmp_path / "a" / "train_config.json").read_text())
    assert saved["levers"] == "auto"
    assert {k: saved["levers_chosen"][k] for k in FLAGS_OFF} == FLAGS_OFF
    assert saved["levers_chosen"]["checkpoint_by"] == "diffsynth"
    assert eager["levers"]["lazy_loss"] is False and lazy["levers"]["lazy_loss"] is True
    assert json.loads((tmp_path / "b" / "train_config.json").read_text())["levers_chosen"]["lazy_loss"] is True
    assert lazy["losses"] == pytest.approx(eager["losses"], rel=1e-6)
    rows = lambda p: [r.split(",")[:3] for r in (p / "loss.csv").read_text().splitlines()]   # noqa: E731
    assert rows(tmp_path / "a") == rows(tmp_path / "b") and len(rows(tmp_path / "a")) == 4


def test_bench_compare_runs_tiny_on_cpu(tmp_path):
    out = tmp_path / "cmp.jsonl"
    r = subprocess.run([sys.executable, "bench/train_step.py", "--compare", "--tiny", "--device", "cpu",
                        "--warmup", "0", "--steps", "1", "--json-lines", str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=240,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["mode"] for x in rows] == ["diffsynth", "off", "auto"]
    assert all(x["s_per_step"] > 0 and "error" not in x for x in rows)
    assert rows[1]["levers"]["checkpoint_by"] == rows[2]["levers"]["checkpoint_by"] == "diffsynth"
    assert rows[2]["levers"]["compile"] is False   # auto on a CPU: off


def test_selective_checkpointing_trains_the_same_lora(exported, stack, tmp_path):
    """Keeping the attention outputs and recomputing the rest changes what is stored, not what
    is computed: the same losses and the same LoRA as checkpointing every block whole."""
    from tests.test_train import lora_tensors
    whole = run(cfg_for(exported, stack, tmp_path / "w", steps=3, save_every=3, checkpointing="on"))
    sel = run(cfg_for(exported, stack, tmp_path / "s", steps=3, save_every=3, checkpointing="selective"))
    assert sel["levers"]["selective_blocks"] == sel["levers"]["num_blocks"] > 0
    assert sel["levers"]["checkpoint_blocks"] == 0 and whole["levers"]["selective_blocks"] == 0
    assert sel["losses"] == pytest.approx(whole["losses"], rel=1e-5)
    a = lora_tensors(next((tmp_path / "w").glob("step-3*.safetensors")))
    b = lora_tensors(next((tmp_path / "s").glob("step-3*.safetensors")))
    assert a.keys() == b.keys() and all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


def test_checkpointing_plan_prefers_selective_per_byte():
    big = 139 * GIB
    p14 = L.plan_checkpointing(_cfg(model="Wan2.1-T2V-14B"), big)
    # the 14B at 81x480x832 on an H200: attention kept in most blocks, a few blocks with none
    assert p14["whole"] + p14["selective"] + p14["none"] == 40
    assert p14["selective"] > 0 and p14["peak"] <= L.MEMORY_SHARE * big
    # on a smaller GPU whole blocks come back, selective stays before none
    p80 = L.plan_checkpointing(_cfg(model="Wan2.1-T2V-14B"), 80 * GIB)
    assert p80["whole"] > 0 and p80["none"] == 0 and p80["peak"] <= L.MEMORY_SHARE * 80 * GIB
    # the 1.3B fits with no checkpointing at all, as before
    assert L.plan_checkpointing(_cfg(), big)["none"] == 30
    lv = L.resolve(_cfg(model="Wan2.1-T2V-14B"), "cuda:0", free_bytes=big, probe=False)
    assert (lv.checkpoint_blocks, lv.selective_blocks) == (p14["whole"], p14["selective"])


def test_estimator_shows_the_tuned_figure_beside_the_untuned_one():
    """measured.json's 'tuned' entries (levers auto) are shown for a matching configuration and
    GPU, and never taken for the untuned path nor fitted on."""
    from wandata.train import estimate as E
    entries = E.load()
    tuned = [e for e in entries if e.get("role") == "tuned" and e["model"] == "Wan2.1-T2V-1.3B"]
    assert tuned
    est = E.estimate(_cfg(), gpu="NVIDIA H200", entries=entries)
    assert est["levers_auto"]["s_per_step"] == round(tuned[0]["s_per_step"], 2)
    untuned = [e for e in entries if e.get("role") != "tuned"]
    assert est["s_per_step"] == E.estimate(_cfg(), gpu="NVIDIA H200", entries=untuned)["s_per_step"]
    assert est["s_per_step"]["value"] > est["levers_auto"]["s_per_step"]
    assert "with the speed levers" in "\n".join(E.describe(est, 100, 10))
    assert "levers_auto" not in E.estimate(_cfg(levers="none"), gpu="NVIDIA H200", entries=entries)
    # a shape nobody measured tuned: said so, no figure made up
    other = E.estimate(_cfg(num_frames=33), gpu="NVIDIA H200", entries=entries)
    assert other["levers_auto"] is None
