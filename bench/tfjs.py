"""Benchmark: the TF.js export of the digits module, in Chromium, against graft's own runtimes.

    make js && .venv/bin/python bench/tfjs.py

- Size of the graph model (``model.json`` + shards) and gzip size, beside the TFLite file.
- Latency of one image (batch 1, median of 10 after 3 warm-up calls) in Debian's chromium
  (headless, puppeteer-core): TF.js 4.22 on the wasm backend (SIMD; threads need cross-origin
  isolation, which a static host rarely sets) and on the plain-JS cpu backend. Baselines in
  the same run: the TFLite file in LiteRT (XNNPACK, one thread, as a browser tab gets) and
  Keras, batch 1.
- Agreement: the largest probability difference from Keras over 8 test images, per backend.

Figures go into bench/RESULTS.md between the ``tfjs`` markers.
"""

from __future__ import annotations

import csv
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, cpu_flags, digits_module, machine, write_section  # noqa: E402

WORK = Path(__file__).resolve().parent / ".work" / "tfjs"


def _median_ms(fn, x, repeats: int = 20) -> float:
    for _ in range(3):
        fn(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from tests.browser import predict_in_browser

    from graft.export import export
    from graft.export.compare import sizes
    from graft.export.graphs import load_exportable
    from graft.export.tflite import Runner

    module = digits_module()
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    started = time.perf_counter()
    export(module, "tfjs,tflite", out=WORK / "export")
    export_s = time.perf_counter() - started
    folder = WORK / "export" / "tfjs"
    tfjs_mb, tfjs_gz = (b / 1e6 for b in sizes(folder))
    tflite_mb, tflite_gz = (b / 1e6 for b in sizes(WORK / "export" / "model.tflite"))

    with open(module.parent / "predictions.csv", newline="") as f:
        items = [row["item"] for row in csv.DictReader(f)][:8]
    ex = load_exportable(module)
    x = ex.prepare(items)
    reference = ex.core.predict_on_batch(x)
    answer = predict_in_browser(folder, x, WORK, backends=("wasm", "cpu"), timing=True)
    assert answer["errors"] == [], answer["errors"]
    keras_ms = _median_ms(lambda b: ex.core.predict_on_batch(b), x[:1])
    lite = Runner(WORK / "export" / "model.tflite", threads=1)
    lite_ms = _median_ms(lite, x[:1])
    lite2 = Runner(WORK / "export" / "model.tflite")
    lite2_ms = _median_ms(lite2, x[:1])

    def diff(backend: str) -> float:
        got = np.asarray(answer[backend]["outputs"]["probabilities"])
        return float(np.abs(got - reference).max())

    rows = [
        ("TF.js graph model, Chromium, wasm backend", tfjs_mb, tfjs_gz,
         answer["wasm"]["ms_p50"], diff("wasm")),
        ("TF.js graph model, Chromium, cpu backend (plain JS)", tfjs_mb, tfjs_gz,
         answer["cpu"]["ms_p50"], diff("cpu")),
        ("TFLite float, LiteRT + XNNPACK, 1 thread", tflite_mb, tflite_gz, lite_ms, None),
        ("TFLite float, LiteRT + XNNPACK, all cores", tflite_mb, tflite_gz, lite2_ms, None),
        ("Keras (TensorFlow), batch 1", None, None, keras_ms, 0.0),
    ]  # fmt: skip
    table = [
        "| runtime | MB | gzip MB | p50 ms (1 image) | max diff from Keras |",
        "|---|--:|--:|--:|--:|",
    ]
    for name, mb, gz, ms, d in rows:
        table.append(
            f"| {name} | {'' if mb is None else f'{mb:.2f}'} | "
            f"{'' if gz is None else f'{gz:.2f}'} | {ms:.1f} | "
            f"{'' if d is None else f'{d:.1e}'} |"
        )
    section = "\n".join(
        [
            f"## TF.js export (`bench/tfjs.py`, {time.strftime('%Y-%m-%d')})",
            "",
            f"Machine: {machine()}; CPU flags: {cpu_flags()}. Chromium "
            f"{_chromium_version()} headless, TF.js 4.22.",
            "",
            f"The digits module (EfficientNet-Lite0 + head, 224x224) exported with "
            f"`graft export --format tfjs,tflite` ({export_s:.0f} s for both, each re-measured "
            f"on the test split). Latency of one image, median of 10 (browser) or 20 (Python) "
            f"after warm-up; agreement over 8 test images.",
            "",
            *table,
            "",
            f"The wasm backend is what a static page gets by default (SIMD, one thread "
            f"without cross-origin isolation): {answer['wasm']['ms_p50'] / lite_ms:.1f}x the "
            f"time of LiteRT on one thread here, {answer['wasm']['ms_p50'] / keras_ms:.1f}x "
            f"Keras. The graph is frozen but not optimized (no Grappler: its fused BatchNorm "
            f"biases break the wasm backend), so every convolution runs unfused, followed by "
            f"its BatchNorm arithmetic; folding BatchNorm into the kernels and fusing bias and "
            f"ReLU6 is the next speed-up. The plain-JS cpu backend is the fallback, "
            f"{answer['cpu']['ms_p50'] / answer['wasm']['ms_p50']:.0f}x slower than wasm; "
            f"webgl needs a GPU this machine lacks.",
        ]
    )
    write_section("tfjs", section)
    print(section)


def _chromium_version() -> str:
    import subprocess

    from tests.browser import chromium

    out = subprocess.run([chromium(), "--version"], capture_output=True, text=True).stdout
    return out.split()[1] if len(out.split()) > 1 else "?"


if __name__ == "__main__":
    main()
