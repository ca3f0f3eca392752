"""HTTP range requests (RFC 9110 section 14) over any evidence backend.

A browser's ``<video>`` asks for a clip in pieces (``Range: bytes=0-``, then wherever the user
seeks), and will not seek at all without ``Accept-Ranges: bytes`` and 206 answers. Starlette's
``FileResponse`` does this for local files only; evidence may be in S3, so ranges are served here
from the blob store's stream: the stream is positioned (``seek`` when it can, else read and
discarded) and only the asked-for bytes are sent, in 64 KiB chunks.

One range per request is served; a multi-range request gets the whole file (a 200), which the
RFC allows and which no video player sends.

Whether a request starts a view (to be written to the audit log) is decided on the parsed range
by :func:`reads_from_start`, never on the header's text: every route that serves evidence uses it,
so what is audited is exactly what is sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from fastapi.responses import StreamingResponse

from safewatch.api.errors import ApiError

__all__ = ["ByteRange", "parse_range", "reads_from_start", "stream_range"]

_CHUNK = 64 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Bytes ``start`` to ``end`` inclusive of a ``size``-byte file."""

    start: int
    end: int
    size: int

    @property
    def length(self) -> int:
        """Bytes in the range."""
        return self.end - self.start + 1


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The single range of a ``Range`` header, or ``None`` for the whole file.

    Raises:
        ApiError: 416 when the range lies outside the file.
    """
    if not header:
        return None
    match = _RANGE.match(header.strip().replace(" ", ""))
    if match is None:
        return None  # multi-range or another unit: answer with the whole file
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # suffix: the last N bytes
        length = int(last)
        if length == 0:
            raise _unsatisfiable(size)
        return ByteRange(max(0, size - length), size - 1, size)
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        raise _unsatisfiable(size)
    return ByteRange(start, end, size)


def reads_from_start(header: str | None, size: int) -> bool:
    """Whether the answer to ``header`` for a ``size``-byte file holds its first byte.

    A view is audited once, on the request that reads the file from its start (a player's
    ``bytes=0-``), not on each later seek. This must follow :func:`parse_range` rather than the
    header's text: a header it does not take (``items=0-``, a multi-range) is answered with the
    whole file, and ``bytes=00-`` or a suffix at least as long as the file (``bytes=-99999999``)
    also start at byte 0; testing the text for ``bytes=0-`` let all of them read the evidence
    unaudited. A range outside the file sends nothing (416) and is not a view.
    """
    try:
        wanted = parse_range(header, size)
    except ApiError:
        return False
    return wanted is None or wanted.start == 0


def _unsatisfiable(size: int) -> ApiError:
    return ApiError(
        416,
        "range_not_satisfiable",
        f"the requested range is outside the file ({size} bytes)",
        headers={"Content-Range": f"bytes */{size}"},
    )


def _skip(stream: BinaryIO, count: int) -> None:
    try:
        stream.seek(count)
        return
    except (OSError, AttributeError, ValueError):
        pass
    while count > 0:
        chunk = stream.read(min(_CHUNK, count))
        if not chunk:
            return
        count -= len(chunk)


def _body(stream: BinaryIO, start: int, length: int) -> Iterator[bytes]:
    try:
        if start:
            _skip(stream, start)
        left = length
        while left > 0:
            chunk = stream.read(min(_CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk
    finally:
        stream.close()


def stream_range(
    stream: BinaryIO,
    size: int,
    range_header: str | None,
    media_type: str,
    *,
    filename: str | None = None,
) -> StreamingResponse:
    """A 200 (whole file) or 206 (one range) response streaming from ``stream`` (closed after).

    Raises:
        ApiError: 416 for a range outside the file (``stream`` is closed).
    """
    try:
        wanted = parse_range(range_header, size)
    except ApiError:
        stream.close()
        raise
    headers = {"Accept-Ranges": "bytes"}
    if filename:
        headers["Content-Disposition"] = f'inline; filename="{filename}"'
    if wanted is None:
        headers["Content-Length"] = str(size)
        return StreamingResponse(_body(stream, 0, size), media_type=media_type, headers=headers)
    headers["Content-Length"] = str(wanted.length)
    headers["Content-Range"] = f"bytes {wanted.start}-{wanted.end}/{size}"
    return StreamingResponse(
        _body(stream, wanted.start, wanted.length),
        status_code=206,
        media_type=media_type,
        headers=headers,
    )
