"""Image folders: one subfolder per class (the flower_photos layout), optionally already split
into ``train/``, ``val/`` (or ``validation/``) and ``test/``."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from graft.data.dataset import (
    DataSplits,
    LabeledData,
    Skipped,
    check_classes,
    stratified_split,
)
from graft.data.images import IMAGE_SUFFIXES, check_image
from graft.errors import InvalidArgumentError, received

log = logging.getLogger(__name__)
_SPLIT_NAMES = {"train": "train", "val": "val", "validation": "val", "test": "test"}


def _scan(root: Path, class_names: list[str] | None = None) -> LabeledData:
    classes = class_names or sorted(
        p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    files: list[tuple[Path, int]] = []
    for index, name in enumerate(classes):
        folder = root / name
        if folder.is_dir():
            files += [
                (p, index)
                for p in sorted(folder.rglob("*"))
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
            ]
    with ThreadPoolExecutor(max_workers=8) as pool:
        problems = list(pool.map(lambda f: check_image(f[0]), files))
    good = [(str(p), label) for (p, label), bad in zip(files, problems, strict=True) if not bad]
    skipped = tuple(
        Skipped(str(p), bad) for (p, _), bad in zip(files, problems, strict=True) if bad
    )
    if skipped:
        log.warning(
            "Skipped %d unreadable image(s) in %s: %s",
            len(skipped),
            root,
            ", ".join(s.item for s in skipped[:10]) + (" ..." if len(skipped) > 10 else ""),
        )
    return LabeledData(
        kind="image",
        items=tuple(p for p, _ in good),
        labels=tuple(label for _, label in good),
        class_names=tuple(classes),
        source=str(root),
        skipped=skipped,
    )


def from_folder(
    directory: str | Path,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> DataSplits:
    """Reads a folder of class subfolders into train/validation/test splits.

    Accepts jpg/png/bmp/gif/webp/tiff of any size and mode (grayscale, RGBA, CMYK and palette
    images become RGB). Unreadable files are skipped with a warning and listed in
    ``splits.skipped``. If the folder holds ``train/``, ``val/`` (or ``validation/``) and
    ``test/``, those splits are used as they are; otherwise a stratified split is drawn.

    Args:
        directory: the data folder.
        val_fraction: share of each class for validation.
        test_fraction: share of each class for the test set.
        seed: seed of the split.

    Returns:
        The splits; class names are the sorted subfolder names.

    Raises:
        InvalidArgumentError: no such folder, fewer than two classes, or an empty class.

    Example:
        >>> splits = from_folder("flower_photos")  # doctest: +SKIP
        >>> splits.class_names  # doctest: +SKIP
        ('daisy', 'dandelion', 'roses', 'sunflowers', 'tulips')
    """
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise InvalidArgumentError(
            f"{root} is not a folder. Give a folder with one subfolder of images per class. "
            f"{received(directory=str(directory))}"
        )
    subdirs = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    split_dirs = {_SPLIT_NAMES[k]: v for k, v in subdirs.items() if k in _SPLIT_NAMES}
    if "train" in split_dirs:
        missing = {"val", "test"} - set(split_dirs)
        if missing:
            raise InvalidArgumentError(
                f"{root} has a train/ folder but no {' or '.join(sorted(missing))}/ folder: "
                "give train/, val/ and test/, or only class folders to split automatically. "
                f"{received(directory=str(directory))}"
            )
        train = _scan(split_dirs["train"])
        check_classes(list(train.class_names), train.counts(), str(split_dirs["train"]))
        parts = {"train": train}
        for key in ("val", "test"):
            parts[key] = _scan(split_dirs[key], list(train.class_names))
        skipped = tuple(s for part in parts.values() for s in part.skipped)
        return DataSplits(**parts, skipped=skipped)
    data = _scan(root)
    check_classes(list(data.class_names), data.counts(), str(root))
    return stratified_split(data, val_fraction, test_fraction, seed)
