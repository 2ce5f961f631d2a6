"""``make demo``: train an image classifier on real data, offline, in a few minutes.

scikit-learn's 1,797 handwritten digits are written out as an image folder (one subfolder
per digit), then ``graft train`` runs on ``efficientnet_lite0.imagenet``: features computed once
through TFLite/XNNPACK and cached, a head trained on them, the test split evaluated into
``report.html``. The trained module then classifies a few files by label name.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DATA = Path("data/digits")
RUN = Path("runs/digits-demo")


def main() -> None:
    from rich.console import Console

    from graft.cli.main import app
    from graft.data.samples import write_digits_folder

    console = Console()
    console.rule("[bold]1. Data: scikit-learn's handwritten digits as an image folder")
    if not DATA.is_dir():
        write_digits_folder(DATA)
    console.print(f"{sum(1 for _ in DATA.rglob('*.png'))} PNG files in {DATA}/0 ... {DATA}/9")

    console.rule("[bold]2. graft train data/digits --model efficientnet_lite0.imagenet")
    shutil.rmtree(RUN, ignore_errors=True)
    _cli(
        app,
        [
            "train",
            str(DATA),
            "--model",
            "efficientnet_lite0.imagenet",
            "--epochs",
            "10",
            "--out",
            str(RUN),
        ],
    )

    console.rule("[bold]3. graft predict: the saved module, raw files in, label names out")
    samples = [str(sorted((DATA / d).glob("*.png"))[-1]) for d in ("3", "5", "8")]
    _cli(app, ["predict", str(RUN / "module"), *samples, "--top-k", "3"])
    console.print(f"\n[green]Open the report:[/] {(RUN / 'report.html').resolve()}")


def _cli(app, args: list[str]) -> None:
    try:
        app(args, standalone_mode=False)
    except SystemExit as exc:
        if exc.code:
            sys.exit(exc.code)


if __name__ == "__main__":
    main()
