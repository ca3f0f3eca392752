"""Continuous recording of cameras' own streams (remuxed fragmented MP4 segments) and its
retention; ``safewatch serve`` runs it for cameras with a ``recording:`` block (docs/recording.md).
"""

from safewatch.recording.recorder import RecordStats, SegmentWriter, close_orphans, record
from safewatch.recording.retention import Protected, prune, to_delete
from safewatch.recording.segments import Segment, list_segments, segments_between

__all__ = [
    "Protected",
    "RecordStats",
    "Segment",
    "SegmentWriter",
    "close_orphans",
    "list_segments",
    "prune",
    "record",
    "segments_between",
    "to_delete",
]
