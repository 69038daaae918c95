"""`wandata train --profile` for every Wan family wandata trains (issue 15, point 3), on CPU.

Each family gets a tiny random model built with diffsynth's own classes (tools/tiny_wan.py:
an I2V/FLF2V DiT with a CLIP image encoder, a TI2V-5B-style DiT with a Wan2.2 VAE, an A14B
pair, a VACE DiT, a VACE-Fun-A14B pair, Fun-Control and Fun-Control V1.1 DiTs, a Fun-A14B-Control
pair) and the real data path: a generated video ingested with `--profile`, captioned, exported
(with `--with` where the model reads files beside the clip), trained for a few steps through the
command line; the LoRA files (and their ComfyUI copies), the encode cache's image and control
conditioning, each expert's timesteps and `wandata validate` of a pair are checked. The 14B
VACE and Fun-Control profiles are checked by their resolved configuration only (`--dry-run`):
their code path is that of the 1.3B and A14B runs.
"""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffsynth")

from click.testing import CliRunner  # noqa: E402

from tests.test_export import set_captions  # noqa: E402
from tools import synth  # noqa: E402
from tools.tiny_wan import WORDS, build_tiny_stack  # noqa: E402
from wandata import profiles as P  # noqa: E402
from wandata.cli import main  # noqa: E402
from wandata.train import cache as C  # noqa: E402

CAPTIONS = [" ".join(WORDS[i:i + 6]) for i in range(0, 36, 6)]
WITH = "input_image,end_image,vace_video:canny,vace_reference_image,control_video:canny,reference_image"


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _ingest(root: Path, profile: str) -> Path:
    """A real ingest of one generated 3 s shot for ``profile``: 9-frame clips at 64x32 (fits
    every profile: multiples of 32, within each pixel budget), captioned, exported with every
    conditioning column."""
    raw = root / "raw"
    raw.mkdir(parents=True)
    synth.write_video(raw / "a.mp4", synth.make_shots([90], photos=["rocket"]), None, 320, 180, 30, crf=20)
    ds = root / "ds"
    r = cli("ingest", raw, "-d", ds, "--profile", profile, "--frames", "9", "--bucket", "64x32", "--detector", "none",
            "--filters", "", "--min-source-scale", "0.1", "--preset", "ultrafast", "--quiet")
    assert r.exit_code == 0, r.output
    set_captions(ds, CAPTIONS)
    r = cli("export", "-d", ds, "--with", WITH)
    assert r.exit_code == 0, r.output
    return ds


@pytest.fixture(scope="module")
def ds16(tmp_path_factory) -> Path:
    return _ingest(tmp_path_factory.mktemp("p16"), "wan2.1-i2v-14b-480p")


@pytest.fixture(scope="module")
def ds24(tmp_path_factory) -> Path:
    return _ingest(tmp_path_factory.mktemp("p24"), "wan2.2-ti2v-5b")


@pytest.fixture(scope="module")
def stacks(tmp_path_factory):
    root = tmp_path_factory.mktemp("stacks")
    made = {}

    def get(arch):
        if arch not in made:
            made[arch] = build_tiny_stack(root / arch, arch=arch)
            (root / f"{arch}.json").write_text(json.dumps(made[arch]["registry"]))
            made[arch]["registry_file"] = str(root / f"{arch}.json")
        return made[arch]
    return get


def train(ds, stack, profile, out, *extra, steps=2):
    args = ["train", "-d", ds, "--profile", profile, "-o", out, "--cache-dir", out.parent / f"{out.name}-cache",
            "--model-registry", stack["registry_file"], "--num-frames", "5", "--dtype", "fp32", "--workers", "0",
            "--steps", steps, "--save-every", steps, "--lr", "1e-2", "--quiet", "--json"]
    for role in ("dit", "dit2", "text_encoder", "vae", "image_encoder", "tokenizer"):
        if role in stack:
            args += [f"--{role.replace('_', '-')}", stack[role]]
    r = cli(*args, *extra)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def cached(summary_out: Path) -> list[dict]:
    """The shared part of every cache entry of a run (cache beside the run folder)."""
    root = summary_out.parent / f"{summary_out.name}-cache"
    return [C.load(p)[0] for p in sorted(root.rglob("*.safetensors"))]


def lora_keys(path: Path) -> set[str]:
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        return set(f.keys())


def timesteps(folder: Path) -> list[float]:
    with open(folder / "timesteps.csv", newline="") as f:
        return [float(r["timestep"]) for r in csv.DictReader(f)]


# --- I2V and FLF2V: CLIP features and the VAE-encoded image go through the cache ------------

@pytest.mark.parametrize("profile, arch, images", [("wan2.1-i2v-14b-480p", "i2v", 1),
                                                   ("wan2.1-flf2v-14b-720p", "flf2v", 2)])
def test_image_to_video_caches_the_image_conditioning(ds16, stacks, tmp_path, profile, arch, images):
    stack = stacks(arch)
    out = tmp_path / "run"
    s = train(ds16, stack, profile, out, "--image-encoder", stack["image_encoder"])
    n = s["encode"]["clips"]
    assert n >= 2 and s["encode"]["encoded"] == n and s["encode"]["cached"] == 0
    cfg = json.loads((out / "train_config.json").read_text())
    assert cfg["extra_inputs"] == list(P.get(profile).extra_inputs) and "image_encoder" in cfg["models"]
    entries = cached(out)
    assert len(entries) == n
    for e in entries:
        # CLIP features: 257 tokens an image (FLF2V: first and last frame); y: 4 mask channels + 16 latent
        assert tuple(e["clip_feature"].shape) == (1, 257 * images, 1280)
        assert tuple(e["y"].shape) == (1, 4 + 16, 2, 4, 8) == (1, 20) + tuple(e["input_latents"].shape[2:])
        # the mask: 4 channels = the 4 frames of a latent frame; 1 where a frame is given
        mask = e["y"][0, :4]
        assert torch.all(mask[:, 0] == 1) and torch.all(mask[:3, -1] == 0)
        assert torch.all(mask[3, -1] == (1 if images == 2 else 0))   # FLF2V: the clip's last frame
    keys = lora_keys(out / "step-2.safetensors")
    assert "blocks.0.cross_attn.q.lora_A.default.weight" in keys and all(k.startswith("blocks.") for k in keys)
    assert (out / "step-2.comfyui.safetensors").is_file()

    # a second run reads the image conditioning from the cache: no encoder is loaded at all
    again = train(ds16, stack, profile, tmp_path / "run2", "--cache-dir", tmp_path / "run-cache")
    assert again["encode"]["encoded"] == 0 and again["encode"]["cached"] == n
    assert "load_seconds" not in again["encode"]
    assert again["final_loss"] == pytest.approx(s["final_loss"], rel=1e-5)


def test_the_720p_i2v_profile_resolves_to_its_own_checkpoint(ds16, tmp_path):
    r = cli("train", "-d", ds16, "--profile", "wan2.1-i2v-14b-720p", "--dry-run", "--json", "-o", tmp_path / "r")
    assert r.exit_code == 0, r.output
    c = json.loads(r.stdout)["config"]
    assert (c["model"], c["task"], c["extra_inputs"]) == ("Wan2.1-I2V-14B-720P", "i2v", ["input_image"])
    assert c["models"]["dit"]["model_id"] == "Wan-AI/Wan2.1-I2V-14B-720P" and "image_encoder" in c["models"]


# --- TI2V-5B: Wan2.2 VAE, 48 channels, the first frame fused into the latents ----------------

def test_ti2v_5b_trains_on_24fps_clips_with_the_wan22_vae(ds24, ds16, stacks, tmp_path):
    stack = stacks("ti2v")
    out = tmp_path / "run"
    s = train(ds24, stack, "wan2.2-ti2v-5b", out)
    cfg = json.loads((out / "train_config.json").read_text())
    assert (cfg["model"], cfg["task"], cfg["size_multiple"], cfg["fps"]) == ("Wan2.2-TI2V-5B", "ti2v", 32, 24.0)
    for e in cached(out):
        # 16x spatial: 64x32 -> 4x2 latents, 48 channels; the first frame's latents kept apart
        assert tuple(e["input_latents"].shape) == (1, 48, 2, 2, 4)
        assert tuple(e["first_frame_latents"].shape) == (1, 48, 1, 2, 4)
        assert e["fuse_vae_embedding_in_latents"] is True and "y" not in e and "clip_feature" not in e
    assert s["final_loss"] == s["final_loss"] and len(s["checkpoints"]) == 1
    assert "blocks.1.ffn.2.lora_B.default.weight" in lora_keys(out / "step-2.safetensors")
    # 16 fps clips are refused for the 24 fps model
    r = cli("train", "-d", ds16, "--profile", "wan2.2-ti2v-5b", "--dry-run")
    assert r.exit_code == 1 and "trains on 24 fps clips" in r.output


# --- Wan2.2 A14B: two experts, each on its own timestep range, validated together -----------

def test_a14b_pair_trains_both_experts_on_their_ranges_and_validates_with_both(ds16, stacks, tmp_path):
    import av
    import numpy as np

    from wandata.train import config as TC
    from wandata.train import validate as V

    stack = stacks("t2v-a14b")
    out = tmp_path / "pair"
    s = train(ds16, stack, "wan2.2-t2v-a14b", out, steps=3)
    assert set(s["experts"]) == {"high_noise", "low_noise"}
    p = P.get("wan2.2-t2v-a14b")
    boundary = p.boundary * 1000   # 875
    for name, inside in (("high_noise", lambda t: t >= boundary), ("low_noise", lambda t: t < boundary)):
        run = out / name
        assert (run / "step-3.safetensors").is_file() and (run / "step-3.comfyui.safetensors").is_file()
        ts = timesteps(run)
        assert len(ts) == 3 and all(inside(t) for t in ts), (name, ts)
        c = json.loads((run / "train_config.json").read_text())
        assert c["expert"] == name and c["models"]["dit"]["paths"] == [stack["dit" if name == "high_noise" else "dit2"]]
    # the experts started from different DiTs and trained different LoRAs
    from safetensors.torch import load_file
    high, low = load_file(out / "high_noise" / "step-3.safetensors"), load_file(out / "low_noise" / "step-3.safetensors")
    assert high.keys() == low.keys() and any(not torch.equal(high[k], low[k]) for k in high if "lora_B" in k)
    # one encode for both: the low-noise expert read the high-noise expert's cache entries
    assert s["experts"]["low_noise"]["encode"]["encoded"] == 0

    r = cli("validate", "--lora", out, "--num-prompts", "1", "--num-frames", "5", "--size", "64x32", "--steps", "2",
            "--cfg-scale", "1", "--device", "cpu", "--json", "--quiet")
    assert r.exit_code == 0, r.output
    v = json.loads(r.stdout)
    assert v["columns"] == ["base", "step-3"]
    assert v["loras"]["step-3"] == {"dit": str(out / "high_noise" / "step-3.safetensors"),
                                    "dit2": str(out / "low_noise" / "step-3.safetensors")}

    def frames(path):
        with av.open(str(path)) as c:
            return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)]).astype(int)

    both = frames(out / "validation" / "step-3" / "p0_s0.mp4")
    # The same render with only the high-noise LoRA: the low-noise one changed the picture, so
    # validate loaded it into dit2 (the second of the two denoising steps is below 875).
    cfg = TC.load(out / "train_config.json")
    plan = V.Plan(cfg=cfg, loras=[out / "high_noise" / "step-3.safetensors"], prompts=V.held_out_prompts(cfg, 1)[0],
                  seeds=[0], out_dir=tmp_path / "high-only", num_frames=5, height=32, width=64, steps=2, cfg_scale=1)
    V.run(plan, device="cpu", progress=False)
    high_only = frames(tmp_path / "high-only" / "step-3" / "p0_s0.mp4")
    base = frames(out / "validation" / "base" / "p0_s0.mp4")
    assert np.abs(both - high_only).mean() > 0.5 and np.abs(high_only - base).mean() > 0.5


def test_one_expert_of_the_i2v_pair_and_what_a_pair_refuses(ds16, stacks, tmp_path):
    stack = stacks("i2v-a14b")
    out = tmp_path / "pair"
    s = train(ds16, stack, "wan2.2-i2v-a14b", out, "--expert", "low")
    assert s["expert"] == "low_noise" and (out / "low_noise" / "step-2.safetensors").is_file()
    assert not (out / "high_noise").exists()
    assert all(t < 900 for t in timesteps(out / "low_noise"))
    for e in cached(out):   # I2V-A14B: the VAE-encoded first frame, no CLIP (DiffSynth's table)
        assert tuple(e["y"].shape[:2]) == (1, 20) and "clip_feature" not in e
    base = ["train", "-d", ds16, "--dry-run", "-o", tmp_path / "r"]
    r = cli(*base, "--profile", "wan2.2-i2v-a14b", "--max-timestep", "0.5")
    assert r.exit_code == 1 and "own timestep range" in r.output
    r = cli(*base, "--profile", "wan2.1-i2v-14b-480p", "--dit2", stack["dit2"])
    assert r.exit_code == 1 and "--dit2" in r.output and "one DiT" in r.output
    r = cli(*base, "--profile", "wan2.1-i2v-14b-480p", "--expert", "high")
    assert r.exit_code == 1 and "--expert high" in r.output


# --- VACE: the export's control video and reference image; the LoRA on the VACE blocks --------

def test_vace_trains_a_lora_on_the_vace_blocks_from_the_exported_columns(ds16, stacks, tmp_path):
    stack = stacks("vace")
    out = tmp_path / "run"
    s = train(ds16, stack, "wan2.1-vace-1.3b", out)
    keys = lora_keys(out / "step-2.safetensors")
    assert keys and all(k.startswith("vace_blocks.0.") for k in keys)
    assert "vace_blocks.0.self_attn.q.lora_A.default.weight" in keys
    # the ComfyUI copy: the same modules under diffusion_model. (ComfyUI's VaceWanModel.vace_blocks)
    comfy = lora_keys(out / "step-2.comfyui.safetensors")
    assert "comfyui" not in s and "diffusion_model.vace_blocks.0.self_attn.q.lora_down.weight" in comfy
    assert len(comfy) == len(keys) // 2 * 3   # down, up, alpha per module
    for e in cached(out):
        # inactive + reactive latents (32) and the 8x8 mask (64); the reference image is one more frame
        assert tuple(e["vace_context"].shape) == (1, 96, 3, 4, 8)
        assert tuple(e["input_latents"].shape) == (1, 16, 3, 4, 8)
    # an export without the columns is refused, saying how to make them
    plain = tmp_path / "plain"
    shutil.copytree(ds16, plain)
    assert cli("export", "-d", plain).exit_code == 0
    r = cli("train", "-d", plain, "--profile", "wan2.1-vace-1.3b", "--dry-run")
    assert r.exit_code == 1 and "--with vace_video:canny,vace_reference_image" in r.output


# --- Fun-Control: the control video's latents in y, through the cache; the LoRA on the DiT ----

@pytest.mark.parametrize("profile, arch", [("wan2.1-fun-1.3b-control", "control"),
                                           ("wan2.1-fun-v1.1-1.3b-control", "control-v1.1")])
def test_fun_control_caches_the_control_latents_and_trains_a_dit_lora(ds16, stacks, tmp_path, profile, arch):
    stack = stacks(arch)
    out = tmp_path / "run"
    v11 = "reference_image" in P.get(profile).extra_inputs
    s = train(ds16, stack, profile, out, "--image-encoder", stack["image_encoder"])
    n = s["encode"]["clips"]
    assert n >= 2 and s["encode"]["encoded"] == n
    cfg = json.loads((out / "train_config.json").read_text())
    assert (cfg["task"], cfg["lora_base_model"]) == ("control", "dit")
    assert cfg["data_file_keys"] == ["video", *P.get(profile).extra_inputs]
    for e in cached(out):
        # y: the control video's VAE latents (16) then the zero image part (in_dim 48 - 16 - 16)
        assert tuple(e["y"].shape) == (1, 32, 2, 4, 8) == (1, 32) + tuple(e["input_latents"].shape[2:])
        control = e["y"][:, :16]
        assert control.abs().sum() > 0 and torch.all(e["y"][:, 16:] == 0)
        assert not torch.allclose(control, e["input_latents"])   # the canny video, not the clip
        assert tuple(e["clip_feature"].shape) == (1, 257, 1280)
        if v11:   # the reference image: its latents for ref_conv, and its CLIP features
            assert tuple(e["reference_latents"].shape) == (1, 16, 1, 4, 8) and e["clip_feature"].abs().sum() > 0
        else:     # no image: DiffSynth's FunControl gives zero CLIP features
            assert "reference_latents" not in e and torch.all(e["clip_feature"] == 0)
    keys = lora_keys(out / "step-2.safetensors")
    assert "blocks.0.self_attn.q.lora_A.default.weight" in keys and all(k.startswith("blocks.") for k in keys)
    assert (out / "step-2.comfyui.safetensors").is_file()
    # validation renders get the clip's control video (and reference image) as their inputs
    from wandata.train.config import load as load_config
    from wandata.train.validate import _frames, held_out_prompts
    prompts, _ = held_out_prompts(load_config(out / "train_config.json"), 1)
    clip = _frames(ds16 / prompts[0].source)
    assert len(prompts[0].control_video) == len(clip) and prompts[0].control_video[0].size == clip[0].size
    assert (prompts[0].reference_image is not None) == v11

    again = train(ds16, stack, profile, tmp_path / "run2", "--image-encoder", stack["image_encoder"],
                  "--cache-dir", tmp_path / "run-cache")
    assert again["encode"]["encoded"] == 0 and again["encode"]["cached"] == n
    assert "load_seconds" not in again["encode"]
    assert again["final_loss"] == pytest.approx(s["final_loss"], rel=1e-5)

    plain = tmp_path / "plain"
    shutil.copytree(ds16, plain)
    assert cli("export", "-d", plain, "--with", "input_image").exit_code == 0
    r = cli("train", "-d", plain, "--profile", profile, "--dry-run")
    want = "control_video:canny,reference_image" if v11 else "control_video:canny"
    assert r.exit_code == 1 and f"--with {want}" in r.output


# --- the A14B VACE-Fun and Fun-Control pairs ---------------------------------------------------

@pytest.mark.parametrize("profile, arch, base", [("wan2.2-vace-fun-a14b", "vace-a14b", "vace"),
                                                 ("wan2.2-fun-a14b-control", "control-a14b", "dit")])
def test_a14b_vace_and_control_pairs_train_each_expert_on_its_range(ds16, stacks, tmp_path, profile, arch, base):
    stack = stacks(arch)
    out = tmp_path / "pair"
    s = train(ds16, stack, profile, out)
    boundary = P.get(profile).boundary * 1000
    block = "vace_blocks" if base == "vace" else "blocks"
    for name, inside in (("high_noise", lambda t: t >= boundary), ("low_noise", lambda t: t < boundary)):
        run = out / name
        keys = lora_keys(run / "step-2.safetensors")
        assert keys and all(k.startswith(f"{block}.") for k in keys)
        assert f"diffusion_model.{block}.0.ffn.2.lora_up.weight" in lora_keys(run / "step-2.comfyui.safetensors")
        assert all(inside(t) for t in timesteps(run)), name
        c = json.loads((run / "train_config.json").read_text())
        assert (c["lora_base_model"], c["models"]["dit"]["paths"]) == \
            (base, [stack["dit" if name == "high_noise" else "dit2"]])
    assert s["experts"]["low_noise"]["encode"]["encoded"] == 0   # one encode for both experts
    for e in cached(out):
        if base == "vace":
            assert tuple(e["vace_context"].shape) == (1, 96, 3, 4, 8)
        else:   # in_dim 52: control latents (16) + the zero mask and image part (4 + 16); no CLIP model
            assert tuple(e["y"].shape) == (1, 36, 2, 4, 8) and torch.all(e["y"][:, 16:] == 0)
            assert tuple(e["reference_latents"].shape) == (1, 16, 1, 4, 8)


@pytest.mark.parametrize("profile, model, base, inputs, image_encoder, boundary", [
    ("wan2.2-fun-a14b-control", "Wan2.2-Fun-A14B-Control", "dit", ["control_video", "reference_image"], False, 0.358),
    ("wan2.1-vace-14b", "Wan2.1-VACE-14B", "vace", ["vace_video", "vace_reference_image"], False, None),
    ("wan2.1-fun-14b-control", "Wan2.1-Fun-14B-Control", "dit", ["control_video"], True, None),
    ("wan2.1-fun-v1.1-14b-control", "Wan2.1-Fun-V1.1-14B-Control", "dit", ["control_video", "reference_image"],
     True, None),
])
def test_the_14b_control_and_vace_profiles_resolve_as_diffsynths_scripts(ds16, tmp_path, profile, model, base,
                                                                         inputs, image_encoder, boundary):
    """No tiny run (the 1.3B and A14B-VACE runs above cover the same code): the resolved config is
    DiffSynth's script's (docs/train.md cites each)."""
    r = cli("train", "-d", ds16, "--profile", profile, "--dry-run", "--json", "-o", tmp_path / "r")
    assert r.exit_code == 0, r.output
    c = json.loads(r.stdout)["config"]
    assert (c["model"], c["lora_base_model"], c["extra_inputs"]) == (model, base, inputs)
    assert c["data_file_keys"] == ["video", *inputs] and ("image_encoder" in c["models"]) == image_encoder
    repo = P.get(profile).experts[0].dit.model_id if boundary else P.get(profile).dit.model_id
    assert c["models"]["dit"]["model_id"] == repo
    if boundary:
        high, low = c["experts"]
        assert (high["max_timestep_boundary"], low["min_timestep_boundary"]) == (boundary, boundary)
        assert c["models"]["dit2"]["pattern"] == "low_noise_model/diffusion_pytorch_model*.safetensors"


def test_every_profile_has_a_preset_with_its_inputs():
    from wandata.train import models as M
    for name in P.NAMES:
        p, preset = P.get(name), M.preset_for_profile(name)
        assert preset is not None, name
        assert (preset.extra_inputs, preset.data_file_keys) == (p.extra_inputs, p.data_file_keys), name
        assert [e.min_timestep_boundary for e in preset.experts] == [e.min_timestep_boundary for e in p.experts]
        assert preset.lora_base_model == ("vace" if p.task == "vace" else "dit"), name
