"""Every command with bad input: one line in the CLI's own terms, exit status 1, no traceback."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

import tests._tiny_zoo  # noqa: F401  (registers tiny_cnn.test)
from graft.cli.main import app


def invoke(*args: str):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def one_line_error(output: str, *expected: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, output
    assert "Traceback" not in output, output
    line = lines[0]
    assert "Received: " in line, line
    for text in expected:
        assert text in line, line
    return line


@pytest.fixture(scope="module")
def files(tmp_path_factory, digits_dir, tiny_module) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli_errors")
    images = root / "digits"
    for label in ("0", "1"):
        (images / label).mkdir(parents=True)
        for f in sorted((digits_dir / label).glob("*.png"))[:6]:
            shutil.copy(f, images / label / f.name)
    run = root / "run"  # a run folder: commands use its module/
    shutil.copytree(tiny_module, run / "module")
    texts = root / "texts.csv"
    texts.write_text("text,label\nthe match was won,sport\nsimmer the sauce,cooking\n")
    one = root / "one.csv"
    one.write_text("text,label\nhello,a\nbye,a\n")
    not_image = root / "notes.png"
    not_image.write_text("not a picture")
    return {"images": images, "run": run, "texts": texts, "one": one, "not_image": not_image}


def test_train_data_that_is_not_there(tmp_path):
    code, out = invoke("train", tmp_path / "nothere")
    assert code == 1
    one_line_error(out, "No such file or folder", "a folder with one subfolder per class")


def test_train_wrong_column_speaks_in_options(files):
    code, out = invoke("train", files["texts"], "--label-column", "stars")
    assert code == 1
    line = one_line_error(out, "its columns are ['text', 'label']", "Pass --label-column with")
    assert "label_column" not in line and line.endswith("Received: --label-column='stars'")


def test_train_one_class(files):
    code, out = invoke("train", files["one"])
    assert code == 1
    one_line_error(out, "at least two classes")


def test_train_bad_numbers_and_policies(files):
    code, out = invoke("train", files["images"], "--model", "tiny_cnn.test", "--epochs", "0")
    assert code == 1
    one_line_error(out, "--epochs=0")
    code, out = invoke("train", files["images"], "--fine-tune-blocks", "-1")
    assert code == 1
    line = one_line_error(out, "--fine-tune-blocks must be 0 or more")
    assert "fine_tune_blocks" not in line
    code, out = invoke("train", files["images"], "--augment", "wild")
    assert code == 1
    one_line_error(out, "Policies are none", "--augment='wild'")


def test_train_unknown_backbone(files):
    code, out = invoke("train", files["images"], "--model", "efficientnet_lite9.imagenet")
    assert code == 1
    one_line_error(out, "Did you mean", "efficientnet_lite0.imagenet")


def test_tune_and_ensemble(files):
    code, out = invoke("tune", files["images"], "--trials", "0")
    assert code == 1
    one_line_error(out, "--trials must be at least 1")
    code, out = invoke("ensemble", files["images"], "--model", "tiny_cnn.test")
    assert code == 1
    one_line_error(out, "at least two members (--model A --model B)")


def test_predict_skips_unreadable_files_and_names_them(files, monkeypatch):
    import graft.handles

    monkeypatch.setattr(graft.handles, "_noticed", set())  # notices are once per process
    good = sorted((files["images"] / "1").glob("*.png"))[0]
    code, out = invoke("predict", files["run"], "/etc/passwd", good, files["not_image"], "x.png")
    assert code == 0, out
    assert f"{files['run']} is a run folder: using its module" in out  # said once
    assert out.count("is a run folder") == 1
    assert "Skipped /etc/passwd: UnidentifiedImageError" in out
    assert f"Skipped {files['not_image']}: UnidentifiedImageError" in out
    assert "Skipped x.png: no such file" in out
    assert good.name in out and "Traceback" not in out


def test_predict_nothing_readable(files):
    code, out = invoke("predict", files["run"], "/etc/passwd")
    assert code == 1
    one_line_error(out, "None of the inputs is a readable image", "/etc/passwd")


def test_predict_and_evaluate_need_a_classifier(files):
    code, out = invoke("predict", "tiny_cnn.test", "x.png")
    assert code == 1
    one_line_error(out, "tiny_cnn.test is not a classifier", "image-feature-vector")
    code, out = invoke("evaluate", "tiny_cnn.test", files["images"])
    assert code == 1
    one_line_error(out, "evaluate needs a classifier")


def test_evaluate_wrong_data(files, tmp_path):
    code, out = invoke("evaluate", files["run"], files["texts"])
    assert code == 1
    one_line_error(out, "classes the module does not know")
    code, out = invoke("evaluate", files["run"], tmp_path / "nothere")
    assert code == 1
    one_line_error(out, "No such file or folder")


def test_module_handles_that_name_nothing(tmp_path):
    for command in (["predict", tmp_path / "nothere", "x.png"], ["export", tmp_path / "nothere"]):
        code, out = (
            invoke(*command, "--out", tmp_path / "o")
            if command[0] == "export"
            else (invoke(*command))
        )
        assert code == 1
        one_line_error(out, "does not exist, so it is not a module directory", "run folder")


def test_export_unknown_format(files, tmp_path):
    code, out = invoke("export", files["run"], "--format", "xyz", "--out", tmp_path / "e")
    assert code == 1
    one_line_error(out, "xyz")
    assert not (tmp_path / "e").exists()


def test_serve_port_taken_fails_before_loading(files):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out = invoke(
            "serve", "--model-dir", files["run"], "--host", "127.0.0.1", "--port", port
        )
    assert code == 1
    one_line_error(out, f"Cannot listen on 127.0.0.1:{port}", f"--port={port}")


def test_dead_hub(files):
    code, out = invoke("hub", "pull", "hub://127.0.0.1:9/digits@stable")
    assert code == 1
    one_line_error(out, "Cannot reach the hub at http://127.0.0.1:9")
    code, out = invoke("hub", "ls", "127.0.0.1:9")
    assert code == 1
    one_line_error(out, "Cannot reach the hub")


def test_models_and_cache(tmp_path):
    code, out = invoke("models", "info", "nope.x")
    assert code == 1
    one_line_error(out, "Unknown model 'nope.x'")
    code, out = invoke("cache", "rm", "nothing.here")
    assert code == 1
    one_line_error(out, "No cached module matches")


def test_image_backbone_on_texts_names_the_kind_and_writes_nothing(files, tmp_path):
    texts = tmp_path / "texts.csv"
    rows = [f"match {i} was won,sport" for i in range(10)]
    rows += [f"simmer sauce {i},cooking" for i in range(10)]
    texts.write_text("text,label\n" + "\n".join(rows) + "\n")
    code, out = invoke("train", texts, "--model", "tiny_cnn.test", "--out", tmp_path / "r")
    assert code == 1
    line = one_line_error(out, "takes image input but the data is text")
    assert line.endswith("data_kind='text'") and len(line) < 300
    assert not (tmp_path / "r").exists()  # no half-made run folder


def test_explain_bad_class_method_and_inputs(files, tmp_path):
    image = next((files["images"] / "0").glob("*.png"))
    code, out = invoke("explain", files["run"], image, "--class", "seven", "--out", tmp_path / "o")
    assert code == 1
    one_line_error(out, "one of the module's labels", "Received: --class='seven'")
    code, out = invoke("explain", files["run"], image, "--method", "lime")
    assert code == 1
    one_line_error(out, "auto, gradcam, hirescam, shap", "Received: --method='lime'")
    code, out = invoke("explain", files["run"], files["not_image"], "--out", tmp_path / "o")
    assert code == 1
    one_line_error(out, "None of the inputs can be explained", "notes.png")
    assert not (tmp_path / "o").exists()  # nothing written for a refused request
    code, out = invoke("explain", files["run"], image, "--out", tmp_path / "ok", "--check")
    assert code == 0, out
    assert "Deletion check on 1 inputs" in out and (tmp_path / "ok" / "index.html").is_file()
