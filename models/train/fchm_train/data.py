"""Training and validation data, from photos and video that ship in Debian packages.

No labelled detection set can be downloaded here, so the machine task's ground
truth is the uncompressed detector's own output (fidelity mAP, see
metrics.py). The split is fixed and by file (by time range for the video):

- validation: every Debian `darknet` photo (dog, eagle, giraffe, horses, kite,
  person, scream), every 4th `opencv-doc` photo in name order, and frames
  from the last quarter of `vtest.avi` (every 20th frame);
- training: the other `opencv-doc` photos and every 4th frame of the first
  three quarters of `vtest.avi`.
"""

from __future__ import annotations

import random
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

DARKNET_DIR = Path("/usr/share/darknet/data")
OPENCV_DIR = Path("/usr/share/doc/opencv-doc/examples/data")
VIDEO = OPENCV_DIR / "vtest.avi"
VIDEO_FRAMES = 795  # vtest.avi, checked with ffprobe
MIN_SIDE = 128  # skip icons and tiny calibration patterns


@dataclass(frozen=True)
class Sample:
    """One image: a file, or frame `frame` of the video."""

    source: str
    frame: int = -1

    @property
    def name(self) -> str:
        return f"{Path(self.source).name}#{self.frame}" if self.frame >= 0 else Path(self.source).name


def _photos(folder: Path) -> list[Path]:
    out = []
    for p in sorted(folder.glob("*")):
        if p.suffix.lower() not in (".jpg", ".jpeg", ".png"):
            continue
        with Image.open(p) as im:
            if min(im.size) >= MIN_SIDE:
                out.append(p)
    return out


def split() -> tuple[list[Sample], list[Sample]]:
    """The fixed (train, validation) split. Fails clearly if the packages are missing."""
    for need, pkg in ((DARKNET_DIR, "darknet"), (VIDEO, "opencv-doc")):
        if not need.exists():
            raise FileNotFoundError(f"{need} not found: install the Debian package `{pkg}`")
    train, val = [], []
    for p in _photos(DARKNET_DIR):
        val.append(Sample(str(p)))
    for i, p in enumerate(_photos(OPENCV_DIR)):
        (val if i % 4 == 0 else train).append(Sample(str(p)))
    cut = VIDEO_FRAMES * 3 // 4
    train += [Sample(str(VIDEO), f) for f in range(0, cut, 4)]
    val += [Sample(str(VIDEO), f) for f in range(cut, VIDEO_FRAMES, 20)]
    return train, val


def video_frames(path: Path, wanted: set[int]) -> dict[int, Image.Image]:
    """Decode the wanted frame numbers of a video with Debian's ffmpeg."""
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height",
         "-of", "csv=p=0", str(path)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    w, h = (int(v) for v in probe.stdout.strip().split(",")[:2])
    proc = subprocess.Popen(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        stdout=subprocess.PIPE,
    )
    frames, n, size = {}, 0, w * h * 3
    assert proc.stdout is not None
    while True:
        buf = proc.stdout.read(size)
        if len(buf) < size:
            break
        if n in wanted:
            frames[n] = Image.frombuffer("RGB", (w, h), buf, "raw", "RGB", 0, 1).copy()
        n += 1
    proc.wait()
    return frames


def load_images(samples: list[Sample]) -> list[Image.Image]:
    """RGB PIL images for the samples, in order."""
    by_video: dict[str, set[int]] = {}
    for s in samples:
        if s.frame >= 0:
            by_video.setdefault(s.source, set()).add(s.frame)
    decoded = {src: video_frames(Path(src), frames) for src, frames in by_video.items()}
    out = []
    for s in samples:
        if s.frame >= 0:
            out.append(decoded[s.source][s.frame])
        else:
            with Image.open(s.source) as im:
                out.append(im.convert("RGB"))
    return out


def augment(im: Image.Image, rng: random.Random) -> Image.Image:
    """Random crop (50-100% of each side) and horizontal flip."""
    w, h = im.size
    cw, ch = int(w * rng.uniform(0.5, 1.0)), int(h * rng.uniform(0.5, 1.0))
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    im = im.crop((x, y, x + cw, y + ch))
    return im.transpose(Image.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else im


def export_validation(out: Path) -> list[Path]:
    """Write the validation set as image files (photos as they are, video frames as PNG)
    so tools that take a folder, like `fchm eval --images`, see the same images."""
    out.mkdir(parents=True, exist_ok=True)
    _, val = split()
    written = []
    for s, im in zip(val, load_images(val)):
        if s.frame >= 0:
            path = out / f"{Path(s.source).stem}-{s.frame:04d}.png"
            im.save(path)
        else:
            path = out / Path(s.source).name
            path.write_bytes(Path(s.source).read_bytes())
        written.append(path)
    return written


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="Write the fixed validation set into a folder.")
    ap.add_argument("--export-val", type=Path, required=True, metavar="DIR")
    files = export_validation(ap.parse_args().export_val)
    print(f"{len(files)} validation images")
