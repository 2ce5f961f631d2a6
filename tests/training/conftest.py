"""Shared training fixtures: the real digits data set and one run on it."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def digits_run(_shared_zoo_home, digits_dir, tmp_path_factory):
    """One real run: efficientnet_lite0 features + head, 10 epochs, default settings."""
    import graft

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRAFT_HOME", str(_shared_zoo_home))
        return graft.train(digits_dir, out=tmp_path_factory.mktemp("runs") / "digits")
