"""graft.train end to end on real data (scikit-learn's digits) and on texts."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import graft
from graft.errors import InvalidArgumentError, ModuleExistsError
from graft.training.run import read_splits
from tests.test_quiet import native_lines

ROOT = Path(__file__).resolve().parents[2]


def test_digits_reaches_90_percent(digits_run):
    assert digits_run.metrics["accuracy"] >= 0.90
    assert digits_run.metrics["top_k_accuracy"]["3"] >= 0.97
    assert digits_run.timings["features_runtime"] == "tflite"
    head = digits_run.selection["head"]
    assert head["kind"] == "convex" and head["fitted_on"] == "train+val"
    assert head["selection"] == "5-fold cross-validation on train+val"
    assert digits_run.selection["kept"] == "head"


def test_default_head_is_not_below_a_tuned_logistic_regression(digits_run, zoo_home):
    """The accuracy rule, on the run's own split and cached features: scikit-learn's
    LogisticRegression on standardised features, C picked on the validation split from a
    warm-started path, is not better (2 examples of slack on 179). ``zoo_home``: the run's
    cache, so the features are read, not computed again."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from graft.training.features import FeatureExtractor

    splits = json.loads((digits_run.directory / "splits.json").read_text())
    fx = FeatureExtractor(graft.models.materialize("efficientnet_lite0.imagenet"))
    x = {n: fx(splits[n]["items"]) for n in ("train", "val", "test")}
    y = {n: np.asarray(splits[n]["labels"]) for n in ("train", "val", "test")}
    scaler = StandardScaler().fit(x["train"])
    x = {n: scaler.transform(v) for n, v in x.items()}
    best, clf = None, LogisticRegression(max_iter=1000, warm_start=True)
    for c in np.logspace(-4, 2, 13):
        clf.set_params(C=c).fit(x["train"], y["train"])
        score = (clf.predict(x["val"]) == y["val"]).mean()
        if best is None or score > best[0]:
            best = (score, (clf.predict(x["test"]) == y["test"]).mean())
    assert digits_run.metrics["accuracy"] >= best[1] - 2 / 179


def test_run_folder_has_every_output(digits_run):
    d = digits_run.directory
    for name in (
        "report.html",
        "metrics.json",
        "predictions.csv",
        "misclassified.csv",
        "confusion_matrix.csv",
        "confusion_matrix.png",
        "selection.png",
        "config.json",
        "splits.json",
        "run.json",
    ):
        assert (d / name).is_file(), name
    metrics = json.loads((d / "metrics.json").read_text())
    assert metrics["accuracy"] == digits_run.metrics["accuracy"]
    assert sum(map(sum, metrics["confusion_matrix"])) == metrics["examples"] == 179
    assert set(metrics["per_class"]) == {str(i) for i in range(10)}
    rows = list(csv.DictReader(open(d / "predictions.csv")))
    assert len(rows) == 179 and set(rows[0]) == {"item", "true", "predicted", "probability", "top3"}
    assert np.mean([r["true"] == r["predicted"] for r in rows]) == pytest.approx(
        metrics["accuracy"]
    )
    wrong = list(csv.DictReader(open(d / "misclassified.csv")))
    assert len(wrong) == sum(r["true"] != r["predicted"] for r in rows)
    assert not list(d.rglob(".*.tmp*")) and not [p for p in d.rglob(".*") if p.is_file()]


def test_saved_module_predicts_the_same_after_reload(digits_run):
    manifest = graft.module.verify(digits_run.module_dir)
    assert manifest.task == "image-classifier" and manifest.inputs.encoded
    assert manifest.labels == tuple(str(i) for i in range(10))
    assert manifest.metrics["test_accuracy"] == digits_run.metrics["accuracy"]
    rows = list(csv.DictReader(open(digits_run.directory / "predictions.csv")))[:40]
    predictions = graft.predict(digits_run.module_dir, [r["item"] for r in rows], top_k=3)
    assert [p.label for p in predictions] == [r["predicted"] for r in rows]
    for p, r in zip(predictions, rows, strict=True):
        assert p.probability == pytest.approx(float(r["probability"]), abs=1e-4)
    copy = digits_run.save(digits_run.directory.parent / "copy")
    assert graft.predict(copy, [rows[0]["item"]])[0].label == rows[0]["predicted"]


def test_raw_bytes_in_labels_out(digits_run, digits_dir):
    import tensorflow as tf

    model = graft.load(digits_run.module_dir)
    files = sorted((digits_dir / "7").glob("*.png"))[:3]
    probs = model.predict(tf.constant([f.read_bytes() for f in files]), verbose=0)
    assert probs.shape == (3, 10)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    labels = model.graft_manifest.labels
    assert [labels[i] for i in probs.argmax(1)].count("7") >= 2


def test_run_evaluate_matches_training_report(digits_run, tmp_path):
    report = digits_run.evaluate(out=tmp_path / "eval")
    assert report.accuracy == pytest.approx(digits_run.metrics["accuracy"], abs=1e-9)
    assert (tmp_path / "eval" / "report.html").is_file()


def _graft_cli(*args: str, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "graft.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "GRAFT_HOME": str(home)},
        timeout=900,
    )


def test_cli_evaluate_and_predict(digits_run, digits_dir, tmp_path):
    home = tmp_path / "home"
    module = str(digits_run.module_dir)
    data = tmp_path / "digits"  # 20 images per class: the whole module runs on each
    for label in range(10):
        (data / str(label)).mkdir(parents=True)
        for f in sorted((digits_dir / str(label)).glob("*.png"))[:20]:
            shutil.copy(f, data / str(label) / f.name)
    out = _graft_cli("evaluate", module, str(data), "--out", str(tmp_path / "ev"), home=home)
    assert out.returncode == 0, out.stderr[-2000:]
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["examples"] == 200 and metrics["accuracy"] > 0.9
    assert "report.html" in out.stdout.replace("\n", "")  # rich wraps long paths
    files = [str(digits_dir / "3" / "0003.png"), str(digits_dir / "0" / "0000.png")]
    out = _graft_cli("predict", module, *files, "--top-k", "2", "--json", home=home)
    assert out.returncode == 0, out.stderr[-2000:]
    assert native_lines(out.stdout + out.stderr) == []  # a quiet CLI
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [line["input"] for line in lines] == files
    assert all(line["label"] in [str(i) for i in range(10)] for line in lines)
    assert all(len(line["top_k"]) == 2 for line in lines)


def test_report_renders_in_chromium(digits_run, tmp_path):
    from tests.browser import chromium, dump_dom, screenshot

    browser = chromium()
    html = digits_run.directory / "report.html"
    dom = dump_dom(browser, html, tmp_path)
    assert f"{digits_run.metrics['accuracy'] * 100:.2f}%" in dom
    assert dom.count('src="data:image/png;base64,') >= 2 + 1  # plots + thumbnails
    assert "Model selection" in dom and "5-fold cross-validation" in dom
    shot = screenshot(browser, html, tmp_path / "report.png")
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.std() > 10  # a rendered page, not a blank one


def test_corrupt_images_are_skipped_and_reported(
    _shared_zoo_home, digits_dir, tmp_path, monkeypatch
):
    monkeypatch.setenv("GRAFT_HOME", str(_shared_zoo_home))
    data = tmp_path / "digits"
    for label in ("0", "1", "2"):
        shutil.copytree(digits_dir / label, data / label)
    (data / "1" / "zz_truncated.png").write_bytes((data / "1" / "0001.png").read_bytes()[:30])
    (data / "2" / "zz_text.jpg").write_text("not a picture")
    run = graft.train(data, out=tmp_path / "run", epochs=3)
    assert sorted(Path(s.item).name for s in run.skipped) == ["zz_text.jpg", "zz_truncated.png"]
    assert run.metrics["skipped"] == 2
    html = (tmp_path / "run" / "report.html").read_text()
    assert "zz_truncated.png" in html and "zz_text.jpg" in html
    assert run.metrics["accuracy"] > 0.9


def _bright_dark(folder: Path, per_class: int = 12, levels=(40, 210)) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, brightness in zip(("dark", "light"), levels, strict=True):
        (folder / label).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(rng.normal(brightness, 30, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / label / f"{i}.png")
    return folder


@pytest.mark.parametrize("augment", ["none", "default"])
def test_fine_tuning_changes_only_top_blocks(tmp_path, augment):
    """Stage 2 on the tiny test backbone, both paths (cached block activations without
    augmentation, end to end with it): top block weights move, the rest and BN stay, and the
    head starts from its trained weights."""
    from graft.data import from_folder
    from graft.handles import resolve
    from graft.module.io import load
    from graft.training.finetune import fine_tune
    from graft.training.head import build_head
    from graft.training.run import TrainConfig
    from tests import _tiny_zoo  # noqa: F401

    splits = from_folder(_bright_dark(tmp_path / "d"), val_fraction=0.25, test_fraction=0.25)
    backbone_dir = resolve("tiny_cnn.test")
    loaded = load(backbone_dir)
    before = {w.path: w.numpy().copy() for w in loaded.model.weights}
    head = build_head(8, 2, dropout=0.0)
    head_before = [w.copy() for w in head.get_weights()]
    onehot = {n: np.eye(2, dtype="float32")[list(p.labels)] for n, p in splits.named().items()}
    config = TrainConfig(
        model="tiny_cnn.test", fine_tune_blocks=1, fine_tune_epochs=2, augment=augment
    )
    result = fine_tune(
        run_dir=tmp_path / "run",
        config=config,
        splits=splits,
        backbone_dir=backbone_dir,
        backbone=loaded.model,
        groups=loaded.manifest.groups,
        head=head,
        onehot=onehot,
        resume=False,
        on_epoch=None,
        pruning_for=lambda e, s: None,
    )
    assert len(result.history["loss"]) == 2
    assert result.info["path"].startswith("cached" if augment == "none" else "end to end")
    after = {w.path: w.numpy() for w in result.backbone.weights}
    changed = {p for p in before if not np.array_equal(before[p], after[p])}
    assert changed == {"top_conv/kernel", "top_conv/bias"}
    assert any(
        not np.array_equal(a, b) for a, b in zip(head_before, head.get_weights(), strict=True)
    )
    assert (tmp_path / "run" / "checkpoints" / "finetune_best.weights.h5").is_file()
    if augment == "none":  # the activations below top_conv were cached like features
        assert list((Path(os.environ["GRAFT_HOME"]) / "features").rglob("at-top_conv/shards/*.npy"))


def test_a_fine_tuned_model_no_better_than_the_head_is_discarded(tmp_path):
    """Fine-tuning that cannot beat a perfect head (a tie on validation): the head alone is
    kept, the module holds the untouched backbone, and run.json and the report say why."""
    from tests import _tiny_zoo  # noqa: F401

    base = graft.load("tiny_cnn.test")
    before = {w.path: w.numpy().copy() for w in base.weights}
    run = graft.train(
        _bright_dark(tmp_path / "d", per_class=16),
        "tiny_cnn.test",
        out=tmp_path / "run",
        fine_tune_blocks=1,
        fine_tune_epochs=2,
        fine_tune_lr=50.0,
        augment="none",
        val_fraction=0.25,
        test_fraction=0.25,
    )
    selection = run.selection
    assert selection["finetune"]["val_accuracy"] <= selection["head"]["val_accuracy"] == 1.0
    assert selection["kept"] == "head" and "discarded" in selection["reason"]
    assert selection["finetune"]["start_val_accuracy"] == selection["head"]["val_accuracy"]
    tuned = graft.load(run.module_dir).get_layer("tiny_cnn")
    for w in tuned.weights:
        np.testing.assert_array_equal(w.numpy(), before[w.path])
    saved = json.loads((run.directory / "run.json").read_text())["selection"]
    assert saved["kept"] == "head"
    assert "fine-tuned weights were discarded" in (run.directory / "report.html").read_text()


def test_existing_run_folder_needs_resume(digits_run, digits_dir):
    with pytest.raises(ModuleExistsError, match=r"already holds a run.*--resume"):
        graft.train(digits_dir, out=digits_run.directory)


def test_resume_with_other_settings_is_refused(digits_run, digits_dir):
    with pytest.raises(InvalidArgumentError, match=r"differ from the saved config.*'epochs': 3"):
        graft.train(digits_dir, out=digits_run.directory, resume=True, epochs=3)


def test_resume_needs_a_run(tmp_path, digits_dir):
    with pytest.raises(InvalidArgumentError, match=r"Nothing to resume"):
        graft.train(digits_dir, out=tmp_path / "new", resume=True)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"model": "efficientnet_lite0.imagenet_classifier"}, r"is a image-classifier model"),
        ({"epochs": 0}, r"epochs must be at least 1.*Received: epochs=0"),
        ({"learning_rate": 1.0}, r"Unknown setting\(s\) \['learning_rate'\]"),
        ({"dropout": 1.5}, r"dropout and label_smoothing must be in \[0, 1\)"),
        ({"fine_tune_blocks": 1, "fine_tune_layers": 4}, r"not both"),
        ({"fine_tune_blocks": 99}, r"has 18 blocks \(stem, block1a.*fine_tune_blocks=99"),
        ({"head": "svm"}, r"head must be 'auto'.*Received: head='svm'"),
        ({"head": "convex", "hidden_units": 8}, r"need head='sgd'.*hidden_units=8"),
        ({"augment": "flip"}, r"Unknown augmentation policy.*none: .*Received: augment='flip'"),
        ({"folds": 1}, r"folds must be 0 .* or at least 2.*Received: folds=1"),
        ({"class_weight": "yes"}, r"'auto', 'balanced' or 'none'.*Received: class_weight='yes'"),
        ({"transform": "sqrt"}, r"transform must be 'auto'.*Received: transform='sqrt'"),
        ({"head": "sgd", "lam": 0.1}, r"lam and transform set the convex head.*lam=0.1"),
    ],
)
def test_bad_settings(zoo_home, digits_dir, tmp_path, kwargs, pattern):
    with pytest.raises(InvalidArgumentError, match=pattern):
        graft.train(digits_dir, out=tmp_path / "r", **kwargs)
    assert not (tmp_path / "r").exists()


def test_text_data_with_image_backbone(zoo_home, tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("text,label\n" + "".join(f"x{i},{'ab'[i % 2]}\n" for i in range(20)))
    with pytest.raises(InvalidArgumentError, match=r"takes image input but the data is text"):
        graft.train(path, out=tmp_path / "r")


def test_manifest_names_the_data_without_the_trainers_paths(digits_run, digits_dir):
    text = (digits_run.module_dir / "manifest.json").read_text()
    assert str(digits_dir) not in text and str(digits_dir.parent) not in text
    provenance = json.loads(text)["provenance"]
    assert re.fullmatch(
        r"graft train on digits \(\d+/\d+/\d+ train/val/test, 10 classes\)", provenance["source"]
    )
    splits, _ = read_splits(digits_run.directory)
    assert provenance["source_sha256"] == splits.fingerprint()
    assert len(provenance["source_sha256"]) == 64


@pytest.mark.parametrize(
    ("tuned", "head", "n", "kept", "words"),
    [
        (0.9050, 0.8939, 179, "head", "within the standard error of"),  # the bench's fold 3
        (0.8700, 0.9441, 179, "head", "not above"),
        (0.9600, 0.8939, 179, "fine-tuned", "by more than its standard error (0.0230"),
        (0.9050, 0.8939, 20000, "fine-tuned", "by more than its standard error"),
    ],
)
def test_fine_tuning_must_lead_by_more_than_a_standard_error(tuned, head, n, kept, words):
    from graft.training.stages import keep_fine_tuned

    got, reason, margin = keep_fine_tuned(tuned, head, n)
    assert got == kept and words in reason
    assert margin == pytest.approx(np.sqrt(head * (1 - head) / n))
    assert keep_fine_tuned(0.5, 0.9, 100, pruned=True)[0] == "fine-tuned"
