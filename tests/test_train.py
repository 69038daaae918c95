"""`wandata train` / `wandata validate` on CPU with a tiny random Wan stack.

The stack is built from DiffSynth's own classes (WanModel DiT, WanTextEncoder, a
WanVideoVAE with a narrow inner width, a word-level tokenizer) and registered in
DiffSynth's model table at run time. Clips are the shipped sample data, ingested and
exported; training reads 5 frames at 32x32 so every run takes seconds.
"""
from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffsynth")

from click.testing import CliRunner  # noqa: E402

from tests.test_export import set_captions  # noqa: E402
from wandata.train import cache as C  # noqa: E402
from wandata.train import config as TC  # noqa: E402
from wandata.train import estimate as E  # noqa: E402
from tools.tiny_wan import WORDS, build_tiny_stack  # noqa: E402
from wandata.cli import main  # noqa: E402
from wandata.export import export  # noqa: E402
from wandata.dataset.manifest import Manifest  # noqa: E402

CAPTIONS = [" ".join(WORDS[i:i + 6]) for i in range(0, 36, 6)]
TINY = {"size": (32, 32), "num_frames": 5, "dtype": "fp32", "num_workers": 0}
# Mean |base - trained LoRA| per pixel (0-255 levels) after two steps at lr 1e-2 on the tiny
# model: measured 8.5 to 9.2 over both prompts and seeds, with 80 % of the pixels off by more
# than 2; a no-op LoRA gives exactly 0.
TRAINED_MEAN_DIFF = 3.0
# Mean |hot-loaded - fused LoRA| per pixel: the same weights summed in another order; measured
# 0.0 on CPU (fp32). The bound leaves room for rounding on other machines, none for a LoRA
# applied at the wrong strength.
FUSED_MEAN_DIFF = 0.5


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny ops on a shared 2-core machine: torch's thread pool spins against other
    # processes and a step goes from milliseconds to seconds.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    return build_tiny_stack(tmp_path_factory.mktemp("tiny") / "models")


@pytest.fixture(scope="module")
def exported(sample_dataset_ro, tmp_path_factory) -> Path:
    """The sample data, captioned and exported as DiffSynth jsonl (8 clips, 2 buckets)."""
    ds = tmp_path_factory.mktemp("trainds") / "dataset"
    shutil.copytree(sample_dataset_ro, ds)
    set_captions(ds, CAPTIONS)
    export(ds, "jsonl")
    return ds


def files_of(stack) -> dict:
    return {k: [stack[k]] for k in ("dit", "text_encoder", "vae", "tokenizer")}


def files(stack) -> dict:
    return {k: stack[k] for k in ("dit", "text_encoder", "vae", "tokenizer")}


def cfg_for(ds, stack, out, **kw) -> TC.TrainConfig:
    opts = dict(TINY, **kw)
    return TC.resolve(dataset=ds, files=files(stack), output_dir=out, model_registry=stack["registry"],
                      cache_dir=out.parent / f"{out.name}-cache", **opts)


def run(cfg):
    from wandata.train.trainer import run as train_run
    return train_run(cfg, progress=False)


def lora_tensors(path):
    from safetensors.torch import load_file
    return load_file(str(path))


# --- training on the exported sample data ------------------------------------------------

def test_train_cli_on_sample_export(exported, stack, tmp_path):
    """A few steps through `wandata train`: LoRA files DiffSynth loads, non-zero lora_B,
    loss CSV, a safetensors cache that a second run re-uses."""
    reg = tmp_path / "registry.json"
    reg.write_text(json.dumps(stack["registry"]))
    out = tmp_path / "run"
    args = ["train", "-d", str(exported), "-o", str(out), "--cache-dir", str(tmp_path / "cache"),
            "--dit", stack["dit"], "--text-encoder", stack["text_encoder"], "--vae", stack["vae"],
            "--tokenizer", stack["tokenizer"], "--model-registry", str(reg), "--size", "32x32",
            "--num-frames", "5", "--dtype", "fp32", "--workers", "0", "--steps", "3", "--save-every", "2",
            "--lr", "1e-3", "--quiet", "--json"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["encode"] == {**summary["encode"], "clips": 8, "encoded": 8, "cached": 0}
    assert [Path(p).name for p in summary["checkpoints"]] == ["step-2.safetensors", "step-3.safetensors"]

    # loss log: one row per step
    rows = (out / "loss.csv").read_text().splitlines()
    assert rows[0] == "step,epoch,loss,lr,seconds" and len(rows) == 4

    # LoRA file: DiffSynth's keys, only LoRA weights, lora_B trained away from zero
    sd = lora_tensors(out / "step-3.safetensors")
    assert "blocks.0.self_attn.q.lora_A.default.weight" in sd
    assert all(".lora_A." in k or ".lora_B." in k for k in sd)
    targets = {k.split(".lora_")[0].split(".", 2)[2] for k in sd}
    assert targets == {"self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o", "cross_attn.q", "cross_attn.k",
                       "cross_attn.v", "cross_attn.o", "ffn.0", "ffn.2"}
    assert sd["blocks.0.self_attn.q.lora_A.default.weight"].shape[0] == 32
    assert max(float(v.abs().max()) for k, v in sd.items() if "lora_B" in k) > 0

    # ... and DiffSynth's own loader reads it: load_lora fuses every layer into the base DiT
    from diffsynth.utils.lora import GeneralLoRALoader
    from wandata.train.module import load_pipeline

    cfg = TC.load(out / "train_config.json")
    pipe = load_pipeline(cfg, {"dit": [stack["dit"]]}, device="cpu")
    converted = GeneralLoRALoader().convert_state_dict(sd)
    names = {k[:-len(".lora_B.weight")] for k in converted if k.endswith(".lora_B.weight")}
    modules = dict(pipe.dit.named_modules())
    assert names and names <= set(modules)
    before = {n: modules[n].weight.detach().clone() for n in names}
    pipe.load_lora(pipe.dit, str(out / "step-3.safetensors"))
    changed = [n for n in names if not torch.equal(before[n], modules[n].weight)]
    assert len(changed) == len(names)

    # the cache: safetensors only (an 8-byte header length, then JSON), one file per clip
    files_ = sorted((tmp_path / "cache").rglob("*.safetensors"))
    assert len(files_) == 8
    raw = files_[0].read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    assert json.loads(raw[8:8 + n])["__metadata__"]["format"] == C.FORMAT

    # a second run over the same data encodes nothing
    r = CliRunner().invoke(main, args[:args.index("-o")] + ["-o", str(tmp_path / "run2")] + args[args.index("-o") + 2:])
    assert r.exit_code == 0, r.output
    again = json.loads(r.stdout)
    assert again["encode"]["encoded"] == 0 and again["encode"]["cached"] == 8


def test_cache_and_no_cache_give_the_same_first_step(exported, stack, tmp_path):
    cached = run(cfg_for(exported, stack, tmp_path / "a", steps=2, save_every=2))
    direct = run(cfg_for(exported, stack, tmp_path / "b", steps=2, save_every=2, use_cache=False))
    assert "encode" not in direct
    assert cached["losses"][0] == pytest.approx(direct["losses"][0], rel=1e-5, abs=1e-7)
    assert cached["losses"][1] == pytest.approx(direct["losses"][1], rel=1e-4, abs=1e-6)
    a, b = lora_tensors(tmp_path / "a" / "step-2.safetensors"), lora_tensors(tmp_path / "b" / "step-2.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6) for k in a)


def test_resume_continues_where_the_checkpoint_stopped(exported, stack, tmp_path):
    straight = run(cfg_for(exported, stack, tmp_path / "straight", steps=4, save_every=2, learning_rate=1e-3))
    part = run(cfg_for(exported, stack, tmp_path / "part", steps=2, save_every=2, learning_rate=1e-3))
    assert (tmp_path / "part" / "step-2.state.safetensors").exists()
    resumed = run(cfg_for(exported, stack, tmp_path / "part", steps=4, save_every=2, learning_rate=1e-3,
                          resume="auto"))
    assert resumed["start_step"] == 2
    assert part["losses"] + resumed["losses"] == pytest.approx(straight["losses"], rel=1e-5)
    a = lora_tensors(tmp_path / "straight" / "step-4.safetensors")
    b = lora_tensors(tmp_path / "part" / "step-4.safetensors")
    assert all(torch.allclose(a[k], b[k], rtol=1e-5, atol=1e-7) for k in a)
    rows = (tmp_path / "part" / "loss.csv").read_text().splitlines()[1:]
    assert [r.split(",")[0] for r in rows] == ["1", "2", "3", "4"]


def test_overfit_one_clip(sample_dataset, stack, tmp_path):
    """One clip, 100 steps: the loss at fixed timesteps and noise falls clearly."""
    m = Manifest(sample_dataset)
    kept = [c for c in m.all_clips() if c.status == "kept"]
    for c in kept[1:]:
        c.status = "dropped"
    m.save()
    set_captions(sample_dataset, ["a red fox running in the snow"])
    export(sample_dataset, "jsonl")
    cfg = cfg_for(sample_dataset, stack, tmp_path / "run", steps=100, save_every=100, learning_rate=1e-2)
    summary = run(cfg)

    from wandata.train.module import WanLoRAModule, load_pipeline
    pipe = load_pipeline(cfg, {"dit": [stack["dit"]]}, device="cpu")
    torch.manual_seed(0)
    module = WanLoRAModule(pipe, cfg)
    inputs = C.EncodeCache(cfg.cache_dir).get(next(Path(cfg.cache_dir).rglob("*.safetensors")).stem)

    def probe():
        with torch.no_grad():
            vals = []
            for s in range(16):
                torch.manual_seed(1000 + s)
                vals.append(float(module(inputs=inputs)))
        return sum(vals) / len(vals)

    before = probe()
    module.load_lora_weights(summary["final"])
    after = probe()
    assert after < 0.8 * before, (before, after)


# --- validation ---------------------------------------------------------------------------

def test_validate_renders_base_and_lora(exported, stack, tmp_path):
    """A trained LoRA changes the renders clearly; a no-op LoRA (lora_B = 0, as peft
    initialises it) renders exactly what the base model renders with the same seed."""
    import av
    import numpy as np
    from safetensors import safe_open
    from safetensors.torch import save_file

    run(cfg_for(exported, stack, tmp_path / "run", steps=2, save_every=1, learning_rate=1e-2))
    trained = tmp_path / "run" / "step-2.safetensors"
    with safe_open(str(trained), framework="pt") as f:
        meta = f.metadata()
        sd = {k: f.get_tensor(k) for k in f.keys()}
    assert max(float(v.abs().max()) for k, v in sd.items() if ".lora_B." in k) > 0
    noop = {k: torch.zeros_like(v) if ".lora_B." in k else v for k, v in sd.items()}
    save_file(noop, str(tmp_path / "run" / "step-0.safetensors"), metadata=meta)

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red fox running\n\na blue car on the road\n")
    r = CliRunner().invoke(main, ["validate", "--lora", str(tmp_path / "run"), "--prompts", str(prompts),
                                  "--seeds", "0,1", "--num-frames", "9", "--size", "48x32", "--steps", "2",
                                  "--device", "cpu", "--json", "--quiet"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["columns"] == ["base", "step-0", "step-1", "step-2"]
    out = tmp_path / "run" / "validation"

    def frames_of(path):
        with av.open(str(path)) as c:
            return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)]).astype(int)

    for name in s["columns"]:
        for p in (0, 1):
            for seed in (0, 1):
                fr = frames_of(out / name / f"p{p}_s{seed}.mp4")
                assert fr.shape == (9, 32, 48, 3)
    with av.open(str(out / "step-2" / "preview.mp4")) as c:
        st = c.streams.video[0]
        assert (st.width, st.height) == (48 * 2 + 4, 32 * 4)
    assert (out / "preview.png").exists()

    for p in (0, 1):
        for seed in (0, 1):
            base = frames_of(out / "base" / f"p{p}_s{seed}.mp4")
            # the no-op LoRA is loaded and adds nothing: the same frames, to the bit
            assert np.array_equal(frames_of(out / "step-0" / f"p{p}_s{seed}.mp4"), base)
            # the trained LoRA moves the picture: most pixels, by several levels on average
            diff = np.abs(frames_of(out / "step-2" / f"p{p}_s{seed}.mp4") - base)
            assert diff.mean() > TRAINED_MEAN_DIFF and (diff > 2).mean() > 0.5, (p, seed, diff.mean())

    # ... and by exactly what the trained LoRA gives: the same render from a pipeline with the
    # LoRA fused into the DiT's weights at full strength (DiffSynth's load_lora without hot-loading)
    from wandata.train import validate as V
    from wandata.train.module import load_pipeline

    cfg = TC.load(tmp_path / "run" / "train_config.json")
    pipe = load_pipeline(cfg, files_of(stack), device="cpu")
    pipe.load_lora(pipe.dit, str(trained), verbose=0)
    plan = V.Plan(cfg=cfg, loras=[trained], prompts=[V.Prompt("a red fox running")], seeds=[0],
                  out_dir=tmp_path / "ref", num_frames=9, height=32, width=48, steps=2)
    V.write_mp4(V.render(pipe, plan, plan.prompts[0], 0, "cpu"), tmp_path / "ref.mp4", cfg.fps)
    fused = frames_of(tmp_path / "ref.mp4")
    assert np.abs(frames_of(out / "step-2" / "p0_s0.mp4") - fused).mean() < FUSED_MEAN_DIFF


# --- phase 2: the launch command, parsed by accelerate -------------------------------------

def _parse_with_accelerate(cmd, monkeypatch):
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import DeepSpeedPlugin, prepare_deepspeed_cmd_env

    i = cmd.index("launch") + 1 if "launch" in cmd else cmd.index("accelerate.commands.launch") + 1
    args = launch_command_parser().parse_args(cmd[i:])
    args, defaults, mp_from_config = _validate_launch_command(args)
    args.deepspeed_fields_from_accelerate_config = ",".join(
        (list(defaults.deepspeed_config) if defaults else []) + (["mixed_precision"] if mp_from_config else []))
    _, env = prepare_deepspeed_cmd_env(args)
    for k, v in env.items():
        if k.startswith("ACCELERATE_"):
            monkeypatch.setenv(k, v)
    plugin = DeepSpeedPlugin()
    plugin.set_mixed_precision("bf16")
    return args, env, plugin


@pytest.mark.parametrize("variant, stage", [("zero3", 3), ("zero2-offload", 2)])
def test_phase2_command_and_deepspeed_config_parse_in_accelerate(exported, stack, tmp_path, monkeypatch, variant, stage):
    from wandata.train import launch

    monkeypatch.setattr(launch, "default_accelerate_config_exists", lambda: False)
    cfg = TC.resolve(dataset=exported, phase=2, output_dir=tmp_path / "run", num_processes=8, num_machines=2,
                     machine_rank=1, main_process_ip="10.0.0.1", main_process_port=29511, deepspeed=variant)
    assert cfg.model == "Wan2.1-T2V-14B"
    cmd = launch.command(cfg)
    assert cmd[-4:] == ["--module", launch.RUN_MODULE, "--config", str(tmp_path / "run" / "train_config.json")]
    args, env, plugin = _parse_with_accelerate(cmd, monkeypatch)
    assert args.use_deepspeed and args.num_processes == 8 and args.num_machines == 2 and args.machine_rank == 1
    assert args.main_process_ip == "10.0.0.1" and args.module and args.training_script == launch.RUN_MODULE
    assert env["ACCELERATE_DEEPSPEED_CONFIG_FILE"] == str(launch.DEEPSPEED_CONFIGS[variant])
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    assert plugin.zero_stage == stage and plugin.zero3_init_flag is False
    ds = plugin.deepspeed_config
    assert ds["bf16"]["enabled"] is True and ds["train_micro_batch_size_per_gpu"] == 1
    if stage == 3:
        assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    else:
        assert ds["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
        assert ds["zero_force_ds_cpu_optimizer"] is False


def test_phase2_takes_gpus_and_nodes_from_the_users_accelerate_config(exported, tmp_path, monkeypatch):
    from wandata.train import launch

    acc = tmp_path / "acc.yaml"
    acc.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_GPU\nnum_processes: 4\n"
                   "num_machines: 1\nmachine_rank: 0\nmixed_precision: bf16\nuse_cpu: false\n")
    cfg = TC.resolve(dataset=exported, phase=2, task="i2v", output_dir=tmp_path / "run", accelerate_config=str(acc))
    assert cfg.model == "Wan2.1-I2V-14B-480P" and "image_encoder" in cfg.models
    cmd = launch.command(cfg)
    assert "--num_processes" not in cmd and cmd[cmd.index("--config_file") + 1] == str(acc)
    args, _, plugin = _parse_with_accelerate(cmd, monkeypatch)
    assert args.num_processes == 4 and plugin.zero_stage == 3


def test_run_script_is_a_launchable_entry_point():
    import subprocess
    import sys
    from wandata.train import launch
    # From another folder: the module is found as an installed package, not through the checkout.
    r = subprocess.run([sys.executable, "-m", launch.RUN_MODULE, "--help"], capture_output=True, text=True,
                       timeout=60, cwd="/")
    assert r.returncode == 0 and "--config" in r.stdout


# --- dry run, offline, config ---------------------------------------------------------------

def test_dry_run_prints_config_command_and_labelled_estimate(exported, tmp_path):
    r = CliRunner().invoke(main, ["train", "-d", str(exported), "--dry-run", "--json", "-o", str(tmp_path / "r")])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    settings = json.loads((exported / "wandata_export.json").read_text())
    c = d["config"]
    assert c["num_frames"] == settings["num_frames"] == 81
    assert c["resolution_mode"] == settings["resolution_mode"] == "dynamic"
    assert (c["height"], c["width"], c["max_pixels"]) == (None, None, settings["max_pixels"])
    assert c["buckets"] == settings["buckets"]
    assert c["model"] == "Wan2.1-T2V-1.3B" and c["lora_rank"] == 32 and c["lora_targets"] == "q,k,v,o,ffn.0,ffn.2"
    assert d["command"][-2:] == ["--config", str(tmp_path / "r" / "train_config.json")]
    assert not (tmp_path / "r").exists()   # a dry run writes nothing

    # 81x480x832, rank 32, checkpointing, bf16, cached, one GPU: measured on the H200 exactly so
    est = d["estimate"]
    assert (est["gpu"], est["gpu_assumed"]) == ("NVIDIA H200", d["this_gpu"] is None)
    exact = [e for e in E.load() if e["gpu"] == "NVIDIA H200" and e["model"] == "Wan2.1-T2V-1.3B"
             and e["mode"] == "cached" and e.get("trainer") == "wandata" and e["lora_rank"] == 32
             and (e["frames"], e["height"], e["width"]) == (81, 480, 832) and e["gradient_checkpointing"]
             and e["dtype"] == "bf16" and e.get("num_gpus", 1) == 1]
    newest = max(exact, key=lambda e: e["date"])
    assert est["s_per_step"]["basis"] == est["peak_gib"]["basis"] == "measured"
    assert est["s_per_step"]["value"] == round(newest["s_per_step"], 2)
    held = est["held_out"]
    assert held["gpu"] == "NVIDIA H200" and held["time"]["n"] >= 4 and held["memory"]["n"] >= 4

    # the text output labels every figure and prints the held-out error
    r = CliRunner().invoke(main, ["train", "-d", str(exported), "--dry-run", "--rank", "16"])
    assert r.exit_code == 0, r.output
    step = next(line for line in r.stdout.splitlines() if line.strip().startswith("step:"))
    assert "[model:" in step and "measured" not in step.split("[")[0]
    assert f"model check on {held['entries']} held-back NVIDIA H200 measurements" in r.stdout
    assert f"off by median {held['time']['median_abs_pct']} %" in r.stdout

    r = CliRunner().invoke(main, ["train", "-d", str(exported), "--dry-run", "--phase", "2", "--gpus", "2", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert "accelerate" in d["command_line"] and "zero3.json" in d["command_line"]
    assert d["estimate"]["s_per_step"]["basis"] == "measured" and "2 GPUs zero3" in d["estimate"]["s_per_step"]["how"]
    r = CliRunner().invoke(main, ["train", "-d", str(exported), "--dry-run", "--phase", "2", "--gpus", "8", "--json"])
    assert r.exit_code == 0, r.output
    est = json.loads(r.stdout)["estimate"]
    assert est["s_per_step"]["basis"] == est["peak_gib"]["basis"] == "model"
    assert "ZeRO-3" in est["s_per_step"]["how"] and est["s_per_step"]["value"] > 14.69


# --- the estimator: labels, the FLOP model, its error on held-back measurements ---------------

def _cfg(**kw):
    base = dict(model="Wan2.1-T2V-1.3B", num_frames=81, height=480, width=832, lora_rank=32)
    base.update(kw)
    return TC.TrainConfig(**base)


def _est(gpu="NVIDIA H200", num_gpus=1, **kw):
    return E.estimate(_cfg(**kw), num_gpus=num_gpus, gpu=gpu)


def test_estimate_says_measured_only_for_the_exact_configuration():
    exact = _est()
    assert exact["s_per_step"]["basis"] == exact["peak_gib"]["basis"] == "measured"
    # each single difference from a measured configuration makes the figure a model's, or unknown
    for kw in ({"num_frames": 65}, {"height": 464}, {"lora_rank": 16}, {"gradient_checkpointing": False,
               "num_frames": 65}):
        e = _est(**kw)
        assert e["s_per_step"]["basis"] == e["peak_gib"]["basis"] == "model", kw
        assert e["s_per_step"]["value"] > 0 and e["peak_gib"]["value"] > 0
    # a GPU kind with no measurement: no step time; memory (the same allocations) from the model
    a100 = _est(gpu="NVIDIA A100-SXM4-80GB")
    assert a100["s_per_step"] == {**a100["s_per_step"], "basis": "unknown", "value": None}
    assert a100["peak_gib"]["basis"] == "model"
    # ZeRO-2 offload was never measured: both unknown, memory with a lower bound only
    off = _est(model="Wan2.1-T2V-14B", phase=2, deepspeed="zero2-offload", num_gpus=8)
    assert off["s_per_step"]["basis"] == off["peak_gib"]["basis"] == "unknown"
    assert off["s_per_step"]["value"] is None and off["peak_gib"]["value"] is None
    assert off["peak_gib"]["lower_bound"] > 26   # the whole bf16 14B DiT on every GPU
    # a dtype never measured: no time
    assert _est(dtype="fp32")["s_per_step"]["basis"] == "unknown"
    # measured on the exact config of a held-out entry too: that entry, not the model
    r8 = _est(lora_rank=8)
    assert r8["s_per_step"]["basis"] == "measured" and "r8" in r8["s_per_step"]["how"]


def test_attention_grows_with_the_square_of_the_tokens():
    # 45 and 93 frames: 12 and 24 latent frames, twice the tokens
    short, long = _est(num_frames=45), _est(num_frames=93)
    assert long["config"]["tokens"] == 2 * short["config"]["tokens"]
    ps, pl = short["model_parts_s"], long["model_parts_s"]
    assert pl["attention"] > 3.5 * ps["attention"]            # ~4x: L^2 (the text cross-attention is ~L)
    assert pl["linear"] == pytest.approx(2 * ps["linear"], rel=0.05)
    assert long["s_per_step"]["value"] > 2.3 * short["s_per_step"]["value"]
    # at 81x480x832 attention is about 70 % of the 1.3B's forward FLOPs
    assert 0.65 < _est()["work"]["attention_share_of_forward"] < 0.75


def test_lora_rank_and_checkpointing_change_the_estimate():
    r16, r256 = _est(num_frames=65, lora_rank=16), _est(num_frames=65, lora_rank=256)
    assert r256["s_per_step"]["value"] > r16["s_per_step"]["value"]
    spec = E.spec_of_config(_cfg(num_frames=65, lora_rank=16))
    extra = 3 * 2 * (E.lora_params(E.Spec(**{**spec.__dict__, "rank": 256})) - E.lora_params(spec)) / 2**30
    assert r256["peak_gib"]["value"] - r16["peak_gib"]["value"] == pytest.approx(extra, abs=0.6)
    on, off = _est(num_frames=65), _est(num_frames=65, gradient_checkpointing=False)
    assert off["peak_gib"]["value"] > 5 * on["peak_gib"]["value"]     # every block's activations kept
    assert off["s_per_step"]["value"] < 0.85 * on["s_per_step"]["value"]   # no recompute


def test_model_error_on_held_back_measurements():
    """The shipped table holds back at least two shapes and two ranks (and checkpointing off,
    the 14B DiT) that the model never saw; its error on each is small."""
    entries = E.load()
    fit = [E.spec_of_entry(e) for e in entries if e.get("role") == "fit" and e["gpu"] == "NVIDIA H200"]
    held = [e for e in entries if e.get("role") == "held_out" and e["gpu"] == "NVIDIA H200" and e["mode"] == "cached"]
    fit_shapes = {(s.frames, s.height, s.width) for s in fit}
    fit_ranks = {s.rank for s in fit}
    assert len({(e["frames"], e["height"], e["width"]) for e in held} - fit_shapes) >= 2
    assert len({e["lora_rank"] for e in held} - fit_ranks) >= 2
    rows = {r["entry"]: r for r in E.check(entries) if r["gpu"] == "NVIDIA H200"}
    for e in held:
        r = rows[E.spec_of_entry(e).describe()]
        assert r["role"] == "held_out"
        assert abs(r["s_err_pct"]) < 10 and abs(r["gib_err_pct"]) < 10, r
        # the prediction owes nothing to the entry: the same without it in the table
        without = [x for x in entries if x is not e]
        assert E.step_seconds(without, "NVIDIA H200", E.spec_of_entry(e))["value"] == r["s_model"]
        assert E.peak_gib(without, "NVIDIA H200", E.spec_of_entry(e))["value"] == r["gib_model"]


def test_architectures_match_diffsynth():
    from diffsynth.configs import MODEL_CONFIGS
    from diffsynth.models.wan_video_dit import WanModel

    plain = {"has_image_input", "patch_size", "in_dim", "dim", "ffn_dim", "freq_dim", "text_dim", "out_dim",
             "num_heads", "num_layers", "eps"}
    kwargs = [c["extra_kwargs"] for c in MODEL_CONFIGS
              if c["model_name"] == "wan_video_dit" and set(c.get("extra_kwargs", {})) == plain]
    for name, a in E.ARCH.items():
        match = [k for k in kwargs if (k["dim"], k["ffn_dim"], k["num_heads"], k["num_layers"], k["in_dim"],
                                      k["has_image_input"], k["text_dim"]) == (
                     a.dim, a.ffn_dim, a.num_heads, a.num_layers, a.in_dim, a.has_image_input, E.TEXT_DIM)]
        assert match, name
        k = dict(match[0])
        with torch.device("meta"):
            model = WanModel(**k)
        assert sum(p.numel() for p in model.parameters()) == a.params(), name


def test_offline_mode_refuses_missing_models_without_network(exported, tmp_path, monkeypatch):
    import socket

    def no_network(*a, **k):
        raise AssertionError("offline mode opened a network connection")
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    r = CliRunner().invoke(main, ["train", "-d", str(exported), "--offline", "--models-root", str(tmp_path / "none"),
                                  "-o", str(tmp_path / "r"), "--quiet", "--workers", "0"])
    assert r.exit_code == 1
    assert "offline mode" in r.output and "text_encoder" in r.output and str(tmp_path / "none") in r.output


def test_config_errors_are_reported(exported, tmp_path):
    r = CliRunner().invoke(main, ["train", "-d", str(tmp_path), "--dry-run"])
    assert r.exit_code == 1 and "wandata export" in r.output
    r = CliRunner().invoke(main, ["train", "-d", str(exported), "--dry-run", "--num-frames", "8"])
    assert r.exit_code == 2 and "--num-frames" in r.output and "4k+1" in r.output
    r = CliRunner().invoke(main, ["train", "-d", str(exported), "--dry-run", "--phase", "1", "--task", "i2v",
                                  "--model", "Wan2.1-T2V-1.3B"])
    assert r.exit_code == 1 and "image encoder" in r.output


def test_cache_files_are_keyed_and_never_trusted_blindly(tmp_path):
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    inputs = ({"input_latents": t, "height": 32, "tile_size": (30, 52), "input_video": object(),
               "use_gradient_checkpointing": True}, {"context": t * 2, "prompt": "x"}, {})
    cache = C.EncodeCache(tmp_path)
    cache.put("k1", inputs)
    shared, posi, nega = cache.get("k1")
    assert torch.equal(shared["input_latents"], t) and shared["height"] == 32 and shared["tile_size"] == [30, 52]
    assert "input_video" not in shared and "use_gradient_checkpointing" not in shared
    assert torch.equal(posi["context"], t * 2) and nega == {}
    assert C.load(cache.path("k1"), key="other") is None          # a file under the wrong name is a miss
    cache.path("k2").parent.mkdir(parents=True, exist_ok=True)
    cache.path("k2").write_bytes(b"\x80\x04not safetensors")       # garbage (e.g. a pickle) is a miss
    assert cache.get("k2") is None
    k = C.cache_key("clip", "a prompt", "models", {"num_frames": 5})
    assert k != C.cache_key("clip", "another prompt", "models", {"num_frames": 5})
    assert k != C.cache_key("clip", "a prompt", "other-models", {"num_frames": 5})
    assert k != C.cache_key("clip", "a prompt", "models", {"num_frames": 9})


def test_phase2_engine_one_gpu_where_the_model_fits_alone(exported, stack, tmp_path):
    """--deepspeed auto: the 14B on one GPU that holds it alone trains in this process without
    ZeRO (levers on); several GPUs, small GPUs or no GPU keep DeepSpeed ZeRO-3."""
    from wandata.train import launch
    from wandata.train.config import TrainConfig
    GIB = 2 ** 30
    c14 = TrainConfig(phase=2, model="Wan2.1-T2V-14B", num_frames=81, height=480, width=832)
    assert launch.choose_engine(c14, gpus=1, memory=139 * GIB)[0] == "one-gpu"
    assert launch.choose_engine(c14, gpus=1, memory=80 * GIB)[0] == "one-gpu"     # ~50 GiB every block whole
    assert launch.choose_engine(c14, gpus=1, memory=48 * GIB)[0] == "zero3"
    assert launch.choose_engine(c14, gpus=8, memory=139 * GIB)[0] == "zero3"
    assert launch.choose_engine(c14, gpus=0)[0] == "zero3"
    assert launch.choose_engine(TrainConfig(phase=2, deepspeed="zero2-offload"), gpus=1, memory=139 * GIB)[0] \
        == "zero2-offload"
    # one-gpu runs in this process: the command is the in-process one, the levers are phase 1's
    one = TrainConfig(phase=2, model="Wan2.1-T2V-14B", deepspeed="one-gpu", num_frames=81, height=480, width=832)
    assert one.in_process() and "accelerate" not in " ".join(launch.command(one))
    from wandata.train import levers as L
    lv = L.resolve(one, "cuda:0", free_bytes=139 * GIB, probe=False)
    assert lv.compile and lv.selective_blocks > 0
    # on this machine (no GPU visible to the test) auto stays ZeRO-3, and one-gpu contradicts --gpus
    r = CliRunner().invoke(main, ["train", "-d", str(exported), "--dry-run", "--phase", "2", "--json"],
                           env={"CUDA_VISIBLE_DEVICES": ""})
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["config"]["deepspeed"] == "zero3" and "no GPU" in d["engine"]
    r = CliRunner().invoke(main, ["train", "-d", str(exported), "--dry-run", "--phase", "2", "--deepspeed", "one-gpu",
                                  "--gpus", "2"])
    assert r.exit_code == 2 and "--deepspeed one-gpu" in r.output
    # forced one-gpu trains here, in this process, like phase 1 (the tiny stack, CPU)
    out = tmp_path / "one"
    cfg = cfg_for(exported, stack, out, steps=2, save_every=2, phase=2, deepspeed="one-gpu")
    summary = run(cfg)
    assert summary["steps"] == 2 and (out / "loss.csv").is_file()
    assert json.loads((out / "train_config.json").read_text())["deepspeed"] == "one-gpu"
