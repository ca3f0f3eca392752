"""The alerts of one site, wired: outbox hook on the repository, channels, dispatcher.

:func:`start_alerts` is what ``safewatch serve`` calls after opening the site's storage; anything
else that writes incidents through the same repository (an audit into the site database, a test)
can use it too. Routing, templates and channels can be swapped while running
(:meth:`AlertService.reconfigure`, on a site-file reload); rows already queued keep their routes'
decisions (digest windows, rate-limit holds) and are sent through the channels in force.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from zoneinfo import ZoneInfo

from safewatch.alerts.channels import Channel, build_channel
from safewatch.alerts.dispatcher import Delivery, Dispatcher, DispatchPlan
from safewatch.alerts.message import Composer
from safewatch.alerts.outbox import Outbox
from safewatch.alerts.routing import Router
from safewatch.alerts.rows import idempotency_key, insert_ignoring_duplicates, new_row
from safewatch.alerts.writer import OutboxWriter
from safewatch.config.alerts import AlertsConfig
from safewatch.config.loader import LoadedSite
from safewatch.incidents.evidence import EvidenceStore
from safewatch.incidents.site_storage import SiteStorage
from safewatch.incidents.witness import ChainWitness
from safewatch.storage import IncidentRepository
from safewatch.storage.engine import transaction

__all__ = ["WITNESS_ROUTE", "AlertService", "build_plan", "start_alerts"]

WITNESS_ROUTE = "chain-witness"
"""The route id of witness alerts (``alerts.witness``; not a route of ``alerts.routes``)."""

log = logging.getLogger(__name__)


def _camera_names(site: LoadedSite) -> dict[str, str]:
    return {key: camera.name or key for key, camera in site.config.cameras.items()}


def build_plan(
    site: LoadedSite,
    outbox: Outbox | None = None,
    evidence: EvidenceStore | None = None,
    channels: Mapping[str, Channel] | None = None,
    clock: Callable[[], float] = time.time,
) -> DispatchPlan:
    """Channels, composer and retry policy from the site's ``alerts`` block.

    Args:
        site: The loaded site file.
        outbox: Counts open incidents for MQTT state (``None``: no state messages).
        evidence: Reads evidence stills for email attachments.
        channels: Use these instead of building them (tests, the ``alerts test`` command).
        clock: Wall clock.
    """
    config = site.config.alerts
    composer = Composer(
        config,
        site_name=site.config.site.name,
        tz=ZoneInfo(site.config.site.timezone),
        camera_names=_camera_names(site),
        read_evidence=None if evidence is None else evidence.read_bytes,
        open_count=None if outbox is None else outbox.open_count,
        clock=clock,
        stored_still=None if outbox is None else outbox.still_of,
    )
    if channels is None:
        channels = {
            name: build_channel(name, channel, site.base_dir)
            for name, channel in config.channels.items()
        }
    return DispatchPlan(
        channels=dict(channels),
        composer=composer,
        retry=config.retry,
        poll_interval=config.poll_interval,
        lease=config.lease,
        workers=config.workers,
    )


class AlertService:
    """Queue alerts with every incident change of ``repository`` and deliver them.

    Args:
        site: The loaded site file (its ``alerts`` block).
        repository: The incident repository whose changes are routed.
        evidence: Where evidence stills are read for email attachments.
        clock: Wall clock (tests move it).
        channels: Use these channels instead of building them from the site file.
    """

    def __init__(
        self,
        site: LoadedSite,
        repository: IncidentRepository,
        evidence: EvidenceStore | None = None,
        *,
        clock: Callable[[], float] = time.time,
        channels: Mapping[str, Channel] | None = None,
    ) -> None:
        self._repository = repository
        self._evidence = evidence
        self._lock = threading.Lock()
        self.outbox = Outbox(repository.engine)
        self._router = self._router_for(site)
        self.dispatcher = Dispatcher(
            self.outbox, build_plan(site, self.outbox, evidence, channels, clock), clock=clock
        )
        self._clock = clock
        self._counts: Counter[tuple[str, str]] = Counter()
        self.dispatcher.add_listener(self._count)
        self._writer = OutboxWriter(lambda: self._router, on_commit=self.dispatcher.wake)
        self._hooked = False
        self._witness_sent_at: float | None = None

    @staticmethod
    def _router_for(site: LoadedSite) -> Router:
        return Router(site.config.alerts, ZoneInfo(site.config.site.timezone))

    @property
    def config(self) -> AlertsConfig:
        """The alerts block in force."""
        return self._router.config

    def start(self) -> AlertService:
        """Route incident changes into the outbox and start delivering."""
        if not self._hooked:
            self._repository.add_change_hook(self._writer)
            self._hooked = True
        self.dispatcher.start()
        log.info(
            "alerts: %d route(s) to %d channel(s)",
            len(self.config.routes),
            len(self.config.channels),
        )
        return self

    def stop(self, timeout: float = 10.0, *, drain: float = 0.0) -> None:
        """Stop delivering, after up to ``drain`` seconds of sending what is due.

        Changes stored afterwards are still queued (the hook stays until :meth:`close`); they
        go out when the alerts run again.
        """
        drained = drain <= 0 or not self.dispatcher.alive() or self.dispatcher.drain(drain)
        if not drained:
            log.warning("alerts: stopping with deliveries still due (they stay queued)")
        self.dispatcher.stop(timeout)

    def close(self) -> None:
        """Stop, unhook from the repository and release the channels."""
        self.stop()
        if self._hooked:
            self._repository.remove_change_hook(self._writer)
            self._hooked = False
        for channel in self.dispatcher.plan.channels.values():
            channel.close()

    def reconfigure(self, site: LoadedSite) -> None:
        """Apply a reloaded site file's ``alerts`` block (routes, templates, channels)."""
        with self._lock:
            if site.config.alerts == self.config and _camera_names(site) == (
                self.dispatcher.plan.composer.camera_names
            ):
                return
            old = self.dispatcher.plan
            self.dispatcher.plan = build_plan(site, self.outbox, self._evidence, clock=self._clock)
            self._router = self._router_for(site)
        for channel in old.channels.values():
            channel.close()
        log.info("alerts: reconfigured (%d route(s))", len(site.config.alerts.routes))

    def witness(self, witness: ChainWitness, *, force: bool = False) -> int:
        """Queue the chain head for ``alerts.witness``'s channels, at most once per ``every``.

        The :class:`~safewatch.incidents.witness.WitnessWriter`'s ``notify``: it calls this
        with each witness it wrote to the evidence store (only when the chain moved). The rows
        go through the outbox like any alert (retries, dead letters, ``safewatch alerts``); the
        key is the head's, so the same head is never queued twice.

        Returns:
            Rows queued (0: no witness channels, or not due yet).

        Raises:
            StorageError: The outbox cannot be written.
        """
        config = self.config.witness
        now = self._clock()
        if config is None:
            return 0
        last = self._witness_sent_at
        if not force and last is not None and now - last < config.every:
            return 0
        key = idempotency_key("chain-witness", str(witness.seq), witness.hash)
        payload = {"witness": json.loads(witness.to_json()), "event": "witness", "at": now}
        rows = [
            new_row(
                key,
                channel,
                incident_id=None,
                route_id=WITNESS_ROUTE,
                event="witness",
                status="pending",
                due_at=now,
                now=now,
                payload=payload,
            )
            for channel in config.channels
        ]
        with transaction(self._repository.engine, "queue the chain witness") as session:
            insert_ignoring_duplicates(session, rows)
        self._witness_sent_at = now
        self.dispatcher.wake()
        return len(rows)

    def _count(self, delivery: Delivery) -> None:
        with self._lock:
            self._counts[(delivery.item.channel, delivery.outcome)] += 1

    def counters(self) -> dict[str, dict[str, int]]:
        """Outcomes of this process's attempts per channel (``delivered``, ``pending``, ...)."""
        with self._lock:
            result: dict[str, dict[str, int]] = {}
            for (channel, outcome), count in self._counts.items():
                result.setdefault(channel, {})[outcome] = count
            return result


def start_alerts(site: LoadedSite, storage: SiteStorage) -> AlertService | None:
    """Start the site's alerts on its storage; ``None`` when the ``alerts`` block has no channel.

    Call :meth:`AlertService.close` when done. Rows queued before a restart are delivered by the
    new dispatcher.
    """
    if not site.config.alerts.channels:
        return None
    return AlertService(site, storage.repository, storage.evidence).start()
