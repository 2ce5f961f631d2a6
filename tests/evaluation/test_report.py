"""report.html escapes what comes from the user's data (texts, file names, class names)."""

from __future__ import annotations

import numpy as np

from graft.evaluation.report import add_exports, write_report


def test_user_text_is_escaped(tmp_path):
    probs = np.array([[0.9, 0.1], [0.2, 0.8]])
    write_report(
        tmp_path,
        kind="text",
        items=["<script>alert(1)</script>", "fine"],
        y_true=[1, 0],
        probs=probs,
        class_names=["a", "<b>bold</b>"],
        title="t",
    )
    html = (tmp_path / "report.html").read_text()
    assert "<script>alert(1)</script>" not in html and "<b>bold</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_export_section_is_escaped_and_replaced(tmp_path):
    write_report(
        tmp_path,
        kind="text",
        items=["x"],
        y_true=[0],
        probs=np.array([[1.0]]),
        class_names=["a"],
        title="t",
    )
    row = dict(
        format="tflite",
        quantization="int8",
        path="<img src=x>.tflite",
        size_bytes=1,
        gzip_bytes=1,
        accuracy=1.0,
        accuracy_change=0.0,
        top1_agreement=1.0,
        latency_p50_ms=1.0,
        throughput=1.0,
    )
    export = {"out": "o", "module": "m", "examples": 1, "artifacts": [row], "sparsity": {}}
    add_exports(tmp_path / "report.html", [export])
    add_exports(tmp_path / "report.html", [export])
    html = (tmp_path / "report.html").read_text()
    assert html.count("Export: o") == 1 and "&lt;img src=x&gt;.tflite" in html
    assert "<img src=x>" not in html
