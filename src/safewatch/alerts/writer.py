"""Queue an incident change's alerts inside the change's own transaction.

:class:`OutboxWriter` is a :data:`safewatch.storage.incident_repository.ChangeHook`: the repository
calls it in the transaction that stores the change, so the change and its alerts commit together
or not at all. It writes one row per matching route and channel, schedules escalations, cancels
them when an operator acknowledges the incident, and applies the storm guards.

Storm guards are decided here, under the chain lock every incident write holds, so concurrent
writers count consistently: a route with ``digest`` holds every alert until the end of its digest
window; a route with ``rate_limit`` sends ``count`` alerts per window one by one and holds the
rest. The dispatcher folds held rows into one summary per route and channel when their window ends
(:meth:`safewatch.alerts.outbox.Outbox.fold_digests`): a storm costs the receiver a summary, and
nothing is dropped. MQTT channels also get a ``state`` row for each open and close that no alert
to them carries now (:func:`_state_rows`), so their retained "violation open" state follows every
incident they cover.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import event as sa_event
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from safewatch.alerts.routing import Router
from safewatch.alerts.rows import (
    OUTBOX,
    idempotency_key,
    incident_json,
    insert_ignoring_duplicates,
    new_row,
)
from safewatch.config.alerts import MqttChannelConfig, RouteConfig
from safewatch.domain import IncidentStatus
from safewatch.storage.hash_chain import EntryKind
from safewatch.storage.incident_repository import StoredChange

__all__ = ["OutboxWriter"]

_EVENTS = {
    EntryKind.INCIDENT_OPENED: "opened",
    EntryKind.INCIDENT_UPDATED: "updated",
    EntryKind.INCIDENT_CLOSED: "closed",
}

_DAY = 86_400.0

_UPDATE_FIELDS = frozenset({"peak_confidence", "clip"})
"""The changes an ``updated`` alert is about (docs/alerts.md: the peak confidence rose, a clip
was attached). Not any change of the chained record: the evidence thread attaches the still
after the incident is stored, which sent an ``updated`` alert for every incident."""


def _is_alert_update(change: StoredChange) -> bool:
    """Whether an ``incident.updated`` change is one an ``updated`` alert reports: the peak rose
    or a clip was attached. A clip *removed* (retention, days after the incident closed) also
    lists ``clip`` as changed, and is no news to the people alerted."""
    changed = set(change.entry.detail.get("changed", ())) & _UPDATE_FIELDS
    if change.incident.clip is None:
        changed.discard("clip")
    return bool(changed)


class OutboxWriter:
    """The repository hook that queues a change's alerts in the change's own transaction.

    Args:
        router: Returns the routing in force (swapped whole when the site file is reloaded).
        on_commit: Called after a transaction that queued something commits (wakes the
            dispatcher, so an alert leaves within milliseconds instead of at the next poll).
    """

    def __init__(
        self, router: Callable[[], Router], on_commit: Callable[[], None] | None = None
    ) -> None:
        self._router = router
        self._on_commit = on_commit

    def __call__(self, session: Session, change: StoredChange) -> None:
        """Queue the alerts of ``change`` (the :data:`ChangeHook` signature)."""
        incident = change.incident
        now = change.entry.at
        if change.kind == EntryKind.STATUS_CHANGED:
            if incident.status != IncidentStatus.OPEN:
                self._cancel_escalations(session, incident.id, now)
            return
        event = _EVENTS.get(change.kind)
        if event is None:
            return
        if event == "updated" and not _is_alert_update(change):
            return
        rows: list[dict[str, Any]] = []
        data = incident_json(incident)
        continued = bool(change.entry.detail.get("continues"))
        router = self._router()
        for route in router.routes_for(incident, event, now, continued=continued):
            event_id = f"updated.{change.entry.seq}" if event == "updated" else event
            key = idempotency_key(incident.id, route.id, event_id)
            held, due = self._hold(session, route, now, router.tz)
            payload: dict[str, Any] = {"incident": data, "event": event, "at": now}
            if held is not None:
                payload["held"] = held
            status = "pending" if held is None else "held"
            for channel in route.channels:
                rows.append(
                    new_row(
                        key,
                        channel,
                        incident_id=incident.id,
                        route_id=route.id,
                        event=event,
                        status=status,
                        due_at=due,
                        now=now,
                        payload=payload,
                    )
                )
            if event == "opened" and route.escalate_after is not None:
                escalation = idempotency_key(incident.id, route.id, "escalation")
                waited = {"incident": data, "event": "escalation", "at": now}
                waited["after"] = route.escalate_after
                for channel in route.escalate_to:
                    rows.append(
                        new_row(
                            escalation,
                            channel,
                            incident_id=incident.id,
                            route_id=route.id,
                            event="escalation",
                            status="pending",
                            due_at=now + route.escalate_after,
                            now=now,
                            payload=waited,
                        )
                    )
        if event != "updated":
            rows.extend(_state_rows(router, change, event, data, rows))
        insert_ignoring_duplicates(session, rows)
        if rows and self._on_commit is not None:
            sa_event.listen(session, "after_commit", lambda _s: self._wake(), once=True)

    def _wake(self) -> None:
        if self._on_commit is not None:
            self._on_commit()

    @staticmethod
    def _hold(
        session: Session, route: RouteConfig, now: float, tz: ZoneInfo
    ) -> tuple[Literal["digest", "rate_limit"] | None, float]:
        """Whether the route holds this alert for a summary, and until when."""
        if route.digest is not None:
            return "digest", window(now, route.digest, tz)[1]
        limit = route.rate_limit
        if limit is None:
            return None, now
        start, end = window(now, limit.per, tz)
        sent = session.scalar(
            select(func.count(func.distinct(OUTBOX.c.key))).where(
                OUTBOX.c.route_id == route.id,
                OUTBOX.c.created_at >= start,
                OUTBOX.c.event.in_(("opened", "updated", "closed")),
                OUTBOX.c.status.not_in(("held", "digested")),
            )
        )
        if int(sent or 0) < limit.count:
            return None, now
        return "rate_limit", end

    @staticmethod
    def _cancel_escalations(session: Session, incident_id: str, now: float) -> None:
        session.execute(
            update(OUTBOX)
            .where(
                OUTBOX.c.incident_id == incident_id,
                OUTBOX.c.event == "escalation",
                OUTBOX.c.status == "pending",
            )
            .values(status="cancelled", updated_at=now, last_error="acknowledged in time")
        )


def window(now: float, length: float, tz: ZoneInfo) -> tuple[float, float]:
    """The digest or rate-limit window of ``length`` seconds holding ``now``, on the site's clock.

    Windows tile each local day from its midnight (the first one, where a clock change repeats
    it), the last one cut at the next midnight; windows of more than a day span whole local days,
    counted from the first day of the proleptic calendar. Aligned to the epoch instead, a ``24h``
    digest went out at 00:00 UTC: 16:00 or 17:00 in California, in the middle of a shift.
    """
    today = datetime.fromtimestamp(now, tz).date()
    if length > _DAY:
        days = math.ceil(length / _DAY)
        first = date.fromordinal(today.toordinal() - (today.toordinal() - 1) % days)
        return _midnight(first, tz), _midnight(first + timedelta(days=days), tz)
    midnight = _midnight(today, tz)
    start = midnight + math.floor((now - midnight) / length) * length
    return start, min(start + length, _midnight(today + timedelta(days=1), tz))


def _midnight(day: date, tz: ZoneInfo) -> float:
    """When ``day`` starts on the site's clock (its first midnight)."""
    return datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()


def _state_rows(
    router: Router,
    change: StoredChange,
    event: str,
    data: dict[str, Any],
    queued: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """``state`` rows: the retained MQTT state of an incident that opened or closed.

    The state ("on while a violation is open") used to ride only on the single alerts a route
    sends: a route with the default ``events: [opened]`` never turned the sensor off, and a
    schedule, a rate limit or a digest left it on too. So every MQTT channel of a route that
    covers the incident (cameras, rules, severities) gets the state of each open and close,
    alone where no single alert to it goes out now with it.
    """
    incident = change.incident
    channels = router.config.channels
    done = {r["channel"] for r in queued if r["status"] == "pending" and r["event"] == event}
    key = idempotency_key(incident.id, "state", event)
    payload: dict[str, Any] = {"incident": data, "event": "state", "at": change.entry.at}
    rows: list[dict[str, Any]] = []
    for route in router.config.routes:
        if not router.covers(route, incident):
            continue
        for channel in route.channels:
            if channel in done or not isinstance(channels.get(channel), MqttChannelConfig):
                continue
            done.add(channel)
            rows.append(
                new_row(
                    key,
                    channel,
                    incident_id=incident.id,
                    route_id=route.id,
                    event="state",
                    status="pending",
                    due_at=change.entry.at,
                    now=change.entry.at,
                    payload=payload,
                )
            )
    return rows
