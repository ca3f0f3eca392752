"""The dispatcher: a background thread that claims due outbox rows and delivers them.

One claim loop and a small pool of sender threads: a slow SMTP server does not hold up a webhook,
and at most ``workers`` deliveries are in flight, at most half of them (at least one) to any one
channel (:func:`channel_cap`). Without that cap the oldest due rows were claimed whatever their
channel, so a receiver that hangs until its timeout ended up holding every sender and alerts to
healthy channels waited behind it (200 incidents to a healthy and a hanging webhook with a 10 s
timeout: 28 reached the healthy one in 61 s). The loop sleeps until the next row falls due (a
retry, a digest window, an escalation, a lost lease) or until it is woken: the outbox wakes it
right after an incident transaction that queued alerts commits, so an alert leaves within
milliseconds of the incident change, not at the next poll.

Each attempt ends in exactly one settlement (:class:`safewatch.alerts.outbox.Outbox`): delivered
(and ``alert.sent`` in the incident's timeline), retried later with exponential backoff and jitter,
dead (attempts exhausted or a permanent refusal; ``alert.dead`` in the timeline), or cancelled (an
escalation whose incident was acknowledged in time). A dispatcher that dies mid-send leaves its
claims to expire; the next one re-sends them with the same idempotency key, so receivers may see
a duplicate but never a different alert.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass

from safewatch import tracing
from safewatch.alerts.channels.base import Channel, DeliveryError
from safewatch.alerts.message import Composer
from safewatch.alerts.outbox import Outbox
from safewatch.alerts.rows import OutboxItem
from safewatch.config.alerts import RetryConfig
from safewatch.config.secrets import redact_secrets
from safewatch.domain import IncidentStatus
from safewatch.errors import StorageError

__all__ = ["Delivery", "DispatchPlan", "Dispatcher", "channel_cap"]

log = logging.getLogger(__name__)

# Least seconds between two expedites of one channel's retries (see Dispatcher._expedite).
EXPEDITE_INTERVAL = 60.0


@dataclass(frozen=True, slots=True)
class DispatchPlan:
    """What the dispatcher works with; swapped whole when the site file is reloaded.

    Attributes:
        channels: Channels by key.
        composer: Builds messages from rows.
        retry: Backoff and attempt limit.
        poll_interval: Longest sleep between looks at the outbox.
        lease: How long a claim lasts before another dispatcher may retry the row.
        workers: Deliveries in flight at once.
    """

    channels: Mapping[str, Channel]
    composer: Composer
    retry: RetryConfig
    poll_interval: float = 1.0
    lease: float = 120.0
    workers: int = 4


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of one attempt (for metrics, benchmarks and tests).

    Attributes:
        item: The row as claimed.
        outcome: ``delivered``, ``pending`` (will retry), ``dead``, ``cancelled`` or ``lost``.
        latency: Seconds from the incident change to the end of this attempt.
        receipt: The channel's receipt when delivered.
        error: Why it failed, otherwise ``None``.
    """

    item: OutboxItem
    outcome: str
    latency: float
    receipt: str | None = None
    error: str | None = None


def channel_cap(workers: int) -> int:
    """Most deliveries one channel may have in flight: half the senders, at least one, so a
    hanging receiver leaves the other half to the other channels."""
    return max(1, workers // 2)


def _worker_id() -> str:
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Dispatcher:
    """Delivers due outbox rows through the plan's channels.

    Args:
        outbox: The outbox table.
        plan: Channels, composer and retry policy.
        clock: Wall clock (rows store epoch seconds).
        rng: Jitter source (seed it for reproducible tests).
        listeners: Called with each :class:`Delivery` (quick; must not raise).
        monotonic: Clock that spaces expedites of a channel's retries (see :meth:`_expedite`).
    """

    def __init__(
        self,
        outbox: Outbox,
        plan: DispatchPlan,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        listeners: tuple[Callable[[Delivery], None], ...] = (),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.outbox = outbox
        self.plan = plan
        self.worker_id = _worker_id()
        self._clock = clock
        self._monotonic = monotonic
        self._rng = rng or random.Random()
        self._listeners = list(listeners)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._inflight = 0
        self._busy: Counter[str] = Counter()  # deliveries in flight per channel
        self._state_locks: dict[str, threading.Lock] = {}
        # Channels whose waiting retries were made due after a retry got through, with no
        # failure since: their later successful retries need not update the outbox again.
        self._expedited: set[str] = set()
        self._expedited_at: dict[str, float] = {}  # monotonic time of each channel's last one

    def add_listener(self, listener: Callable[[Delivery], None]) -> None:
        """Also report deliveries to ``listener``."""
        self._listeners.append(listener)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Dispatcher:
        """Start the claim loop and the sender pool."""
        if self._thread is not None:
            return self
        self._stopping.clear()
        self._pool = ThreadPoolExecutor(self.plan.workers, thread_name_prefix="alerts-send")
        self._thread = threading.Thread(target=self._run, name="alerts-dispatch", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        """Look at the outbox now (called after a transaction that queued alerts commits)."""
        self._wake.set()

    def drain(self, timeout: float) -> bool:
        """Wait until nothing is due and nothing is in flight, at most ``timeout`` seconds.

        Returns:
            Whether the outbox was drained (rows that are not due yet, such as retries after a
            backoff or future digests, do not count).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                due = self.outbox.next_due()
            except StorageError:
                due = None
            with self._lock:
                busy = self._inflight
            if busy == 0 and (due is None or due > self._clock()):
                return True
            self.wake()
            time.sleep(0.02)
        return False

    def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming; let deliveries in flight finish (each bounded by its channel timeout).

        Rows not yet sent stay in the outbox and go out when a dispatcher runs again.
        """
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def alive(self) -> bool:
        """Whether the claim loop runs."""
        return self._thread is not None and self._thread.is_alive()

    # -- the loop ------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()  # before looking: a wake-up during the look is not lost
            plan = self.plan
            timeout = plan.poll_interval
            try:
                now = self._clock()
                self.outbox.fold_digests(now)
                cap = channel_cap(plan.workers)
                with self._lock:
                    free = plan.workers - self._inflight
                    busy = dict(self._busy)
                full = {channel for channel, n in busy.items() if n >= cap}
                # Any one claimed channel may take the whole batch: no more than the least room
                # left to a channel that has some (cap for one with nothing in flight).
                room = min((cap - n for n in busy.values() if n < cap), default=cap)
                limit = min(free, room)
                items = self.outbox.claim(
                    self.worker_id, now, limit, plan.lease, skip_channels=full
                )
                pool = self._pool
                for item in items:
                    with self._lock:
                        self._inflight += 1
                        self._busy[item.channel] += 1
                    assert pool is not None
                    pool.submit(self._deliver_in_pool, item)
                if 0 < limit == len(items) < free:
                    timeout = 0.0  # the batch was cut by the cap: claim the rest now
                elif free > len(items):
                    # Not the full channels' backlog: only a finishing delivery frees them,
                    # and that sets the wake event.
                    due = self.outbox.next_due(skip_channels=full)
                    if due is not None:
                        timeout = min(timeout, max(0.01, due - self._clock()))
            except StorageError as error:
                log.warning("alerts: outbox unavailable, retrying: %s", error)
            except Exception:
                log.exception("alerts: dispatcher loop error")
            self._wake.wait(timeout)

    def _deliver_in_pool(self, item: OutboxItem) -> None:
        try:
            self.deliver(item)
        except Exception:
            log.exception("alerts: delivery of %s failed unexpectedly", item.id)
        finally:
            with self._lock:
                self._inflight -= 1
                self._busy[item.channel] -= 1
                if self._busy[item.channel] <= 0:
                    del self._busy[item.channel]
            self._wake.set()

    def run_once(self) -> list[Delivery]:
        """Fold digests, claim what is due and deliver it on this thread (tests, the CLI)."""
        now = self._clock()
        self.outbox.fold_digests(now)
        items = self.outbox.claim(self.worker_id, now, max(self.plan.workers, 16), self.plan.lease)
        return [self.deliver(item) for item in items]

    # -- one delivery --------------------------------------------------------------------------

    def _report(self, delivery: Delivery) -> Delivery:
        for listener in self._listeners:
            try:
                listener(delivery)
            except Exception:
                log.exception("alerts: delivery listener failed")
        return delivery

    def deliver(self, item: OutboxItem) -> Delivery:
        """Send one claimed row and settle it.

        Raises:
            StorageError: The outcome cannot be recorded (the claim then expires and the row is
                retried with the same key).
        """
        plan = self.plan
        channel = plan.channels.get(item.channel)
        if channel is None:
            return self._failed(item, f"channel {item.channel!r} is no longer configured", True)
        if item.event == "escalation" and item.incident_id is not None:
            status = self.outbox.incident_status(item.incident_id)
            if status is not IncidentStatus.OPEN:
                reason = "incident is gone" if status is None else f"incident is {status}"
                self.outbox.cancelled(item, self.worker_id, self._clock(), reason)
                return self._report(Delivery(item, "cancelled", self._latency(item), error=reason))
        try:
            # A state (MQTT's retained ON/OFF) is counted when composed: compose and send one at a
            # time per such channel, so the state published last is the one counted last.
            with self._state_lock(item.channel) if channel.needs_state else nullcontext():
                message = plan.composer.compose(
                    item,
                    evidence=channel.needs_evidence,
                    state=channel.needs_state,
                    max_evidence_bytes=int(getattr(channel, "max_evidence_bytes", 10 * 2**20)),
                )
                attributes = {"channel": item.channel, "event": item.event}
                with tracing.span("alert.send", attributes):
                    receipt = channel.send(message)
        except DeliveryError as error:
            return self._failed(item, str(error), error.permanent)
        except StorageError as error:
            return self._failed(item, f"cannot compose the alert: {error}", False)
        except Exception as error:
            log.exception("alerts: channel %s failed on %s", item.channel, item.id)
            return self._failed(item, f"{type(error).__name__}: {error}", False)
        now = self._clock()
        if not self.outbox.delivered(item, self.worker_id, now, receipt):
            return self._report(Delivery(item, "lost", self._latency(item), receipt=receipt))
        if item.attempts > 0:
            self._expedite(item.channel, now)
        log.info(
            "alerts: %s %s via %s (%s, attempt %d): %s",
            item.event,
            item.incident_id or item.route_id,
            item.channel,
            item.route_id,
            item.attempts + 1,
            receipt,
        )
        return self._report(Delivery(item, "delivered", self._latency(item), receipt=receipt))

    def _expedite(self, channel: str, now: float) -> None:
        """A retry went through: the receiver is back, so the channel's other retries go now
        rather than each after its own backoff (up to ``max_delay``).

        Once per recovery: again only after another failure on the channel, and at most once per
        :data:`EXPEDITE_INTERVAL` seconds. A receiver that fails intermittently (429 throttling)
        had every failure re-arm it and the next success make every retry due again, so retries
        went out in a tight loop instead of backing off; the interval leaves them their backoff.
        """
        at = self._monotonic()
        with self._lock:
            last = self._expedited_at.get(channel)
            if channel in self._expedited or (last is not None and at - last < EXPEDITE_INTERVAL):
                return
            self._expedited.add(channel)
            self._expedited_at[channel] = at
        try:
            if expedited := self.outbox.expedite(channel, now):
                log.info(
                    "alerts: channel %s answers again; %d waiting retries sent now",
                    channel,
                    expedited,
                )
        except StorageError as error:  # they only wait out their backoff, as before
            log.warning("alerts: cannot expedite the retries of %s: %s", channel, error)
            with self._lock:
                self._expedited.discard(channel)
                if self._expedited_at.get(channel) == at:
                    del self._expedited_at[channel]  # nothing was expedited: the next one may

    def _state_lock(self, channel: str) -> threading.Lock:
        with self._lock:
            return self._state_locks.setdefault(channel, threading.Lock())

    def _latency(self, item: OutboxItem) -> float:
        return self._clock() - float(item.payload.get("at", item.created_at))

    def _failed(self, item: OutboxItem, error: str, permanent: bool) -> Delivery:
        # The text is stored (last_error, shown by `alerts list`) and chained (alert.dead): mask
        # URLs by shape and every configured secret by value, since an unexpected exception's
        # text may quote a secret outside any URL (InvalidURL quotes the path and the token).
        error = redact_secrets(error)
        outcome = self.outbox.failed(
            item,
            self.worker_id,
            self._clock(),
            error,
            permanent=permanent,
            retry=self.plan.retry,
            rng=self._rng,
        )
        attempt = item.attempts + 1
        with self._lock:
            # Its next retry through expedites again (once EXPEDITE_INTERVAL has passed).
            self._expedited.discard(item.channel)
        if outcome == "dead":
            log.error(
                "alerts: giving up on %s via %s after %d attempt(s): %s",
                item.id,
                item.channel,
                attempt,
                error,
            )
        else:
            log.warning(
                "alerts: %s via %s failed (attempt %d), will retry: %s",
                item.id,
                item.channel,
                attempt,
                error,
            )
        return self._report(Delivery(item, outcome, self._latency(item), error=error))
