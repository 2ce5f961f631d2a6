"""The ray engine of ``graft features`` and ``graft predict``: an in-process Ray cluster
(2 CPUs), the tiny test backbone and a few hundred small PNG and JPEG images."""

from __future__ import annotations

import hashlib
import os
import sys

import numpy as np
import pytest
import ray  # the dev extra installs it: a missing Ray fails here rather than skipping
from PIL import Image
from typer.testing import CliRunner

from graft.batch.features import extract_features
from graft.errors import InvalidArgumentError, MissingDependencyError

runner = CliRunner()


@pytest.fixture(scope="module")
def cluster():
    """One local cluster for the module (never `ray stop`: it kills every Ray process)."""
    from graft.batch.session import import_ray

    import_ray()  # usage statistics off before the first start
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 << 20)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """240 images in two class folders: PNG and JPEG, RGB and grey, shrunk and enlarged."""
    root = tmp_path_factory.mktemp("ray_images")
    rng = np.random.default_rng(7)
    for n in range(240):
        folder = root / ("a" if n % 2 else "b")
        folder.mkdir(exist_ok=True)
        h, w = (12, 10) if n % 3 == 0 else (40, 28)
        y, x = np.mgrid[0:h, 0:w]
        smooth = np.stack([x * 255 / w, y * 255 / h, np.full((h, w), n % 256)], -1)
        noisy = np.clip(smooth + rng.normal(0, 25, smooth.shape), 0, 255).astype(np.uint8)
        image = Image.fromarray(noisy)
        if n % 5 == 0:
            image = image.convert("L")
        if n % 2:
            image.save(folder / f"{n}.jpg", quality=85)
        else:
            image.save(folder / f"{n}.png")
    return root


@pytest.fixture
def backbone():
    import tests._tiny_zoo  # noqa: F401  (registers tiny_cnn.test)
    from graft.handles import resolve

    return resolve("tiny_cnn.test")


def _files(root) -> list[str]:
    return sorted(str(p) for p in root.rglob("*.*"))


def test_ray_features_equal_local_ones_and_fill_the_same_cache(
    cluster, images, backbone, tmp_path, monkeypatch
):
    from graft.training.features import FeatureExtractor

    out = tmp_path / "features.parquet"
    summary = extract_features(backbone, [images], engine="ray", actors=2, out=out)
    files = _files(images)
    assert (summary.total, summary.computed, summary.cached) == (240, 240, 0)

    # The cache holds every vector under FeatureExtractor's keys: it computes nothing.
    cached_fx = FeatureExtractor(backbone)
    monkeypatch.setattr(cached_fx, "_run", lambda batch: pytest.fail("computed a feature"))
    from_cache = cached_fx(files)

    # The same features computed locally (TensorFlow decoding) in a fresh cache.
    monkeypatch.setenv("GRAFT_HOME", str(tmp_path / "fresh"))
    local = FeatureExtractor(backbone)(files)
    scale = np.abs(local).max()
    np.testing.assert_allclose(from_cache, local, atol=1e-4 * scale, rtol=0)
    jpg = [i for i, f in enumerate(files) if f.endswith(".jpg")]
    assert jpg and np.abs(from_cache[jpg] - local[jpg]).max() < 1e-4 * scale

    import pyarrow.parquet as pq

    table = pq.read_table(out).to_pydict()
    assert table["path"] == files
    assert table["sha256"] == [hashlib.sha256(open(f, "rb").read()).hexdigest() for f in files]
    np.testing.assert_array_equal(np.array(table["feature"], np.float32), from_cache)

    again = extract_features(backbone, [images], engine="ray")
    assert (again.computed, again.cached) == (0, 240)


def test_graft_train_after_ray_features_computes_none(cluster, images, backbone, monkeypatch):
    import graft
    from graft.batch import session
    from graft.training.features import FeatureExtractor

    total = sum(os.path.getsize(f) for f in _files(images))
    monkeypatch.setattr(session, "WAVE_BYTES", total // 3)  # a few waves (datasets)
    assert 3 <= len(list(session.waves(_files(images)))) <= 4
    extract_features(backbone, [images], engine="ray", actors=1)
    monkeypatch.setattr(
        FeatureExtractor, "_run", lambda self, batch: pytest.fail("computed a feature")
    )
    run = graft.train(images, model="tiny_cnn.test", epochs=1, fine_tune_blocks=0)
    assert run.metrics and "features_s" in run.timings


def test_ray_predictions_equal_graft_predict(cluster, tiny_module, digit_files, tmp_path):
    import pyarrow.parquet as pq

    import graft
    from graft.cli.main import app

    files = []
    for path in digit_files:  # PNG and JPEG copies of one digit per class
        image = Image.open(path).convert("RGB")
        for suffix in ("png", "jpg"):
            files.append(str(tmp_path / f"{path.parent.name}.{suffix}"))
            image.save(files[-1])
    (tmp_path / "notes.png").write_text("not an image")
    files.append(str(tmp_path / "notes.png"))
    expected = graft.predict(tiny_module, files, top_k=3)

    out = tmp_path / "predictions.parquet"
    args = ["predict", str(tiny_module), *files, "--engine", "ray", "-k", "3", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    got = pq.read_table(out).to_pydict()
    assert got["input"] == [p.item for p in expected] and len(expected) == 20
    assert got["label"] == [p.label for p in expected]
    np.testing.assert_allclose(got["probability"], [p.probability for p in expected], atol=1e-4)
    assert got["top_k_labels"] == [[label for label, _ in p.top_k] for p in expected]
    np.testing.assert_allclose(
        got["top_k_probabilities"], [[q for _, q in p.top_k] for p in expected], atol=1e-4
    )

    from graft.batch.predict import predict_ray

    folder = tmp_path / "folder"  # a folder stands for its images (sorted)
    (folder / "sub").mkdir(parents=True)
    for n, path in enumerate(digit_files[:3]):
        Image.open(path).save(folder / ("sub" if n else ".") / f"{n}.png")
    in_folder = sorted(str(p) for p in folder.rglob("*.png"))
    by_folder = predict_ray(tiny_module, [folder], top_k=1, actors=1)
    assert [p.item for p in by_folder] == in_folder
    assert [p.label for p in by_folder] == [p.label for p in graft.predict(tiny_module, in_folder)]

    local_out = tmp_path / "local.parquet"  # the local engine writes the same columns
    result = runner.invoke(app, ["predict", str(tiny_module), *files, "--out", str(local_out)])
    assert result.exit_code == 0, result.output
    local = pq.read_table(local_out).to_pydict()
    assert local["label"] == got["label"] and list(local) == list(got)


def test_workers_never_import_tensorflow(cluster, backbone):
    from graft.batch.workers import TFLiteWorker
    from graft.training.features import FeatureExtractor

    assert "tensorflow" in sys.modules  # the driver converted the backbone
    model = FeatureExtractor(backbone).tflite_path().read_bytes()
    actor = ray.remote(num_cpus=0.5)(TFLiteWorker).remote([ray.put(model)], (16, 16))
    png = Image.new("RGB", (20, 20), (10, 200, 30))
    import io

    buffer = io.BytesIO()
    png.save(buffer, format="PNG")
    batch = {"index": np.arange(1), "data": np.array([buffer.getvalue()], object)}
    assert ray.get(actor.__call__.remote(batch))["output"].shape == (1, 8)
    assert ray.get(actor.imported.remote("ai_edge_litert"))
    assert not ray.get(actor.imported.remote("tensorflow"))
    assert not ray.get(actor.imported.remote("keras"))
    ray.kill(actor)


def _actor_libraries() -> dict[int, str]:
    """The memory maps of this host's Ray Data actors running ``TFLiteWorker``."""
    from pathlib import Path

    found = {}
    for proc in Path("/proc").iterdir():
        try:
            title = (proc / "cmdline").read_bytes()
            if proc.name.isdigit() and b"TFLiteWorker" in title:
                found[int(proc.name)] = (proc / "maps").read_text()
        except OSError:
            continue
    return found


def test_ray_data_actors_load_litert_and_not_tensorflow(cluster, images, backbone):
    """The actors Ray Data starts, while they run: LiteRT loaded, TensorFlow's library not
    (the driver, which converted the backbone, has it)."""
    from graft.batch.session import run_tflite
    from graft.data.images import image_bytes
    from graft.training.features import FeatureExtractor

    model = FeatureExtractor(backbone).tflite_path().read_bytes()
    assert "libtensorflow_framework" in open("/proc/self/maps").read()
    blobs = [image_bytes(f) for f in _files(images)[:64]]
    seen = {}
    for _ in run_tflite(cluster, model, (16, 16), blobs, actors=2):
        seen.update(_actor_libraries())
    assert seen, "no TFLiteWorker actor process found"
    assert any("LiteRt" in maps for maps in seen.values())
    for pid, maps in seen.items():
        assert "libtensorflow_framework" not in maps, pid


def test_bad_engine_and_missing_ray_are_explained(images, backbone, monkeypatch):
    from graft.cli.main import app

    result = runner.invoke(app, ["features", str(backbone), str(images), "--engine", "spark"])
    assert result.exit_code == 1
    assert "engine must be 'local' (this machine) or 'ray'" in result.output
    assert "Received: --engine='spark'" in result.output

    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(MissingDependencyError, match=r"pip install 'graft\[ray\]'"):
        extract_features(backbone, [images], engine="ray")


def test_unreachable_address_is_explained(monkeypatch):
    from graft.batch.session import check_address

    with pytest.raises(InvalidArgumentError, match="No Ray cluster answers at 127.0.0.1:1"):
        check_address("127.0.0.1:1")
    assert check_address("auto") == "auto"
    from graft.batch.session import ray_session

    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # the module's cluster aside
    with pytest.raises(InvalidArgumentError) as caught:  # said once, not wrapped again
        with ray_session("127.0.0.1:1"):
            pass
    assert str(caught.value).count("No Ray cluster answers") == 1


def test_text_backbones_are_refused_on_ray(tmp_path):
    pytest.importorskip("keras_hub")
    import tests._tiny_bert  # noqa: F401  (registers tiny_bert.test)

    texts = tmp_path / "texts.txt"
    texts.write_text("one text\nanother text\n")
    with pytest.raises(InvalidArgumentError, match="image backbones only"):
        extract_features("tiny_bert.test", [texts], engine="ray")
    local = extract_features("tiny_bert.test", [texts])
    assert (local.computed, local.cached) == (2, 0)


def test_waves_bound_the_bytes_held(tmp_path):
    from graft.batch.session import waves

    paths = []
    for n, size in enumerate([5, 5, 5, 20, 1, 1]):
        paths.append(str(tmp_path / f"{n}.bin"))
        (tmp_path / f"{n}.bin").write_bytes(b"x" * size)
    assert [w.tolist() for w in waves(paths, 10)] == [[0, 1], [2], [3], [4, 5]]
