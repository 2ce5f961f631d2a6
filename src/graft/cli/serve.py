"""``graft serve``: TF Serving's REST API over a directory of model versions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from graft.cli._common import handle_errors


@handle_errors
def serve(
    model_dir: Annotated[
        str | None,
        typer.Option(
            help="DIR/<model>/<version>/ (TF Serving layout), DIR/<version>/, a module, a run "
            "folder, or a handle (models:/NAME@alias, hub://host/name@label)."
        ),
    ] = None,
    model_config_file: Annotated[
        Path | None,
        typer.Option(help="TF Serving's models.config: names, base paths, policies, labels."),
    ] = None,
    model_name: Annotated[
        str | None, typer.Option(help="Name for a --model-dir that is one model.")
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "0.0.0.0",
    port: Annotated[int, typer.Option(help="REST port (TF Serving's is 8501).")] = 8501,
    workers: Annotated[int, typer.Option(help="Worker processes (each loads the models).")] = 1,
    poll_seconds: Annotated[float, typer.Option(help="How often to look for new versions.")] = 1.0,
    runtime: Annotated[
        str, typer.Option(help="auto (TFLite/XNNPACK for image modules), tflite or keras.")
    ] = "auto",
    max_batch_size: Annotated[int, typer.Option(help="Rows per dynamic batch.")] = 32,
    batch_timeout_ms: Annotated[
        float, typer.Option(help="How long a request waits for others to batch with.")
    ] = 1.0,
    max_enqueued: Annotated[
        int, typer.Option(help="Requests waiting per version before 503.")
    ] = 256,
    max_body_bytes: Annotated[int, typer.Option(help="Largest request body (413).")] = 64 << 20,
    max_concurrent_requests: Annotated[
        int, typer.Option(help="Requests in progress before 429.")
    ] = 1024,
    monitoring: Annotated[
        bool,
        typer.Option(
            "--monitoring/--no-monitoring",
            help="Prometheus metrics at /monitoring/prometheus/metrics (TF Serving's names).",
        ),
    ] = True,
    drain_seconds: Annotated[
        float, typer.Option(help="On SIGTERM, how long requests in flight may finish.")
    ] = 30.0,
) -> None:
    """Serve models with TensorFlow Serving's REST API (predict, classify, status, metadata).

    Example: graft serve --model-dir models --port 8501, then
    curl -d '{"instances": [{"b64": "..."}]}' localhost:8501/v1/models/digits:predict
    (metrics: curl localhost:8501/monitoring/prometheus/metrics)
    """
    from graft.serve import BatchingOptions, Limits, ServeOptions
    from graft.serve import serve as run

    options = ServeOptions(
        model_dir=str(model_dir) if model_dir else None,
        model_config_file=str(model_config_file) if model_config_file else None,
        model_name=model_name,
        poll_seconds=poll_seconds,
        runtime=runtime,
        batching=BatchingOptions(max_batch_size, batch_timeout_ms, max_enqueued),
        limits=Limits(max_body_bytes, max_concurrent_requests),
        monitoring=monitoring,
    )
    run(options, host=host, port=port, workers=workers, drain_seconds=drain_seconds)
