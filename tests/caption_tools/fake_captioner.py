"""A stand-in for a user's caption program, driven by environment variables.

argv: CLIP FRAME... ; prints a caption naming the clip and the frames it saw.
FAKE_FAIL / FAKE_EMPTY / FAKE_SLOW: a substring of the clip name that makes it
exit 3, print nothing, or hang.
"""
import os
import sys
import time
from pathlib import Path

clip, frames = Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]]
assert clip.is_file(), clip
for f in frames:
    assert f.read_bytes()[:2] == b"\xff\xd8", f"{f} is not a JPEG"
name = clip.name
if os.environ.get("FAKE_FAIL") and os.environ["FAKE_FAIL"] in name:
    print(f"cannot caption {name}", file=sys.stderr)
    sys.exit(3)
if os.environ.get("FAKE_EMPTY") and os.environ["FAKE_EMPTY"] in name:
    sys.exit(0)
if os.environ.get("FAKE_SLOW") and os.environ["FAKE_SLOW"] in name:
    time.sleep(30)
print(f'  "{os.environ["WANDATA_CLIP_ID"]} seen in {len(frames)} frames"\n')
