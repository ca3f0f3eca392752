"""Hot reload, the watching half: reload the rule folder whenever a rule file changes.

Files are watched with `watchfiles <https://watchfiles.helpmanual.io>`_ (Rust ``notify``; inotify
on Linux, FSEvents / ReadDirectoryChangesW elsewhere, polling as a fallback). It was chosen over
watchdog because it batches events itself: a change opens a window that closes once the folder
has been quiet for ``quiet`` seconds (or after ``max_wait``), which is exactly the debounce an
editor's save or a ``git pull`` (many writes, renames and deletes in a burst) needs, and it has a
stop event for a clean shutdown. It is actively maintained and is what uvicorn's reloader uses.

Each batch reloads the *whole* folder (references cross files, so one file is never valid on its
own), validates it, and offers it to the :class:`~safewatch.rules.reload.RuleSetHolder`. A
half-written or invalid file is refused with every ``file:line`` error logged, counted in
``safewatch_rule_reloads_total{result="error"}`` and kept in the holder's status; the last good
set keeps running. When the writer finishes, its last write triggers another reload.

A rule file that had content at the last reload and is now empty is a writer caught between
truncating and writing (shell redirection, in-place saves): an empty file is valid YAML, so loading
it would silently apply a set without that file's rules. The reload waits until the file has content
again or has stayed empty for ``max_wait`` (a deliberate emptying still applies, just later).

Protection never disappears silently: an applied set that drops rules in force (removed or
disabled) is logged at WARNING with their ids and counted in ``safewatch_rules_dropped_total``;
the dropped rules stay flagged (``/readyz`` degraded, ``safewatch_rules_dropped_unacknowledged``)
until they come back or an admin acknowledges the removal
(:meth:`~safewatch.rules.reload.RuleSetHolder.acknowledge`);
an enabled camera that no enabled rule runs on is logged at WARNING (once, until that changes),
shows as 0 in ``safewatch_camera_enabled_rules{camera}`` and in the holder's status, which
``/readyz`` and the dashboard's Rules page report.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from prometheus_client import Counter, Gauge
from watchfiles import Change, watch

from safewatch.config.coverage import unwatched_cameras
from safewatch.config.ruleset import RuleSet, load_rules
from safewatch.config.site import SiteConfig
from safewatch.config.validation import ConfigErrors
from safewatch.errors import ConfigError, SafewatchError
from safewatch.rules.reload import ReloadStatus, RuleSetHolder

__all__ = [
    "CAMERA_RULES",
    "RELOADS",
    "RELOAD_FAILING",
    "RULES_DROPPED",
    "RULES_UNACKNOWLEDGED",
    "RuleWatcher",
]

log = logging.getLogger(__name__)

RELOADS = Counter(
    "safewatch_rule_reloads",
    "Rule folder reloads, by outcome: applied (new generation), unchanged, error (refused, the "
    "last good set keeps running).",
    ["result"],
)
RELOAD_FAILING = Gauge(
    "safewatch_rule_reload_failing",
    "1 while the rule files on disk are invalid and an older rule set is running.",
)
RULES_DROPPED = Counter(
    "safewatch_rules_dropped",
    "Rules in force that an applied reload removed or disabled.",
)
RULES_UNACKNOWLEDGED = Gauge(
    "safewatch_rules_dropped_unacknowledged",
    "Rules dropped from the set in force whose removal no admin has acknowledged yet (while "
    "above 0, /readyz is degraded).",
)
CAMERA_RULES = Gauge(
    "safewatch_camera_enabled_rules",
    "Enabled rules that run on each enabled camera; 0: nothing is watched on that camera.",
    ["camera"],
)

_SUFFIXES = (".yaml", ".yml")
_RETRY_S = 5.0


def _errors_of(exc: SafewatchError) -> list[str]:
    if isinstance(exc, ConfigErrors):
        return [str(error) for error in exc.errors]
    return [str(exc)]


class RuleWatcher:
    """Watches a rules folder (or one rule file) and reloads it into a holder.

    Args:
        path: The rules folder, or a single rule file (its folder is watched, so editors that
            save by writing a temporary file and renaming it are seen).
        holder: Where valid sets are published.
        site: Site file, to check camera names as ``load_rules`` does.
        environ: Variables for ``${VAR}``; defaults to ``os.environ``.
        quiet: Seconds without further changes that close a batch of changes.
        max_wait: Longest a batch may keep growing, in seconds, under a continuous stream of
            writes.
        heartbeat: Seconds between checks of the stop event while nothing changes.
    """

    def __init__(
        self,
        path: str | Path,
        holder: RuleSetHolder,
        site: SiteConfig | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        quiet: float = 0.2,
        max_wait: float = 2.0,
        heartbeat: float = 0.5,
    ) -> None:
        self.path = Path(path)
        self.holder = holder
        RULES_UNACKNOWLEDGED.set_function(lambda: len(holder.status.dropped))
        self._site = site
        self._environ = environ
        self._quiet_ms = max(1, round(quiet * 1000))
        self._max_wait_ms = max(self._quiet_ms, round(max_wait * 1000))
        self._heartbeat_ms = max(1, round(heartbeat * 1000))
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._single_file = False
        self._unwatched_told: tuple[str, ...] = ()
        self._sizes: dict[str, int] = {}
        self._deferred_since: float | None = None

    @property
    def running(self) -> bool:
        """Whether the watching thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def reload(self) -> ReloadStatus:
        """Load, validate and offer the whole rule set now (also on demand, e.g. from the API).

        Returns:
            The holder's status afterwards. Never raises for bad files: they are a status.
        """
        with self._reload_lock:
            self._sizes = self._file_sizes()
            try:
                rules = load_rules(self.path, self._site, environ=self._environ)
            except SafewatchError as exc:
                errors = _errors_of(exc)
                # Counted and logged before the status says so: whoever sees the refusal in the
                # status (readyz, a test) then also finds it in the log and the metrics.
                RELOADS.labels(result="error").inc()
                RELOAD_FAILING.set(1)
                log.error(
                    "rule reload refused, generation %d keeps running:\n  %s",
                    self.holder.status.generation,
                    "\n  ".join(errors),
                )
                # The set in force, checked against this watcher's site: a site reload that
                # renamed or added a camera watches again with the new site, and the rules
                # naming the old camera are refused; the list made against the old site showed
                # the new camera ready while no rule ran on it.
                in_force = self.holder.current().rules
                status = self.holder.reject(
                    errors, None if self._site is None else unwatched_cameras(in_force, self._site)
                )
                self._count_protection(in_force)  # the gauge says what /readyz says
                self._tell_unwatched(status)
                return status
            before = self.holder.current().number
            flagged = set(self.holder.status.dropped)
            unwatched = () if self._site is None else unwatched_cameras(rules, self._site)
            cameras = (
                None
                if self._site is None
                else [c for c, camera in self._site.cameras.items() if camera.enabled]
            )
            status = self.holder.offer(rules, unwatched, cameras)
            applied = status.generation != before
            RELOADS.labels(result="applied" if applied else "unchanged").inc()
            RELOAD_FAILING.set(0)
            log.log(logging.INFO if applied else logging.DEBUG, "rules: %s", status.message)
            self._count_protection(rules)
            newly = set(status.dropped) - flagged
            if applied and newly:
                RULES_DROPPED.inc(len(newly))
                log.warning("rules: %s", status.warnings[0])
            self._tell_unwatched(status)
            return status

    def _tell_unwatched(self, status: ReloadStatus) -> None:
        """Log the unwatched cameras when they changed."""
        if status.unwatched != self._unwatched_told:
            if status.unwatched:
                log.warning("rules: %s", status.warnings[-1])
            elif self._unwatched_told:
                log.info("rules: every enabled camera has an enabled rule again")
            self._unwatched_told = status.unwatched

    def _count_protection(self, rules: RuleSet) -> None:
        if self._site is None:
            return
        CAMERA_RULES.clear()
        for camera_id, camera in self._site.cameras.items():
            if camera.enabled:
                CAMERA_RULES.labels(camera=camera_id).set(len(rules.for_camera(camera_id)))

    def start(self, timeout: float = 10.0) -> RuleWatcher:
        """Start watching in a daemon thread; returns once the watch is in place.

        Changes made before the watch was in place are caught by one reload right after it is.

        Raises:
            ConfigError: The path does not exist, or the watch could not start in ``timeout``.
        """
        if self.running:
            return self
        if not self.path.exists():
            raise ConfigError("rules folder or file not found", file=str(self.path))
        self._single_file = not self.path.is_dir()
        folder = self.path.parent if self._single_file else self.path
        self._stop.clear()
        self._ready.clear()
        self._thread = threading.Thread(
            target=self._run, args=(folder,), name=f"rule-watcher:{self.path}", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise ConfigError(f"could not watch the rules folder within {timeout:g} s")
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop watching and wait for the thread (at most ``timeout`` seconds)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> RuleWatcher:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _file_sizes(self) -> dict[str, int]:
        """Sizes of the rule files now (the ones ``load_rules`` reads)."""
        if self._single_file or not self.path.is_dir():
            candidates = [self.path]
        else:
            candidates = [p for p in self.path.iterdir() if p.name.endswith(_SUFFIXES)]
        sizes: dict[str, int] = {}
        for candidate in candidates:
            try:
                sizes[candidate.name] = candidate.stat().st_size
            except OSError:
                continue  # gone meanwhile: load_rules reports what it finds
        return sizes

    def _emptied(self) -> list[str]:
        """Rule files that had content at the last reload and are empty now."""
        now = self._file_sizes()
        return sorted(n for n, size in now.items() if size == 0 and self._sizes.get(n, 0) > 0)

    def _settled(self) -> bool:
        """Whether a reload may run now, or an emptied file asks to wait for its writer."""
        emptied = self._emptied()
        if not emptied:
            self._deferred_since = None
            return True
        now = time.monotonic()
        if self._deferred_since is None:
            self._deferred_since = now
            log.debug("rule files emptied, waiting for their writer: %s", emptied)
        if now - self._deferred_since >= self._max_wait_ms / 1e3:
            log.info(
                "rule files stayed empty for %.1f s, reloading: %s",
                now - self._deferred_since,
                emptied,
            )
            self._deferred_since = None
            return True
        return False

    def _relevant(self, change: Change, path: str) -> bool:
        del change
        name = Path(path).name
        # A Kubernetes ConfigMap volume is updated by renaming a new ``..data`` link over the old
        # one: the visible ``ppe.yaml -> ..data/ppe.yaml`` links never change, so the ``..``
        # names (``..data``, ``..data_tmp``, ``..<timestamp>``) are the only sign of an edit,
        # for a whole folder and for one file of it named alone (``--rules .../ppe.yaml``).
        configmap = name.startswith("..")
        if self._single_file:
            return name == self.path.name or configmap
        # The watch is not recursive, like load_rules; editor swap and backup files do not count.
        return name.endswith(_SUFFIXES) or configmap

    def _run(self, folder: Path) -> None:
        while not self._stop.is_set():
            try:
                self._watch(folder)
            except Exception:
                # The OS refused the watch (folder gone, too many watches): report and retry,
                # never die silently; the last good set keeps running meanwhile.
                log.exception("rule watcher failed; retrying in %.0f s", _RETRY_S)
                self._ready.set()
                self._stop.wait(_RETRY_S)

    def _watch(self, folder: Path) -> None:
        """One watch session; returns when stopped or when the folder was replaced."""
        inode = folder.stat().st_ino
        first = True
        for changes in watch(
            folder,
            watch_filter=self._relevant,
            debounce=self._max_wait_ms,
            step=self._quiet_ms,
            stop_event=self._stop,
            rust_timeout=self._heartbeat_ms,
            yield_on_timeout=True,
            raise_interrupt=False,
            recursive=False,
        ):
            if first:
                # The watch is in place: catch up on anything written before it was.
                first = False
                self.reload()
                self._ready.set()
            elif changes or self._deferred_since is not None:
                if changes:
                    log.debug("rule files changed: %s", sorted(p for _, p in changes))
                if self._settled():
                    self.reload()
            if not changes and not _same_folder(folder, inode):
                # Deleted or replaced (e.g. a deploy swapped the folder): the watch on the old
                # inode sees nothing any more; reload (which reports a missing folder) and watch
                # again once it is back.
                self.reload()
                while not self._stop.is_set() and not folder.is_dir():
                    self._stop.wait(self._heartbeat_ms / 1e3)
                return


def _same_folder(folder: Path, inode: int) -> bool:
    try:
        return folder.stat().st_ino == inode
    except OSError:
        return False
