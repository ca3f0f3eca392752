"""What every channel is: something that sends an :class:`AlertMessage` or says why it could not.

A channel raises :class:`DeliveryError` for every failure it understands, saying whether trying
again can help: a receiver that is down, slow or overloaded is *transient* (the dispatcher retries
with backoff); a refused login or a receiver that rejects the request as malformed is *permanent*
(the delivery goes to the dead-letter state at once, where ``safewatch alerts list`` shows it and
``safewatch alerts retry`` sends it again once the configuration is fixed). Messages never contain
secrets: URLs are shown redacted and passwords not at all.
"""

from __future__ import annotations

from typing import Protocol

from safewatch.alerts.message import AlertMessage
from safewatch.errors import SafewatchError

__all__ = ["Channel", "DeliveryError"]


class DeliveryError(SafewatchError):
    """An alert could not be delivered.

    Attributes:
        permanent: Retrying cannot help (bad credentials, request rejected).
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Channel(Protocol):
    """One configured destination.

    Attributes:
        name: The channel's key in the site file.
        kind: email, webhook, slack, teams or mqtt.
        needs_evidence: Compose messages with the evidence still (email).
        needs_state: Compose messages with the open-incident count (MQTT).
    """

    name: str
    kind: str
    needs_evidence: bool
    needs_state: bool

    def send(self, message: AlertMessage) -> str:
        """Deliver ``message``; returns a short receipt (``250 OK``, ``HTTP 200``, ...).

        Raises:
            DeliveryError: It was not delivered.
        """
        ...

    def close(self) -> None:
        """Release connections (idempotent)."""
        ...
