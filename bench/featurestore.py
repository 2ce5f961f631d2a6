"""Benchmark: the sharded feature cache against the one-file-per-example layout it replaced.

    .venv/bin/python bench/featurestore.py [--sizes 100000,1000000]

For each size N: N synthetic texts with MiniLM-shaped (384-d) vectors planted in graft's cache
under the keys ``graft train`` computes (MiniLM's model sha, preprocessing, each text's
sha256), then

- reading all N back through ``VectorStore.get``, warm, against ``np.load`` of one
  in-memory-sized array (the floor) and, for 100,000, the earlier layout (one ``.npy`` per
  example) in the same run;
- a cached ``graft train data.csv --model minilm_l6.sentence``: its feature step (all cache
  reads, no backbone call) against the run's wall time. The goal: under 10%.

Figures go into bench/RESULTS.md between the ``feature-store`` markers.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_flags, machine, write_section  # noqa: E402

WORK = Path(__file__).resolve().parent / ".work" / "featurestore"
DIM = 384
CLASSES = 10


def _data(n: int) -> tuple:
    import numpy as np

    rng = np.random.default_rng(0)
    texts = [f"synthetic example number {i}" for i in range(n)]
    labels = np.arange(n) % CLASSES
    centres = rng.normal(size=(CLASSES, DIM)).astype(np.float32)
    vectors = centres[labels] + 2.0 * rng.normal(size=(n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    path = WORK / f"data-{n}.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows((t, f"c{y}") for t, y in zip(texts, labels, strict=True))
    return path, texts, vectors, labels


def _measure(n: int, fx) -> tuple:
    """One size: write, read (store, one array, old layout), and a cached graft train."""
    import json

    import numpy as np

    import graft
    from graft.training.vector_store import VectorStore

    shutil.rmtree(fx.cache_dir, ignore_errors=True)
    path, texts, vectors, _ = _data(n)
    keys, _ = fx._read(texts)
    store = VectorStore(fx.cache_dir, (DIM,))
    start = time.perf_counter()
    for i in range(0, n, 65536):
        store.put(keys[i : i + 65536], vectors[i : i + 65536])
    store.compact()
    write_s = time.perf_counter() - start
    disk = sum(p.stat().st_size for p in fx.cache_dir.rglob("*") if p.is_file())
    store.get(keys[:10])  # page cache warm-up of the key files
    start = time.perf_counter()
    found, got = store.get(keys)
    read_s = time.perf_counter() - start
    assert found.all() and np.array_equal(got, vectors)
    whole = WORK / "whole.npy"
    np.save(whole, vectors)
    start = time.perf_counter()
    np.load(whole)
    floor_s = time.perf_counter() - start
    old_s = old_disk = None
    if n <= 100_000:
        old = WORK / "old"
        for key, vector in zip(keys, vectors, strict=True):
            (old / key[:2]).mkdir(parents=True, exist_ok=True)
            np.save(old / key[:2] / f"{key}.npy", vector)
        old_disk = sum(p.stat().st_blocks * 512 for p in old.rglob("*.npy"))
        start = time.perf_counter()
        for key in keys:
            np.load(old / key[:2] / f"{key}.npy")
        old_s = time.perf_counter() - start
        shutil.rmtree(old)
    run_dir = WORK / f"run-{n}"
    start = time.perf_counter()
    graft.train(path, "minilm_l6.sentence", out=run_dir)
    run_s = time.perf_counter() - start
    run = json.loads((run_dir / "run.json").read_text())
    shutil.rmtree(run_dir, ignore_errors=True)
    return (
        n, write_s, disk, read_s, floor_s, old_s, old_disk, run_s, run["timings"],
        run["metrics"]["test_accuracy"],
    )  # fmt: skip


def main() -> None:
    from graft.handles import resolve
    from graft.training.features import FeatureExtractor

    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100000,1000000")
    sizes = [int(s) for s in parser.parse_args().sizes.split(",")]
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    os.environ["GRAFT_HOME"] = str(WORK / "home")
    fx = FeatureExtractor(resolve("minilm_l6.sentence"))
    rows = []
    for n in sizes:
        rows.append(_measure(n, fx))
        print(rows[-1], flush=True)
        _write(rows)  # after each size: a long run still leaves its first figures


def _write(rows: list) -> None:
    table = [
        "| vectors | write (s) | on disk | read all (s) | one array (s) | old layout read (s), disk"
        " | cached `graft train` (s) | its feature step (s) | share |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for n, write_s, disk, read_s, floor_s, old_s, old_disk, run_s, timings, acc in rows:
        old = f"{old_s:.1f}, {old_disk / 1e6:.0f} MB" if old_s is not None else "-"
        feat = timings["features_s"]
        table.append(
            f"| {n:,} | {write_s:.1f} | {disk / 1e6:.0f} MB | {read_s:.2f} | {floor_s:.2f} | "
            f"{old} | {run_s:.0f} (accuracy {acc:.3f}) | {feat:.1f} | {feat / run_s:.1%} |"
        )
    section = "\n".join(
        [
            f"## Feature store (`bench/featurestore.py`, {time.strftime('%Y-%m-%d')})",
            "",
            f"Machine: {machine()}; CPU flags: {cpu_flags()}.",
            "",
            f"{DIM}-d synthetic vectors (MiniLM's shape) planted in the cache under the keys "
            "`graft train` computes for synthetic texts; reads are warm (page cache). "
            "'one array' is `np.load` of the same vectors as one file, the floor. The cached "
            "`graft train` runs MiniLM's text layout on the CSV and computes no feature; its "
            "feature step is every cache read plus hashing the texts.",
            "",
            *table,
        ]
    )
    write_section("feature-store", section)
    print(section)


if __name__ == "__main__":
    main()
