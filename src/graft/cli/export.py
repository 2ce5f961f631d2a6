"""``graft export``: a classifier module to deployable files, each re-measured."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from graft.cli._common import (
    TrackingOptional,
    TrackingUri,
    TrackOption,
    console,
    handle_errors,
    print_table,
    start_tracking,
)


@handle_errors
def export(
    module: Annotated[
        str, typer.Argument(help="A classifier or policy module (e.g. runs/NAME/module).")
    ],
    out: Annotated[Path, typer.Option(help="Export directory (created atomically).")],
    fmt: Annotated[
        str,
        typer.Option("--format", help="Comma-separated: saved_model, tflite, onnx, keras, tfjs."),
    ] = "saved_model,tflite,onnx",
    quantize: Annotated[
        str,
        typer.Option(
            help="Comma-separated: float, dynamic, float16, int8, qat (TFLite); int8 (Keras)."
        ),
    ] = "float",
    data: Annotated[
        Path | None, typer.Option(help="Labelled data to evaluate on (default: the run's test).")
    ] = None,
    int8_io: Annotated[str, typer.Option(help="int8 TFLite I/O: float32, int8, uint8.")] = (
        "float32"
    ),
    allow_float_fallback: Annotated[
        bool, typer.Option(help="Keep ops without int8 kernels in float.")
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out.")] = False,
    max_accuracy_drop: Annotated[
        float | None, typer.Option(help="Fail if an artifact loses more points than this.")
    ] = None,
    track: TrackOption = False,
    tracking_uri: TrackingUri = None,
    tracking_optional: TrackingOptional = False,
) -> None:
    """Export a classifier and compare every artifact in its own runtime.

    Example: graft export runs/digits/module --quantize float,int8 --out export/digits
    """
    from graft.export import export as run_export

    tracker = start_tracking(tracking_uri, track, tracking_optional)
    report = run_export(
        module,
        fmt,
        out=out,
        quantize=quantize,
        data=data,
        int8_io=int8_io,
        allow_float_fallback=allow_float_fallback,
        overwrite=overwrite,
        max_accuracy_drop=max_accuracy_drop,
    )
    policy = report.metric != "accuracy"
    title = f"{report.module}: {report.to_dict()['evaluated_on']}"
    table = Table(title=title, box=box.SIMPLE_HEAD)
    for column in (
        "format",
        "quant",
        "file",
        "MB",
        "gzip MB",
        report.metric,
        "change",
        "agree",
        "p50 ms (b1)",
        "ex/s (b32)",
    ):
        table.add_column(
            column, justify="left" if column in ("format", "quant", "file") else "right"
        )
    for r in report.rows:
        table.add_row(
            r.format,
            r.quantization,
            r.path,
            f"{r.size_bytes / 1e6:.2f}",
            f"{r.gzip_bytes / 1e6:.2f}",
            f"{r.accuracy:.1f}" if policy else f"{r.accuracy:.4f}",
            f"{r.accuracy_change:+.2f}",
            f"{r.top1_agreement:.3f}",
            f"{r.latency_p50_ms:.1f}",
            f"{r.throughput:.0f}",
        )
    print_table(table)
    if report.sparsity:
        console.print(
            "Sparse layers: "
            + ", ".join(
                f"{k} {v['sparsity']:.0%} of {v['params']:,}" for k, v in report.sparsity.items()
            ),
            highlight=False,
        )
    console.print(
        f"Written to {report.directory} (export_report.json, report.html)", highlight=False
    )
    if tracker is not None:
        params = {"module": str(module), "formats": fmt, "quantize": quantize}
        console.print(f"MLflow run: {tracker.log_folder(report.directory, 'graft export', params)}")
