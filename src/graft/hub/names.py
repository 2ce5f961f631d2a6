"""Names, versions, labels and ``hub://`` handles: parsing and validation, no I/O.

A hub module is ``name`` (lower-case letters, digits, ``_ . -``; no ``..``), its versions are
positive integers, and a label (``stable``, ``prod``) points at one version. A handle is
``hub://host[:port]/name[@ref]`` where ``ref`` is a version, a label or ``latest`` (the default);
``hubs://`` is the same over HTTPS.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

from graft.errors import InvalidArgumentError, received

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,127}$")
_LABEL = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
LATEST = "latest"
NAME_RULE = (
    "1-128 characters from a-z, 0-9, '_', '.', '-', starting with a letter or digit, no '..'"
)
LABEL_RULE = "1-64 characters from a-z, 0-9, '_', '.', '-', starting with a letter"
HUB_SCHEMES = ("hub://", "hubs://")


def is_valid_name(name: str) -> bool:
    """Whether ``name`` may name a hub module (safe as one path component)."""
    return bool(_NAME.match(name)) and ".." not in name


def check_name(name: str) -> str:
    """Returns ``name`` if it may name a hub module.

    Example:
        >>> check_name("digits.v2")
        'digits.v2'

    Raises:
        InvalidArgumentError: the name breaks the rule, quoted in the message.
    """
    if not isinstance(name, str) or not is_valid_name(name):
        raise InvalidArgumentError(f"A hub module name is {NAME_RULE}. {received(name=name)}")
    return name


def check_label(label: str) -> str:
    """Returns ``label`` if it may be a version label (not a number, not ``latest``)."""
    if not isinstance(label, str) or not _LABEL.match(label) or label == LATEST:
        raise InvalidArgumentError(
            f"A version label is {LABEL_RULE}, and not 'latest'. {received(label=label)}"
        )
    return label


def parse_version(value: str | int) -> int:
    """A version number from text: a positive integer.

    Example:
        >>> parse_version("3")
        3
    """
    text = str(value)
    if not text.isdigit() or int(text) < 1 or len(text) > 9:
        raise InvalidArgumentError(
            f"A version is a positive integer such as 1 or 12. {received(version=value)}"
        )
    return int(text)


def check_ref(ref: str) -> str:
    """Returns ``ref`` if it is a version number, a label or ``latest``."""
    if ref == LATEST or (ref.isdigit() and len(ref) <= 9 and int(ref) > 0):
        return ref
    try:
        return check_label(ref)
    except InvalidArgumentError:
        raise InvalidArgumentError(
            f"A version reference is a positive integer, 'latest' or a label ({LABEL_RULE}). "
            f"{received(ref=ref)}"
        ) from None


@dataclass(frozen=True)
class HubHandle:
    """A parsed ``hub://host:port/name@ref`` handle."""

    base_url: str
    name: str
    ref: str

    @property
    def cache_key(self) -> str:
        """A file-name-safe key of the hub (scheme, host and port)."""
        return quote(self.base_url.split("://", 1)[1], safe="")

    @property
    def pinned(self) -> bool:
        """Whether ``ref`` is a version number, which never changes what it names."""
        return self.ref.isdigit()

    def __str__(self) -> str:
        scheme = "hubs" if self.base_url.startswith("https") else "hub"
        return f"{scheme}://{self.base_url.split('://', 1)[1]}/{self.name}@{self.ref}"


def parse_handle(handle: str) -> HubHandle:
    """Parses a ``hub://`` (HTTP) or ``hubs://`` (HTTPS) handle.

    Example:
        >>> parse_handle("hub://localhost:8080/digits@stable")
        HubHandle(base_url='http://localhost:8080', name='digits', ref='stable')

    Raises:
        InvalidArgumentError: a part is missing or malformed; the message shows the form.
    """
    form = "hub://host[:port]/name[@version|@label]"
    scheme, sep, rest = handle.partition("://")
    if not sep or scheme not in ("hub", "hubs"):
        raise InvalidArgumentError(f"A hub handle looks like {form}. {received(handle=handle)}")
    host, slash, path = rest.partition("/")
    if not host or not slash or not path or "/" in path.rstrip("/"):
        raise InvalidArgumentError(f"A hub handle looks like {form}. {received(handle=handle)}")
    name, _, ref = path.rstrip("/").partition("@")
    try:
        check_name(name)
        ref = check_ref(ref or LATEST)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"{exc} (in the handle {handle!r}, form {form})") from None
    base = ("https://" if scheme == "hubs" else "http://") + host
    return HubHandle(base_url=base, name=name, ref=ref)


def base_url(url: str) -> str:
    """Normalises a hub address: ``host:port``, ``http(s)://host:port`` or ``hub://host:port``.

    Example:
        >>> base_url("hub://localhost:8080/")
        'http://localhost:8080'
    """
    text = url.strip().rstrip("/")
    if text.startswith("hubs://"):
        text = "https://" + text[len("hubs://") :]
    elif text.startswith("hub://"):
        text = "http://" + text[len("hub://") :]
    elif "://" not in text:
        text = "http://" + text
    if not text.startswith(("http://", "https://")) or not text.split("://", 1)[1]:
        raise InvalidArgumentError(
            "A hub address is host:port, http(s)://host:port or hub://host:port. "
            f"{received(url=url)}"
        )
    return text
