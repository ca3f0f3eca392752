"""Close the incidents a dead process left open, once, at start-up.

Only the process analysing a camera can close its incidents (the rule engine's episode ends
them). When that process dies (``kill -9``, power loss, OOM killer) its open incidents stay open
in the database forever: their "closed" alerts never leave, open counts include them and
retention keeps their evidence. The engine that starts next knows nothing of those episodes (a
violation still going on opens a new incident), so nothing would ever close them.

At start-up, before any camera runs, every incident still open was therefore abandoned. Each is
closed at the last moment it was known to hold (the ``held_until`` the manager writes with its
row and then notes every few seconds; a row written without one ends at its start), with the
reason in its ``incident.closed`` chain entry, and its "closed" alerts queued in the same
transaction through the outbox like any other close.

This assumes what ``serve`` is today: one process analyses every camera of the database. When
cameras are shared out between hosts (leases, see the architecture's scaling path), only the
incidents of cameras whose lease this process just took may be closed here; a camera fenced off
from a host would be closed by the host that takes it over.
"""

from __future__ import annotations

import logging

from safewatch.config.site import SiteConfig
from safewatch.domain import Incident
from safewatch.storage import IncidentRepository

__all__ = ["camera_gone_reason", "close_abandoned_incidents", "reason_for"]

log = logging.getLogger(__name__)


def camera_gone_reason(camera_id: str, site: SiteConfig) -> str | None:
    """Why ``camera_id`` does not run under ``site`` (removed, disabled), or ``None`` if it
    should. The reason in the chain when its incidents close, at start-up or while running."""
    camera = site.cameras.get(camera_id)
    if camera is None:
        return "camera removed from the site file"
    if not camera.enabled:
        return "camera disabled in the site file"
    return None


def reason_for(camera_id: str, site: SiteConfig) -> str:
    """Why an incident of ``camera_id`` found open at start-up is being closed."""
    gone = camera_gone_reason(camera_id, site)
    if gone is not None:
        return f"{gone} while safewatch was not running"
    return "safewatch stopped without closing it (the process died)"


def close_abandoned_incidents(repository: IncidentRepository, site: SiteConfig) -> list[Incident]:
    """Close every incident without an end; call before any camera starts.

    Returns:
        The incidents closed, oldest first. Each is logged at WARNING with its reason.

    Raises:
        StorageError: The database cannot be read or written.
    """
    closed: list[Incident] = []
    for incident_id, camera_id in repository.open_ids():
        reason = reason_for(camera_id, site)
        incident = repository.close_abandoned(incident_id, reason=reason)
        if incident is None:
            continue
        log.warning(
            "incident %s (camera %s, rule %s) was left open: closed at its last known moment "
            "(%.1f s after it started): %s",
            incident.id,
            incident.camera_id,
            incident.rule_id,
            incident.duration or 0.0,
            reason,
        )
        closed.append(incident)
    return closed
