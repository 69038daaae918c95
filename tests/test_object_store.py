"""Sources and datasets in an S3 bucket (docs/storage.md), against a real S3-compatible server.

moto's server mode runs in a thread on a local port; wandata talks to it with its real clients
(s3fs/aiobotocore), the test checks with boto3 and PyAV. A small HTTP proxy in front of it
(``FaultyProxy``) fails some requests the way a busy object store does (503 SlowDown, or the
connection dropped mid-request), so the retries and the failure verdict are tested on the wire.
"""
from __future__ import annotations

import http.client
import json
import logging
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import numpy as np
import pytest

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

from click.testing import CliRunner  # noqa: E402

from wandata import confine, storage  # noqa: E402
from wandata.cli import main  # noqa: E402
from wandata.dataset.manifest import Manifest, read_table  # noqa: E402
from wandata.dataset.records import ClipRecord, SourceRecord  # noqa: E402
from wandata.settings import Settings  # noqa: E402

from .media import small_sources  # noqa: E402

ARGS = ["--frames", "33", "--bucket", "416x240", "--detector", "adaptive", "--min-source-scale", "0.5",
        "--preset", "veryfast", "--workers", "1", "--quiet", "--json"]
RAW, OUT = "wandata-raw", "wandata-out"
SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
            b"<Message>Please reduce your request rate.</Message></Error>")
HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade"}


class FaultyProxy(ThreadingHTTPServer):
    """Forwards HTTP to the S3 server; every ``every``-th request fails (503 and a dropped
    connection by turns), and every request whose path contains ``key`` gets 503."""
    daemon_threads = True

    def __init__(self, upstream: tuple[str, int]):
        super().__init__(("127.0.0.1", 0), _Forward)
        self.upstream, self.every, self.key = upstream, 0, ""
        self.lock, self.count, self.faults = threading.Lock(), 0, {"503": 0, "drop": 0, "key": 0}
        self.got: dict[str, int] = {}   # bytes of object bodies sent back, by path

    def fault(self, path: str) -> str:
        with self.lock:
            self.count += 1
            if self.key and self.key in path:
                self.faults["key"] += 1
                return "503"
            if self.every and self.count % self.every == 0:
                kind = "503" if (self.count // self.every) % 2 else "drop"
                self.faults[kind] += 1
                return kind
        return ""


class _Forward(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_):
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _any(self):
        body = self._body()
        fault = self.server.fault(self.path)
        if fault == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault == "503":
            self.send_response(503)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(SLOWDOWN)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(SLOWDOWN)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        if body or self.command in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        up = http.client.HTTPConnection(*self.server.upstream, timeout=30)
        up.request(self.command, self.path, body=body or None, headers=headers)
        r = up.getresponse()
        data = r.read()
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in HOP and k.lower() != "content-length":
                self.send_header(k, v)
        length = r.getheader("Content-Length") if self.command == "HEAD" else str(len(data))
        self.send_header("Content-Length", length or "0")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
            if self.command == "GET":
                with self.server.lock:
                    self.server.got[self.path.split("?")[0]] = self.server.got.get(self.path.split("?")[0], 0) + len(data)
        up.close()

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _any


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """The server, the proxy in front of it, credentials for both, the sources in a bucket."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    proxy = FaultyProxy(server.get_host_and_port())
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    host, port = proxy.server_address[:2]
    with pytest.MonkeyPatch.context() as mp:
        # Dummy credentials and the local endpoint, through the variables any AWS client reads.
        for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                     "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://{host}:{port}",
                     "AWS_MAX_ATTEMPTS": "3", "WANDATA_STORAGE_RETRIES": "3",
                     "WANDATA_STORAGE_BACKOFF_S": "0.05"}.items():
            mp.setenv(k, v)
        mp.delenv("AWS_PROFILE", raising=False)
        import boto3
        client = boto3.client("s3")
        client.create_bucket(Bucket=RAW)
        client.create_bucket(Bucket=OUT)
        raw = small_sources(tmp_path_factory.mktemp("raw"), [130, 110])
        for f in sorted(raw.glob("*.mp4")):
            client.upload_file(str(f), RAW, f"raw/{f.name}")
        client.put_object(Bucket=RAW, Key="raw/notes.txt", Body=b"not a video")
        ref = tmp_path_factory.mktemp("ref") / "ds"
        assert _ingest(str(raw), str(ref))[0] == 0
        yield {"client": client, "proxy": proxy, "raw": raw, "ref": ref}
    proxy.shutdown()
    server.stop()


def _ingest(*args) -> tuple[int, dict]:
    r = CliRunner().invoke(main, ["ingest", args[0], "-d", args[1], *ARGS, *args[2:]])
    assert r.exit_code in (0, 3), r.output + repr(r.exception)
    return r.exit_code, json.loads(r.output)


def _clip_rows(table) -> dict[str, tuple]:
    return {r["clip_id"]: (r["status"], r["path"], r["decoded_digest"], r["num_frames"])
            for r in table.to_pylist() if r["kind"] == "clip"}


def _bucket_manifest(client, prefix: str, into: Path):
    """The dataset's manifest files, read from the bucket with boto3 (not wandata's code)."""
    for o in client.list_objects_v2(Bucket=OUT, Prefix=prefix + "/manifest").get("Contents", []):
        dest = into / o["Key"][len(prefix) + 1:]
        dest.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(OUT, o["Key"], str(dest))
    return read_table(into)


def _frames(file) -> list[np.ndarray]:
    with av.open(file) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def _moov_at_end(path: Path) -> bool:
    data, pos, order = path.read_bytes(), 0, []
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        order.append(kind)
        pos += size if size >= 8 else len(data)
    return order.index(b"moov") > order.index(b"mdat")


def test_sources_in_a_bucket_give_the_clips_of_a_local_ingest(s3, tmp_path):
    """s3:// sources, local dataset: discovered (the .txt left out), streamed (their index at
    the file's end costs a ranged read), and every clip is the local ingest's, byte for byte."""
    assert _moov_at_end(s3["raw"] / "src0.mp4")
    assert storage.files(f"s3://{RAW}/raw") == [f"s3://{RAW}/raw/{n}" for n in
                                                 ("notes.txt", "src0.mp4", "src1.mp4", "src2.mp4")]
    code, summary = _ingest(f"s3://{RAW}/raw/", str(tmp_path / "ds"))
    assert code == 0 and summary["sources"]["kept"] == 3 and summary["processed"] == 3
    ref, got = read_table(s3["ref"]), read_table(tmp_path / "ds")
    assert _clip_rows(got) == _clip_rows(ref) and any(s == "kept" for s, *_ in _clip_rows(ref).values())
    assert sorted(r["path"] for r in got.to_pylist() if r["kind"] == "source") == [
        f"s3://{RAW}/raw/src{k}.mp4" for k in range(3)]
    for cid, (status, path, *_) in _clip_rows(ref).items():
        if status == "kept":
            assert (tmp_path / "ds" / path).read_bytes() == (s3["ref"] / path).read_bytes()


def test_dataset_in_a_bucket_through_a_flaky_server_then_resume(s3, tmp_path):
    """s3:// sources and dataset behind a server failing every 7th request (503 and dropped
    connections by turns): the ingest completes, the clips and manifest are in the bucket (no
    temporary key left), they decode to the local ingest's frames, and a rerun does nothing."""
    proxy, client = s3["proxy"], s3["client"]
    proxy.every, before = 7, dict(proxy.faults)
    try:
        code, summary = _ingest(f"s3://{RAW}/raw/", f"s3://{OUT}/ds")
    finally:
        proxy.every = 0
    assert code == 0 and summary["sources"]["kept"] == 3 and summary["dataset"] == f"s3://{OUT}/ds"
    assert proxy.faults["503"] > before["503"] and proxy.faults["drop"] > before["drop"]
    table = _bucket_manifest(client, "ds", tmp_path / "m")
    rows, ref = _clip_rows(table), _clip_rows(read_table(s3["ref"]))
    assert rows == ref
    kept = sorted(p for s, p, *_ in rows.values() if s == "kept")
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=OUT, Prefix="ds/")["Contents"])
    assert [k for k in keys if not k.startswith("ds/manifest")] == [f"ds/{p}" for p in kept]
    import s3fs
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    for p in kept:
        with fs.open(f"{OUT}/ds/{p}", "rb") as f:
            got = _frames(f)
        want = _frames(str(s3["ref"] / p))
        assert len(got) == len(want) == 33 and all(np.array_equal(a, b) for a, b in zip(got, want))
    stamps = {o["Key"]: o["ETag"] for o in client.list_objects_v2(Bucket=OUT, Prefix="ds/clips/")["Contents"]}

    code, again = _ingest(f"s3://{RAW}/raw/", f"s3://{OUT}/ds")
    assert code == 0 and again["processed"] == 0 and again["skipped"] == 3
    assert again["clips"] == summary["clips"]
    assert {o["Key"]: o["ETag"] for o in
            client.list_objects_v2(Bucket=OUT, Prefix="ds/clips/")["Contents"]} == stamps


def test_a_key_that_keeps_failing_is_a_failure_and_a_rerun_retries_it(s3, tmp_path):
    """Every request for src1.mp4 gets 503: the source is recorded failed with storage_error
    (after the retries), the others are kept; once the store answers, a rerun retries it."""
    proxy = s3["proxy"]
    proxy.key = "raw/src1.mp4"
    try:
        code, summary = _ingest(f"s3://{RAW}/raw/", f"s3://{OUT}/ds2")
    finally:
        proxy.key = ""
    assert code == 3 and summary["sources"] == {"kept": 2, "dropped": 0, "failed": 1}
    src = {r["path"]: r for r in _bucket_manifest(s3["client"], "ds2", tmp_path / "m").to_pylist()
           if r["kind"] == "source"}
    bad = src[f"s3://{RAW}/raw/src1.mp4"]
    assert bad["status"] == "failed" and bad["reason_code"] == "storage_error"
    assert f"s3://{RAW}/raw/src1.mp4" in bad["reason"] and "after 3 attempts" in bad["reason"]
    code, again = _ingest(f"s3://{RAW}/raw/", f"s3://{OUT}/ds2")
    assert code == 0 and again["processed"] == 1 and again["retried"] == 1
    assert again["sources"] == {"kept": 3, "dropped": 0, "failed": 0}


def test_a_key_outside_the_dataset_prefix_is_refused(s3, tmp_path):
    """A manifest row naming ``../victim.mp4``: the rerun that replaces the row deletes nothing
    outside the dataset's prefix; ``storage.inside`` refuses such keys like ``..`` on disk."""
    root = f"s3://{OUT}/ds3"
    for bad in ("../victim.mp4", "clips/../../victim.mp4", "/ds3/x.mp4", "s3://other/x.mp4", "..", ""):
        with pytest.raises(confine.OutsideRoot):
            storage.inside(root, bad, "clip path in manifest.parquet")
    assert storage.inside(root, "clips/a/../b.mp4") == f"{root}/clips/b.mp4"

    client, url = s3["client"], f"s3://{RAW}/raw/src0.mp4"
    client.put_object(Bucket=OUT, Key="victim.mp4", Body=b"someone else's file")
    m = Manifest(tmp_path / "forged")
    fp = Settings().fingerprint()
    m.put(SourceRecord(path=url, status="failed", settings_fingerprint=fp),
          [ClipRecord("c1", "id", url, 0, 0, 0.0, 3.0, status="kept", path="../victim.mp4")])
    m.save()
    client.upload_file(str(tmp_path / "forged" / "manifest.parquet"), OUT, "ds3/manifest.parquet")
    code, summary = _ingest(url, root)
    assert code == 0 and summary["sources"]["kept"] == 1
    assert client.get_object(Bucket=OUT, Key="victim.mp4")["Body"].read() == b"someone else's file"
    paths = {r["path"] for r in _bucket_manifest(client, "ds3", tmp_path / "m").to_pylist()}
    assert "../victim.mp4" not in paths
