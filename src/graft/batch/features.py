"""``graft features``: a backbone's features for many images, on this machine or a Ray cluster.

Both engines fill the feature cache that ``graft train`` reads (``training.features``: the same
model sha, preprocessing key and example sha256), so a later ``graft train`` on the driver
computes no feature; ``out`` also writes them to a Parquet file.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graft.data.dataset import Skipped
from graft.errors import InvalidArgumentError, received

ENGINES = ("local", "ray")


@dataclass(frozen=True)
class FeatureSummary:
    """What ``extract_features`` did.

    Attributes:
        engine: ``"local"`` or ``"ray"``.
        total: examples asked for (readable ones).
        computed: features computed by this call.
        cached: features found in the cache.
        seconds: wall time, backbone conversion and cluster start included.
        cache_dir: the feature-cache folder.
        out: the Parquet file written, if any.
        skipped: inputs left out (unreadable images), with the reason.
    """

    engine: str
    total: int
    computed: int
    cached: int
    seconds: float
    cache_dir: Path
    out: Path | None = None
    skipped: tuple[Skipped, ...] = ()

    @property
    def per_second(self) -> float:
        """Computed features per second of wall time."""
        return self.computed / self.seconds if self.seconds > 0 else 0.0


def check_engine(engine: str) -> str:
    """``engine`` if it is ``"local"`` or ``"ray"``.

    Raises:
        InvalidArgumentError: another value.
    """
    if engine not in ENGINES:
        raise InvalidArgumentError(
            f"engine must be 'local' (this machine) or 'ray' (a Ray cluster). "
            f"{received(engine=engine)}"
        )
    return engine


def expand_folders(data: Sequence[str | Path]) -> list[str]:
    """Folders replaced by the image files under them (sorted, hidden files left out); other
    entries kept as they are."""
    from graft.data.images import IMAGE_SUFFIXES

    files: list[str] = []
    for entry in data:
        path = Path(entry).expanduser()
        if path.is_dir():
            files += [
                str(p)
                for p in sorted(path.rglob("*"))
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and p.name[0] != "."
            ]
        else:
            files.append(str(entry))
    return files


def image_inputs(data: Sequence[str | Path]) -> tuple[list[str], tuple[Skipped, ...]]:
    """Image files from files and folders (searched recursively), the readable ones first and
    then the rest with the reason.

    Raises:
        InvalidArgumentError: a path does not exist, or no readable image was found.
    """
    from graft.inference import readable_inputs

    for entry in data:
        if not Path(entry).expanduser().exists():
            raise InvalidArgumentError(
                f"No such file or folder: {entry}. Give image files or folders of them. "
                f"{received(data=str(entry))}"
            )
    files = expand_folders(data)
    items, skipped = readable_inputs("image", files)
    if not items:
        raise InvalidArgumentError(
            f"No readable image among {len(files)} file(s) (jpg, png, bmp, gif, webp, tiff "
            f"are read). {received(data=[str(d) for d in data][:5])}"
        )
    return items, skipped


def extract_features(
    backbone: str | Path,
    data: Sequence[str | Path],
    *,
    engine: str = "local",
    address: str | None = None,
    actors: int | None = None,
    out: str | Path | None = None,
    verbose: bool = False,
) -> FeatureSummary:
    """Computes and caches a backbone's features for image files (or texts, locally).

    Args:
        backbone: a feature-vector module handle (zoo name, module directory, hub handle...).
        data: image files and folders; for a text backbone (local engine only), one
            .txt/.csv/.tsv/.jsonl file of texts.
        engine: ``"local"`` (``FeatureExtractor``, this machine's fastest runtime) or ``"ray"``
            (TFLite actors on a Ray cluster).
        address: the Ray cluster (``auto``, ``host:port``); default a local in-process one.
        actors: Ray actors (default: one per cluster CPU).
        out: also write ``path``, ``sha256`` and ``feature`` columns to this Parquet file.
        verbose: keep Ray's logging.

    Returns:
        A ``FeatureSummary``.

    Raises:
        InvalidArgumentError: an unknown engine, a text backbone on Ray, or no usable input.
        MissingDependencyError: Ray (or pyarrow for ``out``) is not installed.

    Example:
        >>> lite0 = "efficientnet_lite0.imagenet"
        >>> extract_features(lite0, ["photos/"], engine="ray")  # doctest: +SKIP
        FeatureSummary(engine='ray', total=1000, computed=1000, cached=0, ...)
    """
    from graft.handles import resolve
    from graft.training.features import FeatureExtractor

    check_engine(engine)
    target = None
    if out is not None:
        from graft.batch.parquet import check_target

        target = check_target(out)
    start = time.perf_counter()
    module_dir = resolve(backbone)
    fx = FeatureExtractor(module_dir, runtime="tflite" if engine == "ray" else "auto")
    if engine == "ray" and fx.kind != "image":
        raise InvalidArgumentError(
            f"The ray engine runs image backbones only (TFLite workers without TensorFlow; a "
            f"text backbone's tokenizer needs TensorFlow): use --engine local for "
            f"{fx.manifest.name}. {received(engine=engine, backbone=str(backbone))}"
        )
    if fx.kind == "image":
        items, skipped = image_inputs(data)
    else:
        from graft.data.unlabeled import read_unlabeled

        if len(data) != 1:
            raise InvalidArgumentError(
                f"A text backbone takes one .txt/.csv/.tsv/.jsonl file of texts. "
                f"{received(data=[str(d) for d in data][:5])}"
            )
        items, skipped = list(read_unlabeled(data[0], "text")[0]), ()
    if engine == "ray":
        keys, vectors, cached = _ray(fx, items, address, actors, verbose)
    else:
        keys, vectors, cached = _local(fx, items)
    if target is not None:
        from graft.batch.parquet import vectors_array, write_table

        name = "path" if fx.kind == "image" else "text"
        write_table(target, {name: items, "sha256": keys, "feature": vectors_array(vectors)})
    return FeatureSummary(
        engine=engine,
        total=len(items),
        computed=len(items) - cached,
        cached=cached,
        seconds=time.perf_counter() - start,
        cache_dir=fx.cache_dir,
        out=target,
        skipped=tuple(skipped),
    )


def _local(fx, items: list[str]) -> tuple[list[str], np.ndarray, int]:
    counts: list[int] = []
    vectors = fx(items, progress=counts.append)  # its first report: the cached count
    keys, _ = fx.read(items)
    return keys, vectors, counts[0] if counts else 0


def _keys(fx, items: list[str], chunk: int = 256) -> list[str]:
    """The examples' cache keys, read in chunks (the encoded images are not all kept)."""
    keys: list[str] = []
    for start in range(0, len(items), chunk):
        keys += fx.read(items[start : start + chunk])[0]
    return keys


def _ray(fx, items, address, actors, verbose) -> tuple[list[str], np.ndarray, int]:
    """The driver's part: keys and the cache here, inference in Ray actors."""
    from graft.batch.session import ray_session, run_tflite_files
    from graft.training.features import FLUSH_BYTES
    from graft.training.vector_store import VectorStore

    keys = _keys(fx, items)
    store = VectorStore(fx.cache_dir, fx.output_shape)
    found, vectors = store.get(keys)
    todo = np.flatnonzero(~found)
    if not len(todo):
        return keys, vectors, len(items)
    model = fx.tflite_path().read_bytes()
    flush_rows = max(1, FLUSH_BYTES // (4 * int(np.prod(fx.output_shape))))
    with ray_session(address, verbose) as ray:
        done: list[int] = []
        try:
            paths = [items[i] for i in todo]
            size = tuple(fx.manifest.inputs.size)
            for index, outputs in run_tflite_files(ray, model, size, paths, actors):
                rows = todo[index]
                vectors[rows] = outputs
                done += rows.tolist()
                if len(done) >= flush_rows:
                    store.put([keys[i] for i in done], vectors[done])
                    done = []
        finally:  # what was computed stays cached, even if the job fails later
            store.put([keys[i] for i in done], vectors[done])
    return keys, vectors, len(items) - len(todo)
