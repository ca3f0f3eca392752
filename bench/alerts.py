"""Alert latency on loopback: from the incident change to the receiver, per channel.

For each channel (email over STARTTLS with login, signed webhook, Slack and Teams stand-ins,
MQTT on mosquitto) a real local receiver is started (``tests/alert_servers.py``) and a site's
alerts point at it. Two measurements per channel:

* **idle**: one incident at a time; latency = receiver's clock at receipt minus the clock just
  before ``IncidentRepository.upsert`` (the same machine, so the same clock);
* **burst**: ``--burst`` incidents stored back to back (their stills written beforehand), then
  the time until the last arrives; latency per alert and deliveries per second.

Also the cost the outbox adds to an incident write (the rows are written inside its
transaction): ``upsert`` time with and without the hook. SQLite by default (the embedded
database); ``--postgres`` repeats on a throwaway PostgreSQL. Prints a table and writes
``bench/results/alerts.json``.

    .venv/bin/python -m bench.alerts [--count 100] [--burst 200] [--postgres]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from bench._common import ROOT, write_results

sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "integration")]

from alerts_rig import AlertRig  # noqa: E402

from alert_servers import MqttRecorder, mosquitto_unavailable  # noqa: E402

CHANNELS = ("mail", "hook", "slack", "teams", "mqtt")
LABELS = {
    "mail": "email (SMTP STARTTLS + AUTH, still attached)",
    "hook": "webhook (HMAC-signed JSON)",
    "slack": "slack (Block Kit, local stand-in)",
    "teams": "teams (Adaptive Card, local stand-in)",
    "mqtt": "mqtt (QoS 1 event + retained state, mosquitto)",
}


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


def _summary(latencies: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in latencies]
    return {
        "n": len(ms),
        "p50_ms": round(_percentile(ms, 0.5), 2),
        "p95_ms": round(_percentile(ms, 0.95), 2),
        "max_ms": round(max(ms), 2),
        "mean_ms": round(statistics.fmean(ms), 2),
    }


def _receipts(rig: AlertRig, channel: str, recorder: MqttRecorder | None) -> dict[str, float]:
    """Incident id -> when its "opened" alert arrived at the receiver."""
    found: dict[str, float] = {}
    if channel == "mail":
        assert rig.smtp is not None
        for mail in rig.smtp.received():
            incident = str(mail.message["References"]).strip("<>").split("@")[0]
            found.setdefault(incident.removeprefix("incident-"), mail.received_at)
    elif channel in ("hook", "slack", "teams"):
        receiver = {"hook": rig.hook, "slack": rig.slack, "teams": rig.teams}[channel]
        assert receiver is not None
        for request in receiver.all():
            body = request.json()
            if channel == "hook":
                incident = body["incident"]["id"]
            elif channel == "slack":
                incident = body["blocks"][-2]["elements"][0]["url"].rsplit("/", 1)[-1]
            else:
                incident = body["attachments"][0]["content"]["actions"][0]["url"].rsplit("/")[-1]
            found.setdefault(incident, request.received_at)
    else:
        assert recorder is not None
        for message in recorder.all():
            found.setdefault(message.json()["incident"]["id"], message.received_at)
    return found


def _wait(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError("alerts did not arrive in time")
        time.sleep(0.0005)


def _channel(channel: str, folder: Path, count: int, burst: int, database: str) -> dict[str, Any]:
    alerts = {"poll_interval": "1s"}
    rig = AlertRig(folder, [channel], alerts=alerts, database=database)
    recorder = None
    if channel == "mqtt":
        assert rig.broker is not None
        recorder = MqttRecorder(rig.broker.port, ("safewatch/+/+/event",))
    try:
        idle: list[float] = []
        writes: list[float] = []
        for track in range(count):
            started = time.time()
            incident = rig.incident(track, started_at=started, still=True)
            writes.append(time.time() - started)
            _wait(lambda i=incident: i.id in _receipts(rig, channel, recorder), 30)
            idle.append(_receipts(rig, channel, recorder)[incident.id] - started)
        prepared = [rig.prepare(track, still=True) for track in range(count, count + burst)]
        stored: dict[str, float] = {}
        first = time.time()
        for incident in prepared:  # stills written beforehand: only the writes are timed
            stored[incident.id] = time.time()
            rig.storage.repository.upsert(incident)
        _wait(lambda: set(stored) <= set(_receipts(rig, channel, recorder)), 120)
        receipts = _receipts(rig, channel, recorder)
        last = max(receipts[key] for key in stored)
        return {
            "channel": LABELS[channel],
            "idle": _summary(idle),
            "burst": {
                **_summary([receipts[key] - at for key, at in stored.items()]),
                "alerts_per_s": round(burst / (last - first), 1),
            },
            "incident_write_with_outbox": _summary(writes),
        }
    finally:
        if recorder is not None:
            recorder.close()
        rig.close()


def _hook_cost(folder: Path, database: str, count: int) -> dict[str, Any]:
    """Median upsert time of a new incident without and with the outbox hook (1 route)."""
    import dataclasses

    rig = AlertRig(folder, ["hook"], alerts={"poll_interval": "30s"}, database=database)
    try:
        rig.service.dispatcher.stop()  # measure the write only
        repository = rig.storage.repository
        template = rig.incident(0, still=False)

        writer = rig.service._writer
        with_hook: list[float] = []
        without: list[float] = []
        repository.remove_change_hook(writer)
        for n in range(count + 20):  # alternate, so load from elsewhere hits both alike
            hooked = n % 2 == 0
            if hooked:
                repository.add_change_hook(writer)
            incident = dataclasses.replace(template, id=f"bench-{n}")
            started = time.perf_counter()
            repository.upsert(incident)
            elapsed = time.perf_counter() - started
            repository.remove_change_hook(writer)
            if n >= 20:  # the first ones warm SQLAlchemy's statement cache
                (with_hook if hooked else without).append(elapsed)
        return {
            "upsert_without_outbox_ms": round(statistics.median(without) * 1000, 3),
            "upsert_with_outbox_ms": round(statistics.median(with_hook) * 1000, 3),
        }
    finally:
        rig.close()


def _sqlite() -> Iterator[str]:
    yield "sqlite:///data/site.db"  # relative: each run's own folder


def _engine_run(
    fresh: Callable[[], AbstractContextManager[str]], args: argparse.Namespace
) -> dict[str, Any]:
    """Every measurement, each on a fresh database from ``fresh``."""
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        with fresh() as database:
            result["outbox_cost"] = _hook_cost(root / "cost", database, args.cost_count)
        for channel in args.channels:
            if channel == "mqtt" and mosquitto_unavailable() is not None:
                result[channel] = {"skipped": mosquitto_unavailable()}
                continue
            with fresh() as database:
                result[channel] = _channel(
                    channel, root / channel, args.count, args.burst, database
                )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100, help="idle incidents per channel")
    parser.add_argument("--burst", type=int, default=200, help="incidents in the burst")
    parser.add_argument("--cost-count", type=int, default=300, help="upserts per cost run")
    parser.add_argument("--channels", type=lambda s: s.split(","), default=list(CHANNELS))
    parser.add_argument("--postgres", action="store_true", help="also on PostgreSQL")
    args = parser.parse_args()
    result: dict[str, Any] = {
        "what": "incident change -> receipt at a real local receiver (loopback), per channel",
        "settings": f"idle: {args.count} one at a time; burst: {args.burst} back to back; "
        "4 sender threads; evidence still 64x48 JPEG; the SMTP and HTTP receivers run in this "
        "process (they share its CPU and GIL with the dispatcher), mosquitto in its own",
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "sqlite": _engine_run(contextmanager(_sqlite), args),
    }
    if args.postgres:
        from db_servers import PostgresServer, postgres_unavailable

        reason = postgres_unavailable()
        if reason is not None:
            result["postgresql"] = {"skipped": reason}
        else:
            server = PostgresServer.start(durable=True)
            try:
                result["postgresql"] = _engine_run(server.fresh_schema, args)
            finally:
                server.stop()
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(_table(result))
    print(
        f"load average before {result['load_average_before']}, after {result['load_average_after']}"
    )
    print(f"wrote {write_results('alerts', result)}")


def _table(result: dict[str, Any]) -> str:
    lines = []
    for engine in ("sqlite", "postgresql"):
        block = result.get(engine)
        if not isinstance(block, dict) or "skipped" in block:
            continue
        cost = block["outbox_cost"]
        lines.append(
            f"{engine}: incident upsert {cost['upsert_without_outbox_ms']} ms without the "
            f"outbox, {cost['upsert_with_outbox_ms']} ms with it"
        )
        lines.append(
            f"  {'channel':<48} {'idle p50':>9} {'idle p95':>9} {'burst p50':>10} "
            f"{'burst p95':>10} {'alerts/s':>9}"
        )
        for channel in CHANNELS:
            row = block.get(channel)
            if not isinstance(row, dict):
                continue
            if "skipped" in row:
                lines.append(f"  {channel:<48} skipped: {row['skipped']}")
                continue
            idle, burst = row["idle"], row["burst"]
            lines.append(
                f"  {row['channel']:<48} {idle['p50_ms']:>7.1f}ms {idle['p95_ms']:>7.1f}ms "
                f"{burst['p50_ms']:>8.1f}ms {burst['p95_ms']:>8.1f}ms {burst['alerts_per_s']:>9}"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
