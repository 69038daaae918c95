"""Write clips: raw pictures piped into ``ffmpeg``/libx264, a few clips at a time.

``ClipWriter`` pipes the raw pictures of one clip (``picture.Picture``) into an
``ffmpeg`` process running libx264, written under a temporary name and renamed
when complete, so a killed run never leaves a half-written clip under a final
name. A separate process rather than in-process encoding, for two measured
reasons: libx264 inside PyAV gave different bytes from run to run on a loaded
machine (a resumed run must reproduce a clip exactly; the ffmpeg program did,
10 of 10), and the encoder then runs in parallel with decoding.
"""
from __future__ import annotations

import subprocess
import threading
from fractions import Fraction
from pathlib import Path

from wandata import atomic
from wandata.dataset import reasons
from wandata.media import threads
from wandata.media.bucket import Fit
from wandata.media.picture import Picture
from wandata.media.tools import ffmpeg_exe


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
                *threads.encoder_args(),
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
            atomic.replace(self.tmp, self.final)
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
