"""The ``openai`` captioner against a small OpenAI-compatible server on 127.0.0.1.

The server checks every request the way a real one would read it (K images as
base64 JPEG data URLs in the documented ``image_url`` content parts, the model,
the key) and answers in the chat-completions format. It can be told to answer
429 (with Retry-After) or 500 first, to fail one clip for good, and it records
how many requests were in flight at once.
"""
from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from wandata.caption import CaptionerError, caption_clips, make
from wandata.caption.openai_compat import parse_retry_after
from wandata.cli import main
from wandata.dataset.manifest import Manifest
from wandata.dataset.records import KEPT

MODEL = "tiny-vl"
KEY = "sk-test"


class FakeAPI:
    def __init__(self, frames: int):
        self.frames = frames
        self.script: list[tuple[int, dict]] = []  # (status, headers) answered before any success
        self.fail_for = None                      # prompts holding this text get 400
        self.requests: list[float] = []           # arrival times
        self.in_flight = self.max_in_flight = 0
        self.problems: list[str] = []
        self.lock = threading.Lock()
        self.delay = 0.0

    def check(self, body: dict) -> str:
        """The caption to answer with; records anything a real server would reject."""
        if body.get("model") != MODEL:
            self.problems.append(f"model {body.get('model')!r}")
        user = body["messages"][-1]
        assert user["role"] == "user"
        images = [p for p in user["content"] if p["type"] == "image_url"]
        texts = [p["text"] for p in user["content"] if p["type"] == "text"]
        if len(images) != self.frames or len(texts) != 1:
            self.problems.append(f"{len(images)} images, {len(texts)} texts")
        for p in images:
            url = p["image_url"]["url"]
            head, _, data = url.partition(",")
            if head != "data:image/jpeg;base64":
                self.problems.append(f"image url starts {head!r}")
                continue
            img = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)
            if img is None or sorted(img.shape[:2]) != [480, 832]:
                self.problems.append(f"image {None if img is None else img.shape}")
        return texts[0]

    def handler(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, status: int, obj: dict, headers: dict | None = None):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self):
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                if self.headers.get("Authorization") != f"Bearer {KEY}":
                    return self._send(401, {"error": {"message": "Incorrect API key provided"}})
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with api.lock:
                    api.requests.append(time.monotonic())
                    api.in_flight += 1
                    api.max_in_flight = max(api.max_in_flight, api.in_flight)
                try:
                    time.sleep(api.delay)
                    prompt = api.check(body)
                    if api.fail_for and api.fail_for in prompt:
                        return self._send(400, {"error": {"message": "image too large"}})
                    with api.lock:
                        scripted = api.script.pop(0) if api.script else None
                    if scripted:
                        status, headers = scripted
                        return self._send(status, {"error": {"message": f"scripted {status}",
                                                             "type": "rate_limit_error"}}, headers)
                    answer = f'"Caption of {prompt}."\n'
                    self._send(200, {"id": "chatcmpl-1", "object": "chat.completion", "created": 0,
                                     "model": MODEL, "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": answer}}],
                                     "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
                finally:
                    with api.lock:
                        api.in_flight -= 1

        return Handler


@pytest.fixture
def api(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    fake = FakeAPI(frames=3)
    server = ThreadingHTTPServer(("127.0.0.1", 0), fake.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield fake
    server.shutdown()
    server.server_close()


def kept(ds: Path):
    return [c for c in Manifest(ds).all_clips() if c.status == KEPT and c.path]


def opts(api, **more):
    return {"base_url": api.url, "api_key": KEY, "frames": "3", "prompt": "{clip_id}", "backoff": "0.01",
            **more}


def test_captions_every_clip_with_k_images_per_request(sample_dataset, api):
    api.delay = 0.05
    cap = make("openai", opts(api, model=MODEL, concurrency="2"))
    assert cap.label() == f"openai:{MODEL}"
    s = caption_clips(Manifest(sample_dataset), cap, progress=False)
    assert api.problems == []
    assert s.captioned == 8 and s.failed == 0 and len(api.requests) == 8
    assert 1 <= api.max_in_flight <= 2
    for c in kept(sample_dataset):
        assert c.caption == f"Caption of {c.clip_id}."
        assert c.captioner == f"openai:{MODEL}"


def test_429_and_500_are_retried_honouring_retry_after(sample_dataset, api):
    api.script = [(429, {"Retry-After": "1"}), (500, {})]
    cap = make("openai", opts(api, concurrency="1"))  # the model comes from GET /models
    one = kept(sample_dataset)[0].clip_id
    t0 = time.monotonic()
    s = caption_clips(Manifest(sample_dataset), cap, clip_ids={one}, progress=False)
    assert s.captioned == 1 and s.failed == 0 and len(api.requests) == 3
    assert api.requests[1] - api.requests[0] >= 0.95  # waited as Retry-After asked
    assert api.requests[2] - api.requests[1] < 0.9    # 500 without Retry-After: short backoff
    assert time.monotonic() - t0 < 10
    assert kept(sample_dataset)[0].caption == f"Caption of {one}."


def test_errors_are_recorded_per_clip_and_the_run_goes_on(sample_dataset, api):
    clips = kept(sample_dataset)
    api.fail_for = clips[0].clip_id
    api.script = [(503, {})] * 3
    # The first clip gets 400 (not retried); the next meets three 503s with retries=2 and gives up.
    s = caption_clips(Manifest(sample_dataset), make("openai", opts(api, retries="2", concurrency="1")),
                      batch_size=1, progress=False)
    assert s.failed == 2 and s.captioned == 6
    by_id = {e["clip_id"]: e["reason"] for e in s.errors}
    assert "HTTP 400" in by_id[clips[0].clip_id] and "image too large" in by_id[clips[0].clip_id]
    assert "not retried" in by_id[clips[0].clip_id]
    assert "HTTP 503" in by_id[clips[1].clip_id] and "gave up after 3 attempts" in by_id[clips[1].clip_id]
    assert len(api.requests) == 1 + 3 + 6


def test_bad_key_unreachable_server_and_no_model(sample_dataset, api):
    s = caption_clips(Manifest(sample_dataset), make("openai", opts(api, model=MODEL, api_key="wrong")),
                      clip_ids={kept(sample_dataset)[0].clip_id}, progress=False)
    assert s.failed == 1 and "HTTP 401" in s.errors[0]["reason"] and "OPENAI_API_KEY" in s.errors[0]["reason"]
    dead = opts(api, model=MODEL, base_url="http://127.0.0.1:9/v1", retries="1", timeout="2")
    s = caption_clips(Manifest(sample_dataset), make("openai", dead),
                      clip_ids={kept(sample_dataset)[0].clip_id}, progress=False)
    assert s.failed == 1 and "could not reach" in s.errors[0]["reason"]
    with pytest.raises(CaptionerError, match="pass --opt model=NAME"):
        make("openai", {**dead, "model": ""})


def test_environment_supplies_url_and_key_for_the_cli(sample_dataset, api, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", api.url)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    r = CliRunner().invoke(main, ["caption", "-d", str(sample_dataset), "-c", "openai", "--quiet",
                                  "-O", "frames=3", "-O", "prompt=Describe {clip_id} in {k} frames",
                                  "--prefix", "sks, "])
    assert r.exit_code == 0, r.output
    assert api.problems == []
    c = kept(sample_dataset)[0]
    assert c.caption == f"sks, Caption of Describe {c.clip_id} in 3 frames."
    assert c.captioner == f"openai:{MODEL}+template"


def test_retry_after_forms():
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    import email.utils
    assert 25 < parse_retry_after(email.utils.formatdate(time.time() + 30, usegmt=True)) <= 30
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") < 0  # in the past: no wait
