"""ApiLink's bookkeeping without spawning: restarts back off, pushes coalesce (issue 13)."""

from __future__ import annotations

import multiprocessing
import socket
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from api_support import incident, write_site
from safewatch.api.dashboard import StandaloneRules
from safewatch.api.live import LiveHub
from safewatch.config.loader import load_site
from safewatch.domain import TrackedFrame
from safewatch.incidents.manager import ChangeKind, IncidentChange
from safewatch.runtime.api_link import ApiLink, ApiProcessSpec, _Outbox
from safewatch.runtime.api_messages import (
    ApiReady,
    IncidentPush,
    LiveFramePush,
    Ping,
    Pong,
    Reply,
    Request,
    RulesPush,
)
from safewatch.runtime.api_process import _LiveReader
from safewatch.runtime.health import Liveness
from safewatch.runtime.shm import SharedRing


class DeadProcess:
    """A process that has exited with status 1 by the time anyone looks."""

    started = 0

    def __init__(self, **_kwargs: Any) -> None:
        self.pid = 4242
        self.exitcode: int | None = None

    def start(self) -> None:
        DeadProcess.started += 1
        self.exitcode = 1

    def is_alive(self) -> bool:
        return False


class DyingContext:
    """A ``multiprocessing`` context whose processes die at once (real pipes)."""

    def Pipe(self, duplex: bool = True) -> Any:  # noqa: N802 - multiprocessing's name
        return multiprocessing.Pipe(duplex)

    def Process(self, **kwargs: Any) -> DeadProcess:  # noqa: N802
        return DeadProcess(**kwargs)


def _link(tmp_path: Path) -> ApiLink:
    site = load_site(write_site(tmp_path))
    rules = StandaloneRules(tmp_path / "rules", lambda: site)
    spec = ApiProcessSpec(
        site=site,
        rules_path=tmp_path / "rules",
        rules=RulesPush(rules.rule_generation(), rules.rule_status()),
    )
    target = SimpleNamespace(rule_generation=rules.rule_generation, rule_status=rules.rule_status)
    return ApiLink(spec, socket.socket(), target, context=DyingContext())  # type: ignore[arg-type]


def test_an_api_process_that_keeps_dying_is_restarted_with_backoff(tmp_path: Path) -> None:
    link = _link(tmp_path)
    DeadProcess.started = 0
    link._spawn()
    assert link.check() is True  # died young: restarted at once ...
    assert link.check() is False  # ... but not again within the backoff (1 s)
    assert link.restarts == 1
    assert DeadProcess.started == 2


class LiveProcess:
    """A process that runs until killed (a stand-in for a stopped one: it never answers)."""

    def __init__(self, **_kwargs: Any) -> None:
        self.pid = 4343
        self.exitcode: int | None = None
        self.killed = False

    def start(self) -> None:
        pass

    def is_alive(self) -> bool:
        return not self.killed

    def kill(self) -> None:
        self.killed = True
        self.exitcode = -9

    def join(self, _timeout: float | None = None) -> None:
        pass


class SilentContext(DyingContext):
    def Process(self, **kwargs: Any) -> LiveProcess:  # type: ignore[override]  # noqa: N802
        return LiveProcess(**kwargs)


def test_an_unanswered_ping_gets_the_process_killed_and_restarted_as_hung(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr("safewatch.runtime.api_link.time.monotonic", lambda: now[0])
    reasons: list[str] = []
    site = load_site(write_site(tmp_path))
    rules = StandaloneRules(tmp_path / "rules", lambda: site)
    spec = ApiProcessSpec(
        site=site,
        rules_path=tmp_path / "rules",
        rules=RulesPush(rules.rule_generation(), rules.rule_status()),
    )
    target = SimpleNamespace(rule_generation=rules.rule_generation, rule_status=rules.rule_status)
    link = ApiLink(
        spec,
        socket.socket(),
        target,  # type: ignore[arg-type]
        context=SilentContext(),  # type: ignore[arg-type]
        restarted=reasons.append,
        ping_seconds=5.0,
        hang_seconds=60.0,
    )
    link._spawn()
    first = link._process
    link._received(ApiReady(4343))
    assert link.check() is False  # not due yet
    now[0] += 5.0
    assert link.check() is False  # the ping goes out ...
    messages, _ = link._outbox.take(0.0)
    assert messages == [Ping(1)]
    link._received(Pong(0))  # a stale answer counts for nothing ...
    now[0] += 59.0
    assert link.check() is False
    link._received(Pong(1))  # ... the answer to this ping does
    now[0] += 1.0
    assert link.check() is False  # answered: a new ping, no restart
    assert link._outbox.take(0.0)[0] == [Ping(2)]
    now[0] += 59.0
    assert link.check() is False  # unanswered, but within the 60 s
    now[0] += 2.0
    assert link.check() is True  # unanswered for 61 s: killed and restarted
    assert isinstance(first, LiveProcess) and first.killed
    assert reasons == ["hung"] and link.hangs == 1 and link.restarts == 1
    # the new process never reports ready: that is a hang too, after the same time
    now[0] += 61.0
    assert link.check() is True
    assert reasons == ["hung", "hung"]


def test_the_newest_frame_of_a_camera_replaces_an_unsent_one() -> None:
    outbox = _Outbox()
    image = np.zeros((4, 4, 3), np.uint8)
    for seq in (1, 2, 3):
        outbox.frame(TrackedFrame("yard", seq, 0.0, 0.0, 4, 4, ()), image, ())
    outbox.frame(TrackedFrame("dock", 1, 0.0, 0.0, 4, 4, ()), image, ())
    outbox.incident(IncidentPush("opened", incident(1)))
    messages, frames = outbox.take(0.0)
    assert {camera: tracked.seq for camera, (tracked, _, _) in frames.items()} == {
        "yard": 3,
        "dock": 1,
    }
    assert outbox.frames_replaced == 2
    assert messages == [IncidentPush("opened", incident(1))]  # incident changes are all kept
    assert outbox.take(0.0) == ([], {})


def test_incident_notices_are_bounded_and_drops_counted() -> None:
    outbox = _Outbox()
    for n in range(1030):
        outbox.incident(IncidentPush("updated", incident(n)))
    messages, _ = outbox.take(0.0)
    assert len(messages) == 1024
    assert outbox.incidents_dropped == 6
    assert isinstance(messages[-1], IncidentPush) and messages[-1].incident == incident(1029)


def test_the_rules_thread_only_stores_references(tmp_path: Path) -> None:
    """on_frame is called on the rules thread: it queues, it never sends or copies pixels."""
    link = _link(tmp_path)
    image = np.zeros((4, 4, 3), np.uint8)
    analysed = SimpleNamespace(image=image, published_at=41.5)
    tracked = TrackedFrame("yard", 7, 0.0, 0.0, 4, 4, ())
    change = IncidentChange(incident(1), ChangeKind.OPENED)
    link.on_frame(analysed, tracked, [], [change])
    messages, frames = link._outbox.take(0.0)
    assert frames["yard"][1] is analysed and frames["yard"][1].image is image
    assert messages == [IncidentPush("opened", incident(1))]


def test_a_pushed_frame_brings_its_decode_time_to_the_api_process_hub() -> None:
    """The blurred live video judges how old its head boxes are by when the decode worker
    published the analysed frame: the API process's hub gets that time with the frame."""
    ring = SharedRing.create((4, 4, 3), 2)
    reader = _LiveReader(LiveHub())
    try:
        tracked = TrackedFrame("yard", 7, 0.0, 100.0, 4, 4, ())
        slot = ring.write(np.zeros((4, 4, 3), np.uint8))
        reader.frame(LiveFramePush(tracked, (), ring.spec, slot, 41.5))
        latest = reader._hub.latest("yard")
        assert latest is not None and latest.published_at == 41.5
    finally:
        reader.close()
        ring.unlink()
        ring.close()


class SlowReadiness:
    """A server whose readiness waits on the database until the test lets it go."""

    def __init__(self) -> None:
        self.asked = threading.Event()
        self.release = threading.Event()

    def readiness(self) -> str:
        self.asked.set()
        self.release.wait(60.0)
        return "ready"

    def liveness(self) -> Liveness:
        return Liveness(status="alive", uptime_seconds=1.0, problems=[])

    def metrics(self) -> bytes:
        return b""


def test_liveness_and_pongs_are_answered_while_readiness_waits_on_the_database(
    tmp_path: Path,
) -> None:
    """One slow answer (readiness on a stalled database) held up every later message on the
    receiver thread: the liveness answer came after the API's 10 s (``/healthz`` said ``hung``)
    and the pongs waited until the process was killed as hung."""
    link = _link(tmp_path)
    target = SlowReadiness()
    link._target = target  # type: ignore[assignment]
    ours, theirs = multiprocessing.Pipe(duplex=True)
    link._connection = ours
    threading.Thread(target=link._receive_loop, args=(ours,), daemon=True).start()
    link._ping_seq, link._ping_open = 1, True
    try:
        theirs.send(Request(1, "readiness"))
        assert target.asked.wait(30.0)
        theirs.send(Pong(1))
        theirs.send(Request(2, "liveness"))
        assert theirs.poll(30.0)
        reply = theirs.recv()
        assert not target.release.is_set()  # readiness is still waiting ...
        assert reply.request_id == 2 and isinstance(reply.value, Liveness)  # ... liveness not
        assert link._ping_open is False  # the pong before it was taken too
        target.release.set()
        assert theirs.poll(30.0)
        assert theirs.recv() == Reply(1, "ready")  # type: ignore[arg-type]
    finally:
        target.release.set()
        theirs.close()
        ours.close()


def test_a_reply_is_not_sent_to_a_process_started_after_its_request(tmp_path: Path) -> None:
    """The restarted process numbers its requests from 1 again: an old reply would match one."""
    link = _link(tmp_path)
    old, _old_theirs = multiprocessing.Pipe(duplex=True)
    new, new_theirs = multiprocessing.Pipe(duplex=True)
    link._connection = new
    assert link._send(Reply(1, b""), via=old) is False
    assert not new_theirs.poll(0.0)
    assert link._send(Reply(1, b""), via=new) is True
    assert new_theirs.recv() == Reply(1, b"")
