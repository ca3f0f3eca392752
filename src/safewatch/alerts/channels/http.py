"""POST a JSON body over HTTP(S) and classify failures for the retry policy.

The standard library's client (``urllib``) is enough here: one short request per alert, no
streaming, no connection pool worth keeping (alerts are seconds apart, and a pool would hold
sockets to receivers that restart).

Redirects are never followed. ``urlopen`` would answer a 301, 302 or 303 by sending a GET without
the body to the new location, and a 200 there would count as delivered although the receiver
never saw the alert. Any 3xx is therefore a permanent failure that names where it points (redacted
like the receiver itself): the operator sets the new URL and sends the dead letters again.
"""

from __future__ import annotations

import http.client
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from email.message import Message
from typing import IO
from urllib.parse import urljoin

from safewatch.alerts.channels.base import DeliveryError
from safewatch.ingest.redact import redact_url

__all__ = ["RETRYABLE_STATUS", "post_json"]

RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
"""4xx answers that mean "not now" rather than "never" (timeouts, conflicts, rate limits)."""

_USER_AGENT = "safewatch-alerts/1"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Hand every 3xx back as an :class:`urllib.error.HTTPError` instead of following it."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def post_json(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    timeout: float,
    shown: str,
    show_url: Callable[[str], str] = redact_url,
) -> str:
    """POST ``body`` to ``url``; returns ``HTTP <status>`` for a 2xx answer.

    Args:
        url: Where to post (may hold a secret: it is never put in an error).
        body: The JSON bytes.
        headers: Extra headers; ``Content-Type`` and ``User-Agent`` are set here.
        timeout: Seconds for connecting and for each read.
        shown: How to name the receiver in errors (redacted URL or host).
        show_url: How to show another URL of the receiver (a redirect's location) in errors.

    Raises:
        DeliveryError: Non-2xx answer (permanent for a redirect and for 4xx other than
            :data:`RETRYABLE_STATUS`), a network failure (transient), or a URL that cannot be
            sent (permanent).
    """
    try:
        request = urllib.request.Request(url, data=body, method="POST")
        request.add_header("Content-Type", "application/json")
        request.add_header("User-Agent", _USER_AGENT)
        for name, value in headers.items():
            request.add_header(name, value)
        with _OPENER.open(request, timeout=timeout) as response:
            status = int(response.status)
            response.read(1024)
    except urllib.error.HTTPError as error:
        status = int(error.code)
        if 300 <= status < 400:
            location = error.headers.get("Location") if error.headers is not None else None
            where = f" to {show_url(urljoin(url, location))}" if location else ""
            error.close()
            raise DeliveryError(
                f"{shown} answered HTTP {status} {error.reason}, a redirect{where}; not followed "
                "(it would drop the alert's body): set the channel's url to the new location",
                permanent=True,
            ) from None
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
    except (ValueError, http.client.InvalidURL) as error:
        # http.client.InvalidURL (a non-numeric port, a space) and urllib's "unknown url type":
        # the site file's checks refuse these URLs, so only a URL that slipped past them lands
        # here. Sending again cannot help, and the exception's text quotes the URL (a secret).
        raise DeliveryError(
            f"{shown}: the URL cannot be sent ({type(error).__name__}); check the channel's url",
            permanent=True,
        ) from None
    except http.client.HTTPException as error:
        # The receiver answered, but not in HTTP (a TLS port spoken to in plain HTTP, a proxy
        # that cut the reply): it reached the dispatcher as an unexpected error, with a
        # traceback per attempt. A receiver may answer properly later: try again.
        raise DeliveryError(
            f"{shown} did not answer in HTTP ({type(error).__name__}: {error})"
        ) from None
    if not 200 <= status < 300:
        raise DeliveryError(f"{shown} answered HTTP {status}")
    return f"HTTP {status}"
