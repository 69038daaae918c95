"""Model profiles (issue 15, point 1): one table, ingest makes clips for a profile, and export,
check and train refuse clips that do not fit the profile they are given.

The numbers themselves are cited in docs/profiles.md; here they are checked for consistency with
each other and, where diffsynth is installed, with DiffSynth's own training schedule."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from tools import synth
from wandata import profiles as P
from wandata.cli import main
from wandata.dataset.manifest import Manifest
from wandata.settings import Settings, SettingsError, load_settings

from .media import decode
from .test_export import tiny_dataset

TI2V = "wan2.2-ti2v-5b"


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


# --- the table -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", P.NAMES)
def test_every_profile_is_consistent_with_itself(name):
    p = P.get(name)
    assert (p.frames - 1) % 4 == 0 and p.allowed_frames[-1] == p.frames and p.allowed_frames[0] == 1
    assert p.size_multiple == (32 if p.vae_name == "Wan2.2 VAE" else 16)
    assert p.size_multiple == p.vae_stride[1] * p.patch_size[1]
    assert p.budget_size[0] * p.budget_size[1] == p.pixel_budget and not P.get(name).fits_size(*p.budget_size)
    for w, h in p.buckets:
        assert w % p.size_multiple == 0 and h % p.size_multiple == 0 and w * h <= p.pixel_budget
    assert {(w, h) for w, h in p.buckets} == {(h, w) for w, h in p.buckets}   # both orientations
    assert p.misfits(p.fps, p.frames, p.buckets, p.size_multiple) == []
    s = Settings.for_profile(name)          # a profile's own values are valid settings
    assert (s.fps, s.frames, s.buckets, s.size_multiple) == (p.fps, p.frames, p.buckets, p.size_multiple)
    assert p.inputs[:2] == ("video", "prompt") and p.text_encoder_name == "umt5-xxl"
    assert p.text_encoder.pattern == P.T5 and p.vae.pattern == (P.VAE22 if p.vae_channels == 48 else P.VAE21)
    assert (p.image_encoder is not None) == bool(p.image_encoder_name)
    if p.experts:
        high, low = p.experts
        assert p.dit is None and p.boundary in (0.875, 0.9)
        assert high.timesteps == (p.boundary * 1000, 1000.0) and low.timesteps == (0.0, p.boundary * 1000)
        # DiffSynth's arguments: the high-noise expert draws the first part of its schedule
        assert (high.min_timestep_boundary, low.max_timestep_boundary) == (0.0, 1.0)
        assert high.max_timestep_boundary == low.min_timestep_boundary == P.diffsynth_boundary(p.boundary)
        assert "high_noise_model/" in high.dit.pattern and "low_noise_model/" in low.dit.pattern
    else:
        assert p.dit is not None and p.boundary is None


def test_the_table_has_the_numbers_the_models_publish():
    ti2v = P.get(TI2V)
    assert (ti2v.fps, ti2v.frames, ti2v.buckets, ti2v.vae_stride, ti2v.size_multiple) == \
        (24.0, 121, ((1280, 704), (704, 1280)), (4, 16, 16), 32)
    assert P.get("wan2.2-t2v-a14b").boundary == 0.875 and P.get("wan2.2-i2v-a14b").boundary == 0.9
    # the values DiffSynth's example scripts pass (examples/wanvideo/model_training/lora/Wan2.2-*-A14B.sh)
    assert P.get("wan2.2-t2v-a14b").experts[0].max_timestep_boundary == 0.417
    assert P.get("wan2.2-i2v-a14b").experts[0].max_timestep_boundary == 0.358
    assert P.get(P.DEFAULT).summary() == "16 fps, 81 frames, 832x480 480x832"
    assert Settings().profile == P.DEFAULT and Settings().profile_misfits() == []
    assert P.get("wan2.1-flf2v-14b-720p").inputs == ("video", "prompt", "input_image", "end_image")
    assert P.get("wan2.1-vace-14b").data_file_keys == ("video", "vace_video", "vace_reference_image")


def test_expert_boundaries_match_diffsynths_own_training_schedule():
    """DiffSynth's --max/--min_timestep_boundary index its training schedule; the fraction whose
    timesteps are at or above the boundary is what the experts get."""
    import importlib.util

    spec = importlib.util.find_spec("diffsynth")   # found, not imported: its package imports take 20 s
    if spec is None:
        pytest.skip("diffsynth is not installed")
    # The installed diffsynth's own scheduler file (it imports only torch and numpy).
    path = Path(spec.origin).parent / "diffusion" / "flow_match.py"
    module_spec = importlib.util.spec_from_file_location("_diffsynth_flow_match", path)
    flow_match = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(flow_match)
    sched = flow_match.FlowMatchScheduler("Wan")
    sched.set_timesteps(1000, training=True)
    t = sched.timesteps
    for p in P.PROFILES.values():
        if p.experts:
            cut = p.experts[0].max_timestep_boundary
            i = int(cut * len(t))
            assert float(t[i - 1]) >= p.boundary * 1000 > float(t[i]), p.name


def test_profiles_command_lists_every_profile_and_its_json_parses():
    r = cli("profiles", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert [d["name"] for d in data] == list(P.NAMES)
    ti2v = next(d for d in data if d["name"] == TI2V)
    assert ti2v["fps"] == 24.0 and ti2v["frames"] == 121 and ti2v["buckets"] == ["1280x704", "704x1280"]
    assert ti2v["size_multiple"] == 32 and ti2v["vae"] == "Wan-AI/Wan2.2-TI2V-5B:Wan2.2_VAE.pth"
    a14b = next(d for d in data if d["name"] == "wan2.2-i2v-a14b")
    assert [e["name"] for e in a14b["experts"]] == ["high_noise", "low_noise"]
    table = cli("profiles").output.splitlines()
    assert table[0].split()[:5] == ["name", "fps", "frames", "buckets", "multiple"]
    assert len(table) == 1 + len(P.NAMES)
    assert any(line.startswith(TI2V) and " 24 " in line and "1280x704" in line for line in table)


def test_config_show_shows_the_chosen_profiles_values(tmp_path):
    shown = json.loads(cli("config", "show", "--profile", TI2V).output)
    assert (shown["profile"], shown["fps"], shown["frames"], shown["buckets"], shown["size_multiple"]) == \
        (TI2V, 24.0, 121, ["1280x704", "704x1280"], 32)
    assert shown["profile_values"]["pixel_budget"] == 1280 * 704
    toml = cli("config", "show", "--profile", TI2V, "--toml").output
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)     # the profile's line is a comment: the file is a valid --config
    again = json.loads(cli("config", "show", "--config", cfg).output)
    assert again["fps"] == 24.0 and again["profile"] == TI2V


# --- ingest --------------------------------------------------------------------------------

MISMATCH = [
    (["--profile", TI2V, "--fps", "16"], "--fps", "24 fps"),
    (["--profile", TI2V, "--frames", "125"], "--frames", "up to 121"),
    (["--profile", TI2V, "--bucket", "1280x720"], "--bucket", "multiples of 32"),
    (["--profile", TI2V, "--size-multiple", "16"], "--size-multiple", "multiples of 32"),
    (["--bucket", "1280x720"], "--bucket", "budget of 399360"),   # the default profile's
    (["--fps", "24"], "--fps", "16 fps"),
]


@pytest.mark.parametrize("args, flag, why", MISMATCH, ids=[" ".join(a) for a, _, _ in MISMATCH])
def test_a_flag_that_contradicts_the_profile_exits_2_naming_both(tmp_path, args, flag, why):
    (tmp_path / "raw").mkdir()   # no video: a command that took the values would succeed
    out = tmp_path / "ds"
    r = cli("ingest", tmp_path / "raw", "-d", out, *args)
    assert r.exit_code == 2, r.output
    assert flag in r.output and "--profile" in r.output and why in r.output and "--allow-profile-mismatch" in r.output
    assert not out.exists()
    r = cli("plan", tmp_path / "raw", *args, "--allow-profile-mismatch", "--size-multiple", "16")
    assert r.exit_code == 0, r.output


def test_allowing_a_mismatch_where_there_is_none_is_refused_and_files_are_checked_alike(tmp_path):
    (tmp_path / "raw").mkdir()
    r = cli("ingest", tmp_path / "raw", "-d", tmp_path / "ds", "--allow-profile-mismatch")
    assert r.exit_code == 2 and "--allow-profile-mismatch has no effect here" in r.output
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[ingest]\nprofile = "{TI2V}"\nfps = 16\n')
    r = cli("plan", tmp_path / "raw", "--config", cfg)
    assert r.exit_code == 2 and str(cfg) in r.output and "fps=16" in r.output and TI2V in r.output
    # The file's value against the flag's profile: the file is named, not a flag.
    cfg.write_text('[ingest]\nfps = 16\n')
    with pytest.raises(SettingsError) as e:
        load_settings(cfg, profile=TI2V)
    assert e.value.from_file and str(cfg) in str(e.value)
    # Flags win over the profile; shorter clips and smaller buckets fit it.
    s = load_settings(None, profile=TI2V, frames=25, buckets=((832, 480),))
    assert (s.fps, s.frames, s.buckets, s.size_multiple) == (24.0, 25, ((832, 480),), 32)


@pytest.fixture(scope="module")
def ti2v_dataset(tmp_path_factory) -> Path:
    """A real ingest for wan2.2-ti2v-5b: one 3 s 640x360 30 fps shot, 25-frame clips."""
    root = tmp_path_factory.mktemp("ti2v")
    raw = root / "raw"
    raw.mkdir()
    synth.write_video(raw / "a.mp4", synth.make_shots([90], photos=["rocket"]), None, 640, 360, 30, crf=20)
    ds = root / "ds"
    r = cli("ingest", raw, "-d", ds, "--profile", TI2V, "--frames", "25", "--detector", "none", "--filters", "",
            "--min-source-scale", "0.4", "--preset", "ultrafast", "--quiet")
    assert r.exit_code == 0, r.output
    return ds


@pytest.fixture
def ti2v_copy(ti2v_dataset, tmp_path) -> Path:
    dst = tmp_path / "ds"
    shutil.copytree(ti2v_dataset, dst)
    return dst


def test_ingest_for_ti2v_makes_24fps_1280x704_clips_and_records_the_profile(ti2v_dataset):
    m = Manifest(ti2v_dataset)
    kept = [c for c in m.all_clips() if c.status == "kept"]
    assert len(kept) >= 2
    for c in kept:
        frames, rate = decode(ti2v_dataset / c.path)
        assert len(frames) == 25 and rate == pytest.approx(24.0, abs=1e-6)
        assert frames[0].shape[:2] == (704, 1280) and (c.width, c.height, c.fps) == (1280, 704, 24.0)
    assert m.profiles() == [TI2V]
    assert all(json.loads(s.settings_json)["profile"] == TI2V for s in m.sources.values())


def test_a_manifest_from_before_profiles_reads_as_the_default(tmp_path):
    ds = tiny_dataset(tmp_path / "old", 3)       # source rows without recorded settings
    assert Manifest(ds).profiles() == [P.DEFAULT]
    r = cli("export", "-d", ds, "--json")
    assert r.exit_code == 0, r.output
    s = json.loads((ds / "wandata_export.json").read_text())
    assert s["profile"] == P.DEFAULT and s["ingested_for"] == [P.DEFAULT]
    r = cli("export", "-d", ds, "--profile", TI2V)
    assert r.exit_code == 1
    assert f"was ingested for {P.DEFAULT} (16 fps, 9 frames" in r.output and "trains on 24 fps clips" in r.output


# --- export, check, train ------------------------------------------------------------------

def test_export_refuses_clips_that_do_not_fit_its_profile_and_records_the_profile(ti2v_copy):
    ds = ti2v_copy
    r = cli("export", "-d", ds, "--fallback-caption", "a rocket", "--profile", P.DEFAULT)
    assert r.exit_code == 1, r.output
    assert (f"dataset {ds} was ingested for {TI2V} (24 fps, 25 frames" in r.output
            and f"{P.DEFAULT} trains on 16 fps clips" in r.output and "over wan2.1-t2v-1.3b's budget" in r.output
            and f"re-ingest with --profile {P.DEFAULT}, or pass --allow-profile-mismatch" in r.output)
    assert not (ds / "wandata_export.json").exists() and not (ds / "metadata.jsonl").exists()
    r = cli("export", "-d", ds, "--fallback-caption", "a rocket", "--allow-profile-mismatch")
    assert r.exit_code == 2 and "no --profile" in r.output
    r = cli("export", "-d", ds, "--fallback-caption", "a rocket", "--profile", P.DEFAULT, "--allow-profile-mismatch")
    assert r.exit_code == 0, r.output
    s = json.loads((ds / "wandata_export.json").read_text())
    assert s["profile"] == P.DEFAULT and "16 fps" in s["profile_mismatch"]
    r = cli("export", "-d", ds, "--fallback-caption", "a rocket")
    assert r.exit_code == 0, r.output
    s = json.loads((ds / "wandata_export.json").read_text())
    assert s["profile"] == TI2V and "profile_mismatch" not in s and s["fps"] == 24.0


def test_check_reports_every_clip_that_does_not_fit_its_profile(ti2v_copy):
    ds = ti2v_copy
    n = sum(c.status == "kept" for c in Manifest(ds).all_clips())
    r = cli("check", ds, "--profile", "wan2.2-t2v-a14b", "--json")
    assert r.exit_code == 3, r.output
    report = json.loads(r.output)
    mismatch = [p for p in report["problems"] if p["code"] == "profile_mismatch"]
    assert len(mismatch) == n and all(p["severity"] == "error" for p in mismatch)
    assert all(f"(ingested for {TI2V})" in p["message"] and "trains on 16 fps clips, not 24 fps" in p["message"]
               for p in mismatch)
    assert all("--allow-profile-mismatch" in p["fix"] for p in mismatch)
    r = cli("check", ds, "--profile", "wan2.2-t2v-a14b", "--allow-profile-mismatch", "--json")
    assert r.exit_code == 0 and json.loads(r.output)["warnings"] >= n
    assert cli("check", ds, "--profile", TI2V).exit_code == 0
    r = cli("check", ds, "--allow-profile-mismatch")
    assert r.exit_code == 2 and "no --profile" in r.output


def test_train_refuses_an_export_that_does_not_fit_its_profile(tmp_path):
    ds = tiny_dataset(tmp_path / "ds", 3)   # 16 fps, 9 frames, 112x64 and 64x112
    assert cli("export", "-d", ds).exit_code == 0
    r = cli("train", "-d", ds, "--profile", TI2V, "--dry-run")
    assert r.exit_code == 1, r.output
    assert f"dataset {ds.resolve()} was ingested for {P.DEFAULT}" in r.output and "trains on 24 fps clips" in r.output
    assert "--allow-profile-mismatch" in r.output
    # Every profile has a model preset; one whose inputs the export lacks is refused, naming the fix.
    r = cli("train", "-d", ds, "--profile", "wan2.1-fun-1.3b-control", "--dry-run")
    assert r.exit_code == 1 and "--with control_video:canny" in r.output
    r = cli("train", "-d", ds, "--allow-profile-mismatch", "--dry-run")
    assert r.exit_code == 2 and "no --profile" in r.output
    r = cli("train", "-d", ds, "--profile", P.DEFAULT, "--model", "Wan2.1-T2V-14B", "--dry-run")
    assert r.exit_code == 1 and "--model Wan2.1-T2V-14B is not the model of --profile" in r.output

    from wandata.train import config as TC
    cfg = TC.resolve(dataset=ds, profile="wan2.1-i2v-14b-480p", task=None)
    assert (cfg.profile, cfg.model, cfg.task) == ("wan2.1-i2v-14b-480p", "Wan2.1-I2V-14B-480P", "i2v")
    assert "image_encoder" in cfg.models
