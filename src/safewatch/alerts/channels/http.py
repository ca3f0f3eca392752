"""POST a JSON body over HTTP(S) and classify failures for the retry policy.

The standard library's client (``urllib``) is enough here: one short request per alert, no
streaming, no connection pool worth keeping (alerts are seconds apart, and a pool would hold
sockets to receivers that restart). Redirects are not followed for POSTs, which is what webhooks
expect.
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping

from safewatch.alerts.channels.base import DeliveryError

__all__ = ["RETRYABLE_STATUS", "post_json"]

RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
"""4xx answers that mean "not now" rather than "never" (timeouts, conflicts, rate limits)."""

_USER_AGENT = "safewatch-alerts/1"


def post_json(
    url: str, body: bytes, headers: Mapping[str, str], *, timeout: float, shown: str
) -> str:
    """POST ``body`` to ``url``; returns ``HTTP <status>`` for a 2xx answer.

    Args:
        url: Where to post (may hold a secret: it is never put in an error).
        body: The JSON bytes.
        headers: Extra headers; ``Content-Type`` and ``User-Agent`` are set here.
        timeout: Seconds for connecting and for each read.
        shown: How to name the receiver in errors (redacted URL or host).

    Raises:
        DeliveryError: Non-2xx answer (permanent for 4xx other than :data:`RETRYABLE_STATUS`),
            or a network failure (transient).
    """
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("User-Agent", _USER_AGENT)
    for name, value in headers.items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = int(response.status)
            response.read(1024)
    except urllib.error.HTTPError as error:
        status = int(error.code)
        try:
            answer = error.read(200).decode("utf-8", "replace").strip()
        except OSError:
            answer = ""
        permanent = 400 <= status < 500 and status not in RETRYABLE_STATUS
        detail = f": {answer}" if answer else ""
        raise DeliveryError(
            f"{shown} answered HTTP {status} {error.reason}{detail}", permanent=permanent
        ) from None
    except urllib.error.URLError as error:
        reason = error.reason
        permanent = isinstance(reason, ssl.SSLCertVerificationError)
        raise DeliveryError(f"cannot reach {shown}: {reason}", permanent=permanent) from None
    except TimeoutError as error:
        raise DeliveryError(f"{shown} did not answer in {timeout:g} s ({error})") from None
    except OSError as error:
        raise DeliveryError(f"cannot reach {shown}: {error}") from None
    if not 200 <= status < 300:
        raise DeliveryError(f"{shown} answered HTTP {status}")
    return f"HTTP {status}"
