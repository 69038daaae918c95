"""`wandata lora convert` and the training output in two layouts (docs/lora.md).

The LoRA is made the way `wandata train` makes it: a tiny random Wan DiT built with
DiffSynth's own classes (tools/tiny_wan.py), loaded by ``wandata.train.module.load_pipeline``,
the LoRA injected by ``WanLoRAModule`` (DiffSynth's ``switch_pipe_to_training_mode``, peft),
given random non-zero up weights, and saved by the trainer's own ``RunLogger.save_model``.

Each side is checked with its own code where it is installed: DiffSynth's ``load_lora``
(GeneralLoRALoader) fuses the converted file into a fresh DiT; diffusers'
``WanTransformer3DModel.load_lora_adapter`` loads the diffusers file into a model whose base
weights come from diffusers' own ``convert_wan_transformer_to_diffusers``, and diffusers' own
``_convert_non_diffusers_wan_lora_to_diffusers`` / ``_convert_musubi_wan_lora_to_diffusers``
read our ComfyUI and musubi files. ComfyUI is not installed; its key rules are restated from
its code, nothing of its loader is re-implemented:

* ``comfy/lora.py: model_lora_keys_unet`` (Comfy-Org/ComfyUI): for every model state-dict key
  ``k = "diffusion_model.<name>.weight"`` it maps ``"lora_unet_" + <name with "." -> "_">`` and
  ``"diffusion_model.<name>"`` (the "generic lora format") to ``k``; Wan has no extra rule.
* ``comfy/weight_adapter/lora.py: LoRAAdapter.load``: for a mapped name ``x`` it reads
  ``x.lora_up.weight`` and ``x.lora_down.weight`` (or ``x.lora_B.weight``/``x.lora_A.weight``),
  and ``comfy/lora.py: load_lora`` reads ``x.alpha``; any other key is "lora key not loaded".
* ``LoRAAdapter.calculate_weight``: ``W + strength * (alpha / down.shape[0]) * up @ down``.
* ComfyUI's Wan model (``comfy/ldm/wan/model.py``) keeps the original Wan module names, the
  same as DiffSynth's ``WanModel`` (``blocks.N.self_attn.q``, ``ffn.0``, ``head.head``, ...).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffsynth")
pytest.importorskip("peft")

from click.testing import CliRunner  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from tools.tiny_wan import build_tiny_stack  # noqa: E402
from wandata.cli import main  # noqa: E402
from wandata.lora import FORMAT, LAYOUTS, LoRAError, convert_file, convert_state_dict  # noqa: E402
from wandata.lora.layouts import MODULES  # noqa: E402
from wandata.train.config import DEFAULT_TARGETS, TrainConfig  # noqa: E402

RANK = 4
# The default targets, and the DiT's Linear layers outside the blocks, so that the name
# table is exercised beyond attention and FFN.
TARGETS = DEFAULT_TARGETS + ",text_embedding.0,text_embedding.2,time_embedding.0,time_embedding.2," \
                            "time_projection.1,head.head"


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _pipe(stack, cfg):
    from wandata.train.module import load_pipeline
    return load_pipeline(cfg, {"dit": [stack["dit"]]}, device="cpu")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run folder with ``step-1.safetensors`` (+ ``.comfyui``) written by the trainer's save."""
    from accelerate import Accelerator

    from wandata.train.module import WanLoRAModule
    from wandata.train.trainer import RunLogger

    root = tmp_path_factory.mktemp("lora")
    stack = build_tiny_stack(root / "models")
    cfg = TrainConfig(model_registry=stack["registry"], dtype="fp32", lora_rank=RANK, lora_targets=TARGETS,
                      output_dir=str(root / "run"))
    pipe = _pipe(stack, cfg)
    module = WanLoRAModule(pipe, cfg)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():   # lora_B starts at zero (a no-op LoRA); give it weights to carry
        for name, p in module.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    params = [p for p in module.parameters() if p.requires_grad]
    logger = RunLogger(cfg, torch.optim.AdamW(params), start_step=1)
    logger.save_model(Accelerator(), module, "step-1.safetensors")
    return {"stack": stack, "cfg": cfg, "run": Path(cfg.output_dir), "dit": pipe.dit.eval(),
            "file": Path(cfg.output_dir) / "step-1.safetensors"}


def _inputs():
    g = torch.Generator().manual_seed(1)
    return {"latents": torch.randn(1, 16, 1, 4, 4, generator=g), "timestep": torch.tensor([500.0]),
            "context": torch.randn(1, 5, 32, generator=g)}


@torch.no_grad()
def _run_dit(dit, inputs):
    from diffsynth.pipelines.wan_video import model_fn_wan_video
    return model_fn_wan_video(dit.eval(), **inputs)


def _delta(sd: dict, layout: str) -> dict:
    """module -> scale * up @ down, read from a state dict in ``layout`` through the canonical form."""
    from wandata.lora.convert import read_modules
    found, modules = read_modules(sd)
    assert found.name == layout
    return {m: mod.scale() * (mod.up.double() @ mod.down.double()) for m, mod in modules.items()}


def _trained_modules(trained) -> set[str]:
    return {k[:-len(".lora_A.default.weight")] for k in load_file(str(trained["file"])) if ".lora_A." in k}


# --- training output ---------------------------------------------------------------------

def test_training_writes_the_lora_in_diffsynth_and_comfyui_layouts(trained):
    run = trained["run"]
    assert sorted(p.name for p in run.glob("*.safetensors")) == [
        "step-1.comfyui.safetensors", "step-1.safetensors", "step-1.state.safetensors"]
    diffsynth = load_file(str(run / "step-1.safetensors"))
    comfy = load_file(str(run / "step-1.comfyui.safetensors"))
    modules = _trained_modules(trained)
    assert len(modules) == 2 * 10 + 6       # 2 blocks x (q,k,v,o twice, ffn.0, ffn.2) + 6 outside
    assert set(comfy) == {f"diffusion_model.{m}.{s}" for m in modules
                          for s in ("lora_down.weight", "lora_up.weight", "alpha")}
    for m in modules:
        assert torch.equal(comfy[f"diffusion_model.{m}.lora_down.weight"], diffsynth[f"{m}.lora_A.default.weight"])
        assert torch.equal(comfy[f"diffusion_model.{m}.lora_up.weight"], diffsynth[f"{m}.lora_B.default.weight"])
        assert comfy[f"diffusion_model.{m}.alpha"].item() == RANK
    with safe_open(str(run / "step-1.comfyui.safetensors"), "pt") as f:
        meta = f.metadata()
    assert meta["wandata.format"] == FORMAT and meta["wandata.layout"] == "comfyui"
    assert meta["base_model"] == trained["cfg"].model and meta["step"] == "1"
    # the run's checkpoint list (validate, resume) holds the DiffSynth file only
    from wandata.train.trainer import checkpoints
    assert [p.name for _, p in checkpoints(run)] == ["step-1.safetensors"]


# --- round trips -------------------------------------------------------------------------

def test_round_trip_through_every_layout_is_bitwise(trained, tmp_path):
    src = trained["file"]
    original = load_file(str(src))
    for name in LAYOUTS:
        there = tmp_path / f"there.{name}.safetensors"
        assert convert_file(src, name, there)["layout_in"] == "diffsynth"
        back = convert_file(there, "diffsynth", tmp_path / f"back-{name}.safetensors")
        assert back["layout_in"] == name and back["scale_folded_into_up"] is False
        got = load_file(back["output"])
        assert set(got) == set(original)
        assert all(torch.equal(got[k], original[k]) and got[k].dtype == original[k].dtype for k in original), name
    # a chain through all of them
    path = src
    for i, name in enumerate(["comfyui", "musubi", "diffusers", "comfyui", "diffsynth"]):
        path = Path(convert_file(path, name, tmp_path / f"chain{i}.safetensors")["output"])
    got = load_file(str(path))
    assert set(got) == set(original) and all(torch.equal(got[k], original[k]) for k in original)


def test_alpha_is_kept_where_a_layout_has_one_and_folded_where_not(trained, tmp_path):
    # A musubi-tuner file as musubi writes it by default: alpha 1 for rank 4 (scale 1/4).
    musubi, _ = convert_state_dict(load_file(str(trained["file"])), "musubi")
    for k in musubi:
        if k.endswith(".alpha"):
            musubi[k] = torch.tensor(1.0)
    src = tmp_path / "musubi.safetensors"
    save_file(musubi, str(src))
    want = _delta(musubi, "musubi")

    comfy = load_file(convert_file(src, "comfyui", tmp_path / "c.safetensors")["output"])
    alphas = [v for k, v in comfy.items() if k.endswith(".alpha")]
    assert len(alphas) == len(want) and all(v.item() == 1.0 for v in alphas)
    got = _delta(comfy, "comfyui")
    assert all(torch.equal(got[m], want[m]) for m in want)

    summary = convert_file(src, "diffsynth", tmp_path / "d.safetensors")
    assert summary["scale_folded_into_up"] is True and summary["alpha_in"] == [1.0] and summary["rank"] == RANK
    folded = load_file(summary["output"])
    assert not any(k.endswith(".alpha") for k in folded)
    got = _delta(folded, "diffsynth")
    assert set(got) == set(want)
    assert all(torch.allclose(got[m], want[m], atol=1e-6, rtol=0) for m in want)

    again = load_file(convert_file(tmp_path / "d.safetensors", "musubi", tmp_path / "m.safetensors")["output"])
    assert all(v.item() == RANK for k, v in again.items() if k.endswith(".alpha"))
    got = _delta(again, "musubi")
    assert all(torch.allclose(got[m], want[m], atol=1e-6, rtol=0) for m in want)


# --- DiffSynth's loader ------------------------------------------------------------------

def test_diffsynth_loads_the_converted_file_exactly_as_trained(trained, tmp_path):
    """Fused by DiffSynth's own load_lora into a fresh DiT, every converted file gives the
    merged weights W + B @ A and the output of the trained (peft) DiT."""
    stack, cfg = trained["stack"], trained["cfg"]
    inputs = _inputs()
    base_pipe = _pipe(stack, cfg)
    base = {n: m.weight.detach().clone() for n, m in base_pipe.dit.named_modules() if isinstance(m, torch.nn.Linear)}
    base_out = _run_dit(base_pipe.dit, inputs)
    trained_out = _run_dit(trained["dit"], inputs)
    assert (trained_out - base_out).abs().max() > 1e-3

    comfy = trained["run"] / "step-1.comfyui.safetensors"
    want = _delta(load_file(str(trained["file"])), "diffsynth")
    # the diffsynth file converted back from ComfyUI's, and ComfyUI's file as it is
    # (GeneralLoRALoader drops "diffusion_model." and reads lora_down/lora_up/alpha)
    for path in (convert_file(comfy, "diffsynth", tmp_path / "d.safetensors")["output"], comfy):
        pipe = _pipe(stack, cfg)
        pipe.load_lora(pipe.dit, str(path))
        modules = dict(pipe.dit.named_modules())
        for m, d in want.items():
            assert torch.allclose(modules[m].weight.double(), base[m].double() + d, atol=1e-6, rtol=0), (path, m)
        untouched = set(base) - set(want)
        assert all(torch.equal(modules[n].weight, base[n]) for n in untouched)
        assert torch.allclose(_run_dit(pipe.dit, inputs), trained_out, atol=1e-5, rtol=0), path


# --- ComfyUI's key map -------------------------------------------------------------------

def _comfy_key_map(sd: dict) -> dict:
    """ComfyUI's model_lora_keys_unet for a Wan model, from the rules quoted in the docstring."""
    key_map = {}
    for k in sd:
        if k.endswith(".weight"):
            name = k[:-len(".weight")]
            key_map["lora_unet_" + name.replace(".", "_")] = "diffusion_model." + k
            key_map["diffusion_model." + name] = "diffusion_model." + k
    return key_map


@pytest.mark.parametrize("layout", ["comfyui", "musubi"])
def test_comfyui_maps_every_key_to_the_trained_weight(trained, tmp_path, layout):
    # the DiT's own keys (peft's wrappers taken off), which ComfyUI's Wan model shares
    sd = {k.replace(".base_layer", ""): v for k, v in trained["dit"].state_dict().items() if "lora_" not in k}
    key_map = _comfy_key_map(sd)
    path = convert_file(trained["file"], layout, tmp_path / f"{layout}.safetensors")["output"]
    lora = load_file(path)

    loaded, patched = set(), {}
    for x, target in key_map.items():
        up, down, alpha = f"{x}.lora_up.weight", f"{x}.lora_down.weight", f"{x}.alpha"
        if up in lora:
            assert down in lora and alpha in lora
            loaded |= {up, down, alpha}
            patched[target] = (lora[up], lora[down], lora[alpha].item())
    assert loaded == set(lora)       # no "lora key not loaded"
    modules = _trained_modules(trained)
    assert set(patched) == {f"diffusion_model.{m}.weight" for m in modules}
    want = _delta(load_file(str(trained["file"])), "diffsynth")
    for target, (up, down, alpha) in patched.items():
        w = sd[target[len("diffusion_model."):]]
        assert up.shape[0] == w.shape[0] and down.shape[1] == w.shape[1]
        m = target[len("diffusion_model."):-len(".weight")]
        assert torch.allclose((alpha / down.shape[0]) * (up.double() @ down.double()), want[m], atol=1e-6, rtol=0)


# --- diffusers ---------------------------------------------------------------------------

def test_diffusers_loads_the_converted_file_and_its_own_converters_agree(trained, tmp_path):
    pytest.importorskip("diffusers")
    from diffusers import WanTransformer3DModel
    from diffusers.loaders.lora_conversion_utils import (_convert_musubi_wan_lora_to_diffusers,
                                                         _convert_non_diffusers_wan_lora_to_diffusers)
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    from tools.tiny_wan import TINY_DIT

    ours = load_file(convert_file(trained["file"], "diffusers", tmp_path / "d.safetensors")["output"])
    comfy = load_file(str(trained["run"] / "step-1.comfyui.safetensors"))
    musubi = load_file(convert_file(trained["file"], "musubi", tmp_path / "m.safetensors")["output"])
    # diffusers' converters read an alpha only inside the blocks (one outside raises "state_dict
    # should be empty"): they get the blocks, --to diffusers gives the whole file.
    blocks = {k: v for k, v in ours.items() if k.startswith("transformer.blocks.")}
    for theirs in (_convert_non_diffusers_wan_lora_to_diffusers({k: v for k, v in comfy.items() if ".blocks." in k}),
                   _convert_musubi_wan_lora_to_diffusers({k: v for k, v in musubi.items() if "_blocks_" in k})):
        theirs = {f"transformer.{k}" if not k.startswith("transformer.") else k: v for k, v in theirs.items()}
        assert set(theirs) == set(blocks)
        assert all(torch.allclose(theirs[k], ours[k], atol=1e-7, rtol=0) for k in blocks)

    # the same base weights in diffusers' model, through diffusers' own checkpoint converter
    dit = _pipe(trained["stack"], trained["cfg"]).dit
    model = WanTransformer3DModel(
        patch_size=tuple(TINY_DIT["patch_size"]), num_attention_heads=TINY_DIT["num_heads"],
        attention_head_dim=TINY_DIT["dim"] // TINY_DIT["num_heads"], in_channels=TINY_DIT["in_dim"],
        out_channels=TINY_DIT["out_dim"], text_dim=TINY_DIT["text_dim"], freq_dim=TINY_DIT["freq_dim"],
        ffn_dim=TINY_DIT["ffn_dim"], num_layers=TINY_DIT["num_layers"], cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", eps=TINY_DIT["eps"]).eval()
    model.load_state_dict(convert_wan_transformer_to_diffusers({k: v.clone() for k, v in dit.state_dict().items()}),
                          strict=True)
    inputs = _inputs()

    def run_diffusers():
        with torch.no_grad():
            return model(hidden_states=inputs["latents"], timestep=inputs["timestep"],
                         encoder_hidden_states=inputs["context"], return_dict=False)[0]

    base_out = run_diffusers()
    assert torch.allclose(base_out, _run_dit(dit, inputs), atol=1e-5, rtol=0)   # the two models agree
    model.load_lora_adapter(ours, prefix="transformer", adapter_name="wandata")
    # each Linear that got the LoRA is the one with the same base weight as the Wan module
    wan_to_diffusers = LAYOUTS["diffusers"].names.from_wan
    dmods, wmods = dict(model.named_modules()), dict(dit.named_modules())
    for m in _trained_modules(trained):
        target = dmods[wan_to_diffusers(m)]
        assert torch.equal(target.base_layer.weight, wmods[m].weight)
    assert torch.allclose(run_diffusers(), _run_dit(trained["dit"], inputs), atol=1e-5, rtol=0)


def test_name_table_matches_diffusers_for_image_layers():
    """k_img/v_img and img_emb (I2V) are not in the trained model; diffusers' converter names them."""
    pytest.importorskip("diffusers")
    from diffusers.loaders.lora_conversion_utils import _convert_non_diffusers_wan_lora_to_diffusers

    g = torch.Generator().manual_seed(0)
    sd = {}
    # (VACE's blocks: diffusers' LoRA converter has no rule for them; see the test below)
    for wan, _ in [row for row in MODULES if not row[0].startswith("vace_")]:
        m = wan.format(i=0)
        sd[f"diffusion_model.{m}.lora_A.weight"] = torch.randn(2, 3, generator=g)
        sd[f"diffusion_model.{m}.lora_B.weight"] = torch.randn(5, 2, generator=g)
    theirs = _convert_non_diffusers_wan_lora_to_diffusers(dict(sd))
    ours, _ = convert_state_dict(sd, "diffusers")
    assert set(theirs) == set(ours)      # both "transformer.<diffusers name>.lora_A/B.weight"
    assert all(torch.equal(theirs[k], v) for k, v in ours.items())


def test_name_table_matches_diffusers_checkpoint_converter_for_vace_blocks():
    """diffusers' LoRA converter stops at vace_blocks (it raises "state_dict should be empty");
    its checkpoint converter names them for WanVACETransformer3DModel, and so does the table."""
    pytest.importorskip("diffusers")
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    rows = [(wan.format(i=2), theirs.format(i=2)) for wan, theirs in MODULES if wan.startswith("vace_")]
    assert len(rows) == 12
    converted = convert_wan_transformer_to_diffusers({f"{wan}.weight": torch.zeros(1) for wan, _ in rows})
    assert set(converted) == {f"{theirs}.weight" for _, theirs in rows}


# --- VACE: the LoRA on the VACE blocks ------------------------------------------------------

def test_a_vace_lora_converts_round_trip_and_maps_onto_comfyuis_vace_model(tmp_path):
    """As DiffSynth's VACE scripts train it (--lora_base_model vace): the trainer writes the
    ComfyUI copy, every layout round-trips bitwise, ComfyUI's key map (its VaceWanModel keeps
    ``vace_blocks`` in the one diffusion model: comfy/ldm/wan/model.py) loads every key onto the
    VACE weight of the same shape, and DiffSynth's load_lora fuses the ComfyUI file into pipe.vace."""
    from accelerate import Accelerator

    from wandata.train.module import WanLoRAModule
    from wandata.train.trainer import RunLogger

    stack = build_tiny_stack(tmp_path / "models", arch="vace")
    targets = DEFAULT_TARGETS + ",before_proj,after_proj"
    cfg = TrainConfig(model_registry=stack["registry"], dtype="fp32", lora_rank=RANK, lora_targets=targets,
                      lora_base_model="vace", task="vace", output_dir=str(tmp_path / "run"))
    pipe = _pipe(stack, cfg)
    module = WanLoRAModule(pipe, cfg)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, prm in module.named_parameters():
            if "lora_B" in name:
                prm.copy_(torch.randn(prm.shape, generator=g) * 0.05)
    RunLogger(cfg, torch.optim.AdamW([q for q in module.parameters() if q.requires_grad]), start_step=1) \
        .save_model(Accelerator(), module, "step-1.safetensors")
    src = tmp_path / "run" / "step-1.safetensors"
    original = load_file(str(src))
    modules = {k[:-len(".lora_A.default.weight")] for k in original if ".lora_A." in k}
    # one VACE block: q,k,v,o of both attentions, ffn.0, ffn.2, and block 0's before/after_proj
    assert modules and all(m.startswith("vace_blocks.0.") for m in modules) and len(modules) == 12

    for name in LAYOUTS:
        there = convert_file(src, name, tmp_path / f"there.{name}.safetensors")["output"]
        got = load_file(convert_file(there, "diffsynth", tmp_path / f"back-{name}.safetensors")["output"])
        assert set(got) == set(original) and all(torch.equal(got[k], original[k]) for k in original), name
    diffusers = load_file(str(tmp_path / "there.diffusers.safetensors"))
    assert "transformer.vace_blocks.0.proj_in.lora_A.weight" in diffusers
    assert "transformer.vace_blocks.0.attn2.to_out.0.lora_B.weight" in diffusers

    comfy_file = tmp_path / "run" / "step-1.comfyui.safetensors"
    comfy = load_file(str(comfy_file))
    # ComfyUI's model: the DiT's keys and the VACE model's (vace_blocks, vace_patch_embedding)
    fresh = _pipe(stack, cfg)
    sd = {**fresh.dit.state_dict(), **fresh.vace.state_dict()}
    key_map = _comfy_key_map(sd)
    loaded, patched = set(), {}
    for x, target in key_map.items():
        if f"{x}.lora_up.weight" in comfy:
            loaded |= {f"{x}.lora_up.weight", f"{x}.lora_down.weight", f"{x}.alpha"}
            patched[target] = comfy[f"{x}.lora_up.weight"], comfy[f"{x}.lora_down.weight"]
    assert loaded == set(comfy) and set(patched) == {f"diffusion_model.{m}.weight" for m in modules}
    for target, (up, down) in patched.items():
        w = sd[target[len("diffusion_model."):]]
        assert (up.shape[0], down.shape[1]) == tuple(w.shape)

    want = _delta(original, "diffsynth")
    base = {m: dict(fresh.vace.named_modules())[m].weight.detach().clone() for m in want}
    fresh.load_lora(fresh.vace, str(comfy_file))
    got = dict(fresh.vace.named_modules())
    for m, d in want.items():
        assert torch.allclose(got[m].weight.double(), base[m].double() + d, atol=1e-6, rtol=0), m


# --- the command and its refusals ----------------------------------------------------------

def cli(*args):
    return CliRunner().invoke(main, ["lora", "convert", *map(str, args)])


def test_cli_converts_with_default_name_and_json_summary(trained, tmp_path):
    src = tmp_path / "step-1.safetensors"
    src.write_bytes(trained["file"].read_bytes())
    r = cli(src, "--to", "comfyui", "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary == {**summary, "ok": True, "layout_in": "diffsynth", "layout_out": "comfyui",
                       "modules": 26, "rank": RANK, "output": str(tmp_path / "step-1.comfyui.safetensors")}
    first = (tmp_path / "step-1.comfyui.safetensors").read_bytes()
    assert first == (trained["run"] / "step-1.comfyui.safetensors").read_bytes()
    # again: its own output is replaced (same bytes); a layout suffix is replaced, not stacked
    assert cli(src, "--to", "comfyui").exit_code == 0
    assert (tmp_path / "step-1.comfyui.safetensors").read_bytes() == first
    r = cli(tmp_path / "step-1.comfyui.safetensors", "--to", "musubi")
    assert r.exit_code == 0 and "diffsynth" not in r.output and "comfyui -> musubi: 26 modules" in r.output
    assert (tmp_path / "step-1.musubi.safetensors").is_file()
    # -o a folder: the default name inside it
    (tmp_path / "out").mkdir()
    assert cli(src, "--to", "diffusers", "-o", tmp_path / "out").exit_code == 0
    assert (tmp_path / "out" / "step-1.diffusers.safetensors").is_file()


def _assert_refused(r, *words):
    assert r.exit_code == 1, r.output
    for w in words:
        assert w in r.output, (w, r.output)


def test_unknown_and_mixed_keys_are_refused_and_named(trained, tmp_path):
    sd = load_file(str(trained["file"]))
    bad = dict(sd, **{"blocks.0.self_attn.norm_q.lora_A.default.weight": torch.zeros(RANK, 96),
                      "vae.decoder.conv.weight": torch.zeros(1)})
    src = tmp_path / "bad.safetensors"
    save_file(bad, str(src))
    r = cli(src, "--to", "comfyui")
    _assert_refused(r, str(src), "2 of", "blocks.0.self_attn.norm_q.lora_A.default.weight", "vae.decoder.conv.weight")
    assert not (tmp_path / "bad.comfyui.safetensors").exists()

    comfy, _ = convert_state_dict(sd, "comfyui")
    mixed = dict(sd, **{k: v.clone() for k, v in comfy.items() if ".blocks.1." in k})
    save_file(mixed, str(tmp_path / "mixed.safetensors"))
    _assert_refused(cli(tmp_path / "mixed.safetensors", "--to", "musubi"), "mixes key layouts",
                    "in the diffsynth layout", "in the comfyui layout")

    half = {k: v for k, v in sd.items() if k != "blocks.0.ffn.0.lora_B.default.weight"}
    save_file(half, str(tmp_path / "half.safetensors"))
    _assert_refused(cli(tmp_path / "half.safetensors", "--to", "musubi"), "blocks.0.ffn.0: no up (B) weight")

    (tmp_path / "notes.safetensors").write_text("not a LoRA")
    _assert_refused(cli(tmp_path / "notes.safetensors", "--to", "musubi"), "cannot be read as safetensors")
    with pytest.raises(LoRAError, match="--to 'kohya'"):
        convert_state_dict(sd, "kohya")
    assert cli(trained["file"], "--to", "kohya").exit_code == 2


def test_outputs_it_did_not_write_are_refused(trained, tmp_path):
    src = tmp_path / "step-1.safetensors"
    src.write_bytes(trained["file"].read_bytes())
    foreign = tmp_path / "theirs.safetensors"
    save_file({"x": torch.zeros(1)}, str(foreign))          # a safetensors file, not wandata's
    before = foreign.read_bytes()
    _assert_refused(cli(src, "--to", "comfyui", "-o", foreign), "refusing to write", "not written by wandata")
    assert foreign.read_bytes() == before
    _assert_refused(cli(src, "--to", "diffsynth", "-o", src), "is the input file")
    assert src.read_bytes() == trained["file"].read_bytes()
    # a link leading elsewhere (outside the folder) is not followed
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    link = tmp_path / "link.safetensors"
    os.symlink(outside / "target.safetensors", link)
    _assert_refused(cli(src, "--to", "comfyui", "-o", link), "symbolic link")
    assert not (outside / "target.safetensors").exists()
    _assert_refused(cli(src, "--to", "comfyui", "-o", tmp_path / "lora.pt"), "ending in .safetensors")
    _assert_refused(cli(tmp_path / "missing.safetensors", "--to", "comfyui"), "no such file")
