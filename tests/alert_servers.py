"""Real receivers for the alert tests and ``bench/alerts.py``: SMTP, HTTP webhooks, MQTT.

* :class:`SmtpServer`: aiosmtpd on a free loopback port with STARTTLS (a throwaway CA and server
  certificate made with ``cryptography``) and AUTH required, keeping every message it accepts.
* :class:`WebhookReceiver`: a threaded HTTP server that checks each request's HMAC-SHA256
  signature and timestamp itself (written here from the documented scheme, not with safewatch's
  own verifier) and records requests by idempotency key.
* :class:`MosquittoBroker`: Debian's ``mosquitto`` on a free port with a temporary config, and
  :class:`MqttRecorder`, a subscriber that records what the broker delivers (retained flag, MQTT 5
  user properties).

Each can be stopped and started again on the same port, which is how the fault tests take a
receiver down and bring it back. Nothing here imports pytest.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from patience import poll

__all__ = [
    "HangingReceiver",
    "MosquittoBroker",
    "MqttRecorder",
    "SmtpServer",
    "TlsFiles",
    "WebhookReceiver",
    "free_port",
    "make_tls_files",
    "mosquitto_unavailable",
    "wait_until",
]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(predicate: Any, timeout: float, interval: float = 0.01) -> bool:
    """Poll ``predicate`` (with :func:`patience.poll`) until it is true or ``timeout`` seconds
    pass; whether it came true. A bool rather than a failure, so that each caller says what it
    waited for itself (``assert wait_until(settled, 60), outbox.counts()``) and a server that
    does not start can be stopped before the error is raised."""
    try:
        poll(predicate, timeout, period=interval)
    except AssertionError:
        return False
    return True


# -- TLS ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    """A throwaway CA and a server certificate for 127.0.0.1 / localhost (PEM files)."""

    ca: Path
    cert: Path
    key: Path


def make_tls_files(folder: Path) -> TlsFiles:
    """Write a CA certificate and a CA-signed server certificate + key into ``folder``."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "safewatch test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


# -- SMTP -----------------------------------------------------------------------------------------


@dataclass
class ReceivedMail:
    """One message the SMTP server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    received_at: float
    user: str | None
    tls: bool


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self._server = server

    async def handle_DATA(self, _server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = message_from_bytes(envelope.original_content, policy=policy.default)
        user = getattr(session, "auth_data", None)
        mail = ReceivedMail(
            envelope.mail_from,
            list(envelope.rcpt_tos),
            message,  # type: ignore[arg-type]
            time.time(),
            user.decode() if isinstance(user, bytes) else user,
            getattr(session, "ssl", None) is not None,
        )
        with self._server.lock:
            self._server.messages.append(mail)
        return "250 Message accepted for delivery"

    async def handle_QUIT(self, _server: Any, _session: Any, _envelope: Any) -> str:  # noqa: N802
        return self._server.quit_reply


@dataclass
class SmtpServer:
    """aiosmtpd with STARTTLS required and AUTH (LOGIN/PLAIN) required after it."""

    tls: TlsFiles
    username: str = "alerts"
    password: str = "s3cret-smtp"
    port: int = field(default_factory=free_port)
    messages: list[ReceivedMail] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    quit_reply: str = "221 Bye"
    """The answer to QUIT (servers that answer something else exist)."""
    _controller: Any = None

    def _authenticate(
        self, _server: Any, _session: Any, _envelope: Any, _mechanism: str, data: Any
    ) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        ok = (
            isinstance(data, LoginPassword)
            and data.login.decode() == self.username
            and data.password.decode() == self.password
        )
        return AuthResult(success=ok, handled=False, auth_data=data.login if ok else None)

    def start(self) -> SmtpServer:
        """Listen (again) on :attr:`port`."""
        import logging
        import ssl

        # aiosmtpd logs a warning about its own deprecated Session.login_data on every login.
        logging.getLogger("mail.log").setLevel(logging.ERROR)

        from aiosmtpd.controller import Controller

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.tls.cert, self.tls.key)
        self._controller = Controller(
            _Handler(self),
            hostname="127.0.0.1",
            port=self.port,
            tls_context=context,
            require_starttls=True,
            auth_required=True,
            auth_require_tls=True,
            authenticator=self._authenticate,
            ready_timeout=10.0,
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        """Stop listening (connections are refused until :meth:`start`)."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def received(self) -> list[ReceivedMail]:
        """A copy of what was accepted so far."""
        with self.lock:
            return list(self.messages)


# -- webhooks -------------------------------------------------------------------------------------


@dataclass
class WebhookRequest:
    """One request as received."""

    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float
    signature_ok: bool | None
    method: str = "POST"

    def json(self) -> Any:
        """The body, parsed."""
        return json.loads(self.body)


def _signature_ok(secret: bytes, headers: dict[str, str], body: bytes, tolerance: float) -> bool:
    """The receiver's check, from the documented scheme: HMAC-SHA256 over 'timestamp.body'."""
    timestamp = headers.get("x-safewatch-timestamp", "")
    signature = headers.get("x-safewatch-signature", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance:
        return False
    expected = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(f"sha256={expected}", signature)


class _LoopbackHttp:
    """An HTTP server on 127.0.0.1 whose requests a subclass's :meth:`_handler` answers."""

    def __init__(self, port: int | None) -> None:
        self.port = port or free_port()
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.port}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def _listen(self) -> None:
        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stop listening: connections are refused until it starts again."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class WebhookReceiver(_LoopbackHttp):
    """An HTTP receiver on loopback that verifies signatures and refuses replays.

    Args:
        secret: Shared secret; requests with a bad or stale signature get 401. ``None`` accepts
            unsigned requests (Slack and Teams stand-ins).
        tolerance: Largest accepted signature age in seconds.
        port: Fixed port (default: a free one), kept across :meth:`stop` / :meth:`start`.

    Attributes:
        status: The answer to every POST (a valid signature assumed).
        location: A ``Location`` header sent with it (set ``status`` to a 3xx to redirect). GETs
            are answered 200 and recorded, so a test sees whether a redirect was followed.
        answer: The body of a non-2xx answer (default ``refused``).
    """

    def __init__(
        self, secret: bytes | None = None, *, tolerance: float = 300.0, port: int | None = None
    ) -> None:
        super().__init__(port)
        self.secret = secret
        self.tolerance = tolerance
        self.requests: list[WebhookRequest] = []
        self.status = 200
        self.location: str | None = None
        self.answer = b"refused"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                ok: bool | None = None
                if receiver.secret is not None:
                    ok = _signature_ok(receiver.secret, headers, body, receiver.tolerance)
                request = WebhookRequest(self.path, headers, body, time.time(), ok)
                with receiver.lock:
                    receiver.requests.append(request)
                    status = receiver.status if ok is not False else 401
                    location = receiver.location
                    answer = receiver.answer
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                if location is not None:
                    self.send_header("Location", location)
                self.end_headers()
                self.wfile.write(b"ok" if status < 300 else answer)

            def do_GET(self) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                request = WebhookRequest(self.path, headers, b"", time.time(), None, "GET")
                with receiver.lock:
                    receiver.requests.append(request)
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")

        return Handler

    def start(self) -> WebhookReceiver:
        """Listen (again) on :attr:`port`."""
        self._listen()
        return self

    def accepted(self) -> list[WebhookRequest]:
        """POSTs answered with 2xx (signature checked when a secret is set)."""
        with self.lock:
            return [r for r in self.requests if r.signature_ok is not False and r.method == "POST"]

    def all(self) -> list[WebhookRequest]:
        """Every request received."""
        with self.lock:
            return list(self.requests)


class HangingReceiver(_LoopbackHttp):
    """An HTTP receiver that reads each request and never answers (a receiver that hangs).

    Every connection is held open until :meth:`stop`, which closes them all without an answer
    (the client sees the connection dropped), so a test's teardown is not held up by its
    senders' timeouts. :attr:`open_now` and :attr:`most_open` count the requests held at once.
    """

    def __init__(self, port: int | None = None) -> None:
        super().__init__(port)
        self.received = 0
        self.open_now = 0
        self.most_open = 0
        self._release = threading.Event()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.received += 1
                    receiver.open_now += 1
                    receiver.most_open = max(receiver.most_open, receiver.open_now)
                receiver._release.wait()
                with receiver.lock:
                    receiver.open_now -= 1
                self.close_connection = True  # no answer at all

        return Handler

    def start(self) -> HangingReceiver:
        """Listen on :attr:`port`."""
        self._release.clear()
        self._listen()
        return self

    def stop(self) -> None:
        """Drop every held request unanswered and stop listening."""
        self._release.set()
        super().stop()


# -- MQTT -----------------------------------------------------------------------------------------


def _mosquitto() -> str | None:
    return shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )


def mosquitto_unavailable() -> str | None:
    """Why no test broker can start here, or ``None``."""
    if _mosquitto() is None:
        return "mosquitto not found: apt-get install mosquitto"
    try:
        import paho.mqtt.client  # noqa: F401
    except ImportError:
        return "paho-mqtt is not installed"
    return None


class MosquittoBroker:
    """A throwaway mosquitto on 127.0.0.1 (anonymous).

    Args:
        port: Fixed port (default: a free one), kept across :meth:`stop` / :meth:`start`.
        persistent: Save sessions, subscriptions and queued messages across a restart (as a
            production broker does), so a subscriber with a persistent session misses nothing
            while the broker is down.
    """

    def __init__(self, port: int | None = None, *, persistent: bool = False) -> None:
        self.port = port or free_port()
        self.persistent = persistent
        self.root = Path(tempfile.mkdtemp(prefix="safewatch-mqtt-"))
        # mosquitto started as root runs as the 'mosquitto' user: it must write here.
        self.root.chmod(0o777)
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> MosquittoBroker:
        """Start (again) on :attr:`port`; waits until it accepts connections."""
        binary = _mosquitto()
        if binary is None:
            raise RuntimeError("mosquitto not found")
        config = self.root / "mosquitto.conf"
        persistence = (
            f"persistence true\npersistence_location {self.root}/\n"
            if self.persistent
            else "persistence false\n"
        )
        config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n{persistence}"
            "log_dest stderr\nlog_type error\nlog_type warning\n"
        )
        config.chmod(0o644)
        self._process = subprocess.Popen(
            [binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

        def accepting() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return True
            except OSError:
                return False

        if not wait_until(accepting, 10.0, 0.02):
            self.stop()
            raise RuntimeError("mosquitto did not start")
        return self

    def stop(self) -> None:
        """Stop the broker (retained messages are lost: no persistence)."""
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
            self._process = None

    def close(self) -> None:
        """Stop and delete the config folder."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class MqttMessage:
    """One message as a subscriber got it."""

    topic: str
    payload: bytes
    retain: bool
    user_properties: dict[str, str]
    received_at: float

    def json(self) -> Any:
        """The payload, parsed."""
        return json.loads(self.payload)


class MqttRecorder:
    """Subscribes to ``topics`` (MQTT 5, QoS 1) and records every message.

    Args:
        port: The broker's port.
        topics: Topic filters.
        session: A client id for a persistent session (with a persistent broker, messages
            published while this subscriber is disconnected are queued for it).
    """

    def __init__(
        self, port: int, topics: tuple[str, ...] = ("#",), *, session: str | None = None
    ) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self.messages: list[MqttMessage] = []
        self.lock = threading.Lock()
        self._subscribed = threading.Event()
        self._topics = topics
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=session or "", protocol=mqtt.MQTTv5
        )
        self._client.reconnect_delay_set(0.05, 0.5)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *_a: self._subscribed.set()
        self._client.on_message = self._on_message
        properties = None
        if session is not None:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = 3600
        self._client.connect("127.0.0.1", port, clean_start=session is None, properties=properties)
        self._client.loop_start()
        if not self._subscribed.wait(5):
            raise RuntimeError("subscriber did not subscribe")

    def _on_connect(self, client: Any, *_args: Any) -> None:
        client.subscribe([(topic, 1) for topic in self._topics])

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        properties = getattr(message, "properties", None)
        pairs = getattr(properties, "UserProperty", None) or []
        record = MqttMessage(
            message.topic, bytes(message.payload), bool(message.retain), dict(pairs), time.time()
        )
        with self.lock:
            self.messages.append(record)

    def on(self, topic: str) -> list[MqttMessage]:
        """Messages received on ``topic``."""
        with self.lock:
            return [m for m in self.messages if m.topic == topic]

    def all(self) -> list[MqttMessage]:
        """Every message received."""
        with self.lock:
            return list(self.messages)

    def close(self) -> None:
        """Disconnect."""
        self._client.disconnect()
        self._client.loop_stop()
