"""The quiet command line: native start-up logging filtered, everything else kept."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest

from graft import _quiet

# Independent of graft's own filter: anything that looks like TensorFlow's or LiteRT's logger.
NATIVE_LINE = re.compile(r"^[IWEF]\d{4} |absl::|cuInit|oneDNN|XNNPACK|cuda|TensorFlow binary")


def native_lines(text: str) -> list[str]:
    """The lines of a command's output that come from a native logger."""
    return [line for line in text.splitlines() if NATIVE_LINE.search(line)]


SCRIPT = textwrap.dedent(
    """
    import os, sys
    from graft import _quiet
    if not _quiet.verbose_requested(sys.argv):
        _quiet.filter_native_stderr()
    os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written"
                b" to STDERR\\n")
    os.write(2, b"I0000 00:00:1795668950.782258     398 port.cc:153] oneDNN custom operations\\n")
    os.write(2, b"E0000 00:00:1795668965.214609 398 cuda_platform.cc:52] failed call to cuInit\\n")
    os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n")
    os.write(2, b"a real native error\\n")
    print("python error", file=sys.stderr)
    os.write(2, b"no newline at the end")
    """
)


def test_native_noise_is_dropped_and_the_rest_kept():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert native_lines(out.stderr) == []
    assert "a real native error\n" in out.stderr and "python error\n" in out.stderr
    assert out.stderr.endswith("no newline at the end")


def test_verbose_shows_everything():
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, "--verbose"], capture_output=True, text=True, timeout=60
    )
    assert len(native_lines(out.stderr)) == 4 and "a real native error" in out.stderr


@pytest.mark.parametrize(
    ("argv", "expected", "rest"),
    [
        (["train", "d", "--verbose"], True, ["train", "d"]),
        (["--verbose", "predict", "m"], True, ["predict", "m"]),
        (["predict", "m", "--", "--verbose"], False, ["predict", "m", "--", "--verbose"]),
        (["predict", "m"], False, ["predict", "m"]),
    ],
)
def test_verbose_flag_anywhere_before_double_dash(argv, expected, rest, monkeypatch):
    monkeypatch.delenv("GRAFT_VERBOSE", raising=False)
    assert _quiet.verbose_requested(argv) is expected and argv == rest
    monkeypatch.setenv("GRAFT_VERBOSE", "1")
    assert _quiet.verbose_requested(["predict"]) is True
