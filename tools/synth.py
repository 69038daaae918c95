"""Deterministic synthetic footage with known ground truth (development only: tests, benchmarks).

Every shot is a slow pan/zoom over a different photograph shipped with
scikit-image, so shots are textured and moving (a shot-boundary detector can't
cheat on static or flat frames) and yet every boundary is known exactly.

Timeline model
--------------
``shots[k]`` lasts ``shots[k].frames`` frames of its own camera move.
``transitions[k]`` joins ``shots[k]`` and ``shots[k+1]``:

* ``cut``: the first frame of ``shots[k+1]`` directly follows the last frame
  of ``shots[k]``; its output index is listed in ``cuts``.
* ``dissolve(n)``: the last ``n`` frames of ``shots[k]`` overlap the first
  ``n`` frames of ``shots[k+1]`` (the timeline gets ``n`` frames shorter).
  Dissolve frame ``d`` (0..n-1) is ``(1-a)*A + a*B`` with ``a = (d+1)/(n+1)``,
  so every dissolve frame is a genuine mix and none equals a pure frame.
  ``dissolves`` lists ``[first, last]`` output indices (inclusive).
* ``fade(out, hold, fade_in, colour)``: the last ``out`` frames of ``shots[k]``
  fade to a flat colour (weight ``(d+1)/(out+1)``), ``hold`` frames show only
  the colour, then the first ``fade_in`` frames of ``shots[k+1]`` fade in from
  it. Shots do not overlap, so the timeline gets ``hold`` frames longer.
  ``fade(30, 8, 30)`` is a fade to black and back, ``dip(15)`` a dip to white.

In-shot events (a shot boundary detector must *not* cut there): ``Shot.whip``
runs the camera ``speed`` times faster for a few frames (a whip pan), and
``Shot.flash`` blends a few frames towards white (a photo flash). They apply
wherever the shot's frames appear, dissolves included.

Ground truth (returned by :func:`write_video` / :func:`write_vfr_video`)::

    fps            float (average fps for VFR)
    fps_fraction   "30000/1001"-style string (CFR), or average for VFR
    vfr            bool
    num_frames, width, height      stored (coded) pixel size
    rotation       clockwise display rotation, degrees (0/90/180/270)
    display_width, display_height  size a player shows after rotation
    duration_s     end of the last frame's display interval
    photos         photo name per shot
    cuts           [first frame index of the new shot, ...]
    dissolves      [[first, last], ...]  inclusive, dissolve frames only
    transitions    [[first, last, kind], ...]  every transition in timeline
                   order, kind "cut", "dissolve" or "fade"; a gradual one
                   lists its mixed and flat frames (inclusive), a cut the last
                   frame of the old shot and the first of the new, [c-1, c]:
                   a clean clip holds no frame of a gradual span and never
                   both frames of a cut
    events         [[first, last, kind], ...]  in-shot events, kind "whip" or
                   "flash" (frames that show them; not boundaries)
    shots          [[start, end], ...]   inclusive, pure-shot frames only
                   (no dissolve or fade frame; whips and flashes included)
    cuts_s, dissolves_s, shots_s   the same, as presentation timestamps
                   (pts of the named frames, i.e. i / fps for CFR), so
                   shots_s[k][1] is when the shot's last frame *starts*
    pts_s          (VFR only) pts of every frame

Rotation convention
-------------------
``rotation`` follows the legacy phone ``rotate`` tag: the number of degrees a
player turns the stored picture *clockwise* for display. A phone held upright
stores landscape pixels with ``rotation=90``. Frames are rendered upright at
the display size and turned into storage orientation, so the displayed video
is upright. The container gets a display matrix of ``-rotation`` degrees
counter-clockwise (FFmpeg's convention), which is what iPhones/Android write:
for ``rotation=90`` the bundled ``ffmpeg -i`` prints
``Side data: Display Matrix: rotation of -90.00 degrees`` and PyAV's
``VideoFrame.rotation`` reads ``-90``; ffmpeg's autorotate then outputs
720x1280 from stored 1280x720. ``stream.metadata['rotate']`` is silently
dropped by current libavformat, so PyAV >= 16's ``set_display_rotation`` is
used, with an ffmpeg ``-display_rotation`` remux as fallback for older PyAV.
"""

from __future__ import annotations

import functools
import math
import subprocess
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Sequence

import av
import cv2
import numpy as np
import skimage.data

# Visually distinct photos first, so the first few shots of any test are easy
# to tell apart. ``cat`` is omitted: it is the same image as ``chelsea``.
PHOTOS = (
    "astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field",
    "immunohistochemistry", "camera", "coins", "retina", "colorwheel",
    "moon", "brick", "gravel", "grass",
)


@dataclass(frozen=True)
class Shot:
    """One camera move over one photo.

    ``zoom``: (start, end) magnification; 1.0 is the largest window of the
    output's aspect ratio that fits inside the photo. Must be >= 1.
    ``pan``: ((u0, v0), (u1, v1)) window position within the free margin,
    0..1 per axis (0 = left/top edge, 1 = right/bottom edge).
    Zoom is interpolated geometrically and position linearly over the shot.
    ``whip``: (first, frames, speed): the camera moves ``speed`` times faster
    for those local frames (a whip pan; the whole move still spans the shot).
    ``flash``: (first, weights): local frames from ``first`` on are blended
    towards white with these weights (a photo flash).
    """

    photo: str
    frames: int
    zoom: tuple[float, float] = (1.0, 1.2)
    pan: tuple[tuple[float, float], tuple[float, float]] = ((0.2, 0.5), (0.8, 0.5))
    whip: tuple[int, int, float] | None = None
    flash: tuple[int, tuple[float, ...]] | None = None

    def __post_init__(self):
        if self.photo not in PHOTOS:
            raise ValueError(f"unknown photo {self.photo!r}; choose from {PHOTOS}")
        if self.frames < 1:
            raise ValueError("a shot needs at least one frame")
        if min(self.zoom) < 1.0:
            raise ValueError("zoom < 1 would look outside the photo")
        if self.whip and not (0 <= self.whip[0] and self.whip[1] >= 1 and self.whip[0] + self.whip[1] <= self.frames
                              and self.whip[2] > 0):
            raise ValueError("whip must be (first, frames, speed) inside the shot")
        if self.flash and not (0 <= self.flash[0] and self.flash[0] + len(self.flash[1]) <= self.frames
                               and all(0 <= w <= 1 for w in self.flash[1])):
            raise ValueError("flash must be (first, weights in 0..1) inside the shot")

    def camera_time(self, i: int) -> float:
        """Where frame ``i`` is along the camera move, 0..1 (a whip makes it jump)."""
        def warp(j):
            if not self.whip:
                return j
            first, n, speed = self.whip
            return j + (speed - 1) * min(max(j - first, 0), n)
        return warp(i) / max(warp(self.frames - 1), 1)

    def flash_weight(self, i: int) -> float:
        if not self.flash or not 0 <= i - self.flash[0] < len(self.flash[1]):
            return 0.0
        return float(self.flash[1][i - self.flash[0]])


@dataclass(frozen=True)
class Transition:
    kind: str = "cut"  # "cut", "dissolve" or "fade"
    frames: int = 0    # dissolve length, or a fade's fade-out length; 0 for a cut
    hold: int = 0      # fade: frames of flat colour between fade-out and fade-in
    fade_in: int = 0   # fade: fade-in length
    colour: tuple[int, int, int] = (0, 0, 0)  # fade: the flat frame, RGB

    def __post_init__(self):
        if self.kind not in ("cut", "dissolve", "fade"):
            raise ValueError(f"unknown transition {self.kind!r}")
        if self.kind == "cut" and (self.frames or self.hold or self.fade_in):
            raise ValueError("a cut has no frames")
        if self.kind == "dissolve" and (self.frames < 1 or self.hold or self.fade_in):
            raise ValueError("a dissolve needs at least one frame and has no hold or fade-in")
        if self.kind == "fade" and (min(self.frames, self.hold, self.fade_in) < 0
                                    or self.frames + self.hold + self.fade_in < 1):
            raise ValueError("a fade needs at least one frame")

    @property
    def tail(self) -> int:
        """Frames of the outgoing shot that the transition uses."""
        return self.frames

    @property
    def head(self) -> int:
        """Frames of the incoming shot that the transition uses."""
        return self.frames if self.kind == "dissolve" else self.fade_in


CUT = Transition()


def dissolve(frames: int) -> Transition:
    return Transition("dissolve", frames)


def fade(out: int, hold: int = 0, fade_in: int | None = None,
         colour: tuple[int, int, int] = (0, 0, 0)) -> Transition:
    """Fade out to ``colour``, hold it, fade in (default: as long as the fade-out)."""
    return Transition("fade", out, hold, out if fade_in is None else fade_in, tuple(colour))


def dip(frames: int, colour: tuple[int, int, int] = (255, 255, 255)) -> Transition:
    """A dip through a flat colour (white by default): ``frames`` out, ``frames`` in, no hold."""
    return fade(frames, 0, frames, colour)


def make_shots(frames: Sequence[int], photos: Sequence[str] | None = None,
               seed: int = 0) -> list[Shot]:
    """Shots of the given lengths with seeded, varied zoom direction and pan."""
    photos = list(photos) if photos is not None else list(PHOTOS[:len(frames)])
    if len(photos) != len(frames):
        raise ValueError(f"{len(frames)} shots but {len(photos)} photos "
                         f"(at most {len(PHOTOS)} distinct photos exist)")
    if len(set(photos)) != len(photos):
        raise ValueError("each shot must use a different photo")
    rng = np.random.default_rng(seed)
    shots = []
    for name, n in zip(photos, frames):
        amount = rng.uniform(1.1, 1.35)
        zoom = (1.0, amount) if rng.random() < 0.5 else (amount, 1.0)
        start = rng.uniform(0.15, 0.85, 2)
        angle = rng.uniform(0, 2 * math.pi)
        end = np.clip(start + rng.uniform(0.3, 0.6) * np.array([math.cos(angle), math.sin(angle)]), 0, 1)
        r = lambda x: round(float(x), 4)  # noqa: E731 - short, readable reprs
        shots.append(Shot(name, int(n), (r(zoom[0]), r(zoom[1])),
                          ((r(start[0]), r(start[1])), (r(end[0]), r(end[1])))))
    return shots


@functools.lru_cache(maxsize=None)
def load_photo(name: str) -> np.ndarray:
    """The named skimage photo as read-only HxWx3 uint8 RGB."""
    img = np.asarray(getattr(skimage.data, name)())
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = np.ascontiguousarray(img[..., :3].astype(np.uint8))
    img.flags.writeable = False  # shared through the cache
    return img


def render_frame(shot: Shot, i: int, width: int, height: int) -> np.ndarray:
    """Frame ``i`` of ``shot`` as height x width x 3 uint8 RGB."""
    photo = load_photo(shot.photo)
    ph, pw = photo.shape[:2]
    t = shot.camera_time(i)
    z = shot.zoom[0] * (shot.zoom[1] / shot.zoom[0]) ** t
    u = shot.pan[0][0] + (shot.pan[1][0] - shot.pan[0][0]) * t
    v = shot.pan[0][1] + (shot.pan[1][1] - shot.pan[0][1]) * t
    win_w = min(pw, ph * width / height) / z
    win_h = win_w * height / width
    x0, y0 = u * (pw - win_w), v * (ph - win_h)
    s = width / win_w
    # One affine warp == crop + INTER_LINEAR resize, but with sub-pixel window
    # positions, so slow pans glide instead of stepping a source pixel at a time.
    m = np.array([[s, 0, -x0 * s], [0, s, -y0 * s]], dtype=np.float64)
    img = cv2.warpAffine(photo, m, (width, height), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REFLECT)
    w = shot.flash_weight(i)
    if w:
        img = np.clip(np.rint(img * (1 - w) + 255 * w), 0, 255).astype(np.uint8)
    return img


def _plan(shots: Sequence[Shot], transitions: Sequence[Transition] | None):
    """Per output frame the terms ``(shot, local frame, weight)`` (shot None: ``(None, colour,
    weight)``, a flat frame), plus cuts, dissolves, ``[first, last, kind]`` spans of every
    transition, in-shot events and pure-shot ranges."""
    if not shots:
        raise ValueError("need at least one shot")
    transitions = [CUT] * (len(shots) - 1) if transitions is None else list(transitions)
    if len(transitions) != len(shots) - 1:
        raise ValueError("need exactly len(shots) - 1 transitions")
    plan, cuts, dissolves, spans, events, ranges = [], [], [], [], [], []
    for k, shot in enumerate(shots):
        head = transitions[k - 1].head if k > 0 else 0
        tail = transitions[k].tail if k < len(transitions) else 0
        if shot.frames - head - tail < 1:
            raise ValueError(f"shot {k} ({shot.frames} frames) is swallowed by its transitions")
        # The shot's local frame j sits at output index base + j (its head frames, already
        # written by the transition before it, included).
        base = len(plan) - head
        if shot.whip:
            events.append([base + shot.whip[0], base + shot.whip[0] + shot.whip[1] - 1, "whip"])
        if shot.flash:
            events.append([base + shot.flash[0], base + shot.flash[0] + len(shot.flash[1]) - 1, "flash"])
        ranges.append([len(plan), len(plan) + shot.frames - head - tail - 1])
        plan += [((k, j, 1.0),) for j in range(head, shot.frames - tail)]
        if k == len(transitions):
            break
        tr = transitions[k]
        if tr.kind == "cut":
            cuts.append(len(plan))
            spans.append([len(plan) - 1, len(plan), "cut"])
            continue
        first = len(plan)
        if tr.kind == "dissolve":
            n = tr.frames
            for d in range(n):
                a = (d + 1) / (n + 1)
                plan.append(((k, shot.frames - n + d, 1 - a), (k + 1, d, a)))
            dissolves.append([first, len(plan) - 1])
        else:
            colour = tuple(float(c) for c in tr.colour)
            for d in range(tr.frames):
                a = (d + 1) / (tr.frames + 1)
                plan.append(((k, shot.frames - tr.frames + d, 1 - a), (None, colour, a)))
            plan += [((None, colour, 1.0),)] * tr.hold
            for d in range(tr.fade_in):
                a = (d + 1) / (tr.fade_in + 1)
                plan.append(((None, colour, 1 - a), (k + 1, d, a)))
        spans.append([first, len(plan) - 1, tr.kind])
    return plan, cuts, dissolves, ranges, spans, events


def _compose(terms, shots, width, height) -> np.ndarray:
    if len(terms) == 1 and terms[0][0] is not None:
        k, j, _ = terms[0]
        return render_frame(shots[k], j, width, height)
    acc = np.zeros((height, width, 3), np.float32)
    for k, j, w in terms:
        acc += w * (np.asarray(j, np.float32) if k is None
                    else render_frame(shots[k], j, width, height).astype(np.float32))
    return np.clip(np.rint(acc), 0, 255).astype(np.uint8)


def _frames(plan, shots, width, height, rotation, grain: float = 0.0) -> Iterable[np.ndarray]:
    # Render upright at display size, then turn into storage orientation
    # (np.rot90 is counter-clockwise; the player turns it back clockwise).
    dw, dh = (height, width) if rotation in (90, 270) else (width, height)
    rng = np.random.default_rng(12345)
    for terms in plan:
        img = _compose(terms, shots, dw, dh)
        if grain:
            # Sensor-like noise: it gives the file the entropy, bitrate and decoding cost of
            # camera footage, which clean synthetic pans lack.
            noise = rng.standard_normal(img.shape, dtype=np.float32) * grain
            img = np.clip(img + noise, 0, 255).astype(np.uint8)
        yield np.ascontiguousarray(np.rot90(img, rotation // 90)) if rotation else img


def _encode(path, frames, pts, time_base, rate, width, height, *, crf, preset,
            pix_fmt, gop, rotation, faststart, bitrate=None):
    path = Path(path)
    native = rotation == 0 or hasattr(av.video.stream.VideoStream, "set_display_rotation")
    target = path if native else path.with_name(path.stem + ".norot" + path.suffix)
    opts = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(target), "w", options=opts) as out:
        rc = {"b": bitrate, "maxrate": bitrate, "bufsize": bitrate} if bitrate else {"crf": str(crf)}
        st = out.add_stream("libx264", rate=rate, options={**rc, "preset": preset})
        st.width, st.height, st.pix_fmt = width, height, pix_fmt
        # Without this PyAV rebases frame pts to 1/rate, rounding VFR timestamps.
        st.codec_context.time_base = time_base
        if gop:
            st.codec_context.gop_size = gop
        if rotation and native:
            st.set_display_rotation(-rotation)
        for img, p in zip(frames, pts):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = p, time_base
            out.mux(st.encode(frame))
        out.mux(st.encode())
    if not native:
        try:
            _ffmpeg(["-display_rotation", str(-rotation), "-i", str(target),
                     "-c", "copy", "-map_metadata", "0", str(path)])
        finally:
            target.unlink(missing_ok=True)


def _ffmpeg(args: list[str]) -> str:
    import imageio_ffmpeg
    r = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-y", *args],
                       capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"ffmpeg failed: {r.stderr[-2000:]}")
    return r.stderr


def _truth(plan_info, shots, width, height, rotation, pts_s, duration_s, fps, vfr):
    _, cuts, dissolves, ranges, spans, events = plan_info
    swap = rotation in (90, 270)
    return {
        "fps": float(fps),
        "fps_fraction": f"{fps.numerator}/{fps.denominator}",
        "vfr": vfr,
        "num_frames": len(pts_s),
        "width": width, "height": height, "rotation": rotation,
        "display_width": height if swap else width,
        "display_height": width if swap else height,
        "duration_s": round(duration_s, 6),
        "photos": [s.photo for s in shots],
        "cuts": cuts, "dissolves": dissolves, "transitions": spans, "events": events, "shots": ranges,
        "cuts_s": [pts_s[i] for i in cuts],
        "dissolves_s": [[pts_s[a], pts_s[b]] for a, b in dissolves],
        "shots_s": [[pts_s[a], pts_s[b]] for a, b in ranges],
    }


def _frac(x) -> Fraction:
    # Floats such as 1/15 or 29.97 become the nearest small fraction, which
    # FFmpeg's 32-bit rationals can hold.
    return Fraction(x).limit_denominator(100000)


def _check_args(width, height, rotation, pix_fmt):
    if rotation not in (0, 90, 180, 270):
        raise ValueError("rotation must be 0, 90, 180 or 270")
    if pix_fmt.startswith("yuv420") and (width % 2 or height % 2):
        raise ValueError("4:2:0 needs even width and height")


def write_video(path, shots: Sequence[Shot], transitions: Sequence[Transition] | None = None,
                width: int = 1280, height: int = 720, fps=24, *, crf: int = 23,
                rotation: int = 0, pix_fmt: str = "yuv420p", gop: int | None = None,
                preset: str = "veryfast", faststart: bool = False, grain: float = 0.0,
                bitrate: str | None = None) -> dict:
    """Encode a constant-frame-rate H.264 file and return its ground truth.

    ``width`` x ``height`` is the stored pixel size; see the module docstring
    for ``rotation``. ``fps`` may be an int, a Fraction or a string such as
    ``"30000/1001"`` (pass NTSC rates that way, not as 29.97). ``faststart``
    puts the moov atom first, as web-delivered files have; the default leaves
    it at the end, as cameras and phones do (this decides how a truncated copy
    fails). ``transitions=None`` means all cuts. ``grain`` adds Gaussian noise of that
    standard deviation (camera-like entropy); ``bitrate`` (e.g. "8M") encodes at a
    constant bitrate as cameras do, instead of ``crf``.
    """
    _check_args(width, height, rotation, pix_fmt)
    fps = _frac(fps)
    info = _plan(shots, transitions)
    n = len(info[0])
    _encode(path, _frames(info[0], shots, width, height, rotation, grain), range(n), 1 / fps, fps,
            width, height, crf=crf, preset=preset, pix_fmt=pix_fmt, gop=gop,
            rotation=rotation, faststart=faststart, bitrate=bitrate)
    pts_s = [round(float(i / fps), 6) for i in range(n)]
    return _truth(info, shots, width, height, rotation, pts_s, float(n / fps), fps, False)


def write_vfr_video(path, shots: Sequence[Shot], transitions: Sequence[Transition] | None = None,
                    width: int = 640, height: int = 360, *,
                    frame_durations: Sequence = (Fraction(1, 30), Fraction(1, 20)),
                    time_base: Fraction = Fraction(1, 90000), crf: int = 23,
                    preset: str = "veryfast") -> dict:
    """Encode a variable-frame-rate H.264 file and return its ground truth.

    Frame ``i`` is shown for ``frame_durations[i % len(frame_durations)]``
    seconds (the default alternates 1/30 s and 1/20 s); pass e.g.
    ``[Fraction(1, 15)] * 30 + [Fraction(1, 30)] * 60`` for a 15 fps section
    followed by a 30 fps one. Timestamps are exact multiples of ``time_base``.
    The ground truth adds ``pts_s``; ``fps`` is the average rate.
    """
    _check_args(width, height, 0, "yuv420p")
    info = _plan(shots, transitions)
    n = len(info[0])
    durs = [_frac(d) for d in frame_durations]
    ticks, t = [], Fraction(0)
    for i in range(n):
        ticks.append(round(t / time_base))
        t += durs[i % len(durs)]
    # The nominal rate only guides x264's rate control; timestamps come from pts.
    rate = 1 / min(durs)
    _encode(path, _frames(info[0], shots, width, height, 0), ticks, time_base, rate,
            width, height, crf=crf, preset=preset, pix_fmt="yuv420p", gop=None,
            rotation=0, faststart=False)
    pts_s = [round(float(p * time_base), 6) for p in ticks]
    avg = Fraction(n) / t
    truth = _truth(info, shots, width, height, 0, pts_s, float(t), avg.limit_denominator(100000), True)
    truth["pts_s"] = pts_s
    return truth


def read_rotation(path) -> int:
    """Clockwise display rotation of the first video stream (0/90/180/270)."""
    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))
        return int(round(-frame.rotation)) % 360


# --- bad inputs -------------------------------------------------------------

def write_zero_byte(path) -> None:
    Path(path).write_bytes(b"")


def write_not_a_video(path) -> None:
    Path(path).write_bytes(b"This is a text file pretending to be a video.\n" * 20)


def write_truncated(src, dst, keep_fraction: float = 0.3) -> None:
    """Copy the first ``keep_fraction`` of ``src``'s bytes, like a cut-off download.

    With the moov atom at the end (``write_video`` default) the copy has no
    index at all and will not open; with ``faststart=True`` it opens and
    decodes until the data runs out.
    """
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * keep_fraction)])


def _mdat_span(data: bytes) -> tuple[int, int] | None:
    pos = 0
    while pos + 8 <= len(data):
        size, kind = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8]
        head = 8
        if size == 1:
            size, head = int.from_bytes(data[pos + 8:pos + 16], "big"), 16
        elif size == 0:
            size = len(data) - pos
        if size < head:
            return None
        if kind == b"mdat":
            return pos + head, min(pos + size, len(data))
        pos += size
    return None


def write_corrupt(src, dst, fraction: float = 0.2, seed: int = 0) -> None:
    """Copy ``src`` with the middle ``fraction`` of its media data replaced by noise.

    Only bytes inside the ``mdat`` payload are touched, so the container
    headers (ftyp, moov) survive: the file opens, but frames fail to decode.
    """
    data = bytearray(Path(src).read_bytes())
    lo, hi = _mdat_span(bytes(data)) or (0, len(data))
    n = int((hi - lo) * fraction)
    start = lo + (hi - lo - n) // 2
    data[start:start + n] = np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()
    Path(dst).write_bytes(bytes(data))


def write_audio_only(path, seconds: float = 2.0, sample_rate: int = 44100) -> None:
    """An AAC file (.m4a/.mp4) holding a 440 Hz tone and no video stream."""
    n = int(seconds * sample_rate)
    tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(n) / sample_rate)).astype(np.float32)
    with av.open(str(path), "w") as out:
        st = out.add_stream("aac", rate=sample_rate, layout="mono")
        for i in range(0, n, 1024):
            frame = av.AudioFrame.from_ndarray(tone[None, i:i + 1024], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = sample_rate, i
            out.mux(st.encode(frame))
        out.mux(st.encode())


__all__ = [
    "PHOTOS", "Shot", "Transition", "CUT", "dissolve", "fade", "dip", "make_shots", "load_photo",
    "render_frame", "write_video", "write_vfr_video", "read_rotation", "timeline_frame",
    "write_zero_byte", "write_not_a_video", "write_truncated", "write_corrupt",
    "write_audio_only",
]


def timeline_frame(shots: Sequence[Shot], transitions: Sequence[Transition] | None, index: int,
                   width: int, height: int) -> np.ndarray:
    """Frame ``index`` of the timeline as a player displays it (upright, ``width`` x ``height``):
    what a correct pipeline should have read from the file at that frame."""
    return _compose(_plan(shots, transitions)[0][index], shots, width, height)


# --- the transition suite (tests/test_clean_clips.py, bench/transitions.py) ----------------------
# Photographs joined by dissolves of 10 to 150 frames, a fade to black and back, a dip to white
# and hard cuts at 30 fps, with a whip pan and a flash inside shots just long enough for one
# 17-frame clip each, so a detector that cuts there loses the clip.
SUITE_PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry",
                "camera", "coins", "retina", "colorwheel", "brick"]
SUITE_TRANSITIONS = [dissolve(10), dissolve(30), dissolve(60), dissolve(90), dissolve(150),
                     fade(30, 8, 30), dip(15), CUT, CUT, CUT]
SUITE_NAMES = ["dissolve10", "dissolve30", "dissolve60", "dissolve90", "dissolve150", "fade to black",
               "dip to white", "cut", "cut before the flash shot", "cut after the flash shot"]
_SUITE_PURE, _SUITE_EVENT_SHOT, SUITE_WHIP, SUITE_FLASH = 60, 70, 8, 9


def transition_suite() -> list[Shot]:
    """The suite's shots (its transitions are ``SUITE_TRANSITIONS``)."""
    # A clip of 17 frames at 16 fps spans 30 source frames, plus 0.25 s trimmed at each
    # boundary: 70 pure frames hold one clip, either half of them around the event does not.
    pure = [_SUITE_PURE] * len(SUITE_PHOTOS)
    pure[SUITE_WHIP] = pure[SUITE_FLASH] = _SUITE_EVENT_SHOT
    pure[-1] = 45
    tr = SUITE_TRANSITIONS
    lengths = [p + (tr[k - 1].head if k else 0) + (tr[k].tail if k < len(tr) else 0) for k, p in enumerate(pure)]
    shots = make_shots(lengths, SUITE_PHOTOS, seed=13)
    # Whip: 20 frames sweep about 690 of 416 output pixels (~34 px a frame) across the magnified
    # retina; before and after it the camera drifts about 1 px a frame.
    shots[SUITE_WHIP] = replace(shots[SUITE_WHIP], zoom=(3.0, 3.0), pan=((0.05, 0.5), (0.95, 0.5)),
                                whip=(25, 20, 30.0))
    shots[SUITE_FLASH] = replace(shots[SUITE_FLASH], flash=(34, (0.5, 0.85, 0.4)))
    return shots
