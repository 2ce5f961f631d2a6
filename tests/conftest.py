"""Shared fixtures: every test gets its own GRAFT_HOME; real zoo entries are built once."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def graft_home(tmp_path, monkeypatch) -> Path:
    """A fresh cache per test; no user weights folders or Keras cache leak in."""
    home = tmp_path / "graft_home"
    monkeypatch.setenv("GRAFT_HOME", str(home))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    for var in ("GRAFT_OFFLINE", "GRAFT_WEIGHTS_DIR", "GRAFT_WEIGHTS_BASE_URL", "GRAFT_DEBUG"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture(scope="session")
def _shared_zoo_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("zoo_home")


@pytest.fixture
def zoo_home(_shared_zoo_home, monkeypatch) -> Path:
    """A GRAFT_HOME shared by the whole session, so each real entry is converted once."""
    monkeypatch.setenv("GRAFT_HOME", str(_shared_zoo_home))
    return _shared_zoo_home


@pytest.fixture(scope="session")
def sample_photos() -> dict[str, np.ndarray]:
    """scikit-learn's two photos, resized bilinearly like the recorded references."""
    from sklearn.datasets import load_sample_images

    data = load_sample_images()
    out = {}
    for name, image in zip(data.filenames, data.images, strict=True):
        out[Path(name).name] = image
    return out


def resize(image: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory):
    """scikit-learn's 1,797 handwritten digits as an image folder (one subfolder per class)."""
    from graft.data.samples import write_digits_folder

    return write_digits_folder(tmp_path_factory.mktemp("data") / "digits")


@pytest.fixture(scope="session")
def tiny_module(digits_dir, tmp_path_factory) -> Path:
    """A real image classifier module (16x16 input, 10 digit classes), trained for 3 epochs."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRAFT_HOME", str(tmp_path_factory.mktemp("serve_home")))
        import graft
        import tests._tiny_zoo  # noqa: F401  (registers tiny_cnn.test)

        run = graft.train(
            digits_dir, model="tiny_cnn.test", out=tmp_path_factory.mktemp("runs") / "t", epochs=3
        )
    return run.module_dir


@pytest.fixture(scope="session")
def digit_files(digits_dir) -> list[Path]:
    """One PNG per digit class, in class order."""
    return [sorted((digits_dir / str(d)).glob("*.png"))[0] for d in range(10)]


@pytest.fixture(scope="session")
def digits_run(_shared_zoo_home, digits_dir, tmp_path_factory):
    """One real run: efficientnet_lite0 features + head, 10 epochs, default settings.

    Built once for the whole suite: the first xdist worker to ask trains it in the session's
    shared temporary folder under a file lock; the others wait and read the finished folder
    (the xdist recipe for session fixtures; ``--dist loadgroup`` did not group tests with
    pytest 9 and xdist 3.8 here)."""
    from filelock import FileLock

    import graft

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # this session's
    target = shared / "lite0-digits-run"
    with FileLock(str(shared / "lite0-digits-run.lock")):
        if (target / "run.json").is_file():
            return _read_run(target)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("GRAFT_HOME", str(_shared_zoo_home))
            return graft.train(digits_dir, out=target)


def _read_run(directory: Path):
    """The ``Run`` of a finished run folder (what ``graft.train`` returned to its maker)."""
    import dataclasses
    import json

    from graft.training.run import Run, TrainConfig, read_splits

    splits, skipped = read_splits(directory)
    config = json.loads((directory / "config.json").read_text())
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    run = json.loads((directory / "run.json").read_text())
    return Run(
        directory=directory,
        config=TrainConfig(**{k: v for k, v in config.items() if k in fields}),
        class_names=splits.class_names,
        kind=splits.kind,
        metrics=json.loads((directory / "metrics.json").read_text()),
        history={},
        timings=run["timings"],
        skipped=skipped,
        selection=run["selection"],
        folds=run.get("folds"),
    )
