"""The hub client: talks to a ``graft hub serve`` server and fills the local cache.

``resolve`` turns ``hub://host:port/name@ref`` into a verified module directory in the cache.
A pinned version (``@3``) that is cached makes no network call, ever; a label or ``latest`` is
re-resolved once its cached answer is older than ``GRAFT_HUB_REF_TTL`` seconds (600), and never
with ``GRAFT_OFFLINE=1``, which makes every cache miss an ``OfflineError`` before any socket is
opened.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from graft import config
from graft.errors import (
    AuthError,
    ChecksumError,
    ConflictError,
    GraftError,
    HubError,
    InvalidArgumentError,
    ModelNotFoundError,
    OfflineError,
    received,
)
from graft.hub import cache
from graft.hub.archive import CHUNK, extract, pack
from graft.hub.names import base_url, check_label, check_name, parse_handle

log = logging.getLogger(__name__)
API = "/api/v1"
RETRIES = 3


def ref_ttl() -> float:
    """Seconds a resolved label stays trusted without asking the hub (``GRAFT_HUB_REF_TTL``)."""
    return float(os.environ.get("GRAFT_HUB_REF_TTL", "600"))


def _offline_error(what: str) -> OfflineError:
    return OfflineError(
        f"{what} is not in the cache, and GRAFT_OFFLINE=1 forbids downloading it. Unset "
        f"GRAFT_OFFLINE and run `graft hub pull {what}` once. {received(handle=what)}"
    )


class HubClient:
    """A connection to one hub server.

    Args:
        url: the hub's address: ``host:port``, ``http(s)://host:port`` or ``hub://host:port``.
        token: the publish token; defaults to ``$GRAFT_HUB_TOKEN``. Reading needs none.
        timeout: seconds to wait for a connection or for the next bytes of an answer.

    Example:
        >>> hub = HubClient("localhost:8080")  # doctest: +SKIP
        >>> [m["name"] for m in hub.list(query="digits")]  # doctest: +SKIP
        ['digits']
    """

    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0) -> None:
        self.base_url = base_url(url)
        self.token = token if token is not None else os.environ.get("GRAFT_HUB_TOKEN")
        self.timeout = timeout
        self._http = None

    # -- plumbing -------------------------------------------------------------------------
    def _client(self):
        if config.offline():
            raise OfflineError(
                f"GRAFT_OFFLINE=1 forbids contacting the hub. {received(url=self.base_url)}"
            )
        if self._http is None:
            import httpx

            self._http = httpx.Client(
                base_url=self.base_url, timeout=httpx.Timeout(self.timeout), follow_redirects=True
            )
        return self._http

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _auth(self) -> dict[str, str]:
        if not self.token:
            raise AuthError(
                "Publishing needs the hub's token: pass --token or set GRAFT_HUB_TOKEN (the "
                f"server's --token-file holds it). {received(url=self.base_url)}"
            )
        return {"Authorization": f"Bearer {self.token}"}

    def _check(self, response, what: str):
        if response.status_code < 400:
            return response
        response.read()  # a streamed error answer is short
        try:
            detail = response.json().get("error", response.text)
        except ValueError:
            detail = response.text[:500]
        status = response.status_code
        url = str(response.request.url)
        if status in (401, 403):
            raise AuthError(f"The hub refused {what}: {detail} {received(url=url)}")
        if status == 404:
            raise ModelNotFoundError(f"The hub has no {what}: {detail} {received(url=url)}")
        if status == 409:
            raise ConflictError(f"{detail} {received(url=url)}")
        if 400 <= status < 500:
            raise InvalidArgumentError(f"The hub rejected {what}: {detail} {received(url=url)}")
        raise HubError(f"The hub failed on {what} (HTTP {status}): {detail} {received(url=url)}")

    def _request(self, method: str, path: str, what: str, **kwargs: Any):
        import httpx

        try:
            response = self._client().request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise HubError(
                f"Cannot reach the hub at {self.base_url} ({exc.__class__.__name__}: {exc}). "
                "Check the address, or start one with `graft hub serve --root DIR`. "
                f"{received(url=self.base_url + path)}"
            ) from None
        return self._check(response, what)

    # -- reading --------------------------------------------------------------------------
    def list(
        self, query: str | None = None, task: str | None = None, tag: str | None = None
    ) -> list[dict]:
        """Modules on the hub, optionally filtered by text, task or tag."""
        params = {k: v for k, v in {"q": query, "task": task, "tag": tag}.items() if v}
        return self._request("GET", f"{API}/modules", "the module list", params=params).json()[
            "modules"
        ]

    def module(self, name: str) -> dict:
        """A module's versions, labels, manifests and metrics."""
        check_name(name)
        return self._request("GET", f"{API}/modules/{name}", f"module {name!r}").json()

    def version(self, name: str, ref: str | int = "latest") -> dict:
        """What ``name@ref`` is: version, sha256, size, yanked, manifest."""
        check_name(name)
        return self._request(
            "GET", f"{API}/modules/{name}/versions/{ref}", f"version {name}@{ref}"
        ).json()

    def fetch(self, name: str, info: dict) -> Path:
        """Downloads (or finds) the archive of a version and returns its cached module."""
        url = f"{API}/modules/{name}/versions/{info['version']}/archive"
        return fetch_snapshot(self, url, info["sha256"], info["size"])

    # -- writing --------------------------------------------------------------------------
    def publish(
        self,
        module_dir: str | Path,
        name: str,
        version: int | None = None,
        labels: tuple[str, ...] = (),
    ) -> dict:
        """Uploads a module directory as ``name`` (next version unless ``version`` is given).

        Raises:
            AuthError: no or a wrong token. ConflictError: the version exists.
        """
        check_name(name)
        for label in labels:
            check_label(label)
        headers = self._auth()
        with tempfile.TemporaryDirectory(prefix="graft-push-") as tmp:
            archive = Path(tmp) / "module.tar"
            sha256, size = pack(module_dir, archive)
            params: list[tuple[str, str]] = [("label", label) for label in labels]
            if version is not None:
                params.append(("version", str(version)))
            with open(archive, "rb") as f:
                return self._request(
                    "POST",
                    f"{API}/modules/{name}/versions",
                    f"the upload of {name}",
                    params=params,
                    content=_chunks(f),
                    headers={
                        **headers,
                        "Content-Type": "application/x-tar",
                        "Content-Length": str(size),
                        "X-Graft-Sha256": sha256,
                    },
                ).json()

    def set_label(self, name: str, label: str, version: int) -> dict:
        """Points ``label`` at ``version`` (moving it if it exists)."""
        check_name(name)
        check_label(label)
        return self._request(
            "PUT",
            f"{API}/modules/{name}/labels/{label}",
            f"label {label!r} of {name}",
            json={"version": int(version)},
            headers=self._auth(),
        ).json()

    def yank(self, name: str, version: int, reason: str = "", undo: bool = False) -> dict:
        """Marks a version yanked: ``latest`` skips it; pinned pulls still work, with a warning."""
        check_name(name)
        return self._request(
            "DELETE" if undo else "POST",
            f"{API}/modules/{name}/versions/{int(version)}/yank",
            f"the yank of {name}@{version}",
            **({} if undo else {"json": {"reason": reason}}),
            headers=self._auth(),
        ).json()


def _chunks(f) -> Iterator[bytes]:
    while block := f.read(CHUNK):
        yield block


class _Dropped(ConnectionError):
    """The connection ended before the whole archive arrived (resumable)."""


@contextlib.contextmanager
def _get(client: HubClient, url: str, headers: dict[str, str]) -> Iterator[Any]:
    """A streamed GET through ``http.client``, following up to 5 redirects.

    Archives skip httpx: its read loop tops out near 0.4 GB/s here, the standard library's
    near 2.5 GB/s, and a download must not be slower than hashing it.
    """
    import http.client
    from urllib.parse import urljoin, urlsplit

    client._client()  # raises OfflineError before any socket when GRAFT_OFFLINE=1
    target = urljoin(client.base_url + "/", url)
    for _ in range(6):
        parts = urlsplit(target)
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = cls(parts.netloc, timeout=client.timeout)
        try:
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            conn.request("GET", path or "/", headers={"User-Agent": "graft", **headers})
            response = conn.getresponse()
            if response.status in (301, 302, 303, 307, 308) and response.getheader("location"):
                target = urljoin(target, response.getheader("location"))
                continue
            if response.status >= 400:
                import httpx

                body = response.read(1 << 16)
                client._check(
                    httpx.Response(
                        response.status,
                        headers=response.getheaders(),
                        content=body,
                        request=httpx.Request("GET", target),
                    ),
                    f"the archive {target}",
                )
            yield response
            return
        except (OSError, http.client.HTTPException) as exc:
            if isinstance(exc, (GraftError, _Dropped)):
                raise
            raise _Dropped(f"{exc.__class__.__name__}: {exc}") from None
        finally:
            conn.close()
    raise HubError(f"Too many redirects. {received(url=target)}")


def _download(client: HubClient, url: str, part: Path, sha256: str | None, size: int | None) -> str:
    """Appends the rest of the archive to ``part`` (Range from its current size) and returns
    the sha256 of the whole file. ``sha256`` and ``size`` are None when nobody announced them;
    the Content-Length is then the only check of completeness."""
    import http.client

    digest = hashlib.sha256()
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:
        part.unlink()
        have = 0
    if have:
        with open(part, "rb") as f:
            while block := f.read(CHUNK):
                digest.update(block)
    if have == size:
        return digest.hexdigest()
    headers = {"Range": f"bytes={have}-", "If-Range": f'"{sha256}"'} if have and sha256 else {}
    with _get(client, url, headers) as response:
        if response.status == 200 and have:
            log.info("The server sent the whole archive again; restarting the download")
            digest, have = hashlib.sha256(), 0
        elif response.status == 206:
            if not (response.getheader("content-range") or "").startswith(f"bytes {have}-"):
                raise HubError(
                    "The server answered a Range request with the wrong range. "
                    f"{received(content_range=response.getheader('content-range'))}"
                )
            log.info("Resuming the download of %s at byte %d", url, have)
        buffer = memoryview(bytearray(CHUNK))
        try:
            with open(part, "ab" if have else "wb") as f:
                while n := response.readinto(buffer):
                    f.write(buffer[:n])
                    digest.update(buffer[:n])
        except (OSError, http.client.HTTPException) as exc:
            raise _Dropped(f"{exc.__class__.__name__}: {exc}") from None
    expected = int(response.getheader("content-length") or -1) + have
    if part.stat().st_size < (size if size is not None else expected):
        raise _Dropped(f"connection closed at byte {part.stat().st_size}")
    return digest.hexdigest()


def fetch_snapshot(client: HubClient, url: str, sha256: str, size: int) -> Path:
    """The cached module of an archive, downloaded once per machine.

    One process downloads while the others wait on the entry's lock; a dropped connection is
    resumed with ``Range`` (also after the process was killed); the sha256 is checked before
    anything is extracted, and a mismatch leaves nothing cached.

    Raises:
        ChecksumError: the downloaded bytes do not match ``sha256``.
        HubError: the hub stayed unreachable after retries.
    """
    snapshot = cache.snapshot_dir(sha256)
    if (snapshot / "manifest.json").is_file():
        return snapshot
    with cache.entry_lock(sha256):
        if (snapshot / "manifest.json").is_file():
            return snapshot  # another process finished it while we waited
        part = cache.download_path(sha256)
        part.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(RETRIES + 1):
            try:
                actual = _download(client, url, part, sha256, size)
                break
            except _Dropped as exc:
                if attempt == RETRIES:
                    raise HubError(
                        f"The download of {url} kept failing ({exc}); the partial file is kept "
                        f"and the next pull resumes it. {received(url=client.base_url + url)}"
                    ) from None
                log.warning("Download interrupted (%s); resuming", exc)
                time.sleep(0.2 * (attempt + 1))
        if actual != sha256 or part.stat().st_size != size:
            got = part.stat().st_size
            part.unlink(missing_ok=True)
            raise ChecksumError(
                f"The archive downloaded from {client.base_url}{url} has sha256 {actual} "
                f"({got} bytes); the hub announced {sha256} ({size} bytes). Nothing was "
                f"cached; pull again. {received(url=client.base_url + url)}"
            )
        tmp = snapshot.parent / f".tmp-{uuid.uuid4().hex}"
        try:
            extract(part, tmp)
            os.replace(tmp, snapshot)
        finally:
            if tmp.exists():
                import shutil

                shutil.rmtree(tmp, ignore_errors=True)
        part.unlink(missing_ok=True)
    return snapshot


def resolve(handle: str, *, refresh: bool = False) -> Path:
    """The cached module directory of a ``hub://`` handle, downloading it if needed.

    Args:
        handle: ``hub://host:port/name[@version|@label]``.
        refresh: ask the hub even if a label's cached answer is recent.

    Raises:
        OfflineError: not cached and ``GRAFT_OFFLINE=1``.
        ModelNotFoundError: the hub has no such module, version or label.
        HubError, ChecksumError: see ``fetch_snapshot``.

    Example:
        >>> resolve("hub://localhost:8080/digits@stable")  # doctest: +SKIP
        PosixPath('/home/me/.cache/graft/hub/snapshots/5f1c...')
    """
    h = parse_handle(handle)
    path = cache.ref_path(h.cache_key, h.name, h.ref)
    ref = cache.Ref.read(path)
    if ref is not None:
        snapshot = cache.snapshot_dir(ref.sha256)
        fresh = h.pinned or time.time() - ref.resolved_at < ref_ttl()
        if (snapshot / "manifest.json").is_file() and (config.offline() or (fresh and not refresh)):
            return snapshot
    if config.offline():
        raise _offline_error(str(h))
    with HubClient(h.base_url) as client:
        info = client.version(h.name, h.ref)
        if info.get("yanked"):
            log.warning(
                "%s@%s is yanked: %s", h.name, info["version"], info.get("yank_reason") or ""
            )
        snapshot = client.fetch(h.name, info)
    now = time.time()
    new = cache.Ref(info["sha256"], info["version"], info["size"], now, bool(info.get("yanked")))
    new.save(path)
    new.save(cache.ref_path(h.cache_key, h.name, str(info["version"])))
    return snapshot


def resolve_url(url: str) -> Path:
    """The cached module of an ``http(s)://`` archive URL (tar, tar.gz).

    The expected sha256 comes from a ``#sha256=<hex>`` fragment or the server's
    ``X-Graft-Sha256`` header; without either the module's own manifest checksums are the check.
    """
    key = quote(url, safe="")
    path = cache.root() / "refs" / "_urls" / f"{key[:200]}.json"
    ref = cache.Ref.read(path)
    if ref is not None and (cache.snapshot_dir(ref.sha256) / "manifest.json").is_file():
        return cache.snapshot_dir(ref.sha256)
    if config.offline():
        raise _offline_error(url)
    address, _, fragment = url.partition("#")
    expected = fragment[len("sha256=") :] if fragment.startswith("sha256=") else None
    scheme_host = "/".join(address.split("/", 3)[:3])
    with HubClient(scheme_host) as client:
        if expected is None:
            import httpx

            try:
                head = client._client().head(address)
            except httpx.TransportError as exc:
                raise HubError(f"Cannot reach {scheme_host} ({exc}). {received(url=url)}") from None
            client._check(head, f"the archive {address}")
            expected = head.headers.get("x-graft-sha256")
            size = int(head.headers.get("content-length", "0"))
        else:
            size = None
        if expected is not None:
            if size is None:
                head = client._check(client._client().head(address), f"the archive {address}")
                size = int(head.headers.get("content-length", "0"))
            snapshot = fetch_snapshot(client, address, expected.lower(), size)
        else:
            snapshot = _fetch_unverified(client, address)
    sha = snapshot.name
    cache.Ref(sha, 0, 0, time.time()).save(path)
    return snapshot


def _fetch_unverified(client: HubClient, address: str) -> Path:
    """Downloads an archive whose sha256 nobody announced; keyed by the sha256 computed here."""
    downloads = cache.root() / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    part = downloads / f"url-{uuid.uuid4().hex}.incomplete"
    try:
        sha256 = _download(client, address, part, None, None)
        snapshot = cache.snapshot_dir(sha256)
        with cache.entry_lock(sha256):
            if not (snapshot / "manifest.json").is_file():
                tmp = snapshot.parent / f".tmp-{uuid.uuid4().hex}"
                extract(part, tmp)  # verifies the manifest's checksums
                os.replace(tmp, snapshot)
        return snapshot
    finally:
        with contextlib.suppress(OSError):
            part.unlink()
