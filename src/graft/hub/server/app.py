"""The hub's HTTP API (FastAPI; OpenAPI at ``/openapi.json``) and HTML catalog.

API, all under ``/api/v1``:

- ``GET  /modules?q=&task=&tag=``                         list and search
- ``GET  /modules/{name}``                                versions, labels, manifests, metrics
- ``GET  /modules/{name}/versions/{ref}``                 one version (number, label, ``latest``)
- ``GET|HEAD /modules/{name}/versions/{ref}/archive``     the tar (sha256 ETag, Range)
- ``POST /modules/{name}/versions[?version=N&label=L]``   publish a tar body (token)
- ``PUT|DELETE /modules/{name}/labels/{label}``           move or drop a label (token)
- ``POST|DELETE /modules/{name}/versions/{v}/yank``       yank or restore a version (token)

and TF Hub's protocol: ``GET /tfhub/{name}/{ref}?tf-hub-format=compressed`` (a SavedModel
``.tar.gz`` for ``tensorflow_hub.load``; see ``tfhub.py``).

Errors are ``{"error": "..."}`` with 400, 401, 404, 409, 413, 416 or 422.
"""

import hashlib
import hmac
import logging
import uuid
from pathlib import Path
from typing import Annotated

from fastapi import Body, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.exceptions import HTTPException

from graft import __version__
from graft.errors import ChecksumError, InvalidArgumentError, ManifestError, UnsafeArchiveError
from graft.hub.names import LABEL_RULE, NAME_RULE, check_label, check_ref, is_valid_name
from graft.hub.server.ranges import Unsatisfiable, parse_range
from graft.hub.server.store import Conflict, NotFound, Store, Upload, blob_key

log = logging.getLogger(__name__)
WRITE_CHUNK = 1 << 20


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def _name(name: str) -> str:
    if not is_valid_name(name):
        raise ApiError(400, f"A module name is {NAME_RULE}. Received: name={name!r}")
    return name


def _ref(ref: str) -> str:
    try:
        return check_ref(ref)
    except InvalidArgumentError as exc:
        raise ApiError(400, str(exc)) from None


def create_app(store: Store, tokens: list[str], *, max_upload_bytes: int | None = None) -> FastAPI:
    """Builds the ASGI app serving ``store``.

    Args:
        store: the catalogue and its storage.
        tokens: bearer tokens allowed to write; an empty list makes the hub read-only.
        max_upload_bytes: the largest archive accepted (413 above it).

    Example:
        >>> app = create_app(Store("hub-root"), ["s3cret"])  # doctest: +SKIP
    """
    from graft.hub.server import catalog

    limit = max_upload_bytes or store.limits.max_bytes
    app = FastAPI(
        title="graft hub",
        version=__version__,
        description="Publish, version, discover and download graft modules.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.store = store

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return JSONResponse({"error": exc.message}, exc.status, headers=exc.headers)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException):
        return JSONResponse({"error": str(exc.detail)}, exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        return JSONResponse({"error": f"Invalid request: {problems}"}, 400)

    def _authorize(request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if not tokens:
            raise ApiError(403, "This hub is read-only: it was started without tokens.")
        if scheme.lower() != "bearer" or not any(
            hmac.compare_digest(token.encode(), t.encode()) for t in tokens
        ):
            raise ApiError(
                401,
                "Writing needs a valid token: send 'Authorization: Bearer <token>' (graft hub "
                "push --token, or GRAFT_HUB_TOKEN).",
                {"WWW-Authenticate": 'Bearer realm="graft hub"'},
            )

    def _lookup(name: str, ref: str) -> dict:
        try:
            return store.version(_name(name), _ref(ref))
        except NotFound as exc:
            raise ApiError(404, f"The hub has {exc}.") from None

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict:
        """Liveness."""
        return {"status": "ok"}

    @app.get("/api/v1/modules", tags=["modules"])
    async def list_modules(
        q: Annotated[str, Query(max_length=200, description="words to look for")] = "",
        task: Annotated[str, Query(max_length=64)] = "",
        tag: Annotated[str, Query(max_length=64)] = "",
    ) -> dict:
        """Lists modules matching every word of ``q`` (name, description, task, tags, labels)."""
        return {"modules": await run_in_threadpool(store.search, q, task, tag)}

    @app.get("/api/v1/modules/{name}", tags=["modules"])
    async def get_module(name: str) -> dict:
        """A module's versions (records with manifests and metrics), labels and downloads."""
        try:
            return store.module(_name(name))
        except NotFound as exc:
            raise ApiError(404, f"The hub has {exc}.") from None

    @app.get("/api/v1/modules/{name}/versions/{ref}", tags=["modules"])
    async def get_version(name: str, ref: str) -> dict:
        """One version: ``ref`` is a number, a label or ``latest``."""
        return _lookup(name, ref)

    async def get_archive(name: str, ref: str, request: Request):
        """The version's tar archive, with its sha256 as ETag; supports Range and If-Range."""
        record = _lookup(name, ref)
        sha, size = record["sha256"], record["size"]
        etag = f'"{sha}"'
        headers = {
            "ETag": etag,
            "Accept-Ranges": "bytes",
            "X-Graft-Sha256": sha,
            "X-Graft-Version": str(record["version"]),
            "Content-Disposition": f'attachment; filename="{name}-{record["version"]}.tar"',
            "Cache-Control": "public, max-age=31536000, immutable" if ref.isdigit() else "no-cache",
        }
        if record.get("yanked"):
            headers["X-Graft-Yanked"] = record.get("yank_reason") or "yes"
        if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers=headers)
        if_range = request.headers.get("if-range")
        try:
            span = (
                None
                if if_range and if_range != etag
                else parse_range(request.headers.get("range"), size)
            )
        except Unsatisfiable:
            raise ApiError(
                416,
                f"The range is outside the {size}-byte archive.",
                {"Content-Range": f"bytes */{size}"},
            ) from None
        stored = await run_in_threadpool(store.storage.size, blob_key(sha))
        if stored != size:
            raise ApiError(
                500,
                f"The archive of {name}@{record['version']} is missing or damaged in storage "
                f"({stored} bytes; the record says {size}). Publish it again as a new version.",
            )
        start, end = span or (0, size - 1)
        status = 206 if span else 200
        if span:
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        headers["Content-Length"] = str(end - start + 1)
        if request.method == "HEAD":
            return Response(status_code=status, headers=headers, media_type="application/x-tar")
        if start == 0:
            await run_in_threadpool(store.count_download, name, record["version"])
        chunks = store.storage.iter_range(blob_key(sha), start, end) if size else iter(())
        return StreamingResponse(
            iterate_in_threadpool(chunks), status, headers, media_type="application/x-tar"
        )

    archive_path = "/api/v1/modules/{name}/versions/{ref}/archive"
    for method in ("GET", "HEAD"):
        app.add_api_route(
            archive_path,
            get_archive,
            methods=[method],
            tags=["modules"],
            operation_id=f"{method.lower()}_archive",
        )

    @app.post(
        "/api/v1/modules/{name}/versions",
        status_code=201,
        tags=["publish"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-tar": {"schema": {"type": "string", "format": "binary"}}
                },
            }
        },
    )
    async def publish(
        name: str,
        request: Request,
        version: Annotated[int | None, Query(ge=1, le=999_999_999)] = None,
        label: Annotated[list[str] | None, Query(description=LABEL_RULE)] = None,
    ) -> dict:
        """Publishes a module archive (``graft hub push`` makes one) as a new version.

        Send the tar as the body with ``X-Graft-Sha256`` and a bearer token. Without
        ``version`` the hub takes the next number.
        """
        _authorize(request)
        _name(name)
        labels = tuple(label or ())
        try:
            for item in labels:
                check_label(item)
        except InvalidArgumentError as exc:
            raise ApiError(400, str(exc)) from None
        if version is not None:
            try:
                store.version(name, str(version))
                raise ApiError(409, f"{name} version {version} exists; versions are immutable.")
            except NotFound:
                pass
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            raise ApiError(
                413, f"The archive may be at most {limit} bytes. Received: content_length={length}"
            )
        upload = await _receive(request, store.tmp, limit)
        try:
            claimed = request.headers.get("x-graft-sha256")
            if claimed and claimed.lower() != upload.sha256:
                raise ApiError(
                    400,
                    f"The body's sha256 is {upload.sha256}, not the "
                    f"X-Graft-Sha256 sent; the upload was damaged. "
                    f"Received: x_graft_sha256={claimed!r}",
                )
            try:
                record = await run_in_threadpool(store.publish, name, upload, version, labels)
            except Conflict as exc:
                raise ApiError(409, f"{exc}.") from None
            except (UnsafeArchiveError, ManifestError, ChecksumError, InvalidArgumentError) as exc:
                raise ApiError(400, f"The archive was refused: {exc}") from None
        finally:
            upload.path.unlink(missing_ok=True)
        log.info("published %s version %s (%s)", name, record["version"], record["sha256"][:12])
        return {**record, "labels": list(labels)}

    async def _receive(request: Request, tmp: Path, cap: int) -> Upload:
        path = tmp / f"upload-{uuid.uuid4().hex}.tar"
        digest, size, buffer = hashlib.sha256(), 0, bytearray()

        def flush(f, data: bytes) -> None:
            f.write(data)
            digest.update(data)

        try:
            with open(path, "wb") as f:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > cap:
                        raise ApiError(413, f"The archive may be at most {cap} bytes.")
                    buffer += chunk
                    if len(buffer) >= WRITE_CHUNK:
                        data, buffer = bytes(buffer), bytearray()
                        await run_in_threadpool(flush, f, data)
                await run_in_threadpool(flush, f, bytes(buffer))
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        if size == 0:
            path.unlink(missing_ok=True)
            raise ApiError(400, "The request has no body: send the module's tar archive.")
        return Upload(path, digest.hexdigest(), size)

    @app.put("/api/v1/modules/{name}/labels/{label}", tags=["publish"])
    async def put_label(
        name: str, label: str, request: Request, version: Annotated[int, Body(embed=True, ge=1)]
    ) -> dict:
        """Points ``label`` at ``version`` (creating or moving it)."""
        _authorize(request)
        try:
            check_label(label)
            return {"name": name, "labels": store.set_label(_name(name), label, version)}
        except InvalidArgumentError as exc:
            raise ApiError(400, str(exc)) from None
        except NotFound as exc:
            raise ApiError(404, f"The hub has {exc}.") from None

    @app.delete("/api/v1/modules/{name}/labels/{label}", tags=["publish"])
    async def delete_label(name: str, label: str, request: Request) -> dict:
        """Removes a label."""
        _authorize(request)
        try:
            return {"name": name, "labels": store.delete_label(_name(name), label)}
        except NotFound as exc:
            raise ApiError(404, f"The hub has {exc}.") from None

    async def _yank(name: str, version: int, request: Request, reason: str, undo: bool) -> dict:
        _authorize(request)
        try:
            return store.yank(_name(name), version, reason, undo=undo)
        except NotFound as exc:
            raise ApiError(404, f"The hub has {exc}.") from None

    @app.post("/api/v1/modules/{name}/versions/{version}/yank", tags=["publish"])
    async def yank(
        name: str,
        version: int,
        request: Request,
        reason: Annotated[str, Body(embed=True, max_length=500)] = "",
    ) -> dict:
        """Yanks a version: ``latest`` skips it, pinned downloads still work with a warning."""
        return await _yank(name, version, request, reason, False)

    @app.delete("/api/v1/modules/{name}/versions/{version}/yank", tags=["publish"])
    async def unyank(name: str, version: int, request: Request) -> dict:
        """Restores a yanked version."""
        return await _yank(name, version, request, "", True)

    @app.get("/tfhub/{name}/{ref}", tags=["tfhub"])
    async def tfhub_module(
        name: str,
        ref: str,
        request: Request,
        tf_hub_format: Annotated[
            str | None, Query(alias="tf-hub-format", description="compressed")
        ] = None,
    ):
        """TF Hub's download protocol: ``tensorflow_hub.load("http://HOST/tfhub/NAME/REF")``
        gets the version's TF2 SavedModel as a ``.tar.gz`` (made once per version, cached,
        sha256 as ETag). Without ``tf-hub-format`` a browser is sent to the module's page."""
        from fastapi.responses import RedirectResponse

        from graft.hub.server import tfhub

        record = _lookup(name, ref)
        if tf_hub_format is None:
            return RedirectResponse(f"/modules/{name}?version={record['version']}", 303)
        if tf_hub_format != "compressed":
            raise ApiError(
                400,
                "graft hub serves TF Hub's compressed format only (tensorflow_hub's default; "
                "set TFHUB_MODEL_LOAD_FORMAT=COMPRESSED if you changed it). "
                f"Received: tf-hub-format={tf_hub_format!r}",
            )
        try:
            key, sha, size = await run_in_threadpool(tfhub.compressed, store, record)
        except tfhub.ConversionError as exc:
            raise ApiError(
                422,
                f"{name}@{record['version']} cannot be written as a TF Hub SavedModel: {exc}",
            ) from None
        except ChecksumError as exc:
            raise ApiError(500, str(exc)) from None
        etag = f'"{sha}"'
        headers = {
            "ETag": etag,
            "X-Graft-Sha256": sha,
            "X-Graft-Version": str(record["version"]),
            "Content-Disposition": f'attachment; filename="{name}-{record["version"]}.tar.gz"',
            "Cache-Control": "public, max-age=31536000, immutable" if ref.isdigit() else "no-cache",
        }
        if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers=headers)
        headers["Content-Length"] = str(size)
        chunks = store.storage.iter_range(key, 0, size - 1)
        return StreamingResponse(
            iterate_in_threadpool(chunks), 200, headers, media_type="application/gzip"
        )

    catalog.add_routes(app, store)
    return app
