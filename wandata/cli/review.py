"""``wandata review``: serve the review page of a dataset (docs/review.md)."""
from __future__ import annotations

import json
import secrets
import signal
import sys
import threading
from pathlib import Path

import click

from wandata.cli.options import EXIT_ERROR

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-d", "--dataset", default="dataset", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Dataset directory (with manifest.parquet).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but a loopback address needs --allow-remote.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port to listen on; 0 picks a free one.")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in the default web browser.")
@click.option("--allow-remote", is_flag=True,
              help="Allow a non-loopback --host; every request must then carry the random token in the printed URL.")
@click.option("--prepare", is_flag=True, help="Make every kept clip's poster and frame strip before serving.")
@click.option("--trigger", default="", metavar="WORD",
              help="The LoRA's trigger word: the caption editor shows whether a caption has it; {trigger} in templates.")
@click.option("--max-chars", type=click.IntRange(1, 100000), default=None,
              help="The caption length limit the editor shows and enforces (default: the captioners' limit).")
@click.option("--sources", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="The folder the source videos lie in: frame strips of dropped windows (which have no clip "
                   "file) are drawn from the sources inside it; without it, none are read.")
@click.option("--json", "as_json", is_flag=True, help="Print the URL and address as one JSON line.")
def review(dataset, host, port, open_browser, allow_remote, prepare, trigger, max_chars, sources, as_json):
    """Serve a local web page to watch every clip, keep or reject it and fix its caption.

    Decisions go to DATASET/review.jsonl, which export, report, check, caption and train honour.
    Ctrl-C stops the server."""
    from werkzeug.serving import make_server

    from wandata.caption.text import DEFAULT_MAX_CHARS
    from wandata.review.app import create_app
    from wandata.review.app import prepare as prepare_media
    from wandata.review.store import ReviewError

    remote = host not in LOOPBACK
    if remote and not allow_remote:
        raise click.BadParameter(f"{host!r} is not a loopback address: anyone who can reach it could change the "
                                 "dataset; pass --allow-remote to serve it there with an access token",
                                 param_hint="--host")
    if allow_remote and not remote:
        raise click.BadParameter(f"--allow-remote has no effect with the loopback --host {host}; give the "
                                 "address to serve on (e.g. --host 0.0.0.0)", param_hint="--allow-remote")
    token = secrets.token_urlsafe(24) if remote else None
    try:
        app = create_app(dataset, access_token=token, max_chars=max_chars or DEFAULT_MAX_CHARS, trigger=trigger,
                         sources=sources)
    except ReviewError as e:
        raise click.UsageError(str(e)) from None
    if prepare:
        n = prepare_media(app, None if as_json else
                          lambda i, total: click.echo(f"\rprepared {i}/{total} clips", nl=i == total, err=True))
        if as_json:
            click.echo(json.dumps({"prepared": n}), err=True)
    def stop(signum, frame):
        raise KeyboardInterrupt
    # Before the URL is printed: whoever reads it may stop the server at once.
    signal.signal(signal.SIGTERM, stop)
    try:
        server = make_server(host, port, app, threaded=True)
    except OSError as e:
        click.echo(f"error: cannot listen on {host}:{port} ({e.strerror or e}); choose another --port "
                   "(0 picks a free one)", err=True)
        raise SystemExit(EXIT_ERROR) from None
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{server.port}/" + (f"?token={token}" if token else "")
    try:
        if as_json:
            click.echo(json.dumps({"url": url, "host": host, "port": server.port, "dataset": str(dataset),
                                   "remote": remote}))
        else:
            click.echo(f"wandata review: {url}  (Ctrl-C stops it)")
        sys.stdout.flush()
        if open_browser:
            import webbrowser
            threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
        server.serve_forever()
    except KeyboardInterrupt:
        pass   # Ctrl-C or SIGTERM, at any moment after the server started: a clean stop
    finally:
        server.server_close()
    if not as_json:
        click.echo("stopped")
