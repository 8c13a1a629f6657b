"""The deployment's settings: config.toml → one typed, validated ``Settings`` object.

``load_settings`` is the only way in. It reads the TOML file itself (so a syntax error names the line
and column), lays environment overrides over it, validates the result with pydantic, checks what
pydantic cannot see (duplicate codes, references between tables, clock rules against the case chart)
and raises one ``ConfigError`` listing every problem, one line each, never a traceback.

Precedence: environment > config.toml > defaults. Environment variables start with ``JOINTCASE_``
and use ``__`` between nested keys (``JOINTCASE_DATABASE__URL``, ``JOINTCASE_REFERRAL__LOSS_THRESHOLD``,
``JOINTCASE_CLOCKS__T2__UNIT``); lists and tables are given as JSON (``JOINTCASE_CALENDAR__EXTRA_HOLIDAYS
='["2027-01-01"]'``). ``JOINTCASE_DATABASE_URL`` is accepted as the conventional short form of the
database URL; ``JOINTCASE_DATABASE__URL`` wins over it. ``JOINTCASE_CONFIG`` names the file and is
never a setting; other ``JOINTCASE_*`` variables that name no setting (``JOINTCASE_TEST_DATABASE_URL``)
are ignored. Settings are loaded once, in ``app/``, and passed down.
"""

from __future__ import annotations

import json
import logging
import os
import re
import string
import tomllib
from collections.abc import Iterable, Mapping
from datetime import date
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from notifications.bulletins import BulletinSettings
from notifications.channels import valid_address
from notifications.config import NotificationSettings
from notifications.documents import DocumentSettings
from states.clocks import ClockRule, Extension, SupervisionPolicy, validate_rules
from states.meeting import MeetingSettings

logger = logging.getLogger(__name__)

AgencyKind = Literal["market_regulation", "police", "procuratorate", "court", "justice"]
Level = Literal["province", "city", "county"]
Role = Literal["handler", "secretary", "supervisor", "admin"]

AGENCY_KINDS: tuple[str, ...] = get_args(AgencyKind)

ENV_PREFIX = "JOINTCASE_"
ENV_NESTED_DELIMITER = "__"
CONFIG_ENV_VAR = "JOINTCASE_CONFIG"
DEFAULT_CONFIG_FILE = "config.toml"

# Conventional flat names accepted besides the ``__`` form (which wins when both are set).
_SHORT_FORMS: dict[str, tuple[str, ...]] = {"database_url": ("database", "url")}

_CODE_RE = r"^[a-z0-9][a-z0-9-]{1,39}$"
_USERNAME_RE = r"^[a-z][a-z0-9_.-]{1,39}$"
_REGION_RE = r"^\d{6}$"
_CASE_NUMBER_FIELDS = frozenset({"agency", "year", "seq"})
_TOML_ERROR_RE = re.compile(r"^(?P<reason>.*) \(at line (?P<line>\d+), column (?P<column>\d+)\)$")

Loc = tuple[str | int, ...]


class ConfigError(Exception):
    """The configuration cannot be used; ``message`` has one line per problem."""

    def __init__(self, problems: str | Iterable[str]) -> None:
        self.problems: list[str] = [problems] if isinstance(problems, str) else list(problems)
        self.message = "\n".join(self.problems)
        super().__init__(self.message)


class _Section(BaseModel):
    """Base of every config table: unknown keys are errors (a typo must not pass silently)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSettings(_Section):
    """Where the database is. The URL may hold a password: prefer the environment for it."""

    url: str = Field(default="sqlite:///var/jointcase.db", min_length=1)
    echo: bool = False
    # PostgreSQL connections kept open per process, and how many more it may open at a peak (closed again
    # when returned). A pool smaller than the requests in flight opens and closes a connection per request.
    pool_size: int = Field(default=20, ge=1, le=1000)
    max_overflow: int = Field(default=10, ge=0, le=1000)


class AgencyConfig(_Section):
    """One agency taking part in the joint mechanism."""

    code: str = Field(pattern=_CODE_RE)  # e.g. "sm-amr"
    name: str = Field(min_length=1)  # zh-CN, e.g. "三明市市场监督管理局"
    name_en: str = Field(min_length=1)
    kind: AgencyKind
    level: Level
    region: str = Field(pattern=_REGION_RE)  # administrative division code, e.g. "350400"
    region_name: str = Field(min_length=1)  # "三明市"
    parent_region: str | None = Field(default=None, pattern=_REGION_RE)  # county 350428 → "350400"
    doc_prefix: str = ""  # 文号 prefix, e.g. "明市监"


class OfficerConfig(_Section):
    """One user of the system; belongs to exactly one agency."""

    username: str = Field(pattern=_USERNAME_RE)
    display_name: str = Field(min_length=1)
    agency: str  # an agency code
    roles: list[Role] = Field(default_factory=list)
    liaison: bool = False  # the agency's liaison officer (联络员): receives inter-agency notices
    email: str
    channels: list[Literal["email", "inbox"]] = Field(default_factory=lambda: ["email", "inbox"])
    active: bool = True

    @field_validator("email")
    @classmethod
    def _email_shape(cls, value: str) -> str:
        # Deliberately shallow; the value itself is personal data and stays out of the message.
        if not valid_address(value):
            raise ValueError("not a plain email address (one user@domain, no name, list or brackets)")
        return value

    @field_validator("roles")
    @classmethod
    def _roles_unique(cls, value: list[str]) -> list[str]:
        if len(value) != len(set(value)):
            raise ValueError("a role is listed twice")
        return value


class CaseNumberSettings(_Section):
    """How case numbers look; ``{seq}`` is required, ``{agency}`` and ``{year}`` optional."""

    format: str = "{agency}-{year}-{seq:04d}"

    @field_validator("format")
    @classmethod
    def _renders(cls, value: str) -> str:
        try:
            names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        except ValueError as exc:
            raise ValueError(f"not a format string: {exc}") from None
        if "" in names or any(n.isdigit() for n in names):
            raise ValueError("use named fields only: {agency}, {year}, {seq}")
        unknown = sorted(names - _CASE_NUMBER_FIELDS)
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(unknown)}; allowed: agency, year, seq")
        if "seq" not in names:
            raise ValueError("must contain {seq}, or case numbers repeat")
        try:
            value.format(agency="sm-amr", year=2026, seq=1)
        except (ValueError, KeyError, IndexError, AttributeError, TypeError) as exc:
            raise ValueError(f"does not render: {exc}") from None
        return value


class CalendarYear(_Section):
    """One year's official holiday notice: rest days and make-up working days (调休上班)."""

    holidays: list[date] = Field(default_factory=list)
    workdays: list[date] = Field(default_factory=list)

    @model_validator(mode="after")
    def _disjoint(self) -> CalendarYear:
        both = sorted(set(self.holidays) & set(self.workdays))
        if both:
            raise ValueError(f"listed as both holiday and workday: {', '.join(map(str, both))}")
        return self


class CalendarSettings(_Section):
    """Holiday data beyond the chinese-calendar package, and single-day corrections."""

    years: dict[int, CalendarYear] = Field(default_factory=dict)
    extra_holidays: list[date] = Field(default_factory=list)
    extra_workdays: list[date] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> CalendarSettings:
        # The same checks WorkCalendar makes, so a bad table fails at load time, not at first use.
        problems: list[str] = []
        for year, declared in self.years.items():
            stray = sorted(d for d in [*declared.holidays, *declared.workdays] if d.year != year)
            if stray:
                problems.append(f"year {year} lists dates of another year: {', '.join(map(str, stray))}")
        both = sorted(set(self.extra_holidays) & set(self.extra_workdays))
        if both:
            problems.append(f"listed as both extra holiday and extra workday: {', '.join(map(str, both))}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class ReferralSettings(_Section):
    """Criminal filing thresholds for trade-secret infringement, in RMB."""

    loss_threshold: int = Field(default=300_000, gt=0)
    illegal_gain_threshold: int = Field(default=300_000, gt=0)


class StorageSettings(_Section):
    """Where attachment files are kept."""

    attachments_dir: str = Field(default="var/attachments", min_length=1)


class SchedulerSettings(_Section):
    """Who runs the periodic jobs: the web process, Prefect, or nobody."""

    mode: Literal["embedded", "prefect", "off"] = "embedded"
    sweep_every_seconds: int = Field(default=60, ge=1, le=86_400)  # how often the deadline sweep runs


class Settings(BaseSettings):
    """The whole deployment configuration. Build it with ``load_settings``, not directly."""

    # Sources: keyword arguments only. load_settings owns the file and the environment, so that a test
    # can pass its own env mapping and nothing is read from os.environ behind its back.
    model_config = SettingsConfigDict(extra="forbid", frozen=True)

    timezone: str = "Asia/Shanghai"
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    case_number: CaseNumberSettings = Field(default_factory=CaseNumberSettings)
    calendar: CalendarSettings = Field(default_factory=CalendarSettings)
    referral: ReferralSettings = Field(default_factory=ReferralSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    supervision: SupervisionPolicy = Field(default_factory=SupervisionPolicy)
    notifications: NotificationSettings = Field(default_factory=NotificationSettings)
    documents: DocumentSettings = Field(default_factory=DocumentSettings)
    meetings: MeetingSettings = Field(default_factory=MeetingSettings)
    bulletins: BulletinSettings = Field(default_factory=BulletinSettings)
    agencies: list[AgencyConfig] = Field(min_length=1)
    officers: list[OfficerConfig]
    clocks: dict[str, ClockRule]  # each rule's ``id`` is its key
    config_path: Path  # the file it was loaded from (set by load_settings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the values passed in; see ``load_settings`` for the file and the environment."""
        return (init_settings,)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("clocks")
    @classmethod
    def _ids_from_keys(cls, value: dict[str, ClockRule]) -> dict[str, ClockRule]:
        wrong = sorted(k for k, rule in value.items() if rule.id and rule.id != k)
        if wrong:
            raise ValueError(f"id differs from the table key in {', '.join(wrong)}; leave id out")
        return {k: rule if rule.id == k else rule.model_copy(update={"id": k}) for k, rule in value.items()}

    def agency(self, code: str) -> AgencyConfig:
        """The agency with this code; KeyError if there is none."""
        for agency in self.agencies:
            if agency.code == code:
                return agency
        raise KeyError(code)


_ENV_FIELDS: frozenset[str] = frozenset(Settings.model_fields) - {"config_path"}


def load_settings(path: str | Path | None = None, *, env: Mapping[str, str] | None = None) -> Settings:
    """Read, override, validate and cross-check the configuration; raise ConfigError on any problem.

    The file is ``path`` if given, else ``$JOINTCASE_CONFIG``, else ``./config.toml``. ``env`` defaults
    to ``os.environ``.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    file = _resolve_path(path, environ)
    data = _read_toml(file)
    sources = _Sources(file.name)
    problems = _apply_env(data, environ, sources)
    if "config_path" in data:
        del data["config_path"]
        problems.append(f"{file.name}: config_path: not a setting (the loader sets it)")
    for key in [k for k in data if k.startswith("_")]:
        del data[key]  # BaseSettings.__init__ would read these as its own options
        problems.append(f"{file.name}: {key}: Extra inputs are not permitted")
    settings: Settings | None = None
    try:
        settings = Settings(**data, config_path=file)
    except ValidationError as exc:
        problems.extend(_format_error(err, sources) for err in exc.errors(include_url=False))
    problems.extend(_cross_check(data, sources))
    if problems or settings is None:
        raise ConfigError(problems)
    return settings


# --- reading ----------------------------------------------------------------------------------------


def _resolve_path(path: str | Path | None, environ: Mapping[str, str]) -> Path:
    """Explicit path > $JOINTCASE_CONFIG > ./config.toml, made absolute; the file must exist."""
    chosen = Path(path) if path is not None else Path(environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_FILE)
    file = chosen.expanduser().absolute()
    if not file.is_file():
        raise ConfigError(f"config file not found: {file} (set {CONFIG_ENV_VAR} or pass --config)")
    return file


def _read_toml(file: Path) -> dict[str, Any]:
    """Parse the file; a syntax error becomes '<path>: line L, column C: <reason>'."""
    try:
        with file.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        text = str(exc)
        m = _TOML_ERROR_RE.match(text)
        where = f"line {m['line']}, column {m['column']}: {m['reason']}" if m else text
        raise ConfigError(f"{file}: invalid TOML: {where}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: invalid TOML: the file is not UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror or exc}") from None


# --- environment overrides --------------------------------------------------------------------------


class _Sources:
    """Remembers which keys the environment set, so a problem names the variable, not the file."""

    def __init__(self, file_name: str) -> None:
        self.file_name = file_name
        self.overrides: dict[tuple[str, ...], str] = {}

    def label(self, loc: Loc) -> str:
        """``env JOINTCASE_X`` when an override set ``loc`` or one of its parents, else the file name."""
        keys = tuple(str(part) for part in loc)
        for path, var in sorted(self.overrides.items(), key=lambda item: -len(item[0])):
            if keys[: len(path)] == path:
                return f"env {var}"
        return self.file_name


def _apply_env(data: dict[str, Any], environ: Mapping[str, str], sources: _Sources) -> list[str]:
    """Lay ``JOINTCASE_*`` overrides onto ``data`` in place; return problems (bad JSON, bad paths)."""
    found: list[tuple[tuple[int, int], str, list[str]]] = []
    for var in environ:
        if not var.upper().startswith(ENV_PREFIX) or var.upper() == CONFIG_ENV_VAR:
            continue
        rest = var[len(ENV_PREFIX) :]
        if ENV_NESTED_DELIMITER in rest:
            parts = rest.split(ENV_NESTED_DELIMITER)
            rank = (2, len(parts))  # deeper overrides apply later and win
        elif rest.lower() in _SHORT_FORMS:
            parts, rank = list(_SHORT_FORMS[rest.lower()]), (1, 0)
        else:
            parts, rank = [rest], (0, 0)
        if parts[0].lower() not in _ENV_FIELDS:
            continue  # not ours to read (e.g. JOINTCASE_TEST_DATABASE_URL)
        found.append((rank, var, parts))
    problems: list[str] = []
    for _, var, parts in sorted(found):
        problem = _set_path(data, parts, environ[var], var, sources)
        if problem:
            problems.append(f"env {var}: {problem}")
    return problems


def _set_path(data: dict[str, Any], parts: list[str], raw: str, var: str, sources: _Sources) -> str | None:
    """Set one override; model field names match case-insensitively, table keys keep their case."""
    node: dict[str, Any] = data
    typ: Any = Settings
    path: list[str] = []
    for i, part in enumerate(parts):
        if isinstance(typ, type) and issubclass(typ, BaseModel):
            key = part.lower()
            field = typ.model_fields.get(key)
            typ = field.annotation if field is not None else None
        elif get_origin(typ) is dict:
            key = next((k for k in node if k.lower() == part.lower()), part)
            typ = get_args(typ)[1]
        else:
            key, typ = part, None
        path.append(key)
        if i == len(parts) - 1:
            break
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            where = ".".join(path)
            return f"cannot set {where}.{parts[i + 1]}: {where} is not a table (give it whole, as JSON)"
        node = child
    value: Any = raw
    if _is_structured(typ) and raw.strip()[:1] in ("[", "{"):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            return f"{'.'.join(path)}: not valid JSON: {exc.msg} (column {exc.colno})"
    existing = node.get(key)
    node[key] = _deep_merge(existing, value) if isinstance(existing, dict) and isinstance(value, dict) else value
    sources.overrides[tuple(path)] = var
    return None


def _is_structured(typ: Any) -> bool:
    """True for list, dict and model types, whose environment value is JSON."""
    origin = get_origin(typ)
    if origin in (Union, UnionType):
        return any(_is_structured(arg) for arg in get_args(typ) if arg is not type(None))
    if origin in (list, dict) or typ in (list, dict):
        return True
    return isinstance(typ, type) and issubclass(typ, BaseModel)


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``update`` laid over ``base``, tables merged key by key."""
    merged = dict(base)
    for key, value in update.items():
        old = merged.get(key)
        merged[key] = _deep_merge(old, value) if isinstance(old, dict) and isinstance(value, dict) else value
    return merged


# --- problems -----------------------------------------------------------------------------------------


def _dotted(loc: Loc) -> str:
    """('officers', 3, 'agency') → 'officers[3].agency'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _format_error(err: Mapping[str, Any], sources: _Sources) -> str:
    """One pydantic error as '<source>: <dotted.key>: <problem>' (input values are never echoed)."""
    loc: Loc = tuple(p for p in err["loc"] if p != "[key]")
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    if "[key]" in err["loc"]:
        msg = f"key: {msg}"
    where = _dotted(loc)
    return f"{sources.label(loc)}: {where}: {msg}" if where else f"{sources.label(loc)}: {msg}"


def _cross_check(data: Mapping[str, Any], sources: _Sources) -> list[str]:
    """What pydantic cannot see: uniqueness, references, clock rules against the chart.

    Works on the raw data so these problems are reported together with the type errors; entries of
    the wrong shape are skipped (pydantic has already reported them).
    """
    problems: list[str] = []

    def report(loc: Loc, problem: str) -> None:
        problems.append(f"{sources.label(loc)}: {_dotted(loc)}: {problem}")

    agencies = data.get("agencies")
    codes: dict[str, int] = {}
    for i, agency in enumerate(agencies if isinstance(agencies, list) else []):
        code = agency.get("code") if isinstance(agency, dict) else None
        if not isinstance(code, str):
            continue
        if code in codes:
            report(("agencies", i, "code"), f"duplicate agency code {code!r} (also agencies[{codes[code]}])")
        else:
            codes[code] = i

    officers = data.get("officers")
    usernames: dict[str, int] = {}
    for i, officer in enumerate(officers if isinstance(officers, list) else []):
        if not isinstance(officer, dict):
            continue
        username = officer.get("username")
        if isinstance(username, str):
            if username in usernames:
                report(
                    ("officers", i, "username"),
                    f"duplicate username {username!r} (also officers[{usernames[username]}])",
                )
            else:
                usernames[username] = i
        agency_code = officer.get("agency")
        if isinstance(agency_code, str) and isinstance(agencies, list) and agency_code not in codes:
            report(("officers", i, "agency"), f"unknown agency {agency_code!r} (not a code in [[agencies]])")

    notifications = data.get("notifications")
    hooks = notifications.get("webhooks") if isinstance(notifications, dict) else None
    for i, hook in enumerate(hooks if isinstance(hooks, list) else []):
        for j, code in enumerate(hook.get("agencies", []) if isinstance(hook, dict) else []):
            if isinstance(code, str) and isinstance(agencies, list) and code not in codes:
                report(("notifications", "webhooks", i, "agencies", j), f"unknown agency {code!r}")

    meetings = data.get("meetings")
    schedules = meetings.get("schedules") if isinstance(meetings, dict) else None
    schedule_ids: dict[str, int] = {}
    for i, schedule in enumerate(schedules if isinstance(schedules, list) else []):
        if not isinstance(schedule, dict):
            continue
        schedule_id = schedule.get("id")
        if isinstance(schedule_id, str):
            if schedule_id in schedule_ids:
                report(("meetings", "schedules", i, "id"), f"duplicate schedule id {schedule_id!r}")
            schedule_ids.setdefault(schedule_id, i)
        refs = [("convening_agency", schedule.get("convening_agency"))] + [
            (("invited", j), code) for j, code in enumerate(_names(schedule.get("invited")))
        ]
        for where, code in refs:
            if isinstance(code, str) and isinstance(agencies, list) and code not in codes:
                loc = ("meetings", "schedules", i, *(where if isinstance(where, tuple) else (where,)))
                report(loc, f"unknown agency {code!r} (not a code in [[agencies]])")

    bulletins = data.get("bulletins")
    subscribers = bulletins.get("subscribers") if isinstance(bulletins, dict) else None
    for i, name in enumerate(subscribers if isinstance(subscribers, list) else []):
        if isinstance(name, str) and isinstance(officers, list) and name not in usernames:
            report(("bulletins", "subscribers", i), f"unknown officer {name!r} (not a username in [[officers]])")

    clocks = data.get("clocks")
    rules: dict[str, ClockRule] = {}
    for rule_id, raw in clocks.items() if isinstance(clocks, dict) else []:
        if not isinstance(raw, dict):
            continue
        responsible = raw.get("responsible", "")
        if isinstance(responsible, str) and responsible and responsible not in AGENCY_KINDS:
            report(
                ("clocks", rule_id, "responsible"),
                f"{responsible!r} is not an agency kind ({', '.join(AGENCY_KINDS)}) or empty",
            )
        try:
            rules[rule_id] = ClockRule.model_validate(raw)
        except ValidationError:
            # Already reported; still name the states and events it gets wrong, so that every problem of
            # the table shows in one go (a rule with a bad unit can also have an unknown state).
            rules[rule_id] = ClockRule.model_construct(
                label="",
                basis="",
                unit="days",
                limit=1,
                **{key: _names(raw.get(key)) for key in ("start_on", "stop_on", "active_in", "pause_in")},
                extensions=[
                    Extension.model_construct(event=ext["event"])
                    for ext in raw.get("extensions") or []
                    if isinstance(ext, dict) and isinstance(ext.get("event"), str)
                ],
            )
    supervision = data.get("supervision")
    policies = supervision.get("auto_list") if isinstance(supervision, dict) else None
    for i, policy in enumerate(policies if isinstance(policies, list) else []):
        rule_ref = policy.get("rule") if isinstance(policy, dict) else None
        if isinstance(rule_ref, str) and isinstance(clocks, dict) and rule_ref not in clocks:
            report(("supervision", "auto_list", i, "rule"), f"unknown clock rule {rule_ref!r} (not a [clocks.*] table)")
    for rule_id, rule in rules.items():
        for line in _check_rule_against_chart(rule_id, rule):
            head, _, problem = line.partition(": ")
            field = head.removeprefix(f"clocks.{rule_id}.")
            problems.append(f"{sources.label(('clocks', rule_id, field))}: {head}: {problem}")
    return problems


def _names(value: Any) -> list[str]:
    """The strings of a raw list from the file (anything else was reported by pydantic)."""
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _check_rule_against_chart(rule_id: str, rule: ClockRule) -> list[str]:
    """validate_rules for one rule against the case chart's state and event ids."""
    try:
        # Imported here: building the chart is not free, and settings must stay importable on its own.
        from states.lifecycle import EVENT_IDS, STATE_IDS
    except ModuleNotFoundError as exc:
        if exc.name != "states.lifecycle":
            raise
        logger.warning("states.lifecycle is missing; clock rule %s not checked against the chart", rule_id)
        return []
    return validate_rules({rule_id: rule}, set(STATE_IDS), set(EVENT_IDS))
