"""Data: image folders and text tables, split and ready for training."""

import os
from pathlib import Path

from graft.data.dataset import DataSplits, LabeledData, Skipped
from graft.data.folder import from_folder
from graft.data.table import from_csv

__all__ = ["DataSplits", "LabeledData", "Skipped", "existing", "from_csv", "from_folder", "load"]


def load(source: str, **kwargs) -> DataSplits:
    """Reads a folder of images or a .csv/.tsv/.jsonl file of texts, whichever ``source`` is."""
    if existing(source).is_dir():
        return from_folder(source, **kwargs)
    return from_csv(source, **kwargs)


def existing(source: str | os.PathLike) -> Path:
    """``source`` as a path that exists.

    Raises:
        InvalidArgumentError: it does not; the message says what data graft reads.
    """
    from graft.errors import InvalidArgumentError, received

    path = Path(source).expanduser()
    if not path.exists():
        raise InvalidArgumentError(
            f"No such file or folder: {path}. Data is a folder with one subfolder per class, or "
            f"a .csv/.tsv/.jsonl of texts and labels. {received(data=str(source))}"
        )
    return path
