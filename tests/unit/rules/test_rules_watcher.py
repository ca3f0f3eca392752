"""The watching half of hot reload, on real files with inotify: debounce, refusal of bad files,
and a reload under load (a writer rewriting files while frames flow)."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from rules_factories import frame, person

from patience import poll
from safewatch.config.ruleset import load_rules
from safewatch.domain.events import Phase, RuleEvent
from safewatch.domain.tracks import PPEState
from safewatch.rules.reload import ReloadingEngine, ReloadStatus, RuleSetHolder
from safewatch.rules.watcher import RELOADS, RuleWatcher

ABSENT = PPEState.ABSENT
SHARED = """\
zones:
  everywhere: {camera: cam, polygon: [[0, 0], [1, 0], [1, 1], [0, 1]]}
rules:
  - id: keep-out
    kind: zone_intrusion
    zone: everywhere
    min_duration: 0
"""


def zones_file(variant: str) -> str:
    return f"zones:\n  z-{variant}: {{camera: cam, polygon: [[0, 0], [1, 0], [1, 1], [0, 1]]}}\n"


def rules_file(variant: str) -> str:
    return (
        "rules:\n"
        f"  - id: a-{variant}\n"
        "    kind: zone_intrusion\n"
        f"    zone: z-{variant}\n"
        "    min_duration: 0\n"
        f"  - id: b-{variant}\n"
        "    kind: ppe\n"
        "    require: [hardhat]\n"
        "    min_duration: 0\n"
    )


def replace(path: Path, text: str) -> None:
    """Write ``path`` as an editor that saves by rename does: never seen empty or cut short.

    (``write_text`` truncates first; on a busy machine a writer paused between the truncation
    and the write leaves an empty rule file for longer than the watcher's quiet period, which
    is a valid, rule-less file, not the torn one the tests mean to write.)"""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def write_variant(folder: Path, variant: str) -> None:
    replace(folder / "10-zones.yaml", zones_file(variant))
    replace(folder / "20-rules.yaml", rules_file(variant))


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    poll(predicate, timeout, period=0.02)


def errors_counted() -> float:
    return RELOADS.labels(result="error")._value.get()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "00-shared.yaml").write_text(SHARED)
    write_variant(rules, "red")
    return rules


def test_a_saved_change_is_applied(folder: Path) -> None:
    holder = RuleSetHolder(load_rules(folder))
    with RuleWatcher(folder, holder, quiet=0.05, heartbeat=0.1):
        assert holder.status.message.startswith("unchanged"), "catch-up reload found no change"
        write_variant(folder, "blue")
        wait_for(lambda: holder.current().number == 2)
    ids = [r.id for r in holder.current().rules.rules]
    assert ids == ["keep-out", "a-blue", "b-blue"]
    assert holder.status.ok and holder.status.failures == 0


def test_a_burst_of_writes_is_one_reload(folder: Path) -> None:
    holder = RuleSetHolder(load_rules(folder))
    with RuleWatcher(folder, holder, quiet=0.15, heartbeat=0.1):
        attempts = holder.status.attempts
        # Six saves 20 ms apart, each leaving the folder invalid but the last: a debounced
        # watcher reloads once, after the burst, and never sees the broken states.
        for variant in ["x1", "x2", "x3", "x4"]:
            (folder / "10-zones.yaml").write_text(zones_file(variant))
            time.sleep(0.02)
        (folder / "10-zones.yaml").write_text(zones_file("blue"))
        (folder / "20-rules.yaml").write_text(rules_file("blue"))
        wait_for(lambda: holder.current().number == 2)
        time.sleep(0.35)  # more than a batch window: no second reload follows
    assert holder.status.attempts == attempts + 1
    assert holder.status.failures == 0


def test_a_truncated_file_waits_for_its_writer(folder: Path) -> None:
    """A writer that truncates a rule file and pauses before writing never applies an empty set."""
    holder = RuleSetHolder(load_rules(folder))
    with RuleWatcher(folder, holder, quiet=0.05, max_wait=3.0, heartbeat=0.05):
        attempts = holder.status.attempts
        with (folder / "20-rules.yaml").open("w") as out:
            out.flush()
            time.sleep(0.6)  # 12 quiet periods with the file empty: it must not be loaded
            assert holder.current().number == 1
            assert holder.status.attempts == attempts
            out.write(rules_file("blue"))
        (folder / "10-zones.yaml").write_text(zones_file("blue"))
        wait_for(lambda: holder.current().number == 2)
    assert [r.id for r in holder.current().rules.rules] == ["keep-out", "a-blue", "b-blue"]


def test_a_file_left_empty_applies_after_the_wait(folder: Path) -> None:
    """Emptying a file on purpose still takes effect, once it has stayed empty for max_wait."""
    holder = RuleSetHolder(load_rules(folder))
    with RuleWatcher(folder, holder, quiet=0.05, max_wait=0.5, heartbeat=0.05):
        emptied = time.monotonic()
        (folder / "20-rules.yaml").write_text("")
        (folder / "10-zones.yaml").write_text("")
        wait_for(lambda: holder.current().number == 2)
        assert time.monotonic() - emptied >= 0.5
    assert [r.id for r in holder.current().rules.rules] == ["keep-out"]
    assert holder.status.dropped


def test_an_invalid_file_keeps_the_last_good_set_and_says_where(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    holder = RuleSetHolder(load_rules(folder))
    good = holder.current()
    before = errors_counted()
    with caplog.at_level(logging.ERROR), RuleWatcher(folder, holder, quiet=0.05, heartbeat=0.1):
        (folder / "20-rules.yaml").write_text(rules_file("red").replace("min_duration: 0", "x: 1"))
        wait_for(lambda: not holder.status.ok)
        status = holder.status
        assert holder.current() is good
        assert errors_counted() == before + 1
        bad = folder / "20-rules.yaml"
        assert status.errors[0].startswith(f"{bad}:5: rules[0].x:")
        assert status.message.startswith(f"kept generation 1: {bad}:5: rules[0].x:")
        assert "(and 1 more)" in status.message  # the same mistake in both rules
        assert f"{bad}:9: rules[1].x" in caplog.text
        # Fixing the file ends the error state.
        write_variant(folder, "blue")
        wait_for(lambda: holder.status.ok)
    assert holder.current().number == 2
    assert holder.status.failures == 1


def test_a_single_file_is_watched_through_its_folder(tmp_path: Path) -> None:
    """Editors that save via a temporary file and a rename replace the file's inode."""
    file = tmp_path / "rules.yaml"
    file.write_text(SHARED)
    holder = RuleSetHolder(load_rules(file))
    with RuleWatcher(file, holder, quiet=0.05, heartbeat=0.1):
        (tmp_path / "other.yaml").write_text("not: [rules")  # not ours: no reload
        temp = tmp_path / ".rules.yaml.tmp"
        temp.write_text(SHARED.replace("keep-out", "stay-out"))
        temp.replace(file)
        wait_for(lambda: holder.current().number == 2)
    assert [r.id for r in holder.current().rules.rules] == ["stay-out"]
    assert holder.status.failures == 0


def test_a_replaced_folder_is_watched_again(folder: Path) -> None:
    holder = RuleSetHolder(load_rules(folder))
    with RuleWatcher(folder, holder, quiet=0.05, heartbeat=0.1):
        staging = folder.with_name("staging")
        shutil.copytree(folder, staging)
        write_variant(staging, "blue")
        shutil.rmtree(folder)
        wait_for(lambda: not holder.status.ok)
        assert "not found" in holder.status.message
        assert holder.current().number == 1, "the running set survives its folder"
        staging.rename(folder)
        wait_for(lambda: holder.current().number == 2)
        write_variant(folder, "green")  # and the new folder is watched
        wait_for(lambda: holder.current().number == 3)
    assert holder.status.ok


def publish_configmap(folder: Path, version: int, files: dict[str, str]) -> None:
    """Publish ``files`` the way kubelet updates a mounted ConfigMap: a new ``..<timestamp>``
    folder, a ``..data_tmp`` link renamed over ``..data``, the old version removed; the visible
    ``name -> ..data/name`` links never change."""
    version_dir = folder / f"..2024_01_0{version}_00_00_00.000000000"
    version_dir.mkdir()
    for name, text in files.items():
        (version_dir / name).write_text(text)
    temporary = folder / "..data_tmp"
    os.symlink(version_dir.name, temporary)
    old = os.readlink(folder / "..data") if (folder / "..data").is_symlink() else None
    os.replace(temporary, folder / "..data")
    for name in files:
        if not (folder / name).is_symlink():
            os.symlink(f"..data/{name}", folder / name)
    if old is not None:
        shutil.rmtree(folder / old)


def test_a_configmap_update_is_applied(tmp_path: Path) -> None:
    """Kubernetes swaps ``..data``; no ``*.yaml`` name in the folder changes, yet it is a change."""
    folder = tmp_path / "rules"
    folder.mkdir()
    publish_configmap(folder, 1, {"ppe.yaml": SHARED})
    holder = RuleSetHolder(load_rules(folder))
    with RuleWatcher(folder, holder, quiet=0.05, heartbeat=0.1):
        publish_configmap(folder, 2, {"ppe.yaml": SHARED.replace("keep-out", "stay-out")})
        wait_for(lambda: holder.current().number == 2)
    assert [r.id for r in holder.current().rules.rules] == ["stay-out"]
    assert holder.status.failures == 0


def test_a_configmap_update_of_a_file_named_alone_is_applied(tmp_path: Path) -> None:
    """``--rules /etc/safewatch/rules/ppe.yaml`` inside a ConfigMap mount: the ``..data`` swap is
    the only event, and a watch of that one file let it through only for its own name."""
    folder = tmp_path / "rules"
    folder.mkdir()
    publish_configmap(folder, 1, {"ppe.yaml": SHARED})
    holder = RuleSetHolder(load_rules(folder / "ppe.yaml"))
    with RuleWatcher(folder / "ppe.yaml", holder, quiet=0.05, heartbeat=0.1):
        publish_configmap(folder, 2, {"ppe.yaml": SHARED.replace("keep-out", "stay-out")})
        wait_for(lambda: holder.current().number == 2)
    assert [r.id for r in holder.current().rules.rules] == ["stay-out"]


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    holder = RuleSetHolder(load_rules(tmp_path))
    with pytest.raises(Exception, match="nope: rules folder or file not found"):
        RuleWatcher(tmp_path / "nope", holder).start()


class Writer(threading.Thread):
    """Rewrites the variant files over and over: valid, half-written, invalid, valid."""

    def __init__(self, folder: Path, rounds: int) -> None:
        super().__init__(daemon=True)
        self.folder = folder
        self.rounds = rounds
        self.variants: list[str] = []

    def half_write(self, name: str, text: str, cut: str) -> None:
        """Write ``text`` in two parts with a pause at ``cut``, as a slow writer would."""
        path = self.folder / name
        head = text[: text.index(cut) + len(cut)]
        replace(path, head)  # the file is torn exactly at ``cut``, never emptier
        time.sleep(0.08)  # longer than the watcher's quiet period: it reloads a torn file
        with path.open("a") as out:
            out.write(text[len(head) :])

    def run(self) -> None:
        for i in range(self.rounds):
            variant = f"v{i}"
            self.variants.append(variant)
            if i % 3 == 0:
                write_variant(self.folder, variant)
            elif i % 3 == 1:
                self.half_write("10-zones.yaml", zones_file(variant), "[[0, 0], [1,")
                time.sleep(0.08)  # zones of the new variant, rules of the old: refused
                self.half_write("20-rules.yaml", rules_file(variant), "kind: zone_in")
            else:
                replace(self.folder / "20-rules.yaml", "rules:\n  - id: [broken\n")
                time.sleep(0.08)
                write_variant(self.folder, variant)
            time.sleep(0.1)


def test_reload_under_load_never_mixes_generations(folder: Path) -> None:
    holder = RuleSetHolder(load_rules(folder))
    engine = ReloadingEngine(holder)
    tracks = [person(1, (200, 400), hardhat=ABSENT), person(2, (800, 400), hardhat=ABSENT)]
    seen: list[tuple[int, frozenset[str], list[RuleEvent]]] = []
    writer = Writer(folder, rounds=6)
    errors_before = errors_counted()
    durations: list[float] = []
    with RuleWatcher(folder, holder, quiet=0.04, max_wait=1.0, heartbeat=0.1):
        writer.start()
        t = 0.0
        deadline = time.monotonic() + 30
        while writer.is_alive() or holder.current().rules.rules[1].id != f"a-{writer.variants[-1]}":
            began = time.perf_counter()
            events = engine.evaluate(frame(t, tracks))
            durations.append(time.perf_counter() - began)
            generation = engine.generation
            ids = frozenset(r.id for r in generation.rules.rules)
            seen.append((generation.number, ids, events))
            t = round(t + 0.1, 6)
            time.sleep(0.001)
            assert time.monotonic() < deadline, "the final variant was never applied"
        writer.join()
    durations.sort()
    print(
        f"reload under load: {len(seen)} frames, generations {sorted({g for g, _, _ in seen})}, "
        f"{holder.status.attempts} reloads ({holder.status.failures} refused), evaluate median "
        f"{durations[len(durations) // 2] * 1e6:.0f} us, max {durations[-1] * 1e6:.0f} us"
    )
    final: ReloadStatus = holder.status
    previous_ids: frozenset[str] = frozenset()
    generations: set[int] = set()
    keep_out_started: list[int] = []
    for number, ids, events in seen:
        generations.add(number)
        variants = {rule_id.split("-", 1)[1] for rule_id in ids - {"keep-out"}}
        assert len(variants) == 1 and len(ids) == 3, f"a mixed or partial set ran: {sorted(ids)}"
        live = [e for e in events if e.phase is not Phase.ENDED]
        ended = [e for e in events if e.phase is Phase.ENDED]
        # Every rule of the generation, and only those, judged the frame.
        assert {e.rule_id for e in live} == ids
        assert len(live) == 6  # 3 rules x 2 tracks
        if ended:
            assert ids != previous_ids, "episodes end only at a switch"
            assert {e.rule_id for e in ended} == previous_ids - ids
            assert len(ended) == 4  # the 2 replaced rules x 2 tracks
        keep_out_started += [e.track_ids[0] for e in live if e.rule_id == "keep-out"
                             and e.phase is Phase.STARTED]  # fmt: skip
        previous_ids = ids
    # The unchanged rule kept its episodes across every reload: started once per track.
    assert keep_out_started == [1, 2]
    assert len(generations) >= 4, f"too few reloads under load: {sorted(generations)}"
    assert final.ok
    assert final.failures >= 3, "half-written and invalid files were refused"
    assert errors_counted() - errors_before == final.failures
    assert len(seen) > 100
