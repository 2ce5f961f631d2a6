"""Export benchmark: every format and quantization of two real modules, measured in its runtime.

    .venv/bin/python bench/export.py          # figures into bench/RESULTS.md

Modules: the digits classifier from ``make demo`` (EfficientNet-Lite0 + head; trained here with
the demo's settings if ``runs/digits-demo`` is missing) and a MiniLM-L6 text classifier trained
on a four-topic sentence set (``bench/_topics.py``). Each is exported to Keras (float, Keras
int8), SavedModel, TFLite (float, dynamic, float16, int8, qat) and ONNX; ``graft.export``
re-evaluates every artifact on the run's test split in its own runtime.

Targets (the issue's acceptance): int8 TFLite <= 30% of the float TFLite file, <= 1 point
accuracy drop against the float Keras model, batch-1 p50 latency <= 0.5x the float Keras
model's (``predict_on_batch`` on the same decoded/tokenized input).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import HERE, digits_module, machine, write_section  # noqa: E402
from _topics import write_topics_csv  # noqa: E402

WORK = HERE / ".work" / "export"
FORMATS = "keras,saved_model,tflite,onnx"
QUANTIZE = "float,dynamic,float16,int8,qat"


def text_module() -> Path:
    import graft

    run = WORK / "topics-run"
    if not (run / "module").is_dir():
        data = write_topics_csv(WORK / "topics.csv", per_topic=250)
        graft.train(data, "minilm_l6.sentence", epochs=20, test_fraction=0.2, out=run)
    return run / "module"


def table(report) -> list[str]:
    lines = [
        "| format | quantization | MB | gzip MB | accuracy | change (pts) | top-1 agree "
        "| p50 ms b1 | ex/s b32 |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in report.rows:
        lines.append(
            f"| {r.format} | {r.quantization} | {r.size_bytes / 1e6:.2f} | "
            f"{r.gzip_bytes / 1e6:.2f} | {r.accuracy:.4f} | {r.accuracy_change:+.2f} | "
            f"{r.top1_agreement:.3f} | {r.latency_p50_ms:.2f} | {r.throughput:.1f} |"
        )
    return lines


def verdict(report) -> list[str]:
    rows = {(r.format, r.quantization): r for r in report.rows}
    keras, flt = rows[("keras", "float")], rows[("tflite", "float")]
    out = []
    for quant in ("int8", "qat"):
        r = rows[("tflite", quant)]
        size = r.size_bytes / flt.size_bytes
        latency = r.latency_p50_ms / keras.latency_p50_ms
        ok = size <= 0.30 and r.accuracy_change >= -1.0 and latency <= 0.5
        out.append(
            f"- TFLite {quant}: {size:.1%} of the float TFLite file (target <= 30%), "
            f"{r.accuracy_change:+.2f} points (target >= -1), batch-1 p50 "
            f"{latency:.2f}x the float Keras model's (target <= 0.5x): "
            f"**{'meets' if ok else 'misses'} the targets**"
        )
    return out


def main() -> None:
    import graft

    sections = []
    for name, make in (
        ("digits (EfficientNet-Lite0)", digits_module),
        ("topics (MiniLM-L6)", text_module),
    ):
        module = make()
        start = time.perf_counter()
        report = graft.export(
            module, FORMATS, quantize=QUANTIZE, out=WORK / name.split()[0], overwrite=True
        )
        seconds = time.perf_counter() - start
        print(f"{name}: exported and measured in {seconds:.0f}s")
        lines = [f"### {name}: {report.examples} test examples, whole export {seconds:.0f}s", ""]
        lines += table(report) + [""] + verdict(report)
        print("\n".join(lines))
        sections.append("\n".join(lines))
    text = "\n".join(
        [
            f"## Export (`bench/export.py`, {time.strftime('%Y-%m-%d')})",
            "",
            f"Machine: {machine(('tensorflow', 'keras', 'ai-edge-litert', 'onnxruntime'))}.",
            "",
            "Every artifact re-evaluated in its own runtime (Keras, TF SavedModel with raw "
            "inputs, LiteRT interpreter with XNNPACK on all cores, onnxruntime CPU). `int8` is "
            "post-training full-integer quantization calibrated on 100 training examples; `qat` "
            "is the same with the head trained quantization-aware on the int8 backbone's "
            "features. Keras `int8` is Keras' own `model.quantize('int8')` (Dense/EinsumDense/"
            "Embedding only). Sizes of `keras` rows are the .keras files; SavedModel is a folder "
            "(tarred for gzip). Latency is batch 1, median of 20; throughput at batch 32.",
            "",
            *sections,
        ]
    )
    write_section("export", text)


if __name__ == "__main__":
    main()
