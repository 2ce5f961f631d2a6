"""Where the hub keeps archives and records: a local directory, or S3-compatible storage.

Keys look like ``modules/<name>/<version>/module.tar``. Both backends offer the same small
interface; writes of whole objects are atomic (rename locally, a single PUT on S3), and
``put_bytes(exclusive=True)`` creates an object only if it does not exist, which is what makes
a version immutable even with several servers on one bucket.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from graft._atomic import copy_file
from graft.errors import InvalidArgumentError, MissingDependencyError, received

CHUNK = 1 << 20


class Storage(Protocol):
    """The operations the hub needs from a store of objects."""

    def put_file(self, key: str, path: Path) -> None: ...  # may move ``path``
    def put_bytes(self, key: str, data: bytes, *, exclusive: bool = False) -> bool: ...
    def get_bytes(self, key: str) -> bytes | None: ...
    def size(self, key: str) -> int | None: ...
    def iter_range(self, key: str, start: int, end: int) -> Iterator[bytes]: ...
    def list(self, prefix: str) -> Iterator[str]: ...
    def delete(self, key: str) -> None: ...
    def local_path(self, key: str) -> Path | None: ...
    def describe(self) -> str: ...


class LocalStorage:
    """Objects as files under ``root/objects``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "objects"
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(root) / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = self.root / key
        if not path.resolve().is_relative_to(self.root.resolve()):  # keys are built, not given
            raise InvalidArgumentError(f"storage key escapes the root. {received(key=key)}")
        return path

    def put_file(self, key: str, path: Path) -> None:
        """Moves ``path`` into place (it is a temporary file of the same file system)."""
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(path, target)
        except OSError:  # another file system: copy beside the target, then rename
            copy_file(path, target)

    def put_bytes(self, key: str, data: bytes, *, exclusive: bool = False) -> bool:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            tmp.write_bytes(data)
            if exclusive:
                try:
                    os.link(tmp, target)  # fails if the target exists: atomic create-only
                except FileExistsError:
                    return False
            else:
                os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return True

    def get_bytes(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None

    def iter_range(self, key: str, start: int, end: int) -> Iterator[bytes]:
        with open(self._path(key), "rb") as f:
            f.seek(start)
            left = end - start + 1
            while left > 0 and (block := f.read(min(CHUNK, left))):
                left -= len(block)
                yield block

    def list(self, prefix: str) -> Iterator[str]:
        base = self._path(prefix)
        if base.is_dir():
            for path in sorted(base.rglob("*")):
                if path.is_file() and not path.name.startswith("."):
                    yield path.relative_to(self.root).as_posix()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def describe(self) -> str:
        return f"local directory {self.root}"


class S3Storage:
    """Objects in an S3-compatible bucket (AWS S3, MinIO, Ceph, moto), through boto3.

    Credentials and the endpoint come from boto3's usual sources (``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ``~/.aws``) unless given here.
    """

    def __init__(self, url: str, endpoint_url: str | None = None) -> None:
        try:
            import boto3
        except ImportError:
            raise MissingDependencyError(
                "S3 storage needs boto3: pip install 'graft[s3]'. " + received(storage=url)
            ) from None
        if not url.startswith("s3://") or not url[5:].split("/")[0]:
            raise InvalidArgumentError(
                f"S3 storage is given as s3://bucket[/prefix]. {received(storage=url)}"
            )
        bucket, _, prefix = url[5:].partition("/")
        self.url, self.bucket, self.prefix = url, bucket, prefix.strip("/")
        self.client = boto3.client("s3", endpoint_url=endpoint_url)
        from boto3.s3.transfer import TransferConfig

        self.transfer = TransferConfig(multipart_chunksize=64 << 20, max_concurrency=4)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _missing(self, exc: Exception) -> bool:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        return code in ("404", "NoSuchKey", "NotFound")

    def put_file(self, key: str, path: Path) -> None:
        self.client.upload_file(str(path), self.bucket, self._key(key), Config=self.transfer)

    def put_bytes(self, key: str, data: bytes, *, exclusive: bool = False) -> bool:
        from botocore.exceptions import ClientError

        extra = {"IfNoneMatch": "*"} if exclusive else {}
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **extra)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False
            raise
        return True

    def get_bytes(self, key: str) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except ClientError as exc:
            if self._missing(exc):
                return None
            raise

    def size(self, key: str) -> int | None:
        from botocore.exceptions import ClientError

        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._key(key))["ContentLength"]
        except ClientError as exc:
            if self._missing(exc):
                return None
            raise

    def iter_range(self, key: str, start: int, end: int) -> Iterator[bytes]:
        body = self.client.get_object(
            Bucket=self.bucket, Key=self._key(key), Range=f"bytes={start}-{end}"
        )["Body"]
        try:
            yield from body.iter_chunks(CHUNK)
        finally:
            body.close()

    def list(self, prefix: str) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        strip = len(self._key(""))
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
            for item in page.get("Contents", []):
                yield item["Key"][strip:]

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def local_path(self, key: str) -> Path | None:
        return None

    def describe(self) -> str:
        return f"S3 bucket {self.url}"
