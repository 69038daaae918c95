"""``wandata review`` in a real headless Chromium (Debian's), driven by Playwright, against the real
server started as a command, on the ingested sample data: a clip plays, one is rejected and
another's caption edited with the keyboard, both are there after a reload, and the export omits
the rejected clip and carries the caption exactly.

With WANDATA_SCREENSHOT=1 it also writes docs/img/review.png (the README's picture)."""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from wandata.cli import main
from wandata.dataset.manifest import Manifest

REPO = Path(__file__).resolve().parent.parent
HOSTILE = '<b>bold</b>, "quoted", café 日本'


def _sigint_default():
    # A test runner started in the background (nohup, `cmd &` without job control) has SIGINT
    # ignored, and children inherit that: put back the default so the child can be interrupted.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _browser():
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if not exe or sync_playwright is None:
        assert not os.environ.get("CI"), ".ci/run installs chromium and playwright; they must be there in CI"
        pytest.skip("needs chromium (apt-get install chromium) and playwright (pip install playwright)")
    return exe, sync_playwright


@pytest.fixture
def server(sample_dataset):
    p = subprocess.Popen([sys.executable, "-m", "wandata", "review", "-d", str(sample_dataset), "--port", "0",
                          "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=_sigint_default)
    line = p.stdout.readline()
    assert line, p.stderr.read()
    yield sample_dataset, json.loads(line)["url"]
    if p.poll() is None:
        p.send_signal(signal.SIGINT)
    assert p.wait(timeout=30) == 0


def test_review_in_chromium_plays_rejects_edits_and_the_export_follows(server, tmp_path):
    exe, sync_playwright = _browser()
    ds, url = server
    kept = [c for c in Manifest(ds).all_clips() if c.status == "kept"]
    first, second = kept[0], kept[1]
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)
            page.wait_for_selector("body[data-loaded='1']")
            assert page.locator(".card").count() == len(kept)
            card = lambda cid: page.locator(f".card[data-id='{cid}']")   # noqa: E731

            # play: the panel's video element reports that it played
            card(first.clip_id).click()
            page.wait_for_selector("#player")
            page.wait_for_function("() => { const v = document.getElementById('player');"
                                   " return v && v.currentTime > 0 && !v.paused }", timeout=20000)

            # reject with the keyboard (x), which moves on to the next clip
            page.keyboard.press("x")
            page.wait_for_selector(f".card.rejected[data-id='{first.clip_id}']")
            page.wait_for_selector(f".card.cur[data-id='{second.clip_id}']")
            assert page.locator("#n-rejected").text_content() == "1"

            # edit the caption: e, type, Ctrl+Enter
            page.wait_for_function(f"() => document.querySelector('#facts dd') && "
                                   f"document.querySelector('#facts dd').textContent === {json.dumps(second.clip_id)}")
            page.keyboard.press("e")
            page.keyboard.press("Control+a")
            page.keyboard.type(HOSTILE)
            assert page.locator("#caption-count").text_content().startswith(f"{len(HOSTILE)} / ")
            page.keyboard.press("Control+Enter")
            page.wait_for_function(f"() => document.querySelector(\".card[data-id='{second.clip_id}'] .cap\")"
                                   f".textContent === {json.dumps(HOSTILE)}")
            # j and k walk the grid
            page.keyboard.press("j")
            page.wait_for_selector(f".card.cur[data-id='{kept[2].clip_id}']")
            page.keyboard.press("k")
            page.wait_for_selector(f".card.cur[data-id='{second.clip_id}']")

            # a reload shows both decisions, and the caption is text, not markup
            page.reload()
            page.wait_for_selector("body[data-loaded='1']")
            assert "rejected" in card(first.clip_id).get_attribute("class")
            assert card(second.clip_id).locator(".cap").text_content() == HOSTILE
            assert page.locator(".cap b").count() == 0
            assert page.locator("#n-edited").text_content() == "1"
            if os.environ.get("WANDATA_SCREENSHOT") == "1":
                card(second.clip_id).click()
                page.wait_for_function("() => { const v = document.getElementById('player');"
                                       " return v && v.currentTime > 1 }", timeout=20000)
                page.evaluate("document.getElementById('player').pause()")
                out = REPO / "docs" / "img" / "review.png"
                out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(out))
        finally:
            browser.close()
    assert not errors

    meta = tmp_path / "export" / "metadata.csv"
    r = CliRunner().invoke(main, ["export", "-d", str(ds), "--format", "csv", "--fallback-caption", "a video",
                                  "-o", str(meta)])
    assert r.exit_code == 0, r.output
    with open(meta, newline="", encoding="utf-8") as f:
        rows = {row["video"]: row["prompt"] for row in csv.DictReader(f)}
    assert first.path not in rows and len(rows) == len(kept) - 1
    assert rows[second.path] == HOSTILE
