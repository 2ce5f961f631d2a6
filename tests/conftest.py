"""Shared fixtures: every test gets its own GRAFT_HOME; real zoo entries are built once."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
DATA = Path(__file__).parent / "data"
# Test files that use the EfficientNet-Lite0 digits run (``digits_run``): one xdist worker runs
# them all, so the run is built once in the suite, and they are scheduled first.
LITE0_DIGITS = pytest.mark.xdist_group("lite0_digits")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items) -> None:
    """``make test`` runs ``--dist loadgroup``: each test file is one group (loadfile's
    scheduling, so module and session fixtures are built once per file), except the files
    marked ``LITE0_DIGITS``, which share one group that starts first (the longest)."""
    for item in items:
        if not any(item.iter_markers("xdist_group")):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
    first = [i for i in items if i.get_closest_marker("xdist_group").args == ("lite0_digits",)]
    chosen = {id(i) for i in first}
    items[:] = first + [i for i in items if id(i) not in chosen]


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
    """One real run: efficientnet_lite0 features + head, 10 epochs, default settings. Files
    using it are marked ``LITE0_DIGITS`` (built once in the suite)."""
    import graft

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRAFT_HOME", str(_shared_zoo_home))
        return graft.train(digits_dir, out=tmp_path_factory.mktemp("runs") / "digits")
