"""The hub's HTML catalog: module list with search, a page per module, the API reference.

Pages are rendered on the server with jinja2 (autoescaped) and need no JavaScript except the
copy buttons, so they work offline and in any browser.
"""

import datetime as dt
import json

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse

from graft.hub.names import is_valid_name
from graft.hub.server.store import NotFound, Store

TASKS = ("image-classifier", "image-feature-vector", "text-classifier", "text-embedding")


def _env():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("graft.hub.server", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
    )
    env.filters["date"] = lambda t: dt.datetime.fromtimestamp(t, dt.UTC).strftime(
        "%Y-%m-%d %H:%M UTC"
    )
    env.filters["size"] = _human_size
    env.filters["metric"] = format_metric
    return env


def format_metric(value) -> str:
    """A metric as people read it: 4 decimals for scores, 4 significant digits otherwise.

    Example:
        >>> format_metric(0.8603351955307262), format_metric(1234.5678), format_metric(360)
        ('0.8603', '1235', '360')
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return f"{value:.4f}" if 0 <= abs(value) <= 1 else f"{value:.4g}"


def _human_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def add_routes(app: FastAPI, store: Store) -> None:
    """Adds ``/``, ``/modules/{name}`` and ``/api`` (HTML) to the hub app."""
    env = _env()

    def page(template: str, status: int = 200, **context) -> HTMLResponse:
        return HTMLResponse(env.get_template(template).render(**context), status)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index(
        request: Request,
        q: str = Query("", max_length=200),
        task: str = Query("", max_length=64),
    ):
        modules = store.search(q, task if task in TASKS else "")
        return page("index.html.j2", q=q, task=task, tasks=TASKS, modules=modules)

    @app.get("/modules/{name}", response_class=HTMLResponse, include_in_schema=False)
    async def module_page(request: Request, name: str, version: int | None = Query(None, ge=1)):
        if not is_valid_name(name):
            return page("missing.html.j2", 400, what=f"{name!r} is not a valid module name")
        try:
            module = store.module(name)
        except NotFound as exc:
            return page("missing.html.j2", 404, what=str(exc))
        versions = module["versions"]
        shown = next((v for v in versions if v["version"] == version), None) or next(
            (v for v in versions if not v.get("yanked")), versions[0]
        )
        host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
        scheme = "hubs" if request.url.scheme == "https" else "hub"
        ref = "stable" if "stable" in module["labels"] else str(shown["version"])
        handle = f"{scheme}://{host}/{name}@{ref}"
        return page(
            "module.html.j2",
            module=module,
            shown=shown,
            manifest=shown["manifest"],
            manifest_json=json.dumps(shown["manifest"], indent=2),
            handle=handle,
        )

    @app.get("/api", response_class=HTMLResponse, include_in_schema=False)
    async def api_page():
        spec = app.openapi()
        routes = [
            {
                "method": method.upper(),
                "path": path,
                "summary": op.get("summary", ""),
                "doc": op.get("description", ""),
            }
            for path, ops in spec["paths"].items()
            for method, op in ops.items()
        ]
        return page("api.html.j2", routes=routes, title=spec["info"]["title"])
