"""Failed-login throttling that slows guessing but never locks the real user out.

A limit per user name alone lets anyone keep ``admin`` out: five wrong passwords from anywhere and
the right one is refused too. So failures are counted per **(account, client address)** pair, and
only the pair (or the address) that failed is slowed down:

* a pair gets ``per_pair`` free failures in ``window``; after that each further attempt waits a
  backoff that doubles per failure (``backoff``, ``2 x backoff``, ... up to ``backoff_max``);
* an address with ``per_client`` failures in ``window``, whatever the names, waits out the window
  (one machine spraying many names);
* an account with ``per_account`` failures in ``window`` from all addresses together is under a
  distributed guess: each address that has itself failed on it gets no free failures any more, so
  every extra address buys the attacker one guess, not five.

An "address" here is an IPv4 address, or an IPv6 **/64 prefix** (:func:`client_bucket`): one
IPv6 customer (a home line, a cloud VM) is routed a whole /64, 2^64 addresses it may send from,
and counted per address it had a fresh allowance for every guess. IPv4-mapped IPv6 addresses
count as their IPv4 address; a client that is no IP address (a test client) counts by its name.

An address that has not failed is never refused: the correct password from it always gets through,
even while the account is under attack. Refusals come *before* the password is checked, so a
throttled guesser gets no signal and burns no argon2 time. A success clears its pair only (the
address and the account keep their counts: the attack elsewhere goes on).

Refusals are audited once per address per ``window``, whatever the names
(:meth:`LoginLimiter.first_refusal`).

State is in memory: one dashboard process serves a site. Behind several API processes each keeps
its own counts, which multiplies the allowance by the number of processes but never blocks a
legitimate user.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

__all__ = ["LoginLimiter", "client_bucket"]

_Key = tuple[str, ...]


def client_bucket(client: str) -> str:
    """The unit failures of ``client`` are counted under: its IPv4 address, or its IPv6 /64.

    A /64 is the smallest block an IPv6 network hands one subscriber (SLAAC needs it), so a single
    attacker owns all its 2^64 addresses; counting each alone gave it unlimited attempts. An
    IPv4-mapped IPv6 address (``::ffff:a.b.c.d``, a dual-stack socket's IPv4 peer) is that IPv4
    address. Anything that does not parse as an address is kept as it is.
    """
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return client
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        # From the integer: drops a scope id (``fe80::1%eth0``), which the network can't carry.
        return str(ipaddress.IPv6Network((int(address) >> 64 << 64, 64)))
    return str(address)


class LoginLimiter:
    """Sliding-window failure counts per (account, address), per address and per account.

    Args:
        per_pair: Free failures of one account from one address within ``window``.
        per_client: Failures from one address (all names) within ``window`` before the address
            waits out the window.
        per_account: Failures of one account (all addresses) within ``window`` after which a
            failing address has no free failures left.
        window: Window length in seconds.
        backoff: First wait after the free failures, in seconds; doubles with each failure.
        backoff_max: Longest backoff wait, in seconds.
        clock: Monotonic clock (injectable for tests).
        max_keys: Keys kept at most, in the failure counts and in the refusals each; the least
            recently failed (refused) are forgotten beyond it (bounded memory under a flood of
            random names or addresses).
    """

    def __init__(
        self,
        *,
        per_pair: int = 5,
        per_client: int = 20,
        per_account: int = 20,
        window: float = 300.0,
        backoff: float = 1.0,
        backoff_max: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self._per_pair = per_pair
        self._per_client = per_client
        self._per_account = per_account
        self._window = window
        self._backoff = backoff
        self._backoff_max = backoff_max
        self._clock = clock
        self._max_keys = max_keys
        self._failures: OrderedDict[_Key, deque[float]] = OrderedDict()
        # Address -> time of its first refusal in the current window. Apart from the failures:
        # refusals cost the client nothing, and shared keys let it evict its own failure counts.
        self._refused: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _keys(username: str, client: str) -> tuple[_Key, _Key, _Key]:
        name = username.lower()
        bucket = client_bucket(client)
        return ("pair", name, bucket), ("client", bucket), ("account", name)

    def _recent(self, key: _Key, now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and now - times[0] >= self._window:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def retry_after(self, username: str, client: str) -> float:
        """Seconds ``client`` must wait before trying ``username`` again (0: try now)."""
        now = self._clock()
        pair_key, client_key, account_key = self._keys(username, client)
        with self._lock:
            pair = self._recent(pair_key, now)
            if not pair and len(self._recent(client_key, now)) < self._per_client:
                return 0.0  # this address never failed on this account: always let it try
            wait = 0.0
            by_client = self._recent(client_key, now)
            if len(by_client) >= self._per_client:
                wait = self._window - (now - by_client[-self._per_client])
            attacked = len(self._recent(account_key, now)) >= self._per_account
            free = 0 if attacked else self._per_pair
            extra = len(pair) - free
            if pair and extra >= 0:
                delay = min(self._backoff_max, self._backoff * 2.0 ** min(extra, 62))
                wait = max(wait, pair[-1] + delay - now)
        return max(wait, 0.0)

    def _note(self, key: _Key, now: float) -> None:
        """Add ``now`` to ``key``'s times (lock held)."""
        self._recent(key, now)
        times = self._failures.get(key)
        if times is None:
            if len(self._failures) >= self._max_keys:
                self._failures.popitem(last=False)
            times = self._failures[key] = deque(maxlen=256)
        self._failures.move_to_end(key)
        times.append(now)

    def failed(self, username: str, client: str) -> None:
        """Count a failed attempt of ``username`` from ``client``."""
        now = self._clock()
        with self._lock:
            for key in self._keys(username, client):
                self._note(key, now)

    def first_refusal(self, client: str) -> bool:
        """Note that ``client`` was refused (:meth:`retry_after` > 0): ``True`` for the address's
        first refusal within ``window``, whatever the name it tried, else ``False``.

        For the audit log: a throttled client is refused without a password check, as fast as
        it asks, and a line per refusal let one address write rows without bound; a line per
        (name, address) still did, with a fresh name each time. One line per address per window
        shows who was throttled, and when.

        Kept apart from the failure counts, with its own bound: refusals are free to the client,
        and when they shared the failures' table ~10,000 refused attempts with fresh names
        evicted that address's own failure counts, which lifted its throttle.
        """
        now = self._clock()
        client = client_bucket(client)  # else a /64 could write a line per address it owns
        with self._lock:
            first = self._refused.get(client)
            if first is not None and now - first < self._window:
                return False
            self._refused.pop(client, None)
            # Oldest first (each entry goes to the end when set): drop the expired ones, then
            # the oldest while full.
            while self._refused and (
                len(self._refused) >= self._max_keys
                or now - next(iter(self._refused.values())) >= self._window
            ):
                self._refused.popitem(last=False)
            self._refused[client] = now
            return True

    def succeeded(self, username: str, client: str) -> None:
        """Forget this pair's failures (the address and the account keep their counts)."""
        with self._lock:
            self._failures.pop(self._keys(username, client)[0], None)
