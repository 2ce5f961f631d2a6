"""Parquet files of features and predictions, written atomically (pyarrow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from graft.errors import InvalidArgumentError, MissingDependencyError, received


def check_target(out: str | Path) -> Path:
    """``out`` as a Parquet path.

    Raises:
        InvalidArgumentError: it does not end in ``.parquet`` or is a folder.
    """
    path = Path(out).expanduser()
    if path.suffix.lower() != ".parquet" or path.is_dir():
        raise InvalidArgumentError(
            f"--out takes a file ending in .parquet (written atomically). {received(out=str(out))}"
        )
    return path


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingDependencyError(
            "Writing Parquet needs pyarrow: pip install 'graft[ray]' (or pyarrow). "
            f"{received(out='*.parquet')}"
        ) from None
    return pa, pq


def vectors_array(vectors: np.ndarray):
    """An ``(n, dim)`` float32 array as an Arrow ``fixed_size_list<float32>[dim]`` column."""
    pa, _ = _pyarrow()
    vectors = np.ascontiguousarray(vectors, np.float32).reshape(len(vectors), -1)
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), vectors.shape[1])


def write_table(target: str | Path, columns: dict[str, object]) -> Path:
    """Writes ``{name: list, NumPy array or Arrow array}`` as one Parquet file, atomically.

    Example:
        >>> columns = {"path": ["a.png"], "feature": vectors_array(v)}  # doctest: +SKIP
        >>> write_table("f.parquet", columns)  # doctest: +SKIP
    """
    from graft._atomic import atomic_path

    pa, pq = _pyarrow()
    target = check_target(target)
    table = pa.table({name: value for name, value in columns.items()})
    with atomic_path(target, ".parquet.tmp") as tmp:
        pq.write_table(table, tmp)
    return target
