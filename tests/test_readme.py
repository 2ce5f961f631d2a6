"""The README's Python blocks run as they stand (those needing no files or servers)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_quick_start_block_runs_as_written(zoo_home):
    block = python_blocks()[0]
    assert "text_model.fit(" in block  # the block trains the text model, as users copy it
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102
    assert namespace["model"].output_shape == (None, 5)
    probs = namespace["text_model"].predict(namespace["texts"], verbose=0)
    assert probs.shape == (2, 2)
