"""Email over SMTP: STARTTLS or implicit TLS, login, the evidence still attached.

One connection per alert: alerts are seconds to minutes apart, and a held-open SMTP session would
be dropped by the server in between anyway. The ``Message-ID`` is built from the idempotency key,
so a retried alert is the same message to every mail system (and mail clients that thread or
de-duplicate by id treat it so); ``References`` ties every alert of one incident into a thread.

Failures: a refused login, a refused sender or recipients (5xx), and a certificate that does not
verify are permanent (the delivery goes to the dead letters at once, fix the settings and
``safewatch alerts retry``); a server that is down, slow, or answers 4xx is retried. Once the
server has accepted the message, nothing it says after (its answer to QUIT) fails the delivery.
"""

from __future__ import annotations

import smtplib
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formatdate, getaddresses

from safewatch.alerts.channels.base import DeliveryError
from safewatch.alerts.message import AlertMessage
from safewatch.config.alerts import EmailChannelConfig

__all__ = ["EmailChannel", "build_email"]


def _domain(sender: str) -> str:
    addresses = getaddresses([sender])
    address = addresses[0][1] if addresses else ""
    return address.rsplit("@", 1)[-1] if "@" in address else "safewatch.local"


def build_email(message: AlertMessage, config: EmailChannelConfig) -> EmailMessage:
    """The email for ``message``: text body with the link, the still attached if allowed."""
    domain = _domain(config.sender)
    mail = EmailMessage()
    mail["Subject"] = message.subject
    mail["From"] = config.sender
    mail["To"] = ", ".join(config.to)
    mail["Date"] = formatdate(localtime=False)
    mail["Message-ID"] = f"<{message.key}@{domain}>"
    mail["X-Safewatch-Idempotency-Key"] = message.key
    mail["X-Safewatch-Event"] = message.event
    mail["X-Safewatch-Route"] = message.route_id
    incident_id = (message.incident or {}).get("id")
    if incident_id and message.event not in ("digest", "test"):
        thread = f"<incident-{incident_id}@{domain}>"
        mail["References"] = thread
        mail["In-Reply-To"] = thread
    body = message.text
    if message.created_at:
        when = format_datetime(datetime.fromtimestamp(message.created_at, UTC))
        body += f"\n\n-- \nsafewatch, {message.site}, {when}"
    mail.set_content(body)
    evidence = message.evidence
    if config.attach_evidence and evidence is not None:
        maintype, _, subtype = evidence.content_type.partition("/")
        mail.add_attachment(
            evidence.data, maintype=maintype, subtype=subtype, filename=evidence.name
        )
    return mail


def _hang_up(smtp: smtplib.SMTP) -> None:
    """Say QUIT and close, whatever the server answers.

    Not ``with smtp:``: its exit raises when QUIT is answered with anything but 221, and once
    ``send_message`` returned the server has accepted the mail. Failing the delivery then
    re-sent the same email up to ``max_attempts`` times (a 4xx or ``250 bye``) or put a
    delivered alert in the dead letters (a 5xx).
    """
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        pass
    finally:
        smtp.close()


class EmailChannel:
    """Sends each alert as one email to the channel's recipients."""

    kind = "email"
    needs_state = False

    def __init__(self, name: str, config: EmailChannelConfig) -> None:
        self.name = name
        self._config = config
        self.needs_evidence = config.attach_evidence
        self.max_evidence_bytes = int(config.max_attachment_mb * 2**20)
        self._shown = f"email {name} (smtp://{config.host}:{config.port})"

    def _context(self) -> ssl.SSLContext:
        cafile = None if self._config.ca_file is None else str(self._config.ca_file)
        return ssl.create_default_context(cafile=cafile)

    def send(self, message: AlertMessage) -> str:
        """Connect, secure, log in, send; returns the server's final answer."""
        config = self._config
        mail = build_email(message, config)
        try:
            if config.security == "tls":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    config.host, config.port, timeout=config.timeout, context=self._context()
                )
            else:
                smtp = smtplib.SMTP(config.host, config.port, timeout=config.timeout)
            try:
                smtp.ehlo()
                if config.security == "starttls":
                    if not smtp.has_extn("starttls"):
                        raise DeliveryError(
                            f"{self._shown} does not offer STARTTLS; refusing to send in clear "
                            "(set security: none only for a trusted local relay)",
                            permanent=True,
                        )
                    smtp.starttls(context=self._context())
                    smtp.ehlo()
                if config.username is not None:
                    password = "" if config.password is None else config.password.get_secret_value()
                    smtp.login(config.username, password)
                refused = smtp.send_message(mail)
            finally:
                _hang_up(smtp)
        except DeliveryError:
            raise
        except smtplib.SMTPAuthenticationError as error:
            raise DeliveryError(
                f"{self._shown} refused the login of {config.username!r}: {error.smtp_code}",
                permanent=True,
            ) from None
        except smtplib.SMTPRecipientsRefused as error:
            codes = [code for code, _ in error.recipients.values()]
            raise DeliveryError(
                f"{self._shown} refused every recipient ({sorted(error.recipients)}: {codes})",
                permanent=all(code >= 500 for code in codes),
            ) from None
        except smtplib.SMTPResponseException as error:
            answer = error.smtp_error
            text = answer.decode("utf-8", "replace") if isinstance(answer, bytes) else str(answer)
            raise DeliveryError(
                f"{self._shown} answered {error.smtp_code} {text}",
                permanent=error.smtp_code >= 500,
            ) from None
        except ssl.SSLCertVerificationError as error:
            raise DeliveryError(
                f"{self._shown}: certificate not trusted ({error.verify_message}); set ca_file",
                permanent=True,
            ) from None
        except (TimeoutError, smtplib.SMTPException, OSError) as error:
            raise DeliveryError(f"cannot send through {self._shown}: {error}") from None
        if refused:
            # Some recipients accepted: the alert was delivered; say who was refused.
            return f"250 sent, refused {sorted(refused)}"
        return f"250 sent to {len(config.to)} recipient(s)"

    def close(self) -> None:
        """Nothing held open."""
