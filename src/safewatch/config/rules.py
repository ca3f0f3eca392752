"""Pydantic models of a rule file (``rules/*.yaml``): zones and rules.

Rules are a discriminated union on ``kind`` so each kind validates only its own fields and an
unknown kind is one clear error. Every collection is a tuple and every model frozen: a loaded rule
set is shared by the engine and the reload watcher and must not change under either of them.
Cross-references (a rule's zone exists, cameras exist) need the whole set and the site, so they
are checked in :mod:`safewatch.config.ruleset`, not here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from safewatch.config.durations import Duration
from safewatch.config.measures import Distance, Length, SpeedLimit
from safewatch.domain.events import Severity

__all__ = [
    "WEEKDAYS",
    "Anchor",
    "DwellRule",
    "LineConfig",
    "LineCrossingRule",
    "OccupancyRule",
    "PPERule",
    "PointAnchor",
    "ProximityRule",
    "Rule",
    "RuleFile",
    "ScheduleConfig",
    "SpeedRule",
    "Weekday",
    "ZoneClearRule",
    "ZoneConfig",
    "ZoneIntrusionRule",
]

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Day names in ``datetime.weekday()`` order."""
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)]
Coordinate = Annotated[float, Field(ge=0.0, le=1.0)]
TimeOfDay = Annotated[str, Field(pattern=r"^(?:(?:[01][0-9]|2[0-3]):[0-5][0-9]|24:00)$")]


def _anchor_alias(value: Any) -> Any:
    return "centre" if value == "center" else value


Anchor = Annotated[Literal["feet", "centre", "box"], BeforeValidator(_anchor_alias)]
"""Which part of an object must be in a zone: its foot point, box centre, or any part of its box."""

PointAnchor = Annotated[Literal["feet", "centre"], BeforeValidator(_anchor_alias)]
"""Which point of an object is followed (lines and speeds need a point, not a box)."""


def _floor_anchor(rule_id: str, anchor: str, what: str) -> None:
    """Refuse an anchor that is not on the floor for a rule that measures on the floor.

    The floor calibration maps points of the floor: a box centre is a point above it, which it
    sends farther away than the object stands, so distances and speeds through it read wrong
    (a 2.2 m tall forklift at 9 km/h reads 10.7-11.0 km/h by its centre, from a camera 6 m up).

    Raises:
        ValueError: ``anchor`` is not ``feet`` (or ``box``, which measures from the feet).
    """
    if anchor == "centre":
        raise ValueError(
            f"rule {rule_id!r} measures {what} in metres on the floor, but `anchor: centre` is "
            "the box centre, above the floor, which the calibration maps farther away than the "
            "object stands (a speed reads about 20 % high): use the default foot anchor "
            "(`anchor: feet`, or leave `anchor` out)"
        )


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _unique(values: tuple[str, ...]) -> tuple[str, ...]:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"lists {value!r} twice")
        seen.add(value)
    return values


class ScheduleConfig(_Strict):
    """When a rule is active, in the site's time zone.

    A window that ends before it starts runs overnight (``["22:00", "06:00"]``) and belongs to
    the day it starts on: Monday's night shift covers Monday 22:00 to Tuesday 06:00.
    """

    days: tuple[Weekday, ...] = Field(
        WEEKDAYS, min_length=1, description="Days the window starts on (mon..sun); default all."
    )
    between: tuple[TimeOfDay, TimeOfDay] | None = Field(
        None,
        description='Local start and end time, "HH:MM" (end may be "24:00"); default all day.',
    )

    _unique_days = field_validator("days")(_unique)

    @field_validator("between")
    @classmethod
    def _not_empty(cls, value: tuple[str, str] | None) -> tuple[str, str] | None:
        if value is not None and _minutes(value[0]) % 1440 == _minutes(value[1]) % 1440:
            raise ValueError("start and end are the same time; omit `between` for all day")
        return value

    def window_seconds(self) -> tuple[int, int] | None:
        """``between`` as seconds since local midnight (end may be 86400)."""
        if self.between is None:
            return None
        return _minutes(self.between[0]) * 60, _minutes(self.between[1]) * 60


def _minutes(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


class ZoneConfig(_Strict):
    """A named polygon on one camera, in coordinates normalised to the frame (0-1)."""

    camera: str = Field(description="Camera key of the site file the zone is drawn on.")
    polygon: tuple[tuple[Coordinate, Coordinate], ...] = Field(
        description="At least 3 vertices [x, y] with 0 <= x, y <= 1, top-left origin, in order "
        "around the zone."
    )
    description: str | None = Field(None, description="Free text for people.")

    @field_validator("polygon")
    @classmethod
    def _has_area(cls, value: tuple[tuple[float, float], ...]) -> tuple[tuple[float, float], ...]:
        # Checked here, after the vertices: a length limit on the field also counted the
        # vertices that failed their own range check, and reported a second, false error.
        if len(value) < 3:
            raise ValueError(f"a polygon needs at least 3 points (got {len(value)})")
        edges = list(zip(value, value[1:] + value[:1], strict=True))
        crossing = _crossing_edges(edges)
        if crossing is not None:
            i, j = crossing
            raise ValueError(
                f"polygon edges {i + 1} and {j + 1} cross each other: list the points in order "
                "around the zone"
            )
        twice_area = sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in edges)
        if abs(twice_area) < 1e-9:
            raise ValueError("polygon has no area (all points on a line)")
        return value


Point = tuple[float, float]


def _crossing_edges(edges: list[tuple[Point, Point]]) -> tuple[int, int] | None:
    """The first two non-adjacent edges of a closed polygon that properly cross, if any.

    A self-crossing outline (a bow-tie, two points swapped while drawing) has no inside a person
    would agree on: point-in-polygon tests and its area disagree about it.
    """

    def side(a: Point, b: Point, c: Point) -> float:
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])

    count = len(edges)
    for i in range(count):
        a, b = edges[i]
        for j in range(i + 2, count):
            if i == 0 and j == count - 1:
                continue  # the closing edge shares the first vertex
            c, d = edges[j]
            d1, d2 = side(a, b, c), side(a, b, d)
            d3, d4 = side(c, d, a), side(c, d, b)
            if d1 * d2 < -1e-12 and d3 * d4 < -1e-12:
                return i, j
    return None


class LineConfig(_Strict):
    """A named tripwire on one camera: a segment from its first point to its second.

    The direction matters for ``line_crossing`` rules: sides are named as seen walking from the
    first point to the second on the picture (for a line drawn left to right, ``left`` is above).
    """

    camera: str = Field(description="Camera key of the site file the line is drawn on.")
    points: tuple[tuple[Coordinate, Coordinate], tuple[Coordinate, Coordinate]] = Field(
        description="Two points [x, y], normalised (0-1, top-left origin); first to second "
        "gives the direction."
    )
    description: str | None = Field(None, description="Free text for people.")

    @field_validator("points")
    @classmethod
    def _distinct(
        cls, value: tuple[tuple[float, float], tuple[float, float]]
    ) -> tuple[tuple[float, float], tuple[float, float]]:
        (ax, ay), (bx, by) = value
        if abs(ax - bx) < 1e-6 and abs(ay - by) < 1e-6:
            raise ValueError("the two points are the same; a line needs a length")
        return value


class _RuleBase(_Strict):
    id: Identifier = Field(description="Unique id across all rule files; used in incidents.")
    description: str | None = Field(None, description="Free text for people.")
    enabled: bool = Field(True, description="Disabled rules are validated but not evaluated.")
    severity: Severity = Field(Severity.MEDIUM, description="low, medium, high or critical.")
    cameras: tuple[str, ...] = Field(
        (), description="Camera keys the rule applies to; empty or omitted means all cameras."
    )
    grace: Duration = Field(
        1.0,
        description="A track compliant or missing for at most this long does not end the "
        "episode (absorbs detector flicker and short occlusions).",
    )
    cooldown: Duration = Field(
        0.0,
        description="After an episode ends, the same track does not open a new one for this "
        "long (measured from the episode's last violating frame); a violation still going on "
        "when it ends opens one then, from its first frame.",
    )
    schedule: ScheduleConfig | None = Field(
        None, description="When the rule is active; default always."
    )

    _unique_cameras = field_validator("cameras")(_unique)


class PPERule(_RuleBase):
    """A person must wear every item in ``require``."""

    kind: Literal["ppe"] = Field(description="Rule kind.")
    require: tuple[str, ...] = Field(
        min_length=1, description="PPE items every matching object must wear (hardhat, vest...)."
    )
    objects: tuple[str, ...] = Field(
        ("person",), min_length=1, description="Track labels the rule applies to."
    )
    zones: tuple[str, ...] = Field(
        (),
        description="Only objects whose foot point is in one of these zones; empty: anywhere.",
    )
    min_duration: Duration = Field(
        2.0, description="How long the violation must last before it is reported."
    )
    flag: Literal["absent", "unverifiable"] = Field(
        "absent",
        description="absent: a person seen without a required item (the violation). "
        "unverifiable: a person whose required items stay unknown (head hidden, too small, "
        "not classified) for min_duration; a review item, usually with severity low and a "
        "longer min_duration, for areas where PPE must be checked (docs/ppe.md).",
    )

    _unique_lists = field_validator("require", "objects", "zones")(_unique)


class ZoneIntrusionRule(_RuleBase):
    """No object of the listed kinds may be inside ``zone``."""

    kind: Literal["zone_intrusion"] = Field(description="Rule kind.")
    zone: str = Field(description="Zone id (from `zones` of any rule file).")
    objects: tuple[str, ...] = Field(
        ("person",), min_length=1, description="Track labels that may not enter."
    )
    anchor: Anchor = Field(
        "feet",
        description="feet: bottom-centre of the box; centre: box centre; box: any overlap.",
    )
    min_duration: Duration = Field(
        0.0, description="How long the object must stay inside before it is reported."
    )

    _unique_objects = field_validator("objects")(_unique)


class DwellRule(_RuleBase):
    """No object of the listed kinds may stay inside ``zone`` longer than ``max_time``."""

    kind: Literal["dwell"] = Field(description="Rule kind.")
    zone: str = Field(description="Zone id (from `zones` of any rule file).")
    objects: tuple[str, ...] = Field(
        ("person",), min_length=1, description="Track labels whose time in the zone counts."
    )
    anchor: Anchor = Field(
        "feet",
        description="feet: bottom-centre of the box; centre: box centre; box: any overlap.",
    )
    max_time: Duration = Field(
        gt=0, description="Longest allowed uninterrupted stay (absences up to `grace` included)."
    )
    min_duration: Duration = Field(
        0.0, description="How long the overstay must last before it is reported."
    )

    _unique_objects = field_validator("objects")(_unique)


class LineCrossingRule(_RuleBase):
    """Report every crossing of ``line`` by an object of the listed kinds.

    A crossing counts only once the object's anchor has been seen on one side for
    ``confirm_frames`` frames and then on the other side for ``confirm_frames`` frames (and for
    ``min_duration``), so a box that flickers over the line never counts.
    """

    kind: Literal["line_crossing"] = Field(description="Rule kind.")
    line: str = Field(description="Line id (from `lines` of any rule file).")
    objects: tuple[str, ...] = Field(
        ("person",), min_length=1, description="Track labels whose crossings count."
    )
    anchor: PointAnchor = Field(
        "feet", description="feet: bottom-centre of the box; centre: box centre."
    )
    direction: Literal["any", "left_to_right", "right_to_left"] = Field(
        "any",
        description="Which crossings count; sides as seen walking along the line from its "
        "first point to its second.",
    )
    confirm_frames: int = Field(
        3,
        ge=1,
        le=100,
        description="Consecutive frames the anchor must be seen on each side for a crossing.",
    )
    min_duration: Duration = Field(
        0.0, description="How long the anchor must be on the new side before the crossing counts."
    )

    _unique_objects = field_validator("objects")(_unique)


class ProximityRule(_RuleBase):
    """A subject (a person) must keep ``max_distance`` from hazards (vehicles, a machine zone)."""

    kind: Literal["proximity"] = Field(description="Rule kind.")
    subjects: tuple[str, ...] = Field(
        ("person",), min_length=1, description="Track labels to protect."
    )
    objects: tuple[str, ...] = Field(
        (), description="Track labels of moving hazards (forklift, vehicle, ...)."
    )
    machine_zone: str | None = Field(
        None, description="Zone id of a fixed hazard (a press, a robot cell); distance is to it."
    )
    max_distance: Distance = Field(
        description="Closest allowed distance: 2m (calibrated camera) or 150px."
    )
    approaching: SpeedLimit | None = Field(
        None,
        description="Only report while the distance shrinks at least this fast (1m/s, 3km/h "
        "or 100px/s; the same kind of unit as max_distance).",
    )
    window: Duration = Field(
        1.0,
        gt=0,
        description="Time over which closing speeds are smoothed (box jitter); at least the "
        "last three frames, however long they span.",
    )
    zones: tuple[str, ...] = Field(
        (), description="Only subjects whose foot point is in one of these zones; empty: anywhere."
    )
    min_duration: Duration = Field(
        0.0, description="How long the subject must be too close before it is reported."
    )

    _unique_lists = field_validator("subjects", "objects", "zones")(_unique)

    @field_validator("max_distance")
    @classmethod
    def _positive_distance(cls, value: Length) -> Length:
        """A distance is allowed when it is more than nothing: contact is distance 0, so a limit
        of 0 would never report anything (each test is ``distance < max_distance``)."""
        if value.value <= 0:
            raise ValueError("must be more than 0 (a person touching a hazard is at 0)")
        return value

    @model_validator(mode="after")
    def _has_hazard_and_one_unit(self) -> ProximityRule:
        if not self.objects and self.machine_zone is None:
            raise ValueError("give `objects` (moving hazards), `machine_zone`, or both")
        if set(self.subjects) & set(self.objects):
            raise ValueError("a label cannot be both a subject and an object")
        if self.approaching is not None and self.approaching.metric != self.max_distance.metric:
            raise ValueError(
                "`approaching` and `max_distance` must both be metric (m, km/h, m/s) or both "
                "in pixels (px, px/s)"
            )
        return self


class OccupancyRule(_RuleBase):
    """The number of objects in ``zone`` must stay within ``min_count`` .. ``max_count``."""

    kind: Literal["occupancy"] = Field(description="Rule kind.")
    zone: str = Field(description="Zone id (from `zones` of any rule file).")
    objects: tuple[str, ...] = Field(("person",), min_length=1, description="Track labels counted.")
    anchor: Anchor = Field(
        "feet",
        description="feet: bottom-centre of the box; centre: box centre; box: any overlap.",
    )
    max_count: int | None = Field(
        None, ge=0, description="More than this many in the zone is crowding."
    )
    min_count: int | None = Field(
        None,
        ge=2,
        description="Fewer than this many (but at least one) is a lone worker; an empty zone "
        "is fine.",
    )
    min_duration: Duration = Field(
        2.0, description="How long the count must be out of bounds before it is reported."
    )

    _unique_objects = field_validator("objects")(_unique)

    @model_validator(mode="after")
    def _bounds(self) -> OccupancyRule:
        if self.max_count is None and self.min_count is None:
            raise ValueError("give `max_count`, `min_count`, or both")
        if (
            self.max_count is not None
            and self.min_count is not None
            and self.min_count > self.max_count
        ):
            raise ValueError("`min_count` is larger than `max_count`: no count would be allowed")
        return self


class ZoneClearRule(_RuleBase):
    """Nothing may stand still in ``zone`` (an exit, a walkway) for longer than ``max_time``."""

    kind: Literal["zone_clear"] = Field(description="Rule kind.")
    zone: str = Field(description="Zone id (from `zones` of any rule file).")
    objects: tuple[str, ...] = Field(
        (), description="Track labels that may not block the zone; empty or omitted: any."
    )
    anchor: Anchor = Field(
        "feet",
        description="feet: bottom-centre of the box; centre: box centre; box: any overlap.",
    )
    max_time: Duration = Field(gt=0, description="Longest an object may stand still in the zone.")
    max_movement: Distance | None = Field(
        None,
        description="An object that moves less than this is standing still (0.3m, 20px); "
        "default: half its box width.",
    )
    min_duration: Duration = Field(
        0.0, description="How long the zone must be blocked before it is reported."
    )

    _unique_objects = field_validator("objects")(_unique)

    @model_validator(mode="after")
    def _movement_on_the_floor(self) -> ZoneClearRule:
        if self.max_movement is not None and self.max_movement.metric:
            _floor_anchor(self.id, self.anchor, "movement")
        return self


class SpeedRule(_RuleBase):
    """Objects (vehicles) may not move faster than ``max_speed`` (calibrated cameras only)."""

    kind: Literal["speed"] = Field(description="Rule kind.")
    objects: tuple[str, ...] = Field(
        ("vehicle", "forklift"), min_length=1, description="Track labels whose speed counts."
    )
    max_speed: SpeedLimit = Field(description="Speed limit on the floor: 10km/h or 3m/s.")
    anchor: PointAnchor = Field(
        "feet",
        description="feet: bottom-centre of the box, on the floor (centre, above the floor, is "
        "refused: speeds are measured on the floor).",
    )
    window: Duration = Field(
        1.0,
        gt=0,
        description="Time over which speeds are smoothed (box jitter); at least the last three "
        "frames, however long they span.",
    )
    zones: tuple[str, ...] = Field(
        (), description="Only objects whose anchor is in one of these zones; empty: anywhere."
    )
    min_duration: Duration = Field(
        0.0, description="How long the speed must exceed the limit before it is reported."
    )

    _unique_lists = field_validator("objects", "zones")(_unique)

    @field_validator("max_speed")
    @classmethod
    def _metric(cls, value: Any) -> Any:
        if not value.metric:
            raise ValueError("a speed limit must be in km/h or m/s (pixel speeds mean nothing)")
        return value

    @model_validator(mode="after")
    def _speed_on_the_floor(self) -> SpeedRule:
        _floor_anchor(self.id, self.anchor, "speeds")
        return self


Rule = Annotated[
    PPERule
    | ZoneIntrusionRule
    | DwellRule
    | LineCrossingRule
    | ProximityRule
    | OccupancyRule
    | ZoneClearRule
    | SpeedRule,
    Field(discriminator="kind"),
]
"""Any rule; ``kind`` picks the model."""


class RuleFile(_Strict):
    """One rule file as written; several are merged into a :class:`~.ruleset.RuleSet`."""

    version: Literal[1] = Field(1, description="Rule file format version.")
    zones: dict[Identifier, ZoneConfig] = Field(
        default_factory=dict, description="Zones by id (unique across all rule files)."
    )
    lines: dict[Identifier, LineConfig] = Field(
        default_factory=dict, description="Tripwires by id (unique across all rule files)."
    )
    rules: tuple[Rule, ...] = Field((), description="Rules, evaluated in file order.")

    @model_validator(mode="before")
    @classmethod
    def _none_is_empty(cls, data: Any) -> Any:
        # `zones:` with nothing under it parses as None; read it as "no zones".
        if isinstance(data, dict):
            return {
                k: v
                for k, v in data.items()
                if not (k in ("zones", "lines", "rules") and v is None)
            }
        return data
