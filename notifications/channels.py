"""Delivery channels: SMTP email, signed webhooks, the in-app inbox marker. Each ``deliver`` either returns
(delivered) or raises ``TransientError`` (try again later) or ``PermanentError`` (park the message).

Every message carries its dedupe key where the channel accepts one — email ``Message-ID`` (derived from it)
and ``X-Jointcase-Dedupe-Key``, webhook ``Idempotency-Key`` — so a receiver can drop the duplicate that
at-least-once delivery allows (a relay killed after sending and before marking sends again).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import random
import smtplib
import ssl
import time
from dataclasses import dataclass
from datetime import datetime
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from functools import lru_cache
from types import TracebackType
from typing import Any

import httpx

from notifications.config import EmailSettings, NotificationSettings, WebhookSettings

# Long headers (the dedupe key) stay on one line: folding would hand receivers a value with a leading space.
_POLICY = SMTP.clone(max_line_length=998)

SIGNATURE_HEADER = "X-Jointcase-Signature"
TIMESTAMP_HEADER = "X-Jointcase-Timestamp"


class DeliveryError(Exception):
    """A delivery failed; ``str()`` is the reason recorded on the outbox row."""


class TransientError(DeliveryError):
    """Try again later (server down, timeout, 4xx SMTP reply, 5xx HTTP status)."""


class PermanentError(DeliveryError):
    """Trying again cannot help (rejected address, 4xx HTTP status, unknown webhook): park the message."""


@dataclass(frozen=True)
class Outgoing:
    """What the relay hands a channel: a copy of the outbox row, detached from any session."""

    id: int
    dedupe_key: str
    kind: str
    channel: str
    recipient: str
    recipient_user: str | None
    case_no: str | None
    subject: str
    body: str
    body_html: str
    lang: str
    created_at: datetime
    attempts: int
    ics: str = ""  # an iCalendar invitation (meeting notices), sent as a text/calendar part


@lru_cache(maxsize=4096)  # pure, and asked for every notice of every transition
def valid_address(address: str) -> bool:
    """Whether ``address`` is one plain mailbox (``user@domain``) that survives a round trip through the
    email parser unchanged: no display name, no list, nothing the SMTP envelope could read differently."""
    if not address or any(c in address for c in ' ,;<>()[]"\\\r\n') or address.count("@") != 1:
        return False
    try:
        parsed = Address(addr_spec=address)
    except (ValueError, IndexError, AttributeError, HeaderParseError):
        return False
    local, _, domain = address.partition("@")
    return parsed.addr_spec == address and bool(local) and "." in domain and ".." not in domain


def message_id(dedupe_key: str, domain: str = "jointcase.local") -> str:
    """A stable RFC 5322 Message-ID for a dedupe key: the same message always has the same id."""
    return f"<{hashlib.sha256(dedupe_key.encode('utf-8')).hexdigest()[:40]}@{domain}>"


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over ``timestamp.body``, as ``sha256=<hex>``."""
    mac = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: bytes, timestamp: str, body: bytes, signature: str) -> bool:
    """Whether ``signature`` is ours for this timestamp and body (for receivers and tests)."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def backoff(attempts: int, settings: NotificationSettings, rng: random.Random | None = None) -> float:
    """Seconds to wait after the ``attempts``-th failure: exponential, capped, with equal jitter."""
    ceiling = min(settings.backoff_max_seconds, settings.backoff_base_seconds * 2 ** max(0, attempts - 1))
    return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


class EmailChannel:
    """SMTP delivery; one connection reused for a relay batch, reopened after an error."""

    def __init__(self, settings: EmailSettings, environ: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.environ = environ if environ is not None else dict(os.environ)
        self._smtp: smtplib.SMTP | None = None
        # A failed connect is remembered for the rest of the pass: one unreachable server costs one timeout,
        # not one per message.
        self._down: TransientError | None = None

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        try:
            context = ssl.create_default_context(cafile=s.ca_file or None)  # verifies the certificate and host
            if s.tls == "ssl":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout_seconds, context=context)
            else:
                smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout_seconds)
                if s.tls == "starttls":
                    smtp.starttls(context=context)
            if s.username_env:
                user = self.environ.get(s.username_env, "")
                password = self.environ.get(s.password_env, "") if s.password_env else ""
                if not user:
                    raise TransientError(f"SMTP username variable {s.username_env} is not set")
                if s.password_env and not password:
                    raise TransientError(f"SMTP password variable {s.password_env} is not set")
                smtp.login(user, password)
        except smtplib.SMTPAuthenticationError as exc:
            raise TransientError(f"SMTP authentication failed at {s.host}:{s.port}: {exc.smtp_code}") from None
        except UnicodeEncodeError:
            # smtplib sends credentials as ASCII; the values themselves stay out of the message.
            raise TransientError(
                f"SMTP credentials from {s.username_env}/{s.password_env} are not ASCII; smtplib cannot send them"
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise TransientError(f"SMTP connection to {s.host}:{s.port} failed: {exc}") from None
        return smtp

    def deliver(self, msg: Outgoing) -> None:
        """Send one email; 5xx refusals are permanent, everything else is retried."""
        if not self.settings.enabled:
            raise PermanentError("email delivery is disabled ([notifications.email] enabled = false)")
        if not valid_address(msg.recipient):
            raise PermanentError(f"not a valid email address: {msg.recipient!r}")
        try:
            email = EmailMessage(policy=_POLICY)
            email["From"] = self.settings.sender
            email["To"] = msg.recipient
            email["Subject"] = msg.subject
            email["Date"] = format_datetime(msg.created_at)
            email["Message-ID"] = message_id(msg.dedupe_key)
            email["X-Jointcase-Dedupe-Key"] = msg.dedupe_key
            email.set_content(msg.body)
            if msg.body_html:
                email.add_alternative(msg.body_html, subtype="html")
            if msg.ics:
                # METHOD inside the calendar (REQUEST or CANCEL) tells mail clients what to do with it.
                method = "CANCEL" if "METHOD:CANCEL" in msg.ics else "REQUEST"
                email.add_attachment(
                    msg.ics.encode("utf-8"),
                    maintype="text",
                    subtype="calendar",
                    filename="invite.ics",
                    params={"method": method, "charset": "utf-8"},
                )
        except (ValueError, IndexError, AttributeError, HeaderParseError) as exc:
            raise PermanentError(f"the message cannot be built: {type(exc).__name__}: {exc}") from None
        if self._down is not None:
            raise self._down
        if self._smtp is None:
            try:
                self._smtp = self._connect()
            except TransientError as exc:
                self._down = exc
                raise
        try:
            # The envelope recipient is the stored address itself, never what a parser makes of the header.
            self._smtp.send_message(email, from_addr=self.settings.sender, to_addrs=[msg.recipient])
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            self._drop()
            if all(code >= 500 for code in codes):
                raise PermanentError(f"recipient refused by the SMTP server: {codes}") from None
            raise TransientError(f"recipient deferred by the SMTP server: {codes}") from None
        except smtplib.SMTPResponseException as exc:
            self._drop()
            if exc.smtp_code >= 500:
                raise PermanentError(f"SMTP server refused the message: {exc.smtp_code}") from None
            raise TransientError(f"SMTP server deferred the message: {exc.smtp_code}") from None
        except (OSError, smtplib.SMTPException) as exc:
            self._drop()
            raise TransientError(f"SMTP delivery failed: {exc}") from None

    def _drop(self) -> None:
        if self._smtp is not None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                self._smtp.close()
            self._smtp = None

    def close(self) -> None:
        """End the SMTP session politely (and forget a failed connect: the next pass tries again)."""
        self._down = None
        if self._smtp is not None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                self._smtp.quit()
            self._smtp = None


class WebhookChannel:
    """JSON POST signed with HMAC-SHA256; 2xx delivered, 5xx/timeouts retried, 4xx parked."""

    def __init__(self, hooks: list[WebhookSettings], environ: dict[str, str] | None = None) -> None:
        self.hooks = {h.name: h for h in hooks}
        self.environ = environ if environ is not None else dict(os.environ)
        self._client = httpx.Client(trust_env=False)  # never route through a proxy from the environment

    def deliver(self, msg: Outgoing) -> None:
        """POST the message to the webhook named by ``msg.recipient``."""
        hook = self.hooks.get(msg.recipient)
        if hook is None:
            raise PermanentError(f"no webhook named {msg.recipient!r} in [[notifications.webhooks]]")
        secret = self.environ.get(hook.secret_env, "")
        if not secret:
            raise TransientError(f"webhook {hook.name}: secret variable {hook.secret_env} is not set")
        payload: dict[str, Any] = {
            "id": msg.dedupe_key,
            "kind": msg.kind,
            "case_no": msg.case_no,
            "subject": msg.subject,
            "body": msg.body,
            "lang": msg.lang,
            "created_at": msg.created_at.isoformat(),
        }
        body = json.dumps(payload, ensure_ascii=False, sort_keys=True).encode("utf-8")
        # The time of this send (not of the message): a receiver may refuse stale signatures; a retry is
        # signed afresh and recognised as a repeat by its Idempotency-Key.
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Idempotency-Key": msg.dedupe_key,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(secret.encode("utf-8"), timestamp, body),
            "User-Agent": "jointcase-relay",
        }
        try:
            response = self._client.post(hook.url, content=body, headers=headers, timeout=hook.timeout_seconds)
        except (OSError, httpx.TimeoutException, httpx.TransportError) as exc:
            raise TransientError(f"webhook {hook.name} unreachable: {type(exc).__name__}: {exc}") from None
        if 200 <= response.status_code < 300:
            return
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise TransientError(f"webhook {hook.name} answered {response.status_code}")
        raise PermanentError(f"webhook {hook.name} refused the message: {response.status_code}")

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()


class Channels:
    """The channels of one relay run (a context manager that closes their connections)."""

    def __init__(self, settings: NotificationSettings, environ: dict[str, str] | None = None) -> None:
        self.email = EmailChannel(settings.email, environ)
        self.webhook = WebhookChannel(settings.webhooks, environ)

    def deliver(self, msg: Outgoing) -> None:
        """Hand ``msg`` to its channel (the inbox is written by the relay itself, in its transaction)."""
        if msg.channel == "email":
            self.email.deliver(msg)
        elif msg.channel == "webhook":
            self.webhook.deliver(msg)
        else:
            raise PermanentError(f"unknown channel {msg.channel!r}")

    def __enter__(self) -> Channels:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.email.close()
        self.webhook.close()
