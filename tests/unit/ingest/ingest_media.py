"""Test media made on the fly from the shared clip (never stored in the repository)."""

from __future__ import annotations

from pathlib import Path

import av


def remux(
    src: Path,
    dst: Path,
    *,
    fmt: str | None = None,
    metadata: dict[str, str] | None = None,
    stamp_zero: bool = False,
) -> Path:
    """Copy ``src``'s video packets into a new container (no re-encoding).

    ``stamp_zero`` stamps every packet 0, as a broken muxer (or FFmpeg's ``setpts=0``) does;
    Matroska accepts repeated stamps.
    """
    with av.open(str(src)) as inp, av.open(str(dst), mode="w", format=fmt) as out:
        stream = inp.streams.video[0]
        out_stream = out.add_stream_from_template(stream)
        for key, value in (metadata or {}).items():
            out.metadata[key] = value
        for packet in inp.demux(stream):
            if packet.dts is None:
                continue
            packet.stream = out_stream
            if stamp_zero:
                packet.pts = packet.dts = 0
            out.mux(packet)
    return dst
