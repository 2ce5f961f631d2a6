"""graft explain on real modules: HiResCAM, Grad-CAM and SHAP on the EfficientNet-Lite0 digits
run, SHAP on a MiniLM text classifier with planted keywords, the pages in Chromium, bad input."""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys

import numpy as np
import pytest

import graft
from graft.errors import InvalidArgumentError


def _test_items(run, n: int) -> list[str]:
    with open(run.directory / "predictions.csv", newline="") as f:
        return [row["item"] for row in csv.DictReader(f)][:n]


# zoo_home (the session's GRAFT_HOME): the module's TFLite core is converted once for these.
def test_default_image_explanation_beats_random_deletion_on_most_digits(digits_run, zoo_home):
    items = _test_items(digits_run, 50)
    results = graft.explain(digits_run.directory, items, check=True)
    predicted = graft.predict(digits_run.directory, items)
    assert [e.label for e in results] == [p.label for p in predicted]
    assert np.allclose(
        [e.probability for e in results], [p.probability for p in predicted], atol=1e-4
    )
    assert {e.method for e in results} == {"hirescam"}  # the default for images
    maps = np.stack([e.attribution for e in results])
    assert maps.shape == (50, 224, 224) and maps.min() >= 0 and maps.max() <= 1
    check = results.check
    assert check.examples == 50
    # HiResCAM, one stage before the last block (14x14), without Grad-CAM's averaged gradient:
    # measured 43 of 50 (86%), deletion score 0.499 against 0.714 for random hiding.
    assert check.score_win_rate >= 0.8
    assert check.top_score < check.random_score - 0.15


def test_gradcam_is_more_faithful_than_random_on_digits(digits_run, zoo_home):
    items = _test_items(digits_run, 50)
    results = graft.explain(digits_run.directory, items, method="gradcam", check=True)
    assert results[0].method == "gradcam" and results[0].attribution.shape == (224, 224)
    check = results.check
    # Hiding the Grad-CAM regions first removes far more of the evidence than hiding random
    # regions: measured 0.457 against 0.714 mean probability left (deletion score) and a win on
    # 68% of these 50 images (74-76% over the whole test split; HiResCAM, the default, 83%).
    assert check.top_score < check.random_score - 0.15
    assert check.score_win_rate >= 0.6 and check.win_rate >= 0.6


def test_shap_on_images_adds_up_to_the_probability_change(digits_run, zoo_home):
    items = _test_items(digits_run, 1)
    results = graft.explain(digits_run.directory, items, method="shap", max_evals=60)
    from graft.data.images import load_images
    from graft.explanation.explainer import Explainer
    from graft.inference import load_classifier

    model = load_classifier(digits_run.directory, "test")
    explainer = Explainer(model, "image", (224, 224))
    images = load_images(items, (224, 224))
    flat = np.broadcast_to(images.mean(axis=(1, 2), keepdims=True), images.shape)
    p, p_flat = explainer.probabilities(images), explainer.probabilities(flat)
    for i, e in enumerate(results):
        target = model.graft_manifest.labels.index(e.label)
        # SHAP's efficiency: the attributions share out exactly the change from the fully
        # masked (mean-colour) image to the image.
        assert e.attribution.sum() == pytest.approx(p[i, target] - p_flat[i, target], abs=2e-3)
        assert e.attribution.max() > 0


def test_cli_writes_overlays_gallery_and_json_that_render(digits_run, tmp_path, zoo_home):
    from PIL import Image

    from tests.browser import chromium, dump_dom

    items = _test_items(digits_run, 3)
    out = tmp_path / "why"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "graft.cli.main",
            "explain",
            str(digits_run.directory),
            *items,
            "--out",
            str(out),
            "--class",
            "3",
            "--json",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [line["input"] for line in lines] == items
    assert all(line["label"] == "3" and line["method"] == "hirescam" for line in lines)
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 3 and Image.open(pngs[0]).size == (224, 224)  # 64x64 digits, upscaled
    document = json.loads((out / "explanations.json").read_text())
    assert np.asarray(document["explanations"][0]["attribution_14x14"]).shape == (14, 14)
    assert not list(out.glob(".*"))  # no temp files left
    dom = dump_dom(chromium(), out / "index.html", tmp_path)
    assert dom.count('<img alt="') == 3 and "Explanations (3)" in dom


def test_report_explains_its_misclassified_examples(digits_run, tmp_path):
    from tests.browser import chromium, dump_dom

    html = digits_run.directory / "report.html"
    wrong = len([r for r in csv.DictReader(open(digits_run.directory / "misclassified.csv"))])
    assert wrong > 0
    dom = dump_dom(chromium(), html, tmp_path)
    assert dom.count('class="explanation"') == min(wrong, 12)
    assert "explained with HiResCAM" in dom
    run = json.loads((digits_run.directory / "run.json").read_text())
    assert run["timings"]["explain_s"] < 10  # a few seconds for a few examples


def test_bad_requests_say_what_is_accepted(digits_run, tmp_path):
    items = _test_items(digits_run, 1)
    with pytest.raises(
        InvalidArgumentError, match=r"one of the module's labels.*Received: label='cat'"
    ):
        graft.explain(digits_run.directory, items, label="cat")
    with pytest.raises(
        InvalidArgumentError, match=r"auto, gradcam, hirescam, shap.*Received: method='lime'"
    ):
        graft.explain(digits_run.directory, items, method="lime")
    with pytest.raises(InvalidArgumentError, match=r"4-D output.*Received: layer='avg_pool'"):
        graft.explain(digits_run.directory, items, layer="avg_pool")
    with pytest.raises(InvalidArgumentError, match=r"None of the inputs.*no such file"):
        graft.explain(digits_run.directory, [str(tmp_path / "missing.png")], out=tmp_path / "o")
    assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def planted_run(_shared_zoo_home, tmp_path_factory):
    """A MiniLM text classifier whose classes are told apart by one planted word each."""
    rng = random.Random(0)
    filler = (
        "the a this that today yesterday we they it was is very quite some many people place "
        "thing went saw made found really just about around over under with from into after"
    ).split()
    keys = {"weather": "thunderstorm", "food": "pizza", "money": "mortgage"}
    rows = []
    for label, key in keys.items():
        for _ in range(50):
            words = [rng.choice(filler) for _ in range(rng.randint(6, 12))]
            words.insert(rng.randint(0, len(words)), key)
            rows.append({"text": " ".join(words), "label": label})
    rng.shuffle(rows)
    data = tmp_path_factory.mktemp("planted") / "planted.csv"
    with open(data, "w", newline="") as f:
        writer = csv.DictWriter(f, ["text", "label"])
        writer.writeheader()
        writer.writerows(rows)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRAFT_HOME", str(_shared_zoo_home))
        run = graft.train(data, "minilm_l6.sentence", out=data.parent / "run")
    return run, rows, set(keys.values())


def test_shap_finds_the_planted_word(planted_run, _shared_zoo_home, monkeypatch, tmp_path):
    monkeypatch.setenv("GRAFT_HOME", str(_shared_zoo_home))
    run, rows, keys = planted_run
    texts = [r["text"] for r in rows[:30]]
    results = graft.explain(run.directory, texts, check=True, out=tmp_path / "why")
    top = [e.top_words(1)[0][0] for e in results]
    assert sum(word in keys for word in top) >= 27  # at least 90%
    assert results.check.win_rate >= 0.9
    e = results[0]
    assert [e.item[a:b] for a, b in e.words] == e.item.split()
    # efficiency: the words share out the change from the empty text to the text
    from graft.explanation.explainer import Explainer
    from graft.inference import load_classifier

    explainer = Explainer(load_classifier(run.directory, "test"), "text")
    p = explainer.probabilities([e.item, ""])
    target = list(run.class_names).index(e.label)
    assert e.attribution.sum() == pytest.approx(p[0, target] - p[1, target], abs=2e-3)
    html = (tmp_path / "why" / "index.html").read_text()
    assert html.count('class="w"') == sum(len(x.words) for x in results)


def test_gradcam_on_a_text_model_points_to_shap(planted_run, _shared_zoo_home, monkeypatch):
    monkeypatch.setenv("GRAFT_HOME", str(_shared_zoo_home))
    with pytest.raises(InvalidArgumentError, match=r"method='shap'.*Received: method='gradcam'"):
        graft.explain(planted_run[0].directory, ["a pizza"], method="gradcam")
