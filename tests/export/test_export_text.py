"""Exporting a text classifier (a BERT encoder in graft's text layout + head): strings in the
SavedModel, token ids elsewhere. The encoder is ``tiny_bert.test`` (MiniLM's vocabulary and
tokenizer, 2 small random layers): the same graph as MiniLM's, converted in seconds; the real
MiniLM's export figures are in bench/export.py."""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import graft
import tests._tiny_bert  # noqa: F401  (registers tiny_bert.test)
from graft.export import export

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))
from _topics import write_topics_csv  # noqa: E402


@pytest.fixture(scope="module")
def text_run(_shared_zoo_home, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRAFT_HOME", str(_shared_zoo_home))
        data = write_topics_csv(tmp_path_factory.mktemp("topics") / "topics.csv", per_topic=40)
        return graft.train(
            data,
            "tiny_bert.test",
            out=tmp_path_factory.mktemp("runs") / "t",
            epochs=15,
            test_fraction=0.25,
        )


def test_text_formats_agree_and_carry_labels_and_vocabulary(text_run, tmp_path):
    out = tmp_path / "export"
    report = export(
        text_run.module_dir, "saved_model,tflite,onnx", out=out, quantize="float,dynamic"
    )
    rows = {(r.format, r.quantization): r for r in report.rows}
    assert set(rows) == {
        ("keras", "float"),
        ("saved_model", "float"),
        ("tflite", "float"),
        ("tflite", "dynamic"),
        ("onnx", "float"),
    }
    for key in [("saved_model", "float"), ("tflite", "float"), ("onnx", "float")]:
        assert rows[key].max_abs_diff < 1e-4, (key, rows[key])
    assert rows[("tflite", "dynamic")].top1_agreement >= 0.95
    # 8-bit weights: a quarter of the float ones, plus the vocabulary both files carry (which
    # weighs more beside a 1M-parameter encoder than beside MiniLM's 22M: 0.27 there).
    assert rows[("tflite", "dynamic")].size_bytes < 0.4 * rows[("tflite", "float")].size_bytes
    labels = ["cooking", "finance", "sport", "weather"]
    from graft.export import onnx as onnx_export
    from graft.export import saved_model, tflite

    assert tflite.read_labels(out / "model.tflite") == labels
    vocabulary = tflite.read_vocabulary(out / "model_dynamic.tflite")
    assert len(vocabulary) == 30522 and vocabulary[:1] == ["[PAD]"]
    assert onnx_export.read_labels(out / "model.onnx") == labels
    runner = saved_model.Runner(out / "saved_model")
    rain, eggs = "Heavy rain will sweep over the coast tomorrow.", "Whisk the eggs until golden."
    expected = [p.label for p in graft.predict(text_run.module_dir, [rain, eggs])]
    top = runner.top_classes([rain])[0]
    assert top[0] == expected[0] and len(top) == 4

    # The TFLite file alone answers: tokenize with its own vocabulary, run, read its labels.
    from graft.models.layers import BertTextPreprocessor

    tokens = BertTextPreprocessor(vocabulary, 32)(np.array([eggs]))
    probs = tflite.Runner(out / "model.tflite")(
        {k: np.asarray(v).astype("int32") for k, v in tokens.items()}
    )
    assert labels[int(probs.argmax())] == expected[1]
    with zipfile.ZipFile(out / "model.tflite") as archive:
        assert sorted(archive.namelist()) == ["labels.txt", "vocab.txt"]
    assert json.loads((out / "export_report.json").read_text())["examples"] == report.examples


def test_text_int8_and_keras_int8(text_run, tmp_path):
    report = export(text_run.module_dir, "tflite,keras", out=tmp_path / "q", quantize="int8")
    rows = {(r.format, r.quantization): r for r in report.rows}
    float_size = rows[("keras", "float")].size_bytes
    for key in [("tflite", "int8"), ("keras", "int8")]:
        assert rows[key].size_bytes < 0.45 * float_size, key  # see the dynamic-range note
        assert rows[key].top1_agreement >= 0.9, (key, rows[key])
