"""`wandata export --with`: conditioning inputs made from the clips' own frames, read back
bit for bit, and by DiffSynth's own dataset class as its Wan example scripts configure it."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from tools import synth
from wandata.cli import main
from wandata.controls.canny import CannyExtractor
from wandata.controls.depth import DepthExtractor
from wandata.dataset.manifest import Manifest
from wandata.ingest.run import ingest
from wandata.settings import Settings

from .media import decode

SMALL = ((416, 240), (240, 416))
FPS, N = 24, 48   # 2 s per source: one 17-frame clip each after the trims


def _encode(path: Path, frames) -> None:
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        s.options = {"crf": "20", "preset": "ultrafast"}
        for img in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        c.mux(s.encode(None))


@pytest.fixture(scope="module")
def dataset_ro(tmp_path_factory) -> Path:
    """A real ingest of generated footage: a landscape and a portrait source, one shot each."""
    root = tmp_path_factory.mktemp("cond")
    raw = root / "raw"
    raw.mkdir()
    for name, photo, (w, h) in (("a_land.mp4", "astronaut", (640, 368)), ("b_port.mp4", "coffee", (368, 640))):
        shot = synth.Shot(photo, N + 8, (1.0, 1.25), ((0.2, 0.3), (0.6, 0.5)))
        _encode(raw / name, [synth.render_frame(shot, i, w, h) for i in range(N)])
    out = root / "ds"
    ingest([raw], out, Settings(frames=17, buckets=SMALL, detector="none"), progress=False)
    kept = [c for c in Manifest(out).all_clips() if c.status == "kept"]
    assert len(kept) == 2 and {(c.width, c.height) for c in kept} == set(SMALL)
    return out


@pytest.fixture
def ds(dataset_ro, tmp_path) -> Path:
    dst = tmp_path / "ds"
    shutil.copytree(dataset_ro, dst)
    return dst


@pytest.fixture(scope="module")
def tiny_depth(tmp_path_factory) -> Path:
    """A tiny random Depth Anything built with transformers' own classes and saved the way a
    downloaded one is: the real loading and inference code runs on it."""
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    torch.manual_seed(0)
    backbone = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                            patch_size=14, image_size=56, out_features=["stage1", "stage2", "stage3", "stage4"],
                            reshape_hidden_states=False)
    cfg = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=32, patch_size=14,
                              neck_hidden_sizes=[16, 16, 16, 16], fusion_hidden_size=16, head_hidden_size=8,
                              reassemble_factors=[4, 2, 1, 0.5], depth_estimation_type="relative")
    folder = tmp_path_factory.mktemp("tiny_depth")
    DepthAnythingForDepthEstimation(cfg).eval().save_pretrained(folder)
    DPTImageProcessor(size={"height": 56, "width": 56}, keep_aspect_ratio=True, ensure_multiple_of=14,
                      image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]).save_pretrained(folder)
    return folder


def run(*args):
    return CliRunner().invoke(main, ["export", *map(str, args)], catch_exceptions=False)


def export(ds: Path, *args, fmt: str = "jsonl") -> dict:
    r = run("-d", ds, "-f", fmt, "--fallback-caption", "a clip", "--json", *args)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def rows(summary: dict) -> list[dict]:
    return [json.loads(line) for line in Path(summary["metadata"]).read_text().splitlines()]


def png(path: Path) -> np.ndarray:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB)


def stream_facts(path: Path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        cc = s.codec_context
        return (cc.name, cc.profile, cc.pix_fmt), s.average_rate, s.width, s.height


# --- the files are the clip's frames -----------------------------------------------------

def test_first_and_last_frame_pngs_are_the_clips_decoded_frames(ds):
    s = export(ds, "--with", "input_image,end_image", "--with", "reference_image")
    assert s["conditioning"]["made"] == 2 * 2   # first + last per clip; reference_image is the same first frame
    for row in rows(s):
        frames, _ = decode(ds / row["video"])
        assert len(frames) == 17
        assert not Path(row["input_image"]).is_absolute() and row["input_image"].startswith("conditioning/")
        assert np.array_equal(png(ds / row["input_image"]), frames[0])
        assert np.array_equal(png(ds / row["end_image"]), frames[-1])
        assert row["reference_image"] == row["input_image"]
    settings = json.loads(Path(s["settings"]).read_text())
    assert settings["conditioning"]["extra_inputs"] == ["input_image", "end_image", "reference_image"]
    # DiffSynth's train.py takes input_image/end_image from the loaded clip, reference_image from its column
    assert settings["conditioning"]["data_file_keys"] == ["video", "reference_image"]


def test_canny_control_video_is_frame_exact_and_lossless(ds):
    s = export(ds, "--with", "control_video:canny", "--control-opt", "canny.low=50", "--control-opt", "canny.high=150")
    canny = CannyExtractor(low=50, high=150)
    for row in rows(s):
        clip = ds / row["video"]
        frames, _ = decode(clip)
        control, _ = decode(ds / row["control_video"])
        codec, rate, w, h = stream_facts(ds / row["control_video"])
        # H.264 4:4:4 Predictive in planar RGB (libx264rgb, qp 0), rate and size of the clip
        assert codec == ("h264", "High 4:4:4 Predictive", "gbrp") and (rate, w, h) == stream_facts(clip)[1:]
        assert len(control) == len(frames) == 17
        # Lossless: every frame is exactly the extractor's picture of the clip's frame.
        for got, frame in zip(control, frames):
            assert np.array_equal(got, canny.frame(frame))
        assert any(f.any() for f in control) and set(np.unique(control[0])) <= {0, 255}


def test_depth_vace_video_from_a_real_model_and_the_reference_frame(ds, tiny_depth):
    s = export(ds, "--with", "vace_video:depth,vace_reference_image", "--control-opt", f"depth.model={tiny_depth}",
               "--control-opt", "depth.device=cpu")
    for row in rows(s):
        frames, _ = decode(ds / row["video"])
        depth, _ = decode(ds / row["vace_video"])
        want = DepthExtractor(model=str(tiny_depth), device="cpu")(frames)
        assert len(depth) == 17 and all(np.array_equal(a, b) for a, b in zip(depth, want))
        assert depth[0].shape == frames[0].shape
        assert min(int(f.min()) for f in depth) == 0 and max(int(f.max()) for f in depth) == 255
        assert np.array_equal(png(ds / row["vace_reference_image"]), frames[0])
    settings = json.loads(Path(s["settings"]).read_text())
    assert "model_files" in settings["conditioning"]["extractors"]["depth"]


# --- DiffSynth's own dataset reads every export ------------------------------------------

# --data_file_keys / --extra_inputs exactly as DiffSynth's examples/wanvideo/model_training/lora/*.sh
EXAMPLES = {
    "I2V (Wan2.1-I2V-14B-480P.sh)": ("input_image", "video", "input_image"),
    "FLF2V (Wan2.1-FLF2V-14B-720P.sh)": ("input_image,end_image", "video", "input_image,end_image"),
    "Fun-Control (Wan2.1-Fun-1.3B-Control.sh)": ("control_video:canny", "video,control_video", "control_video"),
    "Fun-V1.1-Control (Wan2.1-Fun-V1.1-1.3B-Control.sh)": ("control_video:canny,reference_image",
                                                           "video,control_video,reference_image",
                                                           "control_video,reference_image"),
    "VACE (Wan2.1-VACE-1.3B.sh)": ("vace_video:canny,vace_reference_image", "video,vace_video,vace_reference_image",
                                   "vace_video,vace_reference_image"),
}


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("example", list(EXAMPLES))
def test_diffsynth_unified_dataset_reads_the_export(ds, example, fmt):
    from diffsynth.core import UnifiedDataset

    with_, file_keys, extra_inputs = EXAMPLES[example]
    s = export(ds, "--with", with_, fmt=fmt)
    from wandata import export as ex
    st = ex.read_settings(Path(s["settings"]))
    assert ",".join(st["conditioning"]["data_file_keys"]) == file_keys
    args = ex.diffsynth_args(st)
    assert args[args.index("--data_file_keys") + 1] == file_keys
    assert args[args.index("--extra_inputs") + 1] == extra_inputs
    # The train script's call (examples/wanvideo/model_training/train.py), with the export's settings.
    dataset = UnifiedDataset(
        base_path=st["dataset_base_path"], metadata_path=st["metadata_path"], repeat=1,
        data_file_keys=file_keys.split(","),
        main_data_operator=UnifiedDataset.default_video_operator(
            base_path=st["dataset_base_path"], max_pixels=st["max_pixels"], height=st["height"], width=st["width"],
            height_division_factor=16, width_division_factor=16, num_frames=st["num_frames"],
            time_division_factor=4, time_division_remainder=1))
    assert len(dataset) == 2
    canny = CannyExtractor()
    for i in range(len(dataset)):
        data = dataset[i]
        frames, _ = decode(ds / dataset.data[i]["video"])
        video = np.stack([np.asarray(f) for f in data["video"]])
        h, w = frames[0].shape[:2]
        assert video.shape == (17, h, w, 3)
        # What train.py's parse_extra_inputs hands the pipeline for each extra input.
        for name in extra_inputs.split(","):
            # train.py takes these from the loaded clip: imageio's ffmpeg gives the very frames of the PNGs.
            if name == "input_image":
                assert np.array_equal(png(ds / dataset.data[i]["input_image"]), np.asarray(data["video"][0]))
            elif name == "end_image":
                assert np.array_equal(png(ds / dataset.data[i]["end_image"]), np.asarray(data["video"][-1]))
            elif name in ("reference_image", "vace_reference_image"):
                image = data[name][0]
                assert np.array_equal(np.asarray(image), frames[0])
            else:
                control = np.stack([np.asarray(f) for f in data[name]])
                assert control.shape == (17, h, w, 3)
                # Through imageio's ffmpeg reader too, the control frames are the extractor's pictures.
                assert all(np.array_equal(c, canny.frame(f)) for c, f in zip(control, frames))


# --- refusals ------------------------------------------------------------------------------

@pytest.mark.parametrize("args, words", [
    (["--with", "first_frame"], ["--with first_frame: unknown input", "input_image", "control_video:canny",
                                 "vace_video:depth"]),
    (["--with", "control_video"], ["name the control extractor", "control_video:canny"]),
    (["--with", "control_video:sobel"], ["unknown control extractor 'sobel'", "canny, depth"]),
    (["--with", "input_image,input_image"], ["names input_image twice"]),
    (["--with", "control_video:canny", "--control-opt", "canny.sigma=2"], ["canny has no option 'sigma'",
                                                                          "canny.low, canny.high"]),
    (["--with", "control_video:canny", "--control-opt", "canny.low=200"], ["need 0 <= low < high <= 255"]),
    (["--with", "input_image", "--control-opt", "canny.low=5"], ["no --with input uses the control extractor"]),
    (["--control-opt", "canny.low=5"], ["--control-opt is given without --with"]),
    (["-f", "musubi", "--with", "input_image"], ["cannot be exported as musubi", "wan_cache_latents.py --i2v"]),
    (["-f", "musubi", "--with", "vace_video:canny"], ["musubi-tuner does not train Wan VACE"]),
    (["-f", "diffusion-pipe", "--with", "end_image"], ["diffusion-pipe takes Wan I2V/FLF2V frames from the clip"]),
    (["-f", "diffusion-pipe", "--with", "control_video:canny"], ["diffusion-pipe has no Wan control"]),
])
def test_refused_before_anything_is_written(ds, args, words):
    before = sorted(p.relative_to(ds) for p in ds.rglob("*"))
    r = run("-d", ds, "--fallback-caption", "a clip", *args)
    assert r.exit_code == 1
    for w in words:
        assert w in r.output, r.output
    assert sorted(p.relative_to(ds) for p in ds.rglob("*")) == before


def test_musubi_carries_the_control_video_as_control_path(ds):
    s = export(ds, "--with", "control_video:canny", fmt="musubi")
    lines = [json.loads(line) for f in sorted(Path(s["metadata"]).parent.glob("*.jsonl"))
             for line in f.read_text().splitlines()]
    assert len(lines) == 2
    for row in lines:
        control = Path(row["control_path"])
        assert control.is_absolute() and control.is_file() and ds.resolve() in control.parents
        frames, _ = decode(Path(row["video_path"]))
        assert len(decode(control)[0]) == len(frames)


def test_a_clip_path_outside_the_dataset_is_left_out_and_nothing_outside_is_read(ds, tmp_path):
    outside = tmp_path / "outside.mp4"
    m = Manifest(ds)
    kept = [c for c in m.all_clips() if c.status == "kept"]
    shutil.copy(ds / kept[0].path, outside)
    kept[0].path = os.path.relpath(outside, ds)
    m.save()
    r = run("-d", ds, "--fallback-caption", "a clip", "--with", "input_image", "--json")
    assert r.exit_code == 3
    s = json.loads(r.stdout)
    assert [x["code"] for x in s["refused"]] == ["path_outside_root"]
    assert s["conditioning"]["made"] == 1 and len(rows(s)) == 1
    assert not list(tmp_path.glob("*.png")) and sorted(p.name for p in tmp_path.iterdir()) == ["ds", "outside.mp4"]


def test_links_and_foreign_folders_are_refused(ds, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    cond = ds / "conditioning"
    cond.mkdir()
    (cond / "notes.txt").write_text("mine")           # a folder wandata did not write
    r = run("-d", ds, "--fallback-caption", "a clip", "--with", "input_image")
    assert r.exit_code == 1 and "not written by wandata as a conditioning folder" in r.output
    assert (cond / "notes.txt").read_text() == "mine" and len(list(cond.iterdir())) == 1
    # Ours, but a subfolder is a link out of the dataset: nothing is written through it.
    (cond / "notes.txt").unlink()
    export(ds, "--with", "end_image")
    (cond / "first_frame").symlink_to(victim, target_is_directory=True)
    r = run("-d", ds, "--fallback-caption", "a clip", "--with", "input_image")
    assert r.exit_code == 1 and "leads out of the dataset" in r.output
    assert not list(victim.iterdir())


def test_a_rerun_reuses_every_file_untouched(ds):
    with_ = "input_image,end_image,control_video:canny"
    first = export(ds, "--with", with_)
    first_rows = rows(first)
    files = sorted(p for p in (ds / "conditioning").rglob("*") if p.is_file() and p.suffix in (".png", ".mp4"))
    assert len(files) == 6 and first["conditioning"]["made"] == 6
    stat = {p: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for p in files}
    again = export(ds, "--with", with_)
    assert again["conditioning"]["made"] == 0 and again["conditioning"]["reused"] == 6
    assert rows(again) == first_rows
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for p in files} == stat
    # Other extractor options are another control video; the images are still reused.
    third = export(ds, "--with", with_, "--control-opt", "canny.low=10")
    assert third["conditioning"]["made"] == 2 and third["conditioning"]["reused"] == 4
    assert [r["control_video"] for r in rows(third)] != [r["control_video"] for r in first_rows]


def test_a_changed_clip_gets_new_files_from_its_new_frames(ds):
    first = rows(export(ds, "--with", "input_image"))
    m = Manifest(ds)
    clip = next(c for c in m.all_clips() if c.status == "kept")
    frames, _ = decode(ds / clip.path)
    flipped = [np.ascontiguousarray(f[::-1]) for f in frames]
    with av.open(str(ds / clip.path), "w") as c:      # as a re-ingest would: a new file, a new digest
        s = c.add_stream("libx264", rate=16)
        s.width, s.height, s.pix_fmt = clip.width, clip.height, "yuv420p"
        for img in flipped:
            c.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        c.mux(s.encode(None))
    from wandata.media.verify import decode_clip
    clip.decoded_digest = decode_clip(ds / clip.path).digest
    m.save()
    s = export(ds, "--with", "input_image")
    assert (s["conditioning"]["made"], s["conditioning"]["reused"]) == (1, 1)
    row = next(r for r in rows(s) if r["video"] == clip.path)
    assert row["input_image"] not in [r["input_image"] for r in first]
    assert np.array_equal(png(ds / row["input_image"]), decode(ds / clip.path)[0][0])
