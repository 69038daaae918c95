"""The review page's Flask application: one HTML page, a JSON API, the clips and their pictures.

Safety (docs/review.md):

* Served on 127.0.0.1 unless the command is told otherwise (``--allow-remote``). On a loopback
  address every request must name a loopback host in its Host header, so that a web page whose
  name was re-pointed at 127.0.0.1 (DNS rebinding) cannot read the page or its token. With a
  remote host every request must carry the random access token (``?token=`` once; a cookie then).
* Every write is a POST with a JSON body and the page's per-session token in the
  ``X-Wandata-CSRF`` header; without it the answer is 403 and nothing is written.
* Media is served by clip or source id only; the file is the manifest's path resolved with
  ``confine.inside`` (``..``, absolute paths and links leading out of the dataset are 404).
* The page is a Jinja template with autoescape; the script writes data with ``textContent`` only;
  the Content-Security-Policy allows scripts from this server only.
"""
from __future__ import annotations

import secrets
from pathlib import Path

from flask import Flask, abort, jsonify, make_response, render_template, request, send_file

from wandata.review.media import Media
from wandata.review.store import ReviewError, Store, source_file

CSRF_HEADER = "X-Wandata-CSRF"
TOKEN_COOKIE = "wandata_review_token"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; media-src 'self'; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def _hostname(host: str) -> str:
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def create_app(dataset: Path, *, access_token: str | None = None, max_chars: int = 2000,
               trigger: str = "", sources: Path | None = None) -> Flask:
    """The application for ``dataset``. ``access_token``: required on every request (a remote host).
    ``sources``: the folder the source videos lie in; frame strips of windows without a clip file
    are drawn from sources inside it, and without it not at all."""
    store = Store(Path(dataset), max_chars=max_chars, trigger=trigger)
    media = Media(Path(dataset))
    sources_root = Path(sources) if sources is not None else None
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=4 * 1024 * 1024, JSON_SORT_KEYS=False)
    app.json.ensure_ascii = False
    csrf = secrets.token_urlsafe(24)
    app.extensions["wandata_review"] = {"store": store, "media": media, "csrf": csrf}

    @app.before_request
    def guard():
        if access_token is None:
            if _hostname(request.host) not in LOOPBACK:
                abort(403, "this server answers only to a loopback host name (127.0.0.1, localhost)")
        else:
            given = request.args.get("token") or request.cookies.get(TOKEN_COOKIE) or ""
            if not secrets.compare_digest(given.encode(), access_token.encode()):
                abort(403, "the access token is missing or wrong: open the URL the server printed")
        if request.method == "POST":
            sent = request.headers.get(CSRF_HEADER, "")
            if not secrets.compare_digest(sent.encode(), csrf.encode()):
                abort(403, f"missing or wrong {CSRF_HEADER} header: reload the page")
            if not request.is_json:
                abort(415, "the body must be JSON (Content-Type: application/json)")

    @app.after_request
    def headers(resp):
        resp.headers["Content-Security-Policy"] = CSP
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"   # the access token is in the URL
        resp.headers.setdefault("Cache-Control", "no-store")
        if access_token is not None and request.args.get("token"):
            resp.set_cookie(TOKEN_COOKIE, access_token, httponly=True, samesite="Strict")
        return resp

    @app.errorhandler(ReviewError)
    def review_error(e: ReviewError):
        return jsonify({"ok": False, "error": str(e), "items": e.items}), e.status

    @app.errorhandler(400)
    @app.errorhandler(403)
    @app.errorhandler(404)
    @app.errorhandler(405)
    @app.errorhandler(413)
    @app.errorhandler(415)
    def http_error(e):
        return jsonify({"ok": False, "error": e.description}), e.code

    @app.get("/")
    def index():
        return render_template("index.html", dataset=str(Path(dataset).resolve()), csrf=csrf,
                               max_chars=max_chars, trigger=trigger, csrf_header=CSRF_HEADER)

    @app.get("/favicon.ico")
    def favicon():
        return "", 204

    @app.get("/api/clips")
    def clips():
        return jsonify(store.query(request.args))

    @app.get("/api/facets")
    def facets():
        return jsonify({**store.facets(), "counts": store.counts(), "max_chars": max_chars, "trigger": trigger})

    @app.get("/api/clip/<cid>")
    def clip(cid):
        return jsonify(store.detail(cid))

    @app.get("/api/sources")
    def sources():
        return jsonify({"items": store.sources()})

    def body() -> dict:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            raise ReviewError("the body must be a JSON object")
        return data

    @app.post("/api/decide")
    def decide():
        b = body()
        return jsonify(store.decide(b.get("ids"), b.get("action"), b.get("note") or ""))

    @app.post("/api/caption")
    def caption():
        b = body()
        return jsonify(store.caption(b.get("ids"), text=b.get("text"), template=b.get("template"),
                                     find=b.get("find"), replace=b.get("replace")))

    @app.post("/api/undo")
    def undo():
        body()
        return jsonify(store.undo())

    def _clip(cid: str):
        s = store.state()
        c = s.by_id.get(cid)
        if c is None:
            abort(404, "no such clip")
        return c, store.clip_file(c), s

    def _window_source(c, f, s):
        """The source, for a window that was never written (no path); a clip whose path is
        refused or whose file is gone gets no picture rather than another one."""
        if f is not None or c.path:
            return None
        src = s.sources.get(c.source_id)
        return source_file(src, sources_root) if src else None

    @app.get("/media/clip/<cid>/video")
    def video(cid):
        c, f, _ = _clip(cid)
        if f is None:
            abort(404, "this clip has no file inside the dataset")
        resp = send_file(f, mimetype="video/mp4", conditional=True, max_age=3600)
        resp.headers["Cache-Control"] = "private, max-age=3600"
        return resp

    def _picture(path):
        if path is None:
            abort(404, "no picture: the clip has no file and its source cannot be read")
        resp = send_file(path, mimetype="image/jpeg", conditional=True, max_age=86400)
        resp.headers["Cache-Control"] = "private, max-age=86400"
        return resp

    @app.get("/media/clip/<cid>/poster.jpg")
    def poster(cid):
        c, f, s = _clip(cid)
        return _picture(media.poster(c, f, _window_source(c, f, s)))

    @app.get("/media/clip/<cid>/strip.jpg")
    def strip(cid):
        c, f, s = _clip(cid)
        return _picture(media.strip(c, f, _window_source(c, f, s)))

    @app.get("/media/source/<sid>/strip.jpg")
    def source_strip(sid):
        src = store.state().sources.get(sid)
        if src is None:
            abort(404, "no such source")
        return _picture(media.source_strip(src, source_file(src, sources_root)))

    return app


def prepare(app: Flask, progress=None) -> int:
    """Make every kept clip's poster and strip now (``--prepare``); returns how many clips."""
    ext = app.extensions["wandata_review"]
    store, media = ext["store"], ext["media"]
    s = store.state()
    todo = [c for c in s.clips if c.status == "kept"]
    for n, c in enumerate(todo, 1):
        f = store.clip_file(c)
        if f is not None:
            media.poster(c, f, None)
            media.strip(c, f, None)
        if progress:
            progress(n, len(todo))
    return len(todo)
