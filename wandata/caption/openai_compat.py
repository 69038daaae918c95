"""``openai``: any OpenAI-compatible chat completions endpoint with image input.

vLLM, Ollama, LM Studio, llama.cpp's server and hosted APIs all accept the same
request: K frames as base64 JPEG data URLs in one user message, plus the prompt.
Only the standard library is used, so no client package is needed.

Rate limits (429) and server errors (5xx) are retried with exponential backoff,
waiting as long as the server's Retry-After asks (up to ``max_wait``); a clip
that still fails gets its error recorded and the run goes on.
"""
from __future__ import annotations

import base64
import email.utils
import http.client
import json
import os
import random
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from wandata.caption.base import Captioner, CaptionerError, ClipInput, Option, Result
from wandata.caption.frames import to_jpeg
from wandata.caption.template import PROMPT_OPTIONS, prompt_template, render

DEFAULT_BASE_URL = "https://api.openai.com/v1"
RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class OpenAICaptioner(Captioner):
    name = "openai"
    options = {
        "base_url": Option("", f"API root ending in /v1; default $OPENAI_BASE_URL, else {DEFAULT_BASE_URL}"),
        "api_key": Option("", "API key; default $OPENAI_API_KEY (local servers usually need none)"),
        "model": Option("", "model name; if empty and the server lists exactly one model, that one"),
        **PROMPT_OPTIONS,
        "system": Option("", "optional system message"),
        "frames": Option(8, "frames sampled across the clip and sent as images", int),
        "max_side": Option(0, "shrink frames so their longer side is at most this (0: keep)", int),
        "detail": Option("", "OpenAI image detail: low, high or auto (empty: not sent)"),
        "max_tokens": Option(300, "most tokens the model may answer with", int),
        "temperature": Option(0.2, "sampling temperature", float),
        "concurrency": Option(4, "requests in flight at once", int),
        "retries": Option(5, "retries of a request after 429, 5xx, timeouts and connection errors", int),
        "backoff": Option(2.0, "seconds before the first retry; doubled for each next one", float),
        "max_wait": Option(60.0, "longest single wait between retries, Retry-After included", float),
        "timeout": Option(120.0, "seconds one request may take", float),
    }

    def __init__(self, **opts):
        super().__init__(**opts)
        o = self.opts
        self.base_url = (o["base_url"] or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.api_key = o["api_key"] or os.environ.get("OPENAI_API_KEY", "")
        self.prompt = prompt_template(o)
        if o["concurrency"] < 1 or o["frames"] < 1:
            raise CaptionerError("the openai captioner needs --opt concurrency and --opt frames of at least 1")
        self.batch_size = 2 * o["concurrency"]
        self.model = o["model"] or self._only_model()

    def label(self) -> str:
        return f"openai:{self.model}"

    # ------------------------------------------------------------ requests

    def _headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            h["Authorization"] = f"Bearer {self.api_key}"
        return h

    def _only_model(self) -> str:
        url = f"{self.base_url}/models"
        try:
            status, _, body = _http("GET", url, None, self._headers(), self.opts["timeout"])
            names = [m["id"] for m in json.loads(body)["data"]] if status == 200 else []
        except (OSError, ValueError, KeyError, TypeError, http.client.HTTPException) as e:
            raise CaptionerError(f"no model given and the models at {url} could not be listed "
                                 f"({type(e).__name__}: {e}); pass --opt model=NAME") from None
        if len(names) != 1:
            found = f"the server lists {', '.join(names)}" if names else f"GET {url} listed none (HTTP {status})"
            raise CaptionerError(f"no model given and {found}; pass --opt model=NAME")
        return names[0]

    def caption_batch(self, items: list[ClipInput]) -> list[Result]:
        with ThreadPoolExecutor(self.opts["concurrency"]) as pool:
            return list(pool.map(self._one, items))

    def _one(self, item: ClipInput) -> Result:
        try:
            frames = item.frames(self.opts["frames"], self.opts["max_side"])
        except Exception as e:  # noqa: BLE001 - an unreadable clip is this clip's error
            return Result(error=f"could not sample frames from {item.path} ({type(e).__name__}: {e})")
        payload = self._payload(render(self.prompt, item.fields({"k": len(frames)})), frames)
        return self._post_with_retries(payload, item.clip_id)

    def _payload(self, prompt: str, frames) -> dict:
        images = []
        for img in frames:
            url = "data:image/jpeg;base64," + base64.b64encode(to_jpeg(img)).decode("ascii")
            image_url = {"url": url, **({"detail": self.opts["detail"]} if self.opts["detail"] else {})}
            images.append({"type": "image_url", "image_url": image_url})
        messages = [{"role": "system", "content": self.opts["system"]}] if self.opts["system"] else []
        messages.append({"role": "user", "content": [*images, {"type": "text", "text": prompt}]})
        return {"model": self.model, "messages": messages, "max_tokens": self.opts["max_tokens"],
                "temperature": self.opts["temperature"]}

    def _post_with_retries(self, payload: dict, clip_id: str) -> Result:
        url = f"{self.base_url}/chat/completions"
        data = json.dumps(payload).encode()
        retries = max(0, self.opts["retries"])
        for attempt in range(retries + 1):
            retry_after = None
            try:
                status, headers, body = _http("POST", url, data, self._headers(), self.opts["timeout"])
            except (OSError, http.client.HTTPException) as e:  # timeouts, refused and reset connections
                problem = f"could not reach {url} ({type(e).__name__}: {e})"
            else:
                if status == 200:
                    return _parse_answer(body, clip_id)
                problem = f"HTTP {status} from {url}: {_server_message(body)}"
                if status not in RETRY_STATUS:
                    return Result(error=f"{problem}{_hint(status)} (clip {clip_id}; not retried)")
                retry_after = headers.get("Retry-After")
            if attempt < retries:
                time.sleep(self._delay(attempt, retry_after))
        return Result(error=f"{problem} (clip {clip_id}; gave up after {retries + 1} attempts; "
                            "rerun `wandata caption` later to retry the clips without captions)")

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        asked = parse_retry_after(retry_after)
        if asked is None:
            # Jitter keeps concurrent workers from retrying in lockstep.
            asked = self.opts["backoff"] * (2 ** attempt) * random.uniform(0.5, 1.0)
        return max(0.0, min(asked, self.opts["max_wait"]))


def _http(method: str, url: str, data: bytes | None, headers: dict, timeout: float):
    """(status, headers, body) for any HTTP status; network failures raise OSError."""
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.headers, e.read()


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After is either seconds or an HTTP date."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when.timestamp() - time.time()


def _parse_answer(body: bytes, clip_id: str) -> Result:
    try:
        choice = json.loads(body)["choices"][0]
        content = choice["message"].get("content")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return Result(error=f"the server's answer for {clip_id} is not a chat completion: {body[:300]!r}")
    if isinstance(content, list):  # some servers answer with content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not content or not str(content).strip():
        return Result(error=f"the model returned an empty caption for {clip_id} "
                            f"(finish_reason={choice.get('finish_reason')!r}); try a larger --opt max_tokens")
    return Result(text=str(content))


def _server_message(body: bytes) -> str:
    try:
        err = json.loads(body).get("error")
        msg = err.get("message") if isinstance(err, dict) else err
        if msg:
            return str(msg)[:300]
    except (ValueError, AttributeError):
        pass
    return body[:300].decode("utf-8", errors="replace") or "(empty body)"


def _hint(status: int) -> str:
    return {401: "; check OPENAI_API_KEY or --opt api_key",
            403: "; the key may lack access to this model",
            404: "; check --opt base_url (it should end in /v1) and --opt model",
            400: "; the model may not accept images, or the request is too large (try --opt frames or max_side)",
            413: "; the request is too large, try fewer --opt frames or a smaller --opt max_side"}.get(status, "")
