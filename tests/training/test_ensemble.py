"""graft ensemble: stacking is really out of fold, and the one module it saves reloads,
exports, serves and goes through the hub like any classifier module."""

from __future__ import annotations

import base64
import csv
import json
import shutil

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

import graft
from graft.cli.main import app
from graft.errors import InvalidArgumentError, ModelNotFoundError
from graft.module.manifest import InputSpec
from graft.training import stacking
from tests._tiny_zoo import register_test_entry  # (importing it registers tiny_cnn.test)

register_test_entry(
    "tiny_cnn.wide",
    InputSpec(kind="image", size=(24, 24), value_range=(0.0, 1.0)),
    8,
    "tests.training.test_ensemble:build_wide",
    "a second small image backbone, with a larger input than tiny_cnn.test",
)
WORDS = (
    "goal match team coach league player score win "
    "oven bake soup salt sauce dough roast pepper "
    "rain snow wind sunny storm cold fog heat"
).split()
register_test_entry(
    "tiny_text.test",
    InputSpec(kind="text", max_length=16),
    8,
    "tests.training.test_ensemble:build_text",
    "a small text embedding: word ids -> random embeddings -> mean",
)


def _built(model):
    from graft.models._build import Built
    from graft.module.manifest import Provenance

    return Built(model=model, provenance=Provenance(source="test"), groups=())


def build_wide(spec):
    import keras

    keras.utils.set_random_seed(99)
    inputs = keras.Input((24, 24, 3), name="image")
    x = keras.layers.Conv2D(6, 3, strides=2, name="stem_conv")(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="top_conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return _built(keras.Model(inputs, x, name="tiny_cnn"))


def build_text(spec):
    import keras

    keras.utils.set_random_seed(7)
    inputs = keras.Input(shape=(), dtype="string", name="text")
    ids = keras.layers.TextVectorization(vocabulary=WORDS, output_sequence_length=16, name="words")(
        inputs
    )
    x = keras.layers.Embedding(len(WORDS) + 2, 8, mask_zero=True, name="embedding")(ids)
    x = keras.layers.GlobalAveragePooling1D(name="mean")(x)
    return _built(keras.Model(inputs, x, name="tiny_text"))


@pytest.fixture(scope="module")
def ens_home(tmp_path_factory):
    return tmp_path_factory.mktemp("ensemble_home")


@pytest.fixture
def home(ens_home, monkeypatch):
    monkeypatch.setenv("GRAFT_HOME", str(ens_home))
    return ens_home


@pytest.fixture(scope="module")
def small_digits(tmp_path_factory):
    """The first 400 of scikit-learn's digits (about 40 per class)."""
    from graft.data.samples import write_digits_folder

    return write_digits_folder(tmp_path_factory.mktemp("data") / "digits", limit=400)


@pytest.fixture(scope="module")
def image_run(small_digits, ens_home, tmp_path_factory):
    """tiny_cnn.test (16x16) + tiny_cnn.wide (24x24, given as a module directory)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRAFT_HOME", str(ens_home))
        wide = shutil.copytree(
            graft.models.materialize("tiny_cnn.wide"), tmp_path_factory.mktemp("m") / "wide"
        )
        return graft.ensemble(
            small_digits,
            models=["tiny_cnn.test", str(wide)],
            out=tmp_path_factory.mktemp("runs") / "digits-ens",
            folds=3,
        )


TOPICS = {
    "sport": "goal match team coach league player score win".split(),
    "cooking": "oven bake soup salt sauce dough roast pepper".split(),
    "weather": "rain snow wind sunny storm cold fog heat".split(),
}


@pytest.fixture(scope="module")
def topics_csv(tmp_path_factory):
    """48 short texts in 3 topics; words outside the tiny embedding's vocabulary too."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("text") / "topics.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["sentence", "topic"])
        for topic, words in TOPICS.items():
            for i in range(16):
                picked = rng.choice(words, 3, replace=False)
                writer.writerow([f"the {' '.join(picked)} report number{i % 4}", topic])
    return path


@pytest.fixture(scope="module")
def text_run(topics_csv, ens_home, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRAFT_HOME", str(ens_home))
        return graft.ensemble(
            topics_csv,
            models=["tiny_text.test", "tfidf"],
            out=tmp_path_factory.mktemp("runs") / "topics-ens",
            folds=3,
            text_column="sentence",
            label_column="topic",
            test_fraction=0.25,
        )


# -- out of fold ------------------------------------------------------------------------------


def test_out_of_fold_predictions_come_from_heads_that_never_saw_the_example():
    # Random labels on random features: a head that saw an example memorises it (d > n), one
    # that did not is at chance. A leak would push the out-of-fold accuracy far above 1/4.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 300)).astype(np.float32)
    y = rng.integers(0, 4, 200)
    assignment = rng.permutation(np.arange(200) % 4)
    plan = stacking.HeadPlan(lambdas=(1e-4,))
    oof = stacking.out_of_fold(x, y, assignment, 4, plan, seed=0)
    seen = stacking.fit_head(x, y, 4, plan, seed=0)
    assert (seen.predict_proba(x).argmax(1) == y).mean() > 0.95  # memorised when seen
    assert (oof.argmax(1) == y).mean() < 0.4  # chance when not
    np.testing.assert_allclose(np.exp(oof).sum(1), 1.0, atol=1e-5)  # log-probabilities

    # The stack's own cross-validated predictions: each fold's meta-learner never saw it.
    z = rng.normal(size=(200, 300)).astype(np.float32)
    meta = stacking.fit_meta(z, y, 4, seed=0)
    assert (meta.predict_proba(z).argmax(1) == y).mean() > 0.95
    assert (stacking.stack_out_of_fold(z, y, assignment, 4, seed=0).argmax(1) == y).mean() < 0.4


def test_folds_cover_train_and_validation_once_and_keep_test_out(image_run):
    splits = json.loads((image_run.directory / "splits.json").read_text())
    folds = splits["folds"]
    assert sorted(folds["items"]) == sorted(splits["train"]["items"] + splits["val"]["items"])
    assert set(folds["fold"]) == {0, 1, 2}
    assert not set(folds["items"]) & set(splits["test"]["items"])


# -- the image module -------------------------------------------------------------------------


def test_report_compares_members_with_the_ensemble(image_run):
    rows = {r["name"]: r for r in image_run.members}
    roles = [r["role"] for r in image_run.members]
    assert roles[:2] == ["member", "member"] and sorted(roles[2:]) == ["ensemble", "reference"]
    for r in image_run.members:
        assert 0.1 < r["oof_accuracy"] <= 1 and 0.1 < r["test_accuracy"] <= 1
    saved = next(r for r in image_run.members if r["role"] == "ensemble")
    other = next(r for r in image_run.members if r["role"] == "reference")
    assert (
        saved["name"].endswith("(saved module)") and saved["oof_accuracy"] >= other["oof_accuracy"]
    )
    assert saved["test_accuracy"] == pytest.approx(image_run.metrics["accuracy"])
    run_json = json.loads((image_run.directory / "run.json").read_text())
    metrics = json.loads((image_run.directory / "metrics.json").read_text())
    assert run_json["members"] == metrics["members"] == image_run.members
    assert run_json["metrics"]["cv_accuracy"] == saved["oof_accuracy"]
    html = image_run.report.read_text()
    assert 'id="members"' in html and all(name in html for name in rows)
    assert "resized inside" in rows["tiny_cnn.test"]["features"]  # 24x24 decode -> 16x16


def test_module_reloads_and_predicts_what_the_run_measured(image_run, home):
    from graft.export.graphs import core_of
    from graft.inference import predict_probs
    from graft.models.layers import DecodeImage
    from graft.module.io import load

    loaded = load(image_run.module_dir)  # checksums, class allowlist, safe_mode=True
    manifest = loaded.manifest
    assert manifest.task == "image-classifier" and manifest.inputs.size == (24, 24)
    assert manifest.labels == tuple(str(d) for d in range(10)) and manifest.inputs.encoded
    assert sum(isinstance(layer, DecodeImage) for layer in loaded.model.layers) == 1
    assert core_of(loaded.model, "image", True, (24, 24)).input_shape == (None, 24, 24, 3)
    test = json.loads((image_run.directory / "splits.json").read_text())["test"]
    probs = predict_probs(loaded.model, "image", test["items"])
    np.testing.assert_allclose(probs, image_run.test_probs, atol=1e-4)
    assert image_run.predict(test["items"][:1])[0].label == str(int(probs[0].argmax()))
    report = graft.evaluate(image_run.module_dir, small_digits_test(image_run))
    assert report.accuracy == pytest.approx(image_run.metrics["accuracy"])


def small_digits_test(run):
    from graft.training.run import _read_split

    return _read_split(run.directory, "test")


def test_module_exports_to_saved_model_and_tflite(image_run, home, tmp_path):
    report = graft.export(image_run.module_dir, "saved_model,tflite", out=tmp_path / "export")
    rows = {r.format: r for r in report.rows}
    assert set(rows) == {"keras", "saved_model", "tflite"}
    for fmt in ("saved_model", "tflite"):
        assert rows[fmt].max_abs_diff < 1e-4 and rows[fmt].top1_agreement == 1.0, rows[fmt]
        assert rows[fmt].accuracy == pytest.approx(image_run.metrics["accuracy"])


def test_module_serves_with_graft_serve(image_run, small_digits, tmp_path, monkeypatch):
    from graft.data.images import image_bytes
    from graft.module.io import load
    from tests.serve.conftest import ServeServer, add_version, options

    monkeypatch.setenv("GRAFT_HOME", str(tmp_path / "serve_home"))
    files = [sorted((small_digits / str(d)).glob("*.png"))[0] for d in range(10)]
    blobs = [image_bytes(p) for p in files]
    expected = np.asarray(load(image_run.module_dir).model(np.array(blobs, dtype=object)))
    add_version(tmp_path / "models", "ens", 1, image_run.module_dir)
    with ServeServer(options(tmp_path / "models")) as server:
        server.wait_ready()
        body = {"instances": [{"b64": base64.b64encode(b).decode()} for b in blobs]}
        response = httpx.post(f"{server.url}/v1/models/ens:predict", json=body, timeout=60)
        assert response.status_code == 200, response.text
        got = np.array([p["probabilities"] for p in response.json()["predictions"]])
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_module_goes_through_the_hub(image_run, home, tmp_path, monkeypatch):
    from graft.inference import predict_probs
    from graft.module.io import load
    from tests.hub.conftest import TOKEN, HubServer

    monkeypatch.setenv("GRAFT_HUB_TOKEN", TOKEN)
    with HubServer(tmp_path / "hub") as hub:
        graft.hub.push(image_run.module_dir, hub.url, "digits-ens")
        pulled = graft.hub.pull(f"hub://{hub.hostport}/digits-ens@1")
    test = small_digits_test(image_run)
    probs = predict_probs(load(pulled).model, "image", test.items[:8])
    np.testing.assert_allclose(probs, image_run.test_probs[:8], atol=1e-4)


# -- text: a tiny embedding + TF-IDF -----------------------------------------------------------


def test_tfidf_member_end_to_end(text_run, home):
    from graft.inference import predict_probs
    from graft.module.allowlist import read_config
    from graft.module.io import load

    assert [r["name"] for r in text_run.members][:2] == ["tiny_text.test", "tfidf"]
    assert text_run.metrics["accuracy"] >= 0.75
    assert "TextVectorization" in json.dumps(read_config(text_run.module_dir / "model.keras"))
    loaded = load(text_run.module_dir)  # vocabulary and IDF weights travel inside model.keras
    test = small_digits_test(text_run)
    probs = predict_probs(loaded.model, "text", test.items)
    np.testing.assert_allclose(probs, text_run.test_probs, atol=1e-4)
    new = ["a storm with snow and cold wind", "bake the dough and roast pepper"]
    assert [p.label for p in text_run.predict(new)] == ["weather", "cooking"]


def test_text_module_exports_as_saved_model_and_serves(text_run, tmp_path, monkeypatch):
    from tests.serve.conftest import ServeServer, add_version, options

    monkeypatch.setenv("GRAFT_HOME", str(tmp_path / "home"))
    report = graft.export(text_run.module_dir, "saved_model", out=tmp_path / "export")
    row = next(r for r in report.rows if r.format == "saved_model")
    assert row.max_abs_diff < 1e-5 and row.top1_agreement == 1.0
    with pytest.raises(InvalidArgumentError, match="Export it as saved_model"):
        graft.export(text_run.module_dir, "tflite", out=tmp_path / "tflite")
    texts = ["snow and cold wind", "roast the pepper"]
    add_version(tmp_path / "models", "topics", 1, text_run.module_dir)
    with ServeServer(options(tmp_path / "models")) as server:
        server.wait_ready()
        body = {"instances": texts}
        response = httpx.post(f"{server.url}/v1/models/topics:predict", json=body, timeout=60)
        assert response.status_code == 200, response.text
        got = np.array([p["probabilities"] for p in response.json()["predictions"]])
    expected = np.asarray(text_run.model().predict(np.array(texts, dtype=object), verbose=0))
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_cli_prints_the_comparison(topics_csv, home, tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "ensemble",
            str(topics_csv),
            "--model",
            "tfidf",
            "--model",
            "tiny_text.test",
            "--text-column",
            "sentence",
            "--label-column",
            "topic",
            "--folds",
            "2",
            "--out",
            str(tmp_path / "run"),
        ],  # fmt: skip
    )
    assert result.exit_code == 0, result.output
    assert "(saved module)" in result.output and "mean of members" in result.output
    assert "tfidf" in result.output and (tmp_path / "run" / "module" / "model.keras").is_file()


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("models", "error", "pattern"),
    [
        (["tiny_text.test"], InvalidArgumentError, "at least two members"),
        (["tiny_text.test", "tiny_text.test"], InvalidArgumentError, "repeated"),
        (["tiny_text.test", "tiny_cnn.test"], InvalidArgumentError, "takes image input"),
        (["tfidf", "no_such.model"], ModelNotFoundError, "no_such.model"),
    ],
)
def test_bad_members_on_text(topics_csv, home, tmp_path, models, error, pattern):
    with pytest.raises(error, match=pattern):
        graft.ensemble(
            topics_csv, models, out=tmp_path / "r", text_column="sentence", label_column="topic"
        )
    assert not (tmp_path / "r" / "splits.json").exists()


def test_tfidf_on_images_and_too_many_folds(small_digits, home, tmp_path):
    with pytest.raises(InvalidArgumentError, match="'tfidf' member reads texts"):
        graft.ensemble(small_digits, ["tiny_cnn.test", "tfidf"], out=tmp_path / "a")
    two = ["tiny_cnn.test", "tiny_cnn.wide"]
    with pytest.raises(InvalidArgumentError, match="at least 50 train"):
        graft.ensemble(small_digits, two, out=tmp_path / "b", folds=50)
    with pytest.raises(InvalidArgumentError, match="folds must be at least 2"):
        graft.ensemble(small_digits, two, out=tmp_path / "c", folds=1)


def test_cli_error_is_one_line(topics_csv, home, tmp_path):
    result = CliRunner().invoke(app, ["ensemble", str(topics_csv), "--model", "tfidf"])
    assert result.exit_code == 1
    assert "at least two members" in result.output and "Traceback" not in result.output


# -- the two ways a module combines its members ----------------------------------------------


def _log_softmax_branches(rng):
    import keras

    branches = []
    for i in range(2):
        inputs = keras.Input((4, 4, 3), name="image")
        x = keras.layers.Flatten()(inputs)
        out = keras.layers.Dense(3, activation="log_softmax", name=f"head{i}")(x)
        model = keras.Model(inputs, out, name=f"member{i}")
        model.get_layer(f"head{i}").set_weights([rng.normal(size=(48, 3)), rng.normal(size=3)])
        branches.append(model)
    return branches


@pytest.mark.parametrize("combiner", ["stack", "mean"])
def test_module_core_combines_members_as_chosen(combiner):
    from graft.training.assemble import ensemble_model

    rng = np.random.default_rng(0)
    branches = _log_softmax_branches(rng)
    images = rng.uniform(size=(20, 4, 4, 3)).astype("float32")
    outputs = [np.asarray(b(images)) for b in branches]
    meta = None
    if combiner == "stack":
        z = stacking.meta_inputs(outputs)
        meta = stacking.fit_meta(z, rng.integers(0, 3, 20), 3, seed=0)
        expected = meta.predict_proba(z)
    else:
        expected = np.mean([np.exp(o) for o in outputs], axis=0)
    core = ensemble_model(branches, meta, "image", (4, 4)).get_layer("ensemble")
    got = np.asarray(core(images))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)
