"""The sharded feature cache: lookups, concurrent writers, merges, the old layout's migration."""

from __future__ import annotations

import hashlib
import multiprocessing
import os

import numpy as np
import pytest

from graft.training import vector_store
from graft.training.vector_store import VectorStore


def _keys(n: int, start: int = 0) -> list[str]:
    return [hashlib.sha256(str(i).encode()).hexdigest() for i in range(start, start + n)]


def _vectors(n: int, start: int = 0, dim: int = 6) -> np.ndarray:
    return (np.arange(start, start + n)[:, None] + np.arange(dim) / 10).astype(np.float32)


def test_put_and_get_by_key_with_missing_ones(tmp_path):
    store = VectorStore(tmp_path / "f", (6,))
    found, out = store.get(_keys(3))
    assert not found.any() and out.shape == (3, 6)
    store.put(_keys(100), _vectors(100))
    store.put(_keys(50, 100), _vectors(50, 100))
    query = _keys(5, 140) + _keys(3, 400) + _keys(2, 7)
    found, out = store.get(query)
    assert found.tolist() == [True] * 5 + [False] * 3 + [True] * 2
    np.testing.assert_array_equal(out[:5], _vectors(5, 140))
    np.testing.assert_array_equal(out[5:8], 0)
    np.testing.assert_array_equal(out[8:], _vectors(2, 7))
    assert len(store) == 150
    shards = sorted(p.name for p in (tmp_path / "f" / "shards").iterdir())
    assert len(shards) == 4 and not [s for s in shards if s.startswith(".")]


def _writer(root: str, start: int) -> None:
    vector_store.MAX_SHARDS = 4  # merges happen while the other processes write
    store = VectorStore(root, (6,))
    for i in range(start, start + 200, 20):
        store.put(_keys(20, i), _vectors(20, i))


def test_concurrent_writers_and_merges_lose_nothing(tmp_path):
    root = str(tmp_path / "f")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(root, start)) for start in (0, 200, 400)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store = VectorStore(root, (6,))
    assert len(list((tmp_path / "f" / "shards").glob("*.keys"))) < 30  # merged while writing
    found, out = store.get(_keys(600))
    assert found.all()
    np.testing.assert_array_equal(out, _vectors(600))
    assert store.compact() >= 0
    assert len(list((tmp_path / "f" / "shards").glob("*.keys"))) <= 2


def test_reader_survives_a_merge_between_index_and_read(tmp_path, monkeypatch):
    store = VectorStore(tmp_path / "f", (6,))
    for i in range(0, 40, 10):
        store.put(_keys(10, i), _vectors(10, i))
    real_load = np.load
    merged = []

    def load_after_merge(path, *args, **kwargs):
        if not merged:  # another process merges right after this reader listed the shards
            merged.append(None)
            monkeypatch.setattr(vector_store.np, "load", real_load)
            merged[0] = VectorStore(tmp_path / "f", (6,)).compact()
            monkeypatch.setattr(vector_store.np, "load", load_after_merge)
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(vector_store.np, "load", load_after_merge)
    found, out = store.get(_keys(40))
    assert merged == [4] and found.all()
    np.testing.assert_array_equal(out, _vectors(40))


def test_one_file_per_example_layout_is_migrated(tmp_path):
    root = tmp_path / "f"
    for key, vector in zip(_keys(30), _vectors(30), strict=True):
        (root / key[:2]).mkdir(parents=True, exist_ok=True)
        np.save(root / key[:2] / f"{key}.npy", vector)
    (root / "ab").mkdir(exist_ok=True)
    (root / "ab" / ".0123.npy").write_bytes(b"half-written")  # an old temp file
    store = VectorStore(root, (6,))
    found, out = store.get(_keys(30))
    assert found.all()
    np.testing.assert_array_equal(out, _vectors(30))
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["shards"]
    assert len(list((root / "shards").glob("*.npy"))) == 1


def test_feature_extractor_fills_and_reuses_the_store(tmp_path, zoo_home, digit_files):
    from graft.handles import resolve
    from graft.training.features import FeatureExtractor
    from tests import _tiny_zoo  # noqa: F401

    fx = FeatureExtractor(resolve("tiny_cnn.test"))
    fx.cache_dir = tmp_path / "features"  # not the session's cache other tests filled
    files = [str(p) for p in digit_files[:12]]
    first = fx(files[:8])
    computed = []
    fx._run = lambda batch: computed.append(len(batch)) or FeatureExtractor._run(fx, batch)
    both = fx(files)
    keys, _ = fx.read(files)
    new = [k for k in keys[8:] if k not in keys[:8]]  # the digits hold identical images
    assert computed == [len(new)] and new  # only new images ran through the backbone
    np.testing.assert_array_equal(both[:8], first)
    assert not list(fx.cache_dir.glob("??/*.npy"))
    found, cached = VectorStore(fx.cache_dir, fx.output_shape).get(keys)
    assert found.all()
    np.testing.assert_array_equal(cached, both)


def test_a_shard_is_never_half_visible(tmp_path, monkeypatch):
    store = VectorStore(tmp_path / "f", (6,))

    def fail_after_array(src, dst):
        if str(dst).endswith(".keys"):
            raise OSError("disk full")
        return real_replace(src, dst)

    real_replace = os.replace
    monkeypatch.setattr(vector_store.os, "replace", fail_after_array)
    with pytest.raises(OSError, match="disk full"):
        store.put(_keys(5), _vectors(5))
    monkeypatch.undo()
    assert not VectorStore(tmp_path / "f", (6,)).get(_keys(5))[0].any()
    assert not list((tmp_path / "f" / "shards").iterdir())  # no temp or orphan files
