"""Turn decoded frames into bucket-sized pictures, and write clips.

``to_bucket`` scales a decoded frame to cover the bucket, turns it upright and
centre-crops it, staying in yuv420p: no RGB round trip, so the source's colour
matrix is kept, and the clip is tagged with it.

``ClipWriter`` pipes the raw pictures of one clip into an ``ffmpeg`` process
running libx264, written under a temporary name and renamed when complete, so a
killed run never leaves a half-written clip under a final name. A separate
process rather than in-process encoding, for two measured reasons: libx264
inside PyAV gave different bytes from run to run on a loaded machine (a resumed
run must reproduce a clip exactly; the ffmpeg program did, 10 of 10), and the
encoder then runs in parallel with decoding.
"""
from __future__ import annotations

import subprocess
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from wandata.dataset import reasons
from wandata.media.bucket import Fit
from wandata.media.tools import atomic_replace, ffmpeg_exe

# FFmpeg's names for the colour properties a decoded frame carries (AVColorSpace etc.).
_MATRIX = {1: "bt709", 5: "bt470bg", 6: "smpte170m", 9: "bt2020nc"}
_PRIMARIES = {1: "bt709", 5: "bt470bg", 6: "smpte170m", 9: "bt2020"}
_TRANSFER = {1: "bt709", 6: "smpte170m", 14: "bt2020-10", 16: "smpte2084", 18: "arib-std-b67"}


@dataclass(frozen=True)
class Picture:
    """One bucket-sized yuv420p picture as three planes."""
    y: np.ndarray
    u: np.ndarray
    v: np.ndarray

    def tobytes(self) -> bytes:
        return self.y.tobytes() + self.u.tobytes() + self.v.tobytes()

    def small_rgb(self, w: int, h: int) -> np.ndarray:
        """A tiny RGB version for the shot detectors."""
        import cv2

        y = cv2.resize(self.y, (w, h), interpolation=cv2.INTER_AREA)
        u = cv2.resize(self.u, (w, h), interpolation=cv2.INTER_AREA)
        v = cv2.resize(self.v, (w, h), interpolation=cv2.INTER_AREA)
        # Approximate (BT.601, full swing): the detectors compare frames with each other.
        return cv2.cvtColor(np.dstack([y, u, v]), cv2.COLOR_YUV2RGB)


def to_bucket(frame: av.VideoFrame, fit: Fit, rotation: int) -> Picture:
    """Scale to cover, turn upright, centre-crop: a picture of the bucket's exact size."""
    sw, sh = (fit.scaled_h, fit.scaled_w) if rotation in (90, 270) else (fit.scaled_w, fit.scaled_h)
    a = frame.to_ndarray(width=sw, height=sh, format="yuv420p", interpolation="AREA").reshape(-1)
    # Split by element count: when sh / 2 is odd a chroma plane does not end on a row of ``a``.
    n, c = sh * sw, (sh // 2) * (sw // 2)
    planes = [a[:n].reshape(sh, sw), a[n:n + c].reshape(sh // 2, sw // 2),
              a[n + c:n + 2 * c].reshape(sh // 2, sw // 2)]
    if rotation:
        planes = [np.rot90(p, k=-rotation // 90) for p in planes]  # rotation is clockwise
    cx, cy = fit.crop_x, fit.crop_y  # even, so the chroma planes crop on the same pixels
    out = [planes[0][cy:cy + fit.height, cx:cx + fit.width]]
    out += [p[cy // 2:(cy + fit.height) // 2, cx // 2:(cx + fit.width) // 2] for p in planes[1:]]
    return Picture(*(np.ascontiguousarray(p) for p in out))


def colour_args(frame: av.VideoFrame) -> list[str]:
    """Tag the clip with the source's colour properties so players convert it as the source."""
    args = []
    for flag, table, value in (("-colorspace", _MATRIX, frame.colorspace),
                               ("-color_primaries", _PRIMARIES, frame.color_primaries),
                               ("-color_trc", _TRANSFER, frame.color_trc)):
        name = table.get(int(value or 0))
        if name:
            args += [flag, name]
    return args


class EncodeError(RuntimeError):
    """A clip could not be written; ``code`` is its reason code (``encode_failed``, ``disk_full``)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class ClipWriter:
    def __init__(self, path: Path, fit: Fit, fps: float, crf: int, preset: str,
                 colour: list[str] = ()):
        self.final = path
        self.tmp = path.with_name(path.name + ".part")
        self.final.parent.mkdir(parents=True, exist_ok=True)
        rate = Fraction(fps).limit_denominator(1001)
        argv = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-y",
                "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{fit.width}x{fit.height}",
                "-r", str(rate), "-i", "pipe:0",
                "-an", "-c:v", "libx264", "-crf", str(crf), "-preset", preset, "-pix_fmt", "yuv420p",
                *colour, "-movflags", "+faststart", "-f", "mp4", str(self.tmp)]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)

    def write_all(self, pictures) -> Path:
        try:
            for p in pictures:
                self.proc.stdin.write(p.tobytes())
            self.proc.stdin.close()
        except BrokenPipeError:
            pass  # ffmpeg died; its message says why
        err = self.proc.stderr.read().decode(errors="replace").strip()
        # One line for the manifest: ffmpeg's last lines say what finally went wrong.
        err = " | ".join([ln.strip() for ln in err.splitlines() if ln.strip()][-3:])
        if self.proc.wait() != 0:
            self.tmp.unlink(missing_ok=True)
            code = reasons.for_encoder_message(err)
            hint = ("free space on the dataset's disk" if code == "disk_full"
                    else "check that the dataset folder is writable and ffmpeg works")
            raise EncodeError(code, f"ffmpeg could not encode {self.final.name} (exit status "
                                    f"{self.proc.returncode}): {err or 'no message'}; {hint}, "
                                    "then run the same command again to retry")
        try:
            atomic_replace(self.tmp, self.final)
        except OSError as e:
            self.tmp.unlink(missing_ok=True)
            raise EncodeError(reasons.for_write_error(e),
                              f"could not store {self.final}: {e.strerror or e}") from e
        return self.final

    def abort(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.tmp.unlink(missing_ok=True)


class Encoder:
    """Writes clips in background threads, at most ``parallel`` at a time, so decoding goes on
    while x264 works (pipe writes and the ffmpeg process do not hold Python's GIL). ``after``
    runs on each finished clip in the same thread (verification), also overlapping decoding."""

    def __init__(self, parallel: int = 2, after=None):
        self.slots = threading.Semaphore(parallel)
        self.threads: list[threading.Thread] = []
        self.errors: dict[object, tuple[str, str]] = {}  # key -> (reason code, message)
        self.results: dict[object, object] = {}
        self.writers: dict[object, ClipWriter] = {}
        self.lock = threading.Lock()
        self.after = after

    def submit(self, key, writer: ClipWriter, pictures: list[Picture]) -> None:
        self.slots.acquire()
        with self.lock:
            self.writers[key] = writer

        def work():
            try:
                path = writer.write_all(pictures)
            except EncodeError as e:
                self.fail(key, e.code, f"encoding failed: {e}")
            except Exception as e:  # noqa: BLE001 - recorded against the clip
                self.fail(key, reasons.for_exception(e), f"encoding failed ({type(e).__name__}: {e})")
            else:
                try:
                    if self.after:
                        result = self.after(path)
                        with self.lock:
                            self.results[key] = result
                except Exception as e:  # noqa: BLE001 - recorded against the clip
                    path.unlink(missing_ok=True)
                    self.fail(key, "verify_failed", f"verification failed ({type(e).__name__}: {e})")
            finally:
                with self.lock:
                    self.writers.pop(key, None)
                self.slots.release()

        t = threading.Thread(target=work, daemon=True)
        t.start()
        self.threads.append(t)

    def fail(self, key, code: str, message: str) -> None:
        with self.lock:
            self.errors[key] = (code, message)

    def join(self) -> dict[object, tuple[str, str]]:
        for t in self.threads:
            t.join()
        return self.errors

    def abort(self) -> None:
        with self.lock:
            for w in self.writers.values():
                w.abort()
        for t in self.threads:
            t.join(timeout=10)


def cleanup_partials(root: Path) -> int:
    """Remove ``*.part`` files a killed run left behind; returns how many."""
    n = 0
    if root.exists():
        for p in root.rglob("*.part"):
            p.unlink(missing_ok=True)
            n += 1
    return n
