"""Captioning hooks: the interface, the registry, text cleaning, token counts, frame
sampling, the caption run, and the sidecar and template captioners on the sample data."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from wandata.caption import BUILTINS, Captioner, CaptionerError, ClipInput, Result, available, caption_clips, make
from wandata.caption.frames import frame_indices, sample_frames
from wandata.caption.text import clean_text
from wandata.caption.tokens import TokenCounter, estimate_tokens, token_report
from wandata.cli import main
from wandata.dataset.manifest import Manifest
from wandata.dataset.records import KEPT

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data"


def kept(ds: Path):
    return [c for c in Manifest(ds).all_clips() if c.status == KEPT and c.path]


# ---------------------------------------------------------------- registry and options


def test_builtins_are_available_and_unknown_names_say_what_exists():
    assert set(BUILTINS) <= set(available())
    with pytest.raises(CaptionerError, match=r"unknown captioner 'nope'; choose from .*sidecar.*wandata\.captioners"):
        make("nope")


def test_options_are_checked_and_converted():
    with pytest.raises(CaptionerError, match=r"no option 'bogus'.*it takes: template, trigger"):
        make("template", {"bogus": "1"})
    with pytest.raises(CaptionerError, match=r"timeout='soon' is invalid"):
        make("command", {"cmd": "python x.py", "timeout": "soon"})
    with pytest.raises(CaptionerError, match=r"uses \{nope\}, which is not a field"):
        make("template", {"template": "{trigger} {nope}"})
    cap = make("command", {"cmd": '["python", "-c", "print(1)"]', "frames": "2"})
    assert cap.argv == ["python", "-c", "print(1)"] and cap.opts["frames"] == 2


# ---------------------------------------------------------------- text and tokens


@pytest.mark.parametrize("raw, clean", [
    ("  a   cat\n\n walks\t", "a cat walks"),
    ('"A cat walks."', "A cat walks."),
    ("\u201cA cat walks.\u201d", "A cat walks."),
    ("Caption: A cat walks.", "A cat walks."),
    ("**Description:** 'A cat walks.'", "A cat walks."),
    ('"A" and "B"', '"A" and "B"'),
    ("a\x00cat\x1fwalks", "a cat walks"),
    ("", ""),
])
def test_clean_text(raw, clean):
    assert clean_text(raw) == (clean, False)


def test_clean_text_cuts_long_text_at_a_boundary():
    text = "One short sentence. " + "word " * 100
    out, cut = clean_text(text, max_chars=60)
    assert cut and out == "One short sentence. " + " ".join(["word"] * 8)
    out, cut = clean_text("First sentence here. Second sentence is longer than that.", max_chars=36)
    assert cut and out == "First sentence here."
    assert clean_text("x" * 5000, max_chars=0) == ("x" * 5000, False)


def test_estimate_errs_long_and_counts_cjk_per_character():
    assert estimate_tokens("") == 1  # the end-of-sequence token
    assert estimate_tokens("a cat walks on the grass.") == 1 + 6 + 1
    assert estimate_tokens("\u732b\u5728\u8d70") == 1 + 3
    long = "word " * 600
    rep = token_report({"a": long, "b": "short", "c": ""}, TokenCounter())
    assert rep.method == "estimate" and not rep.exact
    assert rep.captions == 2 and rep.over == [{"clip_id": "a", "tokens": 601}]


def test_token_counter_uses_a_local_tokenizer(tmp_path):
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({"<unk>": 0, "</s>": 1, "a": 2, "cat": 3}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    from tokenizers.processors import TemplateProcessing
    tok.post_processor = TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="</s>").save_pretrained(tmp_path / "tok")
    counter = TokenCounter(str(tmp_path / "tok"), limit=4)
    assert counter.exact and counter.method == f"tokenizer {tmp_path / 'tok'}"
    assert counter.count("a cat a") == 4
    assert token_report({"x": "a cat a cat"}, counter).over == [{"clip_id": "x", "tokens": 5}]
    with pytest.raises(ValueError, match="could not load the tokenizer"):
        TokenCounter(str(tmp_path / "missing"))


# ---------------------------------------------------------------- frames


def test_frame_indices_spread_over_the_clip():
    assert frame_indices(81, 4) == [10, 30, 50, 70]
    assert frame_indices(3, 8) == [0, 1, 2]
    assert frame_indices(0, 4) == []


def test_sample_frames_from_a_clip(sample_dataset_ro):
    clip = kept(sample_dataset_ro)[0]
    frames = sample_frames(sample_dataset_ro / clip.path, 4, num_frames=clip.verified_frames)
    assert len(frames) == 4
    assert all(f.shape == (clip.height, clip.width, 3) and f.dtype == np.uint8 for f in frames)
    small = ClipInput(clip, sample_dataset_ro).frames(2, max_side=208)
    assert max(small[0].shape[:2]) == 208


# ---------------------------------------------------------------- template on the sample data


def test_template_captions_every_kept_clip(sample_dataset):
    m = Manifest(sample_dataset)
    cap = make("template", {"template": "{trigger}, a {orientation} clip from {source_stem}", "trigger": "sks"})
    s = caption_clips(m, cap, progress=False)
    assert s.captioned == 8 and s.failed == 0 and s.captioner == "template"
    for c in kept(sample_dataset):
        assert c.caption == f"sks, a {c.orientation} clip from {Path(c.source_path).stem}"
        assert c.captioner == "template"
    assert s.tokens["captions"] == 8 and s.tokens["over"] == []


def test_prefix_and_suffix_wrap_another_captioner(sample_dataset):
    m = Manifest(sample_dataset)
    cap = make("template", {"template": "a clip"})
    s = caption_clips(m, cap, prefix="{trigger}, ", suffix=" ({bucket})", fields={"trigger": "ohwx"},
                      progress=False)
    assert s.captioner == "template+template"
    c = kept(sample_dataset)[0]
    assert c.caption == f"ohwx, a clip ({c.bucket})"
    with pytest.raises(CaptionerError, match=r"\{oops\}"):
        caption_clips(m, cap, prefix="{oops}", progress=False)


# ---------------------------------------------------------------- sidecar on the sample data


def test_sidecar_reads_source_files_and_per_clip_files_override(sample_dataset, tmp_path):
    m = Manifest(sample_dataset)
    videos = tmp_path / "videos"
    videos.mkdir()
    # The clips' sources, as if they lived in a folder of the user's (the repo stays clean).
    for c in m.all_clips():
        c.source_path = str(videos / Path(c.source_path).name)
    (videos / "montage_24fps.txt").write_text("A montage of photos.\n", encoding="utf-8")
    (videos / "phone_portrait.mp4.caption").write_text("\ufeffA phone video.", encoding="utf-8")
    captions_dir = tmp_path / "caps"
    captions_dir.mkdir()
    (captions_dir / "stock_30fps.txt").write_text("Stock footage.", encoding="utf-8")
    clips = [c for c in m.all_clips() if c.status == KEPT]
    montage = [c for c in clips if "montage" in c.path]
    one = montage[1]
    (sample_dataset / one.path).with_suffix(".txt").write_text("  This one clip, by hand. ", encoding="utf-8")

    s = caption_clips(m, make("sidecar", {"dir": str(captions_dir)}), progress=False)
    assert s.failed == 0 and s.captioned == len(clips)
    by_id = {c.clip_id: c.caption for c in clips}
    assert by_id[one.clip_id] == "This one clip, by hand."
    assert {by_id[c.clip_id] for c in montage if c is not one} == {"A montage of photos."}
    assert {c.caption for c in clips if "phone" in c.path} == {"A phone video."}
    assert {c.caption for c in clips if "stock" in c.path} == {"Stock footage."}
    assert {c.captioner for c in clips} == {"sidecar"}


def test_sidecar_mapping_files_and_missing_captions(sample_dataset, tmp_path):
    clips = kept(sample_dataset)
    first = clips[0]
    table = tmp_path / "captions.csv"
    table.write_text("source,caption\n"
                     f"{SAMPLE / 'montage_24fps.mp4'},\"A montage, with commas.\"\n"
                     "phone_portrait.mp4,A phone video.\n"
                     f"{first.clip_id},Just the first clip.\n", encoding="utf-8")
    m = Manifest(sample_dataset)
    s = caption_clips(m, make("sidecar", {"mapping": str(table)}), progress=False)
    got = {c.clip_id: c.caption for c in kept(sample_dataset)}
    assert got[first.clip_id] == "Just the first clip."
    assert {got[c.clip_id] for c in clips[1:] if "montage" in c.path} == {"A montage, with commas."}
    assert {got[c.clip_id] for c in clips if "phone" in c.path} == {"A phone video."}
    stock = [c for c in clips if "stock" in c.path]
    assert s.failed == len(stock) and all(not got[c.clip_id] for c in stock)
    assert "no caption found for" in s.errors[0]["reason"] and "stock_30fps" in s.errors[0]["reason"]

    js = tmp_path / "captions.json"
    js.write_text(json.dumps({"stock_30fps": "Stock, from JSON."}), encoding="utf-8")
    s = caption_clips(Manifest(sample_dataset), make("sidecar", {"mapping": str(js)}), progress=False)
    assert s.captioned == len(stock) and s.skipped == len(clips) - len(stock)
    assert {c.caption for c in kept(sample_dataset) if "stock" in c.path} == {"Stock, from JSON."}
    with pytest.raises(CaptionerError, match="does not exist"):
        make("sidecar", {"mapping": str(tmp_path / "nope.csv")})


# ---------------------------------------------------------------- the caption run


class Numbered(Captioner):
    """Captions clip i as 'clip i'; fails the clips named in ``fail``; can crash."""
    name = "numbered"
    batch_size = 3

    def __init__(self, fail=(), crash_on_batch=None, interrupt_on_batch=None):
        super().__init__()
        self.fail, self.crash, self.interrupt, self.batches = set(fail), crash_on_batch, interrupt_on_batch, 0

    def caption_batch(self, items):
        self.batches += 1
        if self.batches == self.interrupt:
            raise KeyboardInterrupt
        if self.batches == self.crash:
            raise RuntimeError("model exploded")
        return [Result(error="no luck") if it.clip_id in self.fail else Result(text=f"clip {it.clip_id}")
                for it in items]


def test_run_skips_captioned_clips_unless_recaption_and_keeps_going_after_errors(sample_dataset):
    ids = [c.clip_id for c in kept(sample_dataset)]
    s = caption_clips(Manifest(sample_dataset), Numbered(fail={ids[0]}, crash_on_batch=2), progress=False)
    # Batch 2 (clips 3-5) crashed, clip 0 failed: the rest are captioned and saved.
    assert s.captioned == 4 and s.failed == 4
    assert "model exploded" in s.errors[1]["reason"] and s.errors[1]["clip_id"] == ids[3]
    s = caption_clips(Manifest(sample_dataset), Numbered(), progress=False)
    assert s.captioned == 4 and s.skipped == 4
    assert all(c.caption == f"clip {c.clip_id}" and c.captioner == "numbered" for c in kept(sample_dataset))
    s = caption_clips(Manifest(sample_dataset), Numbered(fail={ids[1]}), recaption=True, progress=False)
    assert s.captioned == 7 and s.failed == 1
    assert kept(sample_dataset)[1].caption == f"clip {ids[1]}"  # a failed recaption keeps the old caption
    s = caption_clips(Manifest(sample_dataset), Numbered(), recaption=True, clip_ids={ids[2]}, progress=False)
    assert s.captioned == 1 and s.skipped == 0


def test_an_interrupted_run_keeps_the_batches_it_finished(sample_dataset):
    with pytest.raises(KeyboardInterrupt):
        caption_clips(Manifest(sample_dataset), Numbered(interrupt_on_batch=2), batch_size=2, progress=False)
    assert [bool(c.caption) for c in kept(sample_dataset)] == [True] * 2 + [False] * 6


def test_empty_text_is_an_error_and_wrong_result_counts_end_the_run(sample_dataset):
    class Blank(Captioner):
        name = "blank"

        def caption_batch(self, items):
            return [Result(text="  \n ") for _ in items]

    s = caption_clips(Manifest(sample_dataset), Blank(), progress=False)
    assert s.failed == 8 and "gave an empty caption" in s.errors[0]["reason"]

    class Short(Captioner):
        name = "short"

        def caption_batch(self, items):
            return []

    with pytest.raises(CaptionerError, match="returned 0 results for 1 clips"):
        caption_clips(Manifest(sample_dataset), Short(), progress=False)


# ---------------------------------------------------------------- command line


def test_cli_caption_and_report(sample_dataset):
    r = CliRunner().invoke(main, ["caption", "-d", str(sample_dataset), "-c", "template", "--trigger", "sks",
                                  "-O", "template={trigger} video", "--suffix", ", {orientation}", "--quiet"])
    assert r.exit_code == 0, r.output
    assert "captions: 8 made by template+template" in r.output and "tokens (estimate)" in r.output
    assert {c.caption for c in kept(sample_dataset)} == {"sks video, landscape", "sks video, portrait"}
    r = CliRunner().invoke(main, ["caption", "-d", str(sample_dataset), "-c", "template", "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["skipped"] == 8
    r = CliRunner().invoke(main, ["captions", "report", "-d", str(sample_dataset), "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["captions"] == 8


def test_cli_caption_errors(sample_dataset, tmp_path):
    r = CliRunner().invoke(main, ["caption", "-d", str(tmp_path), "-c", "template"])
    assert r.exit_code == 2 and "no manifest.parquet" in r.output
    r = CliRunner().invoke(main, ["caption", "-d", str(sample_dataset), "-c", "nope"])
    assert r.exit_code == 2 and "unknown captioner 'nope'" in r.output
    r = CliRunner().invoke(main, ["caption", "-d", str(sample_dataset), "-c", "template", "-O", "trigger"])
    assert r.exit_code == 2 and "is not KEY=VALUE" in r.output
    r = CliRunner().invoke(main, ["caption", "-d", str(sample_dataset), "-c", "sidecar", "--quiet"])
    assert r.exit_code == 3 and "failed  " in r.output and "no caption found" in r.output


def test_ingest_runs_the_captioner_as_a_step(sample_dataset):
    # The sources are already ingested with these settings, so ingest skips to captioning.
    args = ["ingest", str(SAMPLE), "-o", str(sample_dataset), "--quiet", "--captioner", "template",
            "--caption-opt", "template={trigger} from {source_name}", "--caption-opt", "trigger=sks",
            "--caption-opt", "prefix=[{bucket}] "]
    r = CliRunner().invoke(main, [*args, "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["skipped"] == 4 and out["captions"]["captioned"] == 8
    c = kept(sample_dataset)[0]
    assert c.caption == f"[{c.bucket}] sks from {Path(c.source_path).name}"
    r = CliRunner().invoke(main, [*args[:-2], "--caption-opt", "nope=1"])
    assert r.exit_code == 2 and "has no option 'nope'" in r.output


def test_each_batch_is_a_part_not_a_rewrite_of_the_manifest(sample_dataset):
    """A batch writes its sources' rows as a manifest part; the base file is not rewritten
    (the cost of a batch does not grow with the dataset), and the captions read back."""
    base = sample_dataset / "manifest.parquet"
    before = base.read_bytes()
    m = Manifest(sample_dataset)
    s = caption_clips(m, make("template", {"template": "a {bucket} clip"}), batch_size=1, progress=False)
    assert s.captioned > 1
    assert base.read_bytes() == before
    parts = sorted((sample_dataset / "manifest.parts").glob("*.parquet"))
    assert parts   # one per batch, merged as they pile up
    again = {c.clip_id: c.caption for c in Manifest(sample_dataset).all_clips() if c.status == KEPT}
    assert again and all(t.startswith("a ") and t.endswith(" clip") for t in again.values())
