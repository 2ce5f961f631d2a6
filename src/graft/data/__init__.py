"""Data: image folders and text tables, split and ready for training."""

from graft.data.dataset import DataSplits, LabeledData, Skipped
from graft.data.folder import from_folder
from graft.data.table import from_csv

__all__ = ["DataSplits", "LabeledData", "Skipped", "from_csv", "from_folder", "load"]


def load(source: str, **kwargs) -> DataSplits:
    """Reads a folder of images or a .csv/.tsv/.jsonl file of texts, whichever ``source`` is."""
    from pathlib import Path

    if Path(source).expanduser().is_dir():
        return from_folder(source, **kwargs)
    return from_csv(source, **kwargs)
