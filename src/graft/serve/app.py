"""The TF Serving REST API (FastAPI; OpenAPI at ``/openapi.json``).

- ``GET  /v1/models/{m}[/versions/{v}|/labels/{l}]``            model_version_status
- ``GET  /v1/models/{m}[/versions/{v}|/labels/{l}]/metadata``   signature_def
- ``POST /v1/models/{m}[/versions/{v}|/labels/{l}]:predict``    instances / inputs
- ``POST /v1/models/{m}[/versions/{v}|/labels/{l}]:classify``   examples -> results
- ``GET  /healthz`` (the process answers), ``/readyz`` (every model has a version AVAILABLE)
- ``GET  /monitoring/prometheus/metrics``                       Prometheus (``metrics.py``)

Errors are ``{"error": "..."}`` with TF Serving's status mapping (400, 404, 413, 429, 503 ...).
"""

import asyncio
import functools
import json
import logging
import threading
import time

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from graft import __version__
from graft.serve.batching import Retired
from graft.serve.config import NAME, NAME_RULE
from graft.serve.limits import BodyLimit, Limits
from graft.serve.servables import CLASSIFY, Signature
from graft.serve.status import ServingError
from graft.serve.tensors import format_response, is_b64, parse_json, parse_predict
from graft.serve.versions import Manager

log = logging.getLogger(__name__)
draining = threading.Event()  # set on SIGTERM: /readyz answers 503 while requests finish

_ERROR = {
    "description": "TF Serving error",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"error": {"type": "string"}},
                "required": ["error"],
            }
        }
    },
}
_ERRORS = {code: _ERROR for code in (400, 404, 413, 429, 503)}


def _json_body(schema: dict, example: dict) -> dict:
    """``openapi_extra`` declaring a required JSON request body (the handlers read it raw)."""
    content = {"application/json": {"schema": schema, "example": example}}
    return {"requestBody": {"required": True, "content": content}}


_PREDICT_BODY = _json_body(
    {
        "type": "object",
        "properties": {
            "signature_name": {"type": "string"},
            "instances": {"type": "array", "minItems": 1, "items": {}},
            "inputs": {},
        },
        "additionalProperties": False,
    },
    {"instances": [{"b64": "iVBORw0KGgo="}]},
)
_CLASSIFY_BODY = _json_body(
    {
        "type": "object",
        "properties": {
            "signature_name": {"type": "string"},
            "context": {"type": "object"},
            "examples": {"type": "array", "minItems": 1, "items": {"type": "object"}},
        },
        "required": ["examples"],
        "additionalProperties": False,
    },
    {"examples": [{"inputs": {"b64": "iVBORw0KGgo="}}]},
)


def _name(model_name: str) -> str:
    if not NAME.match(model_name):
        raise ServingError(
            "INVALID_ARGUMENT",
            f"Malformed request: a model name is {NAME_RULE}. Received: model={model_name!r}",
        )
    return model_name


def _version(version: str) -> int:
    if not (version.isascii() and version.isdigit() and len(version) < 19):
        raise ServingError(
            "INVALID_ARGUMENT",
            "Failed to convert version: a version is a non-negative integer below 2^63. "
            f"Received: version={version!r}",
        )
    return int(version)


def _error(exc: ServingError) -> JSONResponse:
    headers = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(int(exc.retry_after))
    return JSONResponse({"error": exc.message}, exc.http_status, headers=headers)


def _json(payload: dict, version: int | None = None) -> Response:
    headers = {"X-Model-Version": str(version)} if version is not None else None
    return Response(
        json.dumps(payload, separators=(",", ":")), media_type="application/json", headers=headers
    )


API = {"predict": "Predict", "classify": "Classify"}  # TF Serving's API label values
METRICS_PATH = "/monitoring/prometheus/metrics"  # TF Serving's default Prometheus path


def create_app(manager: Manager, limits: Limits | None = None, monitoring: bool = True) -> FastAPI:
    """The ASGI app over ``manager`` (started and stopped with the app's lifespan);
    ``monitoring`` serves Prometheus metrics at ``/monitoring/prometheus/metrics``.

    Example:
        >>> app = create_app(Manager(lambda: discover("models")))  # doctest: +SKIP
    """
    from contextlib import asynccontextmanager

    limits = limits or Limits()

    @asynccontextmanager
    async def lifespan(app):
        await run_in_threadpool(manager.start)
        yield
        await run_in_threadpool(manager.stop)

    app = FastAPI(
        title="graft serve",
        version=__version__,
        description="TensorFlow Serving's REST API for graft modules and SavedModels.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.manager = manager
    app.state.inflight = 0
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)

    @app.exception_handler(ServingError)
    async def serving_error(request, exc: ServingError):
        return _error(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, exc):
        return JSONResponse({"error": f"Malformed request. Received: {exc.errors()[:3]}"}, 400)

    @app.exception_handler(HTTPException)
    async def http_error(request, exc):
        message = f"Malformed request: {request.method} {request.url.path} ({exc.detail})"
        return JSONResponse({"error": message}, exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request, exc):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": f"Internal: {type(exc).__name__}: {exc}"}, 500)

    # -- status and metadata ----------------------------------------------------------------
    def status(model_name, version=None, label=None):
        entries = manager.status(_name(model_name), version, label)
        return _json({"model_version_status": entries})

    def metadata(model_name, version=None, label=None):
        found = manager.resolve(_name(model_name), version, label)
        signatures = {n: s.metadata() for n, s in found.servable.signatures.items()}
        return _json(
            {
                "model_spec": {
                    "name": model_name,
                    "signature_name": "",
                    "version": str(found.version),
                },
                "metadata": {"signature_def": {"signature_def": signatures}},
            }
        )

    async def get_status(request, model_name, version, label):
        return await run_in_threadpool(status, model_name, version, label)

    async def get_metadata(request, model_name, version, label):
        return await run_in_threadpool(metadata, model_name, version, label)

    # -- inference --------------------------------------------------------------------------
    async def infer(request: Request, model_name, version, label, *, verb):
        """One request, counted and timed per model, version, API and TF Serving status."""
        started, served, code = time.perf_counter(), {}, "OK"
        try:
            return await answer(request, model_name, version, label, verb, served)
        except ServingError as exc:
            code = exc.code
            raise
        except Exception:
            code = "INTERNAL"
            raise
        finally:
            known = model_name if model_name in manager.models else ""  # bounded label values
            seconds = time.perf_counter() - started
            manager.metrics.request(known, served.get("version"), API[verb], code, seconds)

    async def answer(request: Request, model_name, version, label, verb, served: dict):
        _name(model_name)
        doc = parse_json(await request.body())
        signature_name = doc.get("signature_name")
        if signature_name is not None and not isinstance(signature_name, str):
            raise ServingError(
                "INVALID_ARGUMENT",
                f"'signature_name' must be a string. Received: signature_name={signature_name!r}",
            )
        if app.state.inflight >= limits.max_concurrent_requests:
            raise ServingError(
                "RESOURCE_EXHAUSTED",
                f"Too many requests in flight ({app.state.inflight}); retry later. "
                f"Received: max_concurrent_requests={limits.max_concurrent_requests}",
                retry_after=1,
            )
        app.state.inflight += 1
        try:
            for _ in range(3):  # a version unloaded between lookup and queueing: look again
                found = manager.resolve(model_name, version, label)
                served["version"] = found.version
                sig = found.servable.signature(signature_name)
                if verb == "predict":
                    values, columnar = parse_predict(doc, sig.inputs)
                else:
                    values, columnar = _classify_inputs(doc, sig), False
                arrays = await run_in_threadpool(sig.arrays, values)
                try:
                    future = found.batcher.submit(sig.name, sig.batchable, arrays, sig.run)
                except Retired:
                    continue
                outputs = await asyncio.wrap_future(future)
                rows = len(next(iter(arrays.values())))
                if verb == "classify":
                    return _json({"results": _classify_results(outputs, rows)}, found.version)
                payload = await run_in_threadpool(format_response, outputs, columnar, rows)
                return _json(payload, found.version)
            raise ServingError(
                "UNAVAILABLE",
                f"{model_name} is swapping versions; retry. Received: model={model_name!r}",
                retry_after=1,
            )
        finally:
            app.state.inflight -= 1

    for suffix in ("", "/versions/{version}", "/labels/{label}"):
        _add_route(app, "GET", suffix, "", get_status)
        _add_route(app, "GET", suffix, "/metadata", get_metadata)
        for verb, extra in (("predict", _PREDICT_BODY), ("classify", _CLASSIFY_BODY)):
            call = functools.partial(infer, verb=verb)
            _add_route(app, "POST", suffix, f":{verb}", call, extra)

    @app.get("/healthz")
    def healthz():
        return {"status": "alive"}

    @app.get("/readyz", responses={503: _ERROR})
    def readyz():
        ok, detail = manager.ready()
        # A broken config edit does not take the server out of rotation (the previous config
        # still serves, and every replica reading the same file would go at once): it shows
        # here and in :graft:serving:config_ok.
        config = {"config_error": manager.config_error} if manager.config_error else {}
        if draining.is_set():
            return JSONResponse({"error": "draining: the server is shutting down"}, 503)
        if not ok:
            return JSONResponse({"error": "not ready", "models": detail, **config}, 503)
        return {"status": "ready", "models": detail, **config}

    if monitoring:

        @app.get(METRICS_PATH, response_class=Response)
        def prometheus_metrics():
            from graft.serve.metrics import CONTENT_TYPE

            text = manager.metrics_text(app.state.inflight)
            return Response(text, media_type=CONTENT_TYPE)

    return app


def _add_route(app: FastAPI, method: str, suffix: str, tail: str, call, extra=None) -> None:
    """Registers ``/v1/models/{model_name}{suffix}{tail}``; ``call(request, model_name,
    version, label)`` gets the version as an int (400 when it is not one)."""
    if suffix.startswith("/versions"):

        async def handler(request: Request, model_name: str, version: str):
            return await call(request, model_name, _version(version), None)

    elif suffix.startswith("/labels"):

        async def handler(request: Request, model_name: str, label: str):
            return await call(request, model_name, None, label)

    else:

        async def handler(request: Request, model_name: str):
            return await call(request, model_name, None, None)

    scope = suffix.split("/")[1] if suffix else "latest"
    action = {"": "status", "/metadata": "metadata"}.get(tail, tail.lstrip(":"))
    name = f"{action}_{scope}"
    app.add_api_route(
        f"/v1/models/{{model_name}}{suffix}{tail}",
        handler,
        methods=[method],
        name=name,
        operation_id=name,
        responses=_ERRORS,
        openapi_extra=extra,
    )


def _classify_inputs(doc: dict, sig: Signature) -> dict[str, list]:
    """``examples`` (with ``context`` merged in) as rows of the signature's single input."""
    unknown = set(doc) - {"signature_name", "context", "examples"}
    examples, context = doc.get("examples"), doc.get("context", {})
    if unknown or not isinstance(examples, list) or not examples or not isinstance(context, dict):
        raise ServingError(
            "INVALID_ARGUMENT",
            'A classify request is {"examples": [{feature: value}, ...]} with optional '
            "'context' (features shared by every example) and 'signature_name'. "
            f"Received: keys={sorted(doc)}",
        )
    if sig.method_name == CLASSIFY or not {"classes", "scores"} <= set(sig.outputs):
        raise ServingError(
            "INVALID_ARGUMENT",
            f"Signature {sig.name!r} is not a classifier: :classify needs 'classes' and "
            "'scores' outputs on a signature taking the raw input (graft classifier modules "
            f"and their SavedModels). Received: outputs={sorted(sig.outputs)}",
        )
    (name,) = sig.inputs
    rows = []
    for i, example in enumerate(examples):
        if not isinstance(example, dict) or is_b64(example):
            raise ServingError(
                "INVALID_ARGUMENT",
                f"Each example is an object of features. Received: examples[{i}]={example!r:.60}",
            )
        merged = {**context, **example}
        if name in merged:
            rows.append(merged[name])
        elif len(merged) == 1:
            rows.append(next(iter(merged.values())))
        else:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"examples[{i}] has no feature {name!r} (the model's input), and more than one "
                f"feature to choose from. Received: features={sorted(merged)}",
            )
    return {name: rows}


def _classify_results(outputs: dict, rows: int) -> list:
    classes, scores = outputs["classes"], outputs["scores"]
    results = []
    for i in range(rows):
        pairs = []
        for label, score in zip(classes[i], scores[i], strict=True):
            text = label.decode("utf-8", "replace") if isinstance(label, bytes) else str(label)
            pairs.append([text, float(score)])
        results.append(pairs)
    return results
