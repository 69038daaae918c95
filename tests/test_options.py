"""Every option acts or is refused (issue 11, points 4 and 5).

A bad value, or an option that the rest of the command would ignore, exits 2 with the option's
name (and, for a value, its valid range) in the message, before anything is read or written.
``plan`` and ``ingest --dry-run`` take every ingest option and honour the engine. Phase 2 checks
that DeepSpeed imports before it starts, and names the extra that brings it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from click.testing import CliRunner

from wandata.cli import ingest, main, plan
from wandata.settings import Settings, load_settings

from .media import small_sources

REPO = Path(__file__).resolve().parent.parent
SMALL = ["--frames", "33", "--bucket", "416x240", "--detector", "adaptive", "--min-source-scale", "0.5",
         "--preset", "veryfast", "--quiet"]


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


# --- ingest settings: one option set, the same checks on the command line and in a file ----

BAD_INGEST = [
    (["--crf", "99"], "--crf", "[0, 51]"),
    (["--crf", "-1"], "--crf", "[0, 51]"),
    (["--preset", "bogus"], "--preset", "veryslow"),
    (["--fps", "1000"], "--fps", "(0, 120]"),
    (["--fps", "0"], "--fps", "16 fps"),
    (["--frames", "80"], "--frames", "77 or 81"),
    (["--threshold", "1.5"], "--threshold", "(0, 1)"),
    (["--trim", "-0.5"], "--trim", "[0, 5]"),
    (["--size-multiple", "8"], "--size-multiple", ">= 16"),
    (["--size-multiple", "24"], "--size-multiple", "multiple of 16"),
    (["--min-source-scale", "0"], "--min-source-scale", "(0, 1]"),
    (["--workers", "0"], "--workers", ">= 1"),
    (["--mode", "uniform", "--windows", "0"], "--windows", ">= 1"),
    (["--device", "gpu"], "--device", "cuda:N"),
    (["--max-text", "2"], "--max-text", "[0, 1]"),
    (["--border-luma", "300"], "--border-luma", "[0, 255]"),
    (["--max-duplicate-distance", "65"], "--max-duplicate-distance", "[0, 64]"),
    (["--filters", "static,sharp"], "--filters", "duplicate"),
    (["--min-brightness", "240"], "--min-brightness", "max_brightness=230"),
    (["--bucket", "830x480"], "--bucket", "multiples of 16"),
    # flags that the other settings would make do nothing
    (["--windows", "2"], "--windows", "--mode uniform"),
    (["--detector", "none", "--threshold", "0.3"], "--threshold", "detector=none"),
    (["--detector", "adaptive", "--device", "cpu"], "--device", "detector=adaptive"),
]


@pytest.mark.parametrize("command", [["ingest"], ["ingest", "--dry-run"], ["plan"]])
@pytest.mark.parametrize("args, flag, valid", BAD_INGEST, ids=[" ".join(a) for a, _, _ in BAD_INGEST])
def test_a_bad_ingest_option_exits_2_naming_it_and_its_range(tmp_path, command, args, flag, valid):
    (tmp_path / "raw").mkdir()  # no video in it: a command that took the value would succeed
    out = tmp_path / "ds"
    r = cli(*command, tmp_path / "raw", "-d", out, *args)
    assert r.exit_code == 2, r.output
    assert flag in r.output and valid in r.output, r.output
    assert not out.exists()


def test_plan_and_ingest_take_the_same_options_one_per_setting():
    def options(cmd):
        return {p.name: tuple(p.opts) for p in cmd.params}
    own = {"captioner", "caption_opts", "dry_run"}  # ingest's, which a plan refuses or is
    assert {k: v for k, v in options(ingest).items() if k not in own} == options(plan)
    for f in fields(Settings):
        assert f.name in options(plan) and f.metadata["flag"] in options(plan)[f.name]


def test_one_spelling_per_idea_across_commands(tmp_path):
    """-d/--dataset names the dataset and -o/--output what the command writes, in every command
    that has them; the older spellings (ingest's and plan's -o/--output, export's --out) still work."""
    def options(cmd):
        return {p.name: set(p.opts) for p in cmd.params}
    commands = dict(main.commands, **{f"captions {k}": v for k, v in main.commands["captions"].commands.items()})
    for name in ("ingest", "plan", "caption", "captions export", "captions import", "captions report",
                 "export", "check", "train", "report"):
        assert {"-d", "--dataset"} <= options(commands[name])["dataset"], name
    for name, param in (("export", "out"), ("train", "output"), ("validate", "output"), ("report", "output")):
        assert {"-o", "--output"} <= options(commands[name])[param], name
    assert {"-o", "--output"} <= options(ingest)["dataset"] and "--out" in options(commands["export"])["out"]
    r = cli("check")
    assert r.exit_code == 2 and "DIR_OR_METADATA or -d/--dataset" in r.output
    r = cli("check", "-d", tmp_path, tmp_path)
    assert r.exit_code == 2 and "one of them" in r.output
    r = cli("check", "-d", tmp_path)
    assert r.exit_code == 1 and "wandata export" in r.output


def test_a_config_file_value_gets_the_same_check_and_names_the_file(tmp_path):
    (tmp_path / "raw").mkdir()
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[ingest]\ncrf = 99\n')
    r = cli("ingest", tmp_path / "raw", "-o", tmp_path / "ds", "--config", cfg)
    assert r.exit_code == 2 and str(cfg) in r.output and "crf=99" in r.output and "[0, 51]" in r.output
    cfg.write_text('[ingest]\npreset = "bogus"\n')
    r = cli("plan", tmp_path / "raw", "--config", cfg)
    assert r.exit_code == 2 and str(cfg) in r.output and "preset='bogus'" in r.output
    cfg.write_text('[ingest]\ncrf = "18"\n')
    r = cli("config", "show", "--config", cfg)
    assert r.exit_code == 2 and "whole number" in r.output
    # A TOML file writes 16 for 16.0: the same setting, the same fingerprint (no needless redo).
    cfg.write_text('[ingest]\nfps = 16\nmin_motion = 0\n')
    assert load_settings(cfg).fingerprint() == Settings(min_motion=0.0).fingerprint()


def test_dry_run_refuses_what_it_cannot_do_instead_of_dropping_it(tmp_path, monkeypatch):
    (tmp_path / "raw").mkdir()
    raw, out = tmp_path / "raw", tmp_path / "ds"
    r = cli("ingest", raw, "-o", out, "--dry-run", "--captioner", "template")
    assert r.exit_code == 2 and "--captioner has no effect with --dry-run" in r.output
    r = cli("ingest", raw, "-o", out, "--caption-opt", "trigger=x")
    assert r.exit_code == 2 and "--caption-opt needs --captioner" in r.output
    r = cli("ingest", raw, "-o", out, "--dry-run", "--ray-address", "auto")
    assert r.exit_code == 2 and "--ray-address only applies to --engine ray" in r.output
    r = cli("plan", raw, "--engine", "ray", "--workers", "2")
    assert r.exit_code == 2 and "--workers only applies to --engine local" in r.output
    monkeypatch.setitem(sys.modules, "ray", None)  # Ray not installed: the engine is really asked for
    r = cli("ingest", raw, "-o", out, "--dry-run", "--engine", "ray")
    assert r.exit_code == 2 and "pip install 'wandata[ray]'" in r.output
    assert not out.exists()


def test_dry_run_runs_through_the_ray_engine_and_plans_what_the_local_engine_plans(tmp_path):
    pytest.importorskip("ray")
    (tmp_path / "raw").mkdir()
    raw = small_sources(tmp_path / "raw", [90, 70])
    local = subprocess.run([sys.executable, "-m", "wandata.cli", "plan", raw, "-o", tmp_path / "ds", *SMALL,
                            "--json"], capture_output=True, text=True, timeout=300)
    assert local.returncode == 0, local.stderr[-2000:]
    env = dict(os.environ, RAY_ADDRESS="")  # a Ray runtime of its own, started by the command
    on_ray = subprocess.run([sys.executable, "-m", "wandata.cli", "ingest", raw, "-o", tmp_path / "ds", *SMALL,
                             "--json", "--dry-run", "--engine", "ray"], capture_output=True, text=True,
                            timeout=300, env=env)
    assert on_ray.returncode == 0, on_ray.stderr[-2000:]
    assert "Started a local Ray instance" in on_ray.stderr  # it did go through Ray
    plan_local, plan_ray = json.loads(local.stdout), json.loads(on_ray.stdout)
    assert plan_ray == plan_local and plan_ray["totals"]["clips"]["kept"] >= 3
    assert not (tmp_path / "ds").exists()


# --- train and validate ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """Three small sources, ingested and exported as DiffSynth jsonl (what `train` reads)."""
    root = tmp_path_factory.mktemp("trainopts")
    (root / "raw").mkdir()
    raw = small_sources(root / "raw", [90, 70])
    ds = root / "ds"
    r = subprocess.run([sys.executable, "-m", "wandata.cli", "ingest", raw, "-o", ds, *SMALL],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    r = cli("export", "-d", ds, "--fallback-caption", "a photo")
    assert r.exit_code == 0, r.output
    return ds


PHASE2_ONLY = [("--gpus", "2"), ("--deepspeed", "zero2-offload"), ("--num-machines", "2"),
               ("--machine-rank", "0"), ("--main-process-ip", "10.0.0.1"), ("--main-process-port", "29500")]


@pytest.mark.parametrize("flag, value", PHASE2_ONLY)
def test_phase_2_launch_options_are_refused_with_phase_1(exported, tmp_path, flag, value):
    r = cli("train", "-d", exported, "--dry-run", "-o", tmp_path / "run", flag, value)
    assert r.exit_code == 2, r.output
    assert f"{flag} has no effect here" in r.output and "phase 2" in r.output


def test_accelerate_config_is_refused_with_phase_1(exported, tmp_path):
    acc = tmp_path / "acc.yaml"
    acc.write_text("distributed_type: MULTI_GPU\nnum_processes: 2\n")
    r = cli("train", "-d", exported, "--dry-run", "--accelerate-config", acc)
    assert r.exit_code == 2 and "--accelerate-config has no effect here" in r.output


BAD_TRAIN = [
    (["--rank", "0"], "--rank"), (["--lr", "0"], "--lr"), (["--weight-decay", "-1"], "--weight-decay"),
    (["--epochs", "0"], "--epochs"), (["--steps", "0"], "--steps"), (["--save-every", "0"], "--save-every"),
    (["--seed", "-1"], "--seed"), (["--grad-accum", "0"], "--grad-accum"), (["--workers", "-1"], "--workers"),
    (["--max-grad-norm", "0"], "--max-grad-norm"), (["--num-frames", "80"], "--num-frames"),
    (["--min-timestep", "1.5"], "--min-timestep"), (["--max-pixels", "10"], "--max-pixels"),
    (["--phase", "2", "--gpus", "0"], "--gpus"), (["--phase", "2", "--main-process-port", "70000"],
                                                  "--main-process-port"),
    (["--phase", "2", "--num-machines", "2", "--machine-rank", "2"], "--machine-rank"),
    # combinations in which one option would be ignored
    (["--epochs", "2", "--steps", "5"], "--epochs"),
    (["--no-cache", "--cache-dir", "c"], "--cache-dir"),
    (["--no-gradient-checkpointing", "--gradient-checkpointing-offload"], "--gradient-checkpointing-offload"),
    (["--size", "416x240", "--max-pixels", "100000"], "--max-pixels"),
    (["--max-pixels", "100000"], "--max-pixels"),  # this export is fixed-size (one bucket)
    (["--offline", "--download-source", "huggingface"], "--download-source"),
    (["--image-encoder", "clip.pth"], "--image-encoder"),
]


@pytest.mark.parametrize("args, flag", BAD_TRAIN, ids=[" ".join(a) for a, _ in BAD_TRAIN])
def test_a_bad_or_ignored_train_option_exits_2_naming_it(exported, tmp_path, args, flag):
    r = cli("train", "-d", exported, "--dry-run", "-o", tmp_path / "run", *args)
    assert r.exit_code == 2, r.output
    assert flag in r.output
    assert not (tmp_path / "run").exists()


def test_max_grad_norm_acts_in_phase_2_through_deepspeed(exported, tmp_path, monkeypatch):
    pytest.importorskip("deepspeed")
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import DeepSpeedPlugin, prepare_deepspeed_cmd_env

    r = cli("train", "-d", exported, "--dry-run", "--phase", "2", "--gpus", "2", "--max-grad-norm", "0.5",
            "--json")
    assert r.exit_code == 0, r.output
    cmd = json.loads(r.stdout)["command"]
    args = launch_command_parser().parse_args(cmd[cmd.index("launch") + 1:] if "launch" in cmd
                                              else cmd[cmd.index("accelerate.commands.launch") + 1:])
    args, _, _ = _validate_launch_command(args)
    args.deepspeed_fields_from_accelerate_config = ""
    _, env = prepare_deepspeed_cmd_env(args)
    for k, v in env.items():
        if k.startswith("ACCELERATE_"):
            monkeypatch.setenv(k, v)
    # What the launched processes' DeepSpeed engine clips at (its config says "auto").
    assert DeepSpeedPlugin().deepspeed_config["gradient_clipping"] == 0.5


def test_a_deepspeed_accelerate_config_refuses_wandatas_deepspeed_options(exported, tmp_path):
    pytest.importorskip("deepspeed")
    acc = tmp_path / "ds.yaml"
    acc.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: DEEPSPEED\nnum_processes: 2\n"
                   "deepspeed_config:\n  zero_stage: 2\nmixed_precision: bf16\n")
    for flag, value in (("--deepspeed", "zero2-offload"), ("--max-grad-norm", "0.5")):
        r = cli("train", "-d", exported, "--dry-run", "--phase", "2", "--accelerate-config", acc, flag, value)
        assert r.exit_code == 2 and f"{flag} has no effect here" in r.output, r.output


def test_validate_refuses_bad_and_ignored_options(tmp_path):
    lora = tmp_path / "step-1.safetensors"
    lora.write_bytes(b"")
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n")
    for args, flag in ((["--prompts", prompts, "--num-prompts", "2"], "--num-prompts"),
                       (["--steps", "0"], "--steps"), (["--num-frames", "80"], "--num-frames"),
                       (["--device", "gpu"], "--device"), (["--seeds", ""], "--seeds"),
                       (["--num-prompts", "0"], "--num-prompts"), (["--cfg-scale", "-1"], "--cfg-scale")):
        r = cli("validate", "--lora", lora, *args)
        assert r.exit_code == 2 and flag in r.output, (args, r.output)


# --- phase 2 without DeepSpeed ---------------------------------------------------------------

def test_phase_2_without_deepspeed_fails_before_launch_naming_the_extra(exported, tmp_path):
    # A directory first on the path whose `deepspeed` cannot be imported, as when the package is
    # not installed: the real import machinery, the real CLI, in a process of its own.
    shadow = tmp_path / "shadow" / "deepspeed"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'deepspeed'\", "
                                        "name='deepspeed')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(shadow.parent), str(REPO)]))
    run = tmp_path / "run"
    for extra in (["--dry-run"], []):
        r = subprocess.run([sys.executable, "-m", "wandata.cli", "train", "-d", str(exported), "--phase", "2",
                            "--gpus", "2", "-o", str(run), *extra], capture_output=True, text=True, env=env,
                           timeout=300, cwd=tmp_path)
        assert r.returncode == 1, (extra, r.stdout[-1000:], r.stderr[-2000:])
        assert "pip install 'wandata[train]'" in r.stderr and "deepspeed (ModuleNotFoundError" in r.stderr
        assert "accelerate launch" not in r.stdout
        assert not run.exists()  # nothing written, nothing launched (a launch writes its config first)


# --- export, check, caption --------------------------------------------------------------------

@pytest.mark.parametrize("args, flag", [
    (["export", "--split", "1.5"], "--split"), (["export", "--split", "0"], "--split"),
    (["check", "{tmp}", "--fps", "-3"], "--fps"),
    (["caption", "-c", "template", "--max-chars", "-1"], "--max-chars"),
    (["caption", "-c", "template", "--batch-size", "0"], "--batch-size"),
])
def test_a_bad_export_check_or_caption_value_exits_2_naming_it(tmp_path, args, flag):
    args = [tmp_path if a == "{tmp}" else a for a in args]
    r = cli(*args[:1], *(["-d", tmp_path] if args[0] in ("export", "caption") else []), *args[1:])
    assert r.exit_code == 2 and flag in r.output, r.output
