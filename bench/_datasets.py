"""Real data sets for the quality benchmark, built from pinned registry packages (no dataset
download exists here): each is written once under ``data/bench/`` and reused.

- ``digits64``: scikit-learn's 1,797 handwritten digits as 64x64 RGB PNGs (nearest-neighbour
  upscaling of the 8x8 images), 10 classes.
- ``twemoji``: 1,873 Twemoji images (64x64 RGBA PNGs) labelled by their Unicode emoji category
  (9 classes), from the npm package ``emoji-datasource-twitter@16.0.0`` (artwork CC-BY 4.0,
  Twitter); base emoji only, byte-identical images once.
- ``fortunes``: Unix fortunes labelled by their topic file (15 classes, at most 200 per class:
  2,693 texts written by people over decades), from Debian's ``fortunes=1:1.99.1-7.3``
  (downloaded with ``apt-get download`` and unpacked, never installed; needs ``apt-get
  update`` once).
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "data" / "bench"
TWEMOJI = ("emoji-datasource-twitter", "16.0.0", "e2bd39a8acb77e158106f8249dd7b4cd93fa1b14")
FORTUNES = (
    "fortunes",
    "1:1.99.1-7.3",
    "41d0551dc0ff52f875a2ecef7c39da2f672ab468c37e170119f7e0245a9d63c5",
)
FORTUNE_TOPICS = (
    "art computers drugs education food law linux love medicine politics science songs-poems "
    "sports startrek work"
).split()


def digits64() -> Path:
    """scikit-learn's digits as 64x64 RGB PNGs, one folder per digit."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    out = ROOT / "digits64"
    if not out.is_dir():
        ROOT.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=ROOT))
        digits = load_digits()
        images = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)
        for i, (image, label) in enumerate(zip(images, digits.target, strict=True)):
            (tmp / str(label)).mkdir(exist_ok=True)
            big = Image.fromarray(image, mode="L").resize((64, 64), Image.NEAREST)
            big.convert("RGB").save(tmp / str(label) / f"{i:04d}.png")
        tmp.rename(out)
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def twemoji() -> Path:
    """Twemoji PNGs in one folder per Unicode emoji category (npm, checksum-verified)."""
    out = ROOT / "twemoji"
    if out.is_dir():
        return out
    name, version, sha1 = TWEMOJI
    with tempfile.TemporaryDirectory(dir=ROOT.parent) as tmp:
        subprocess.run(
            ["npm", "pack", f"{name}@{version}", "--silent", "--pack-destination", tmp],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        tgz = Path(tmp) / f"{name}-{version}.tgz"
        if hashlib.sha1(tgz.read_bytes()).hexdigest() != sha1:
            raise SystemExit(f"checksum mismatch for {tgz}")
        with tarfile.open(tgz, "r:gz") as archive:
            meta = json.load(archive.extractfile("package/emoji.json"))
            wanted = {
                "package/img/twitter/64/" + e["image"]: _slug(e["category"])
                for e in meta
                if e["category"] != "Component" and e.get("has_img_twitter")
            }
            staging, seen = Path(tmp) / "out", set()
            for member in archive:
                label = wanted.get(member.name)
                if label is None or not member.isfile():
                    continue
                data = archive.extractfile(member).read()
                digest = hashlib.sha1(data).hexdigest()
                if digest in seen:  # identical artwork (family emoji, shared flags)
                    continue
                seen.add(digest)
                (staging / label).mkdir(parents=True, exist_ok=True)
                (staging / label / Path(member.name).name).write_bytes(data)
        ROOT.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), out)
    return out


def fortunes(max_per_class: int = 200) -> Path:
    """Fortunes by topic as a CSV (``text,label``), duplicates and texts over 600 characters
    dropped, at most ``max_per_class`` per topic (seeded)."""
    out = ROOT / f"fortunes{max_per_class}.csv"
    if out.is_file():
        return out
    name, version, sha256 = FORTUNES
    with tempfile.TemporaryDirectory(dir=ROOT.parent) as tmp:
        subprocess.run(["apt-get", "download", f"{name}={version}"], cwd=tmp, check=True)
        deb = next(Path(tmp).glob("*.deb"))
        if hashlib.sha256(deb.read_bytes()).hexdigest() != sha256:
            raise SystemExit(f"checksum mismatch for {deb}")
        subprocess.run(["dpkg-deb", "-x", str(deb), f"{tmp}/x"], check=True)
        folder = Path(tmp) / "x" / "usr/share/games/fortunes"
        rng, seen, rows = random.Random(0), set(), []
        for topic in sorted(FORTUNE_TOPICS):
            raw = (folder / topic).read_bytes().decode("utf-8", "replace")
            texts = []
            for chunk in re.split(r"^%\s*$", raw, flags=re.M):
                text = re.sub(r"\s+", " ", chunk).strip()
                key = re.sub(r"\W+", " ", text.lower()).strip()
                if key and len(text) <= 600 and key not in seen:
                    seen.add(key)
                    texts.append(text)
            if len(texts) > max_per_class:
                texts = [texts[i] for i in sorted(rng.sample(range(len(texts)), max_per_class))]
            rows += [(t, topic) for t in texts]
        ROOT.mkdir(parents=True, exist_ok=True)
        tmp_csv = Path(tmp) / "out.csv"
        with open(tmp_csv, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows(rows)
        shutil.move(str(tmp_csv), out)
    return out


if __name__ == "__main__":
    for build in (digits64, twemoji, fortunes):
        print(build())
