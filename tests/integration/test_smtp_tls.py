"""SMTP delivery over TLS with authentication, against a real aiosmtpd server on 127.0.0.1.

The server presents a self-signed certificate (no CA) for ``127.0.0.1`` / ``localhost`` made with
``cryptography``; the relay trusts it through ``[notifications.email] ca_file``. The SMTP credentials come from
the environment variables named by ``username_env`` / ``password_env``, handed to ``Channels`` as an ``environ``
dict. Every test queues a real notice (the transfer to the police tells ``sm_psb_liaison``) and runs the real
``relay_outbox`` on SQLite with an injected ``FakeClock``.

What is checked: STARTTLS and implicit TLS deliver, over TLS and authenticated as the configured user; a wrong
password, a missing credentials variable, an untrusted certificate, a certificate for another host, a server
that does not offer STARTTLS and ``tls = "none"`` against a server that requires STARTTLS are retried (or
parked) and never marked sent, nothing reaches the server in clear text, and the password never appears in
``outbox.last_error``, ``delivery_attempts.error`` or the application's log.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import select

from deploy.processes import free_port
from models.tables import DeliveryAttempt, OutboxMessage
from notifications.channels import Channels
from tests.conftest import CaseBuilder, FakeClock, make_deps, write_config
from workflows.outbox import RelayResult, relay_outbox
from workflows.uow import Deps, UnitOfWork

LIAISON = "sm_psb_liaison"
LIAISON_EMAIL = "sm_psb_liaison@sanming.example"
SENDER = "jointcase@sanming.example"
BASE = 30.0  # config.toml [notifications] backoff_base_seconds

USER_ENV = "JC_SMTP_USER"
PASS_ENV = "JC_SMTP_PASS"
USER = "jointcase-relay"
PASSWORD = "Xq7-relay-Secret-9f3K"
WRONG_PASSWORD = "Wrong-Secret-2b8Z"
CREDENTIALS = {USER_ENV: USER, PASS_ENV: PASSWORD}


# --- a self-signed certificate (no CA) ---------------------------------------------------------------


@dataclass(frozen=True)
class CertFiles:
    cert: Path
    key: Path


def make_certificate(directory: Path, name: str, common_name: str, san: list[x509.GeneralName]) -> CertFiles:
    """A self-signed server certificate (its own trust anchor) and its key, as PEM files in ``directory``."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)  # TLS checks the validity against the real clock, not the FakeClock
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    files = CertFiles(directory / f"{name}.crt", directory / f"{name}.key")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return files


@dataclass(frozen=True)
class Certs:
    local: CertFiles  # CN/SAN 127.0.0.1 (IP) and localhost: the server's own name
    other_host: CertFiles  # a valid certificate, but for another host (mail.sanming.example)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    directory = tmp_path_factory.mktemp("certs")
    local = make_certificate(
        directory,
        "local",
        "127.0.0.1",
        [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")],
    )
    other = make_certificate(directory, "other", "mail.sanming.example", [x509.DNSName("mail.sanming.example")])
    return Certs(local, other)


def server_context(files: CertFiles) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.cert, files.key)
    return context


# --- a real SMTP server with TLS and AUTH --------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """One message as the server received it, with what the session knew."""

    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    tls_version: str | None  # of the connection that carried the message
    starttls: bool  # aiosmtpd's session.ssl: set after STARTTLS
    authenticated: bool
    login: str | None


@dataclass(frozen=True)
class AuthAttempt:
    mechanism: str
    login: str
    password: str
    tls_version: str | None


def tls_version(server: Any) -> str | None:
    """The TLS version of the server's current connection (None: clear text)."""
    transport = server.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    return None if ssl_object is None else str(ssl_object.version())


class Recorder:
    """aiosmtpd handler and authenticator: keeps every message and every AUTH attempt."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.auth_attempts: list[AuthAttempt] = []
        self._lock = threading.Lock()

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        login = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        with self._lock:
            self.auth_attempts.append(AuthAttempt(mechanism, login, password, tls_version(server)))
        ok = login == USER and password == PASSWORD
        return AuthResult(success=ok, handled=False, auth_data=login if ok else None)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        received = Received(
            mail_from=envelope.mail_from,
            rcpt_tos=list(envelope.rcpt_tos),
            content=bytes(envelope.content),
            tls_version=tls_version(server),
            starttls=session.ssl is not None,
            authenticated=bool(session.authenticated),
            login=session.auth_data,
        )
        with self._lock:
            self.received.append(received)
        return "250 Message accepted for delivery"


class SmtpServer:
    """aiosmtpd on 127.0.0.1. ``mode``: ``starttls`` (STARTTLS required, AUTH only after it), ``ssl`` (implicit
    TLS), ``plain`` (no TLS at all, AUTH offered in clear: what a STARTTLS-stripping attacker presents)."""

    def __init__(self, mode: str, cert: CertFiles) -> None:
        self.mode = mode
        self.port = free_port()
        self.recorder = Recorder()
        auth = self.recorder.authenticate
        if mode == "starttls":
            self.controller = Controller(
                self.recorder,
                hostname="127.0.0.1",
                port=self.port,
                server_hostname="mail.test",
                tls_context=server_context(cert),
                require_starttls=True,
                authenticator=auth,
                auth_require_tls=True,
            )
        elif mode == "ssl":
            # aiosmtpd only counts STARTTLS as TLS for auth_require_tls; with implicit TLS the whole connection
            # is encrypted, so AUTH is allowed from the start.
            self.controller = Controller(
                self.recorder,
                hostname="127.0.0.1",
                port=self.port,
                server_hostname="mail.test",
                ssl_context=server_context(cert),
                authenticator=auth,
                auth_require_tls=False,
            )
        elif mode == "plain":
            self.controller = Controller(
                self.recorder,
                hostname="127.0.0.1",
                port=self.port,
                server_hostname="mail.test",
                authenticator=auth,
                auth_require_tls=False,
            )
        else:
            raise ValueError(mode)
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

    @property
    def received(self) -> list[Received]:
        return list(self.recorder.received)

    @property
    def auth_attempts(self) -> list[AuthAttempt]:
        return list(self.recorder.auth_attempts)


# --- the application -----------------------------------------------------------------------------------


@dataclass
class Env:
    deps: Deps
    clock: FakeClock
    builder: CaseBuilder
    server: SmtpServer


MakeEnv = Callable[..., Env]


@pytest.fixture
def make_env(tmp_path: Path, clock: FakeClock, certs: Certs) -> Iterator[MakeEnv]:
    """``make_env(mode, tls=..., ca_file=..., credentials=...)``: a server and a config that talks to it."""
    made: list[Env] = []

    def make(mode: str, *, tls: str, ca_file: Path | None = None, credentials: bool = True, cert: str = "local") -> Env:
        server = SmtpServer(mode, certs.local if cert == "local" else certs.other_host)
        replace = {
            r"(?m)^port = 1025\b": f"port = {server.port}",
            r"(?m)^timeout_seconds = 10\b": "timeout_seconds = 5",
            r"(?m)^tls = \S+": f'tls = "{tls}"',
            r"(?m)^ca_file = \S+": f'ca_file = "{ca_file.as_posix() if ca_file else ""}"',
        }
        if credentials:
            replace[r"(?m)^username_env = \S+"] = f'username_env = "{USER_ENV}"'
            replace[r"(?m)^password_env = \S+"] = f'password_env = "{PASS_ENV}"'
        config = write_config(tmp_path, f"sqlite:///{tmp_path / 'jointcase.db'}", **replace)
        _settings, deps = make_deps(config, clock)
        email = deps.notifications.email
        assert (email.port, email.tls, email.ca_file) == (server.port, tls, str(ca_file or ""))
        assert (email.username_env, email.password_env) == ((USER_ENV, PASS_ENV) if credentials else ("", ""))
        files = tmp_path / "files"
        files.mkdir()
        env = Env(deps, clock, CaseBuilder(deps, clock, files), server)
        made.append(env)
        return env

    yield make
    for env in made:
        env.deps.engine.dispose()
        env.server.stop()


def relay(env: Env, environ: dict[str, str]) -> RelayResult:
    """One relay pass whose channels read the credentials from ``environ``."""
    with Channels(env.deps.notifications, environ) as channels:
        return relay_outbox(env.deps, channels=channels)


def queue_notice(env: Env) -> OutboxMessage:
    """A real case event that queues one email (and one inbox item) for the police liaison."""
    env.builder.to_state("police_review")
    [mail] = email_rows(env.deps)
    assert (mail.recipient, mail.status, mail.attempts) == (LIAISON_EMAIL, "pending", 0)
    return mail


def email_rows(deps: Deps) -> list[OutboxMessage]:
    with UnitOfWork(deps, read_only=True) as uow:
        found = list(
            uow.session.execute(
                select(OutboxMessage).where(OutboxMessage.channel == "email").order_by(OutboxMessage.id)  # type: ignore[arg-type]
            ).scalars()
        )
        uow.session.expunge_all()
        return found


def attempts_of(deps: Deps, msg_id: int | None) -> list[tuple[int, str, str]]:
    with UnitOfWork(deps, read_only=True) as uow:
        found = uow.session.execute(
            select(DeliveryAttempt).where(DeliveryAttempt.message_id == msg_id).order_by(DeliveryAttempt.id)  # type: ignore[arg-type]
        ).scalars()
        return [(a.attempt, a.outcome, a.error) for a in found]


def all_errors(deps: Deps) -> list[str]:
    """Every ``outbox.last_error`` and every ``delivery_attempts.error``."""
    with UnitOfWork(deps, read_only=True) as uow:
        last = list(uow.session.execute(select(OutboxMessage.last_error)).scalars())
        audit = list(uow.session.execute(select(DeliveryAttempt.error)).scalars())
    return [*last, *audit]


def secret_forms(secret: str) -> list[str]:
    """The secret as it is and as it travels in AUTH PLAIN / LOGIN (base64)."""
    return [
        secret,
        base64.b64encode(secret.encode("utf-8")).decode("ascii"),
        base64.b64encode(f"\0{USER}\0{secret}".encode()).decode("ascii"),
    ]


def assert_no_secret(env: Env, caplog: pytest.LogCaptureFixture, *secrets: str) -> None:
    """No password (nor its base64) in the outbox, the delivery audit or the application's log records."""
    texts = all_errors(env.deps)
    assert any(texts), "the failure was recorded somewhere"
    texts += [r.getMessage() for r in caplog.records if r.name.split(".")[0] in ("workflows", "notifications", "app")]
    for secret in secrets:
        for form in secret_forms(secret):
            leaked = [t for t in texts if form in t]
            assert not leaked, f"the password appears in {leaked}"


def assert_retried(env: Env, mail: OutboxMessage, *fragments: str) -> OutboxMessage:
    """The row failed once and waits for its retry; the audit holds the same reason."""
    [row] = email_rows(env.deps)
    assert (row.id, row.status, row.attempts, row.sent_at) == (mail.id, "pending", 1, None)
    assert row.claimed_by == "" and row.claimed_until is None
    assert BASE / 2 <= (row.next_attempt_at - env.clock.now).total_seconds() <= BASE, "first failure: base/2..base"
    for fragment in fragments:
        assert fragment in row.last_error, (fragment, row.last_error)
    assert attempts_of(env.deps, mail.id) == [(1, "failed", row.last_error)]
    return row


@pytest.fixture(autouse=True)
def _app_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="workflows")
    caplog.set_level(logging.DEBUG, logger="notifications")


# --- 1. delivered over TLS, authenticated ------------------------------------------------------------


def test_starttls_with_auth_delivers_over_tls_as_the_configured_user(make_env: MakeEnv, certs: Certs) -> None:
    env = make_env("starttls", tls="starttls", ca_file=certs.local.cert)
    mail = queue_notice(env)

    result = relay(env, dict(CREDENTIALS))

    assert (result.claimed, result.sent, result.retried, result.parked) == (2, 2, 0, 0)
    [got] = env.server.received
    assert got.mail_from == SENDER and got.rcpt_tos == [LIAISON_EMAIL]
    assert got.starttls, "the message was sent after STARTTLS"
    assert got.tls_version is not None and got.tls_version.startswith("TLSv1."), got.tls_version
    assert (got.authenticated, got.login) == (True, USER)
    assert mail.dedupe_key.encode() in got.content
    [auth] = env.server.auth_attempts
    assert (auth.login, auth.password) == (USER, PASSWORD)
    assert auth.tls_version is not None, "the password only travelled inside TLS"
    [row] = email_rows(env.deps)
    assert (row.status, row.attempts, row.last_error) == ("sent", 1, "")
    assert attempts_of(env.deps, mail.id) == [(1, "sent", "")]


def test_implicit_tls_delivers_authenticated(make_env: MakeEnv, certs: Certs) -> None:
    env = make_env("ssl", tls="ssl", ca_file=certs.local.cert)
    mail = queue_notice(env)

    result = relay(env, dict(CREDENTIALS))

    assert (result.sent, result.retried, result.parked) == (2, 0, 0)
    [got] = env.server.received
    assert got.rcpt_tos == [LIAISON_EMAIL]
    assert got.tls_version is not None and got.tls_version.startswith("TLSv1."), got.tls_version
    assert not got.starttls, "implicit TLS: no STARTTLS in the session"
    assert (got.authenticated, got.login) == (True, USER)
    assert all(a.tls_version is not None for a in env.server.auth_attempts)
    [row] = email_rows(env.deps)
    assert (row.status, row.attempts, row.last_error) == ("sent", 1, "")
    assert attempts_of(env.deps, mail.id) == [(1, "sent", "")]


# --- 2. credentials ------------------------------------------------------------------------------------


def test_wrong_password_is_retried_with_a_clear_reason_then_delivered_once_fixed(
    make_env: MakeEnv, certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    env = make_env("starttls", tls="starttls", ca_file=certs.local.cert)
    mail = queue_notice(env)

    result = relay(env, {USER_ENV: USER, PASS_ENV: WRONG_PASSWORD})

    assert (result.sent, result.retried, result.parked) == (1, 1, 0), "the inbox copy is delivered, the email not"
    assert env.server.received == []
    assert env.server.auth_attempts, "the server refused the login"
    assert all(a.password == WRONG_PASSWORD and a.tls_version is not None for a in env.server.auth_attempts)
    row = assert_retried(env, mail, "SMTP authentication failed", f"127.0.0.1:{env.server.port}", "535")
    assert row.last_error == f"SMTP authentication failed at 127.0.0.1:{env.server.port}: 535"
    assert_no_secret(env, caplog, WRONG_PASSWORD, PASSWORD)

    env.clock.advance(seconds=BASE + 1)
    again = relay(env, dict(CREDENTIALS))
    assert (again.claimed, again.sent) == (1, 1)
    [got] = env.server.received
    assert (got.authenticated, got.login, got.rcpt_tos) == (True, USER, [LIAISON_EMAIL])
    [sent] = email_rows(env.deps)
    assert (sent.status, sent.attempts, sent.last_error) == ("sent", 2, "")
    assert [(n, outcome) for n, outcome, _ in attempts_of(env.deps, mail.id)] == [(1, "failed"), (2, "sent")]
    assert_no_secret(env, caplog, WRONG_PASSWORD, PASSWORD)


def test_missing_username_variable_is_retried_naming_the_variable(
    make_env: MakeEnv, certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    env = make_env("starttls", tls="starttls", ca_file=certs.local.cert)
    mail = queue_notice(env)

    result = relay(env, {PASS_ENV: PASSWORD})

    assert (result.sent, result.retried, result.parked) == (1, 1, 0)
    assert env.server.received == [] and env.server.auth_attempts == []
    row = assert_retried(env, mail, USER_ENV)
    assert row.last_error == f"SMTP username variable {USER_ENV} is not set"
    assert_no_secret(env, caplog, PASSWORD)


def test_missing_password_variable_is_retried_naming_the_variable(
    make_env: MakeEnv, certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    env = make_env("starttls", tls="starttls", ca_file=certs.local.cert)
    mail = queue_notice(env)

    result = relay(env, {USER_ENV: USER})

    assert (result.sent, result.retried, result.parked) == (1, 1, 0)
    assert env.server.received == []
    assert_no_secret(env, caplog, PASSWORD)
    assert env.server.auth_attempts == [], "no AUTH with an empty password is tried"
    assert_retried(env, mail, PASS_ENV)


def test_a_non_ascii_password_fails_the_delivery_not_the_relay(
    make_env: MakeEnv, certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    env = make_env("starttls", tls="starttls", ca_file=certs.local.cert)
    mail = queue_notice(env)
    password = "三明-密码-2026"

    result = relay(env, {USER_ENV: USER, PASS_ENV: password})  # today: UnicodeEncodeError

    assert result.claimed == 2 and result.sent >= 1
    # This server does not know the password: whether the channel refuses to encode it or sends it as UTF-8
    # (RFC 4616), the row is retried with a reason, not left claimed.
    assert env.server.received == []
    assert_retried(env, mail)
    assert_no_secret(env, caplog, password)


# --- 3. the server's certificate -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["starttls", "ssl"])
def test_untrusted_certificate_is_retried_and_nothing_goes_in_clear(
    make_env: MakeEnv, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    env = make_env(mode, tls=mode, ca_file=None)  # the system's CAs: the self-signed certificate is not trusted
    mail = queue_notice(env)

    result = relay(env, dict(CREDENTIALS))

    assert (result.sent, result.retried, result.parked) == (1, 1, 0)
    assert env.server.received == [], "no message reached the server"
    assert env.server.auth_attempts == [], "the credentials were never sent"
    row = assert_retried(env, mail, f"127.0.0.1:{env.server.port}", "CERTIFICATE_VERIFY_FAILED")
    assert "self-signed certificate" in row.last_error
    assert_no_secret(env, caplog, PASSWORD)


@pytest.mark.parametrize("mode", ["starttls", "ssl"])
def test_trusted_certificate_for_another_host_is_refused(
    make_env: MakeEnv, certs: Certs, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    # ca_file trusts this very certificate, but it names mail.sanming.example, not 127.0.0.1
    env = make_env(mode, tls=mode, ca_file=certs.other_host.cert, cert="other")
    mail = queue_notice(env)

    result = relay(env, dict(CREDENTIALS))

    assert (result.sent, result.retried, result.parked) == (1, 1, 0)
    assert env.server.received == [] and env.server.auth_attempts == []
    row = assert_retried(env, mail, "CERTIFICATE_VERIFY_FAILED")
    assert "mismatch" in row.last_error, row.last_error
    assert_no_secret(env, caplog, PASSWORD)


# --- 4. downgrades ------------------------------------------------------------------------------------


def test_starttls_required_by_config_but_not_offered_is_not_sent_in_clear(
    make_env: MakeEnv, certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    # A server (or an attacker stripping STARTTLS) that offers AUTH in clear text and no STARTTLS.
    env = make_env("plain", tls="starttls", ca_file=certs.local.cert)
    mail = queue_notice(env)

    result = relay(env, dict(CREDENTIALS))

    assert (result.sent, result.retried, result.parked) == (1, 1, 0)
    assert env.server.received == [] and env.server.auth_attempts == [], "no fallback to clear text"
    assert_retried(env, mail, "STARTTLS")
    assert_no_secret(env, caplog, PASSWORD)


@pytest.mark.parametrize("credentials", [True, False], ids=["with-auth", "no-auth"])
def test_tls_none_against_a_server_requiring_starttls_is_never_marked_sent(
    make_env: MakeEnv, credentials: bool, caplog: pytest.LogCaptureFixture
) -> None:
    env = make_env("starttls", tls="none", credentials=credentials)
    mail = queue_notice(env)

    result = relay(env, dict(CREDENTIALS))

    assert result.sent == 1, "only the inbox copy"
    assert env.server.received == [] and env.server.auth_attempts == []
    [row] = email_rows(env.deps)
    assert row.status != "sent" and row.sent_at is None
    if credentials:
        # The server offers no AUTH before STARTTLS: smtplib gives up before sending anything.
        assert result.retried == 1
        assert_retried(env, mail, "SMTP AUTH extension not supported")
    else:
        # MAIL FROM is refused with 530 (5xx): parked at once, as the relay's policy says for SMTP 5xx.
        assert (result.parked, row.status, row.attempts) == (1, "dead", 1)
        assert row.last_error == "SMTP server refused the message: 530"
        assert attempts_of(env.deps, mail.id) == [(1, "dead", row.last_error)]
    assert_no_secret(env, caplog, PASSWORD)
