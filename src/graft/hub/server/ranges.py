"""HTTP ``Range`` headers (RFC 9110 section 14) for archive downloads."""

from __future__ import annotations


class Unsatisfiable(ValueError):
    """The range lies outside the file (HTTP 416)."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The single byte range a ``Range`` header asks for, as inclusive ``(start, end)``.

    Returns None when the whole file should be sent: no header, a malformed one, or several
    ranges (which a server may answer with the whole file).

    Example:
        >>> parse_range("bytes=100-", 1000)
        (100, 999)
        >>> parse_range("bytes=-10", 1000)
        (990, 999)

    Raises:
        Unsatisfiable: the first byte is past the end of the file.
    """
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first.isdigit() or last.isdigit()):
        return None
    if not first:  # suffix: the last N bytes
        count = int(last)
        if count == 0:
            raise Unsatisfiable(spec)
        return max(size - count, 0), size - 1
    start = int(first)
    if start >= size:
        raise Unsatisfiable(spec)
    end = int(last) if last.isdigit() else size - 1
    if end < start:
        return None
    return start, min(end, size - 1)
