"""A quiet command line: TensorFlow's and LiteRT's native start-up chatter filtered out.

TensorFlow 2.21 logs from C++ through absl *before* absl is initialised, so neither
``TF_CPP_MIN_LOG_LEVEL`` nor absl's Python flags reach those lines (``WARNING: All log messages
before absl::InitializeLog() ...``, ``I0000 ... port.cc:153] oneDNN custom operations ...``,
``E0000 ... failed call to cuInit ...``); LiteRT prints ``INFO: Created TensorFlow Lite XNNPACK
delegate for CPU.`` from C as well. They are written straight to file descriptor 2, so the only
way to drop them is below Python: :func:`filter_native_stderr` points descriptor 2 at a pipe
and a thread forwards every line that is not such a notice to the real stderr, as it comes.
Python's own ``sys.stderr`` keeps writing to the real stderr directly (colours and tty
detection unchanged). ``graft --verbose`` (or ``GRAFT_VERBOSE=1``) turns all of this off.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import sys
import threading
import warnings

# One line of C++ logging in absl/glog form (severity, date, time, thread, file:line]) or one
# of the notices the native libraries print without that prefix.
NATIVE_NOISE = re.compile(
    rb"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w.\-]+:\d+\] "
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|INFO: Created TensorFlow Lite XNNPACK delegate"
    rb"|INFO: Initialized TensorFlow Lite runtime"
    rb"|To enable the following instructions: .* in other operations, rebuild TensorFlow"
    rb"|This TensorFlow binary is optimized to use available CPU instructions"
    # Ray Data's actors keep their constructor in the object store; Ray warns about every one.
    rb"|\[[\d\- :,]+ E \d+ \d+\] core_worker\.cc:\d+: Actor with class name: .* has "
    rb"constructor arguments in the object store)"
)
# Dependencies' Python warnings that say nothing a graft user can act on.
_QUIET_WARNING_MODULES = (
    r"(keras|tensorflow|tf_keras|tf2onnx|onnx|google|absl|optuna|mlflow|ray)(\.|$)"
)

_state: dict[str, object] = {}


def verbose_requested(argv: list[str]) -> bool:
    """Whether ``--verbose`` is among the command-line words (before a ``--``) or
    ``GRAFT_VERBOSE`` is set; removes the flag from ``argv``, so it works after any command.

    Example:
        >>> args = ["train", "data", "--verbose"]
        >>> verbose_requested(args), args
        (True, ['train', 'data'])
    """
    end = argv.index("--") if "--" in argv else len(argv)
    found = "--verbose" in argv[:end]
    argv[:end] = [word for word in argv[:end] if word != "--verbose"]
    return found or os.environ.get("GRAFT_VERBOSE", "") not in ("", "0")


def quiet_python() -> None:
    """TensorFlow's C++ log level for lines logged after start-up, absl's Python logger, and
    dependencies' Python warnings (``DeprecationWarning``, ``FutureWarning``, ``UserWarning``
    raised inside keras, tensorflow, optuna and the like)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("absl").setLevel(logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # mlflow sets its level on import
    logging.getLogger("alembic").setLevel(logging.WARNING)
    for category in (DeprecationWarning, FutureWarning, UserWarning, RuntimeWarning):
        warnings.filterwarnings("ignore", category=category, module=_QUIET_WARNING_MODULES)


def filter_native_stderr() -> None:
    """Forwards file descriptor 2 to the real stderr through a filter that drops
    :data:`NATIVE_NOISE` lines. Idempotent; undone at exit (pending lines are flushed)."""
    if _state.get("reader") is not None:
        return
    try:
        sys.stderr.flush()
        real = os.dup(2)
        read_end, write_end = os.pipe()
    except (OSError, ValueError):  # no usable stderr (closed, or a test harness): leave it
        return
    os.dup2(write_end, 2)
    os.close(write_end)
    # Python's own messages go straight to the real stderr.
    sys.stderr = open(real, "w", buffering=1, closefd=False, encoding="utf-8", errors="replace")  # noqa: SIM115

    def forward() -> None:
        pending = b""
        with open(read_end, "rb", buffering=0) as pipe:
            while chunk := pipe.read(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                kept = b"".join(line + b"\n" for line in lines if not NATIVE_NOISE.match(line))
                if kept:
                    os.write(real, kept)
        if pending and not NATIVE_NOISE.match(pending):
            os.write(real, pending)

    reader = threading.Thread(target=forward, name="graft-stderr-filter", daemon=True)
    reader.start()
    _state.update(reader=reader, real=real)
    atexit.register(_restore)


def _restore() -> None:
    reader = _state.get("reader")
    if reader is None:
        return
    real = _state["real"]
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os.dup2(real, 2)  # closes the pipe's write end: the reader sees EOF (unless a child holds it)
    reader.join(timeout=2.0)  # type: ignore[attr-defined]
    _state["reader"] = None
