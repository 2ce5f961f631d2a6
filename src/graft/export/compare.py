"""Re-measuring every artifact in its own runtime: accuracy, size, latency, throughput."""

from __future__ import annotations

import gzip
import io
import statistics
import tarfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

BATCH = 32


@dataclass(frozen=True)
class ArtifactResult:
    """One row of the comparison table."""

    format: str
    quantization: str
    path: str
    size_bytes: int
    gzip_bytes: int
    accuracy: float
    accuracy_change: float  # points against the float Keras model
    top1_agreement: float  # share of examples whose top-1 label equals Keras'
    max_abs_diff: float  # largest probability difference from Keras
    latency_p50_ms: float  # batch 1
    throughput: float  # examples/s at batch 32

    def to_dict(self) -> dict:
        return asdict(self)


def sizes(path: Path) -> tuple[int, int]:
    """Bytes on disk and gzip-compressed bytes (a folder is tarred first)."""
    if path.is_dir():
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            tar.add(path, arcname=path.name)
        data = buffer.getvalue()
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    else:
        data = path.read_bytes()
        size = len(data)
    return size, len(gzip.compress(data, compresslevel=6))


def batched(run, inputs, batch: int = BATCH) -> np.ndarray:
    return np.concatenate([run(inputs[i : i + batch]) for i in range(0, len(inputs), batch)])


def timing(run, sample, repeats: int = 20) -> tuple[float, float]:
    """p50 latency (ms) of one example and throughput (examples/s) at batch 32."""
    one = sample[:1]
    run(one)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(one)
        times.append(time.perf_counter() - start)
    full = sample[:BATCH]
    run(full)
    start = time.perf_counter()
    for _ in range(3):
        run(full)
    throughput = 3 * len(full) / (time.perf_counter() - start)
    return statistics.median(times) * 1000, throughput


def measure(
    fmt: str,
    quantization: str,
    path: Path,
    run,
    inputs,
    labels: np.ndarray,
    reference: np.ndarray,
    reference_accuracy: float,
) -> ArtifactResult:
    """Evaluates ``run`` on ``inputs`` and times it."""
    probs = batched(run, inputs)
    predicted = probs.argmax(1)
    accuracy = float((predicted == labels).mean())
    latency, throughput = timing(run, inputs)
    size, gz = sizes(path)
    return ArtifactResult(
        format=fmt,
        quantization=quantization,
        path=path.name,
        size_bytes=size,
        gzip_bytes=gz,
        accuracy=accuracy,
        accuracy_change=round((accuracy - reference_accuracy) * 100, 4),
        top1_agreement=float((predicted == reference.argmax(1)).mean()),
        max_abs_diff=float(np.abs(probs - reference).max()),
        latency_p50_ms=latency,
        throughput=throughput,
    )
