"""The alert outbox as the dispatcher and the operators see it: claim, settle, fold, list.

Why an outbox: sending from the analysis thread would lose an alert whenever a receiver is down or
the process dies between storing the incident and sending. Instead
:class:`safewatch.alerts.writer.OutboxWriter` queues rows in the transaction that stores the
incident change, and :class:`Outbox` lets a dispatcher claim due rows and settle them. Rows
survive restarts; a claim is a lease, so a dispatcher that dies mid-send leaves rows that another
(or the next) one retries after ``lease`` seconds, with the same idempotency key.

Claiming is one ``UPDATE ... WHERE id IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED) RETURNING``:
on PostgreSQL several dispatchers share the table without blocking each other; SQLite ignores
``FOR UPDATE`` and serialises the statement under its write lock, which is what a single embedded
process needs. Settling a delivery and adding ``alert.sent`` (or ``alert.dead``) to the incident's
timeline happen in one transaction, so the timeline never claims a delivery the table does not.
"""

from __future__ import annotations

import builtins
import math
import random
from collections.abc import Collection, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, Update, and_, case, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from safewatch.alerts.rows import (
    OUTBOX,
    STATUSES,
    OutboxItem,
    idempotency_key,
    new_row,
    to_item,
)
from safewatch.config.alerts import RetryConfig
from safewatch.domain import IncidentStatus
from safewatch.errors import StorageError
from safewatch.storage import hash_chain
from safewatch.storage.engine import transaction
from safewatch.storage.tables import IncidentRow

__all__ = ["Outbox", "backoff"]


def _rowcount(session: Session, statement: Update) -> int:
    result = cast(CursorResult[Any], session.execute(statement))
    return int(result.rowcount)


def backoff(attempts: int, retry: RetryConfig, rng: random.Random) -> float:
    """Seconds to wait after the ``attempts``-th failure: doubling, capped, with jitter.

    The jitter shortens each delay by up to ``retry.jitter`` of it, so many deliveries that failed
    together (a receiver went down) do not all come back in the same instant when it recovers.
    """
    exponent = min(max(attempts - 1, 0), 60)
    delay = min(retry.max_delay, retry.initial * math.pow(2.0, exponent))
    return delay * (1.0 - retry.jitter * rng.random())


# 0 for a row never tried, 1 for a retry: a CASE rather than ``attempts > 0`` so the ORDER BY
# sorts an integer on SQLite and PostgreSQL alike.
_RETRIES_LAST = case((OUTBOX.c.attempts == 0, 0), else_=1)


def _incident_ids(item: OutboxItem) -> list[str]:
    """The incidents a delivery is about (a digest is about several)."""
    if item.incident_id is not None:
        return [item.incident_id]
    ids = [i.get("incident", {}).get("id") for i in item.payload.get("items", ())]
    return sorted({i for i in ids if isinstance(i, str)})


class Outbox:
    """Claim, settle, fold and list outbox rows (the dispatcher's and the CLI's view).

    Args:
        engine: The site's database (schema at 0006 or later).
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def _session(self, action: str) -> AbstractContextManager[Session]:
        return transaction(self._engine, action)

    # -- dispatcher ---------------------------------------------------------------------------

    def claim(
        self,
        worker: str,
        now: float,
        limit: int,
        lease: float,
        *,
        skip_channels: Collection[str] = (),
    ) -> list[OutboxItem]:
        """Take up to ``limit`` due rows for ``worker`` until ``now + lease``: never-tried rows
        first, then retries, each oldest due first.

        Due: ``pending`` with ``due_at <= now``, or ``sending`` whose lease ran out (its
        dispatcher died or hung). Fresh alerts go before retries because :meth:`expedite` makes
        a whole outage's backlog due at once: in ``due_at`` order an alert raised just after the
        receiver came back waited behind all of it (about 165 s for an email backlog).

        Args:
            worker: The claiming dispatcher.
            now: Current wall-clock time.
            limit: Most rows to take.
            lease: Seconds the claim lasts.
            skip_channels: Leave these channels' rows (the dispatcher has as many deliveries to
                them in flight as one channel may have, see
                :class:`safewatch.alerts.dispatcher.Dispatcher`).

        Raises:
            StorageError: The database cannot be written.
        """
        if limit <= 0:
            return []
        due = or_(
            and_(OUTBOX.c.status == "pending", OUTBOX.c.due_at <= now),
            and_(OUTBOX.c.status == "sending", OUTBOX.c.claimed_until < now),
        )
        if skip_channels:
            due = and_(due, OUTBOX.c.channel.not_in(sorted(skip_channels)))
        ids = (
            select(OUTBOX.c.id)
            .where(due)
            .order_by(_RETRIES_LAST, OUTBOX.c.due_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        statement = (
            update(OUTBOX)
            .where(OUTBOX.c.id.in_(ids.scalar_subquery()), due)
            .values(status="sending", claimed_by=worker, claimed_until=now + lease, updated_at=now)
            .returning(*OUTBOX.c)
        )
        with self._session("claim alerts") as session:
            rows = session.execute(statement).all()
        return sorted(
            (to_item(row) for row in rows), key=lambda item: (item.attempts > 0, item.due_at)
        )

    def delivered(self, item: OutboxItem, worker: str, now: float, receipt: str) -> bool:
        """Mark a claimed delivery done and add ``alert.sent`` to its incidents' timelines.

        Returns:
            ``False`` when the claim was lost (the lease ran out and another dispatcher took
            it): that one settles it.

        Raises:
            StorageError: The database cannot be written.
        """
        detail = {
            "route": item.route_id,
            "channel": item.channel,
            "event": item.event,
            "key": item.key,
            "attempt": item.attempts + 1,
            "receipt": receipt[:200],
        }
        return self._settle(
            item,
            worker,
            {"status": "delivered", "delivered_at": now, "last_error": None},
            now,
            ("alert.sent", detail),
        )

    def failed(
        self,
        item: OutboxItem,
        worker: str,
        now: float,
        error: str,
        *,
        permanent: bool,
        retry: RetryConfig,
        rng: random.Random,
    ) -> str:
        """Record a failed attempt: back to ``pending`` after a backoff, or ``dead``.

        Returns:
            The new status (``pending`` or ``dead``), or ``lost`` when the claim was lost.

        Raises:
            StorageError: The database cannot be written.
        """
        attempts = item.attempts + 1
        error = error[:2000]
        if permanent or attempts >= retry.max_attempts:
            detail = {
                "route": item.route_id,
                "channel": item.channel,
                "event": item.event,
                "key": item.key,
                "attempts": attempts,
                "error": error[:300],
            }
            dead = {"status": "dead", "last_error": error}
            ok = self._settle(item, worker, dead, now, ("alert.dead", detail))
            return "dead" if ok else "lost"
        delay = backoff(attempts, retry, rng)
        retried = {"status": "pending", "last_error": error, "due_at": now + delay}
        return "pending" if self._settle(item, worker, retried, now, None) else "lost"

    def cancelled(self, item: OutboxItem, worker: str, now: float, reason: str) -> bool:
        """Drop a claimed delivery that no longer applies (an escalation acknowledged in time).

        Raises:
            StorageError: The database cannot be written.
        """
        return self._settle(item, worker, {"status": "cancelled", "last_error": reason}, now, None)

    def _settle(
        self,
        item: OutboxItem,
        worker: str,
        values: Mapping[str, Any],
        now: float,
        chain: tuple[str, Mapping[str, Any]] | None,
    ) -> bool:
        incidents = _incident_ids(item) if chain is not None else []
        statement = (
            update(OUTBOX)
            .where(
                OUTBOX.c.id == item.id, OUTBOX.c.status == "sending", OUTBOX.c.claimed_by == worker
            )
            .values(
                attempts=OUTBOX.c.attempts + 1,
                claimed_by=None,
                claimed_until=None,
                updated_at=now,
                **values,
            )
        )
        with self._session(f"record the delivery of alert {item.id}") as session:
            if incidents:
                hash_chain.lock_head(session)  # the chain first, as every incident write does
            if _rowcount(session, statement) != 1:
                return False
            if chain is not None:
                kind, detail = chain
                known = set(
                    session.scalars(select(IncidentRow.id).where(IncidentRow.id.in_(incidents)))
                )
                for incident_id in incidents:
                    if incident_id in known:
                        hash_chain.append(
                            session, at=now, kind=kind, incident_id=incident_id, detail=detail
                        )
        return True

    def incident_status(self, incident_id: str) -> IncidentStatus | None:
        """The operator status of an incident, ``None`` if it is gone.

        Raises:
            StorageError: The database cannot be read.
        """
        with self._session(f"read incident {incident_id}") as session:
            status = session.scalar(select(IncidentRow.status).where(IncidentRow.id == incident_id))
        return None if status is None else IncidentStatus(status)

    def still_of(self, incident_id: str) -> str | None:
        """The evidence still an incident points at now, ``None`` if none (or it is gone).

        Raises:
            StorageError: The database cannot be read.
        """
        with self._session(f"read incident {incident_id}") as session:
            return session.scalar(select(IncidentRow.snapshot).where(IncidentRow.id == incident_id))

    def open_count(self, camera_id: str, rule_id: str) -> int:
        """How many incidents of this rule are open (not ended) on this camera.

        Raises:
            StorageError: The database cannot be read.
        """
        query = (
            select(func.count())
            .select_from(IncidentRow)
            .where(
                IncidentRow.camera_id == camera_id,
                IncidentRow.rule_id == rule_id,
                IncidentRow.ended_at.is_(None),
            )
        )
        with self._session("count open incidents") as session:
            return int(session.scalar(query) or 0)

    def fold_digests(self, now: float) -> int:
        """Turn held rows whose window has ended into one digest delivery per route and channel.

        Returns:
            How many digest deliveries were queued.

        Raises:
            StorageError: The database cannot be written.
        """
        groups_query = (
            select(OUTBOX.c.route_id, OUTBOX.c.channel, OUTBOX.c.due_at)
            .where(OUTBOX.c.status == "held", OUTBOX.c.due_at <= now)
            .distinct()
        )
        with self._session("find due alert digests") as session:
            groups = session.execute(groups_query).all()
        made = 0
        for route_id, channel, window_end in groups:
            try:
                made += self._fold(route_id, channel, float(window_end), now)
            except StorageError as error:
                if not isinstance(error.__cause__, IntegrityError):
                    raise
                # Another dispatcher folded the same rows first.
        return made

    def _fold(self, route_id: str, channel: str, window_end: float, now: float) -> int:
        held_query = (
            select(OUTBOX)
            .where(
                OUTBOX.c.status == "held",
                OUTBOX.c.route_id == route_id,
                OUTBOX.c.channel == channel,
                OUTBOX.c.due_at == window_end,
            )
            .order_by(OUTBOX.c.created_at, OUTBOX.c.id)
            .with_for_update(skip_locked=True)
        )
        with self._session(f"fold the digest of route {route_id}") as session:
            held = [to_item(row) for row in session.execute(held_query).all()]
            if not held:
                return 0
            key = idempotency_key("digest", route_id, f"{window_end:.3f}", held[0].key)
            reasons = sorted({str(item.payload.get("held", "digest")) for item in held})
            payload = {
                "event": "digest",
                "at": now,
                "window_end": window_end,
                "reasons": reasons,
                "items": [
                    {"incident": item.payload.get("incident", {}), "event": item.event}
                    for item in held
                ],
            }
            digest = new_row(
                key,
                channel,
                incident_id=None,
                route_id=route_id,
                event="digest",
                status="pending",
                due_at=now,
                now=now,
                payload=payload,
            )
            session.execute(OUTBOX.insert(), [digest])
            session.execute(
                update(OUTBOX)
                .where(OUTBOX.c.id.in_([item.id for item in held]))
                .values(status="digested", digest_id=digest["id"], updated_at=now)
            )
        return 1

    def next_due(self, *, skip_channels: Collection[str] = ()) -> float | None:
        """The earliest time something may become claimable (due row, digest, lost lease).

        Args:
            skip_channels: Leave out these channels' pending and sending rows, as
                :meth:`claim` does: the dispatcher passes the channels at their in-flight cap.
                Counting their overdue backlog made it sleep 10 ms and claim nothing, about
                100 claim passes a second for as long as such a channel hung. Held rows still
                count, since folding a digest does not wait for its channel.

        Raises:
            StorageError: The database cannot be read.
        """
        pending = OUTBOX.c.status == "pending"
        sending = OUTBOX.c.status == "sending"
        if skip_channels:
            others = OUTBOX.c.channel.not_in(sorted(skip_channels))
            pending = and_(pending, others)
            sending = and_(sending, others)
        query = select(
            func.min(OUTBOX.c.due_at).filter(or_(pending, OUTBOX.c.status == "held")),
            func.min(OUTBOX.c.claimed_until).filter(sending),
        )
        with self._session("read the next alert due") as session:
            row = session.execute(query).one()
        times = [float(t) for t in row if t is not None]
        return min(times) if times else None

    # -- operators -----------------------------------------------------------------------------

    def list(
        self, statuses: Iterable[str] | None = None, *, limit: int = 100
    ) -> builtins.list[OutboxItem]:
        """Rows in these states (all when ``None``), newest first.

        Raises:
            ValueError: An unknown status.
            StorageError: The database cannot be read.
        """
        query = select(OUTBOX).order_by(OUTBOX.c.created_at.desc(), OUTBOX.c.id).limit(limit)
        if statuses is not None:
            wanted = list(statuses)
            unknown = sorted(set(wanted) - set(STATUSES))
            if unknown:
                raise ValueError(
                    f"unknown status {', '.join(unknown)}; known: {', '.join(STATUSES)}"
                )
            query = query.where(OUTBOX.c.status.in_(wanted))
        with self._session("list alerts") as session:
            return [to_item(row) for row in session.execute(query).all()]

    def counts(self) -> dict[str, int]:
        """Rows per status.

        Raises:
            StorageError: The database cannot be read.
        """
        query = select(OUTBOX.c.status, func.count()).group_by(OUTBOX.c.status)
        with self._session("count alerts") as session:
            return {str(status): int(n) for status, n in session.execute(query).all()}

    def statuses(self, ids: Iterable[str]) -> dict[str, str]:
        """The status of each of these rows that exists (``alerts retry`` names the others).

        Raises:
            StorageError: The database cannot be read.
        """
        query = select(OUTBOX.c.id, OUTBOX.c.status).where(OUTBOX.c.id.in_(list(ids)))
        with self._session("read alert states") as session:
            return {str(row_id): str(status) for row_id, status in session.execute(query).all()}

    def expedite(self, channel: str, now: float) -> int:
        """Make every retry waiting on ``channel`` due now: the channel has just answered again.

        Deliveries that failed during an outage wait out their own backoff, up to ``max_delay``
        (5 minutes by default) after the receiver is back; the first one through proves it is,
        so the rest need not wait. Attempts and errors are kept. :meth:`claim` still takes
        never-tried rows before them, so new alerts do not queue behind the backlog.

        Returns:
            How many rows were made due.

        Raises:
            StorageError: The database cannot be written.
        """
        statement = (
            update(OUTBOX)
            .where(
                OUTBOX.c.status == "pending",
                OUTBOX.c.channel == channel,
                OUTBOX.c.attempts > 0,
                OUTBOX.c.due_at > now,
            )
            .values(due_at=now, updated_at=now)
        )
        with self._session(f"expedite the retries of channel {channel}") as session:
            return _rowcount(session, statement)

    def requeue(self, ids: Sequence[str] | None, now: float) -> int:
        """Send dead deliveries again: these ids, or every dead one when ``ids`` is ``None``.

        Attempts restart from zero; the last error stays until the next attempt.

        Returns:
            How many rows were requeued.

        Raises:
            StorageError: The database cannot be written.
        """
        statement = update(OUTBOX).where(OUTBOX.c.status == "dead")
        if ids is not None:
            statement = statement.where(OUTBOX.c.id.in_(list(ids)))
        statement = statement.values(status="pending", attempts=0, due_at=now, updated_at=now)
        with self._session("requeue dead alerts") as session:
            return _rowcount(session, statement)
