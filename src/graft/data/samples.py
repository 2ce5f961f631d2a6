"""Real sample data that ships with scikit-learn, written out in the layouts graft reads."""

from __future__ import annotations

from pathlib import Path


def write_digits_folder(directory: str | Path, *, scale: int = 4, limit: int | None = None) -> Path:
    """Writes scikit-learn's 1,797 handwritten digits as PNGs, one subfolder per digit.

    Args:
        directory: where to write (``directory/0/0000.png`` ...); created if missing.
        scale: each 8x8 image is enlarged this many times (nearest neighbour).
        limit: write only the first ``limit`` images (for quick tests).

    Returns:
        The folder.

    Example:
        >>> write_digits_folder("data/digits")  # doctest: +SKIP
        PosixPath('data/digits')
    """
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    directory = Path(directory)
    digits = load_digits()
    images = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)
    for i, (image, label) in enumerate(zip(images, digits.target, strict=True)):
        if limit is not None and i >= limit:
            break
        folder = directory / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        big = Image.fromarray(image, mode="L").resize((8 * scale, 8 * scale), Image.NEAREST)
        big.save(folder / f"{i:04d}.png")
    return directory
