"""graft.export on a small trained module: every format runs in its runtime and agrees."""

from __future__ import annotations

import json

import numpy as np
import pytest

import graft
import tests._tiny_zoo  # noqa: F401  (registers tiny_cnn.test)
from graft.errors import InvalidArgumentError, ModuleExistsError
from graft.export import export


@pytest.fixture(scope="module")
def tiny_run(digits_dir, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRAFT_HOME", str(tmp_path_factory.mktemp("home")))
        return graft.train(
            digits_dir,
            model="tiny_cnn.test",
            out=tmp_path_factory.mktemp("runs") / "tiny",
            epochs=3,
        )


def test_every_format_runs_and_agrees_with_keras(tiny_run, tmp_path):
    out = tmp_path / "export"
    report = export(tiny_run.module_dir, "saved_model,tflite,onnx", out=out, quantize="float,int8")
    rows = {(r.format, r.quantization): r for r in report.rows}
    assert set(rows) == {
        ("keras", "float"),
        ("saved_model", "float"),
        ("tflite", "float"),
        ("tflite", "int8"),
        ("onnx", "float"),
    }
    for key in [("saved_model", "float"), ("tflite", "float"), ("onnx", "float")]:
        assert rows[key].max_abs_diff < 1e-4, (key, rows[key])
        assert rows[key].top1_agreement == 1.0
    # Post-training int8 of the tiny random backbone moves its features; the convex head (weak
    # L2, large weights) turns that into some flipped labels. bench/export.py measures the real
    # model, where qat recovers them.
    assert rows[("tflite", "int8")].top1_agreement >= 0.7
    assert rows[("tflite", "int8")].size_bytes < rows[("tflite", "float")].size_bytes
    assert all(
        r.latency_p50_ms > 0 and r.throughput > 0 and r.gzip_bytes > 0 for r in rows.values()
    )
    saved = json.loads((out / "export_report.json").read_text())
    assert len(saved["artifacts"]) == 5 and saved["examples"] == report.examples > 100

    labels = [str(i) for i in range(10)]
    from graft.export import onnx as onnx_export
    from graft.export import saved_model, tflite

    assert tflite.read_labels(out / "model.tflite") == labels
    assert tflite.read_labels(out / "model_int8.tflite") == labels
    assert onnx_export.read_labels(out / "model.onnx") == labels
    assert (out / "saved_model" / "assets" / "labels.txt").read_text().split() == labels
    test = json.loads((tiny_run.directory / "splits.json").read_text())["test"]
    first = test["items"][0]
    runner = saved_model.Runner(out / "saved_model")
    top = runner.top_classes([open(first, "rb").read()])[0]
    probs = runner([open(first, "rb").read()])[0]
    assert top[0] == labels[int(np.argmax(probs))] and len(top) == 5


def test_comparison_table_lands_in_report_html(tiny_run, tmp_path):
    from tests.browser import chromium, dump_dom

    out = tmp_path / "export"
    report = export(tiny_run.module_dir, "tflite", out=out, quantize="float,float16")
    dom = dump_dom(chromium(), out / "report.html", tmp_path)
    assert dom.count("<tr>") == 1 + len(report.rows)  # header + one row per artifact
    assert "model_float16.tflite" in dom and f"{report.rows[1].accuracy:.4f}" in dom
    # The run's own report gets an Export section, replaced (not repeated) on re-export.
    export(tiny_run.module_dir, "onnx", out=out, overwrite=True)
    html = (tiny_run.directory / "report.html").read_text()
    assert html.count(f"Export: {out}") == 1 and "model.onnx" in html
    assert "model_float16.tflite" not in html
    assert "Per class" in html  # the evaluation sections are still there


def test_keras_int8_and_quantization_aware_head(tiny_run, tmp_path):
    out = tmp_path / "export"
    report = export(tiny_run.module_dir, "keras,tflite", out=out, quantize="int8,qat")
    rows = {(r.format, r.quantization): r for r in report.rows}
    assert set(rows) == {
        ("keras", "float"),
        ("keras", "int8"),
        ("tflite", "int8"),
        ("tflite", "qat"),
    }
    # Keras' int8 quantizes the Dense head only; the file is read back (allowlist, safe_mode).
    keras_int8 = rows[("keras", "int8")]
    assert keras_int8.path == "model_int8.keras" and keras_int8.top1_agreement >= 0.95
    assert keras_int8.max_abs_diff > 0  # really quantized
    qat, ptq = rows[("tflite", "qat")], rows[("tflite", "int8")]
    assert qat.path == "model_qat.tflite" and qat.size_bytes < 1.1 * ptq.size_bytes
    assert qat.accuracy >= ptq.accuracy - 0.03
    from graft.export import tflite

    assert tflite.read_labels(out / "model_qat.tflite") == [str(i) for i in range(10)]


def test_bad_requests_name_what_is_valid(tiny_run, tmp_path):
    with pytest.raises(
        InvalidArgumentError,
        match=r"Unknown format 'coreml'. Valid formats: "
        r"saved_model, tflite, onnx, tfjs, keras. Received: format=",
    ):
        export(tiny_run.module_dir, "tflite,coreml", out=tmp_path / "a")
    with pytest.raises(InvalidArgumentError, match=r"Unknown quantization 'int4'.*float, dynamic"):
        export(tiny_run.module_dir, "tflite", quantize="int4", out=tmp_path / "a")
    (tmp_path / "exists").mkdir()
    with pytest.raises(ModuleExistsError, match="--overwrite"):
        export(tiny_run.module_dir, "onnx", out=tmp_path / "exists")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists"]


def test_accuracy_gate_writes_nothing(tiny_run, tmp_path):
    from graft.export import AccuracyDropError

    with pytest.raises(AccuracyDropError, match="Nothing was written"):
        export(
            tiny_run.module_dir,
            "tflite",
            quantize="dynamic",
            out=tmp_path / "gate",
            max_accuracy_drop=-1.0,
        )  # demands a gain: every artifact fails it
    assert list(tmp_path.iterdir()) == []


def test_cli_prints_the_comparison_table(tiny_run, tmp_path):
    from typer.testing import CliRunner

    from graft.cli.main import app

    result = CliRunner().invoke(
        app,
        [
            "export",
            str(tiny_run.module_dir),
            "--format",
            "tflite,tfjs",
            "--quantize",
            "float,float16",
            "--out",
            str(tmp_path / "cli"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "model_float16.tflite" in result.output and "export_report.json" in result.output
    tfjs_row = next(line for line in result.output.splitlines() if " tfjs " in line)
    assert "1.000" in tfjs_row  # agreement with Keras, run from the written files
    assert (tmp_path / "cli" / "tfjs" / "index.html").is_file()
    bad = CliRunner().invoke(
        app, ["export", str(tiny_run.module_dir), "--format", "pb", "--out", str(tmp_path / "x")]
    )
    assert bad.exit_code == 1 and "Unknown format 'pb'" in bad.output
