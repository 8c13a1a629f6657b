"""Typed delivery settings (``[notifications]`` of config.toml). Secrets are never here: only the names of
the environment variables that hold them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

CHANNELS: tuple[str, ...] = ("email", "inbox", "webhook")
OFFICER_CHANNELS: tuple[str, ...] = ("email", "inbox")


class EmailSettings(BaseModel):
    """SMTP: where to send and how; the username and password come from the environment variables named."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=25, ge=1, le=65535)
    sender: str = "jointcase@sanming.example"
    tls: Literal["none", "starttls", "ssl"] = "none"
    username_env: str = ""  # e.g. JOINTCASE_SMTP_USERNAME; empty: no authentication
    password_env: str = ""  # e.g. JOINTCASE_SMTP_PASSWORD
    timeout_seconds: float = Field(default=10, gt=0, le=300)
    ca_file: str = ""  # a CA bundle to trust for the server's certificate (e.g. an agency's own CA); "" = system


class WebhookSettings(BaseModel):
    """A system of another agency that receives notifications as signed JSON POSTs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")
    url: str
    secret_env: str = Field(min_length=1)  # the HMAC-SHA256 key is read from this environment variable
    agencies: list[str] = Field(default_factory=list)  # only cases these agencies take part in; [] = all
    kinds: list[str] = Field(default_factory=list)  # only these notification kinds; [] = all
    timeout_seconds: float = Field(default=5, gt=0, le=120)

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value


class NotificationSettings(BaseModel):
    """How the outbox relay delivers: retries, backoff, claims, and the channels."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(default=8, ge=1, le=100)
    backoff_base_seconds: float = Field(default=30, gt=0)
    backoff_max_seconds: float = Field(default=3600, gt=0)
    lease_seconds: float = Field(default=120, gt=0)  # a claim older than this is taken to be a dead relay's
    batch_size: int = Field(default=100, ge=1, le=10_000)
    relay_every_seconds: int = Field(default=30, ge=1, le=86_400)
    email: EmailSettings = Field(default_factory=EmailSettings)
    webhooks: list[WebhookSettings] = Field(default_factory=list)
