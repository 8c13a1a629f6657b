"""Domain errors: a small hierarchy that each edge (CLI, HTTP, flows) translates once.

Each error carries a stable ``code`` (asserted by tests and shown to API clients) and a message a
case handler can act on: it names the case, the state and what is allowed.
"""

from __future__ import annotations

from collections.abc import Iterable


class DomainError(Exception):
    """Base of every refusal the engine gives on purpose. Never retried by flows."""

    code = "domain_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CaseNotFound(DomainError):
    """The case does not exist, or the actor may not see it (same answer, so numbers do not leak)."""

    code = "case_not_found"

    def __init__(self, case_no: str) -> None:
        super().__init__(f"case {case_no} not found")
        self.case_no = case_no


class TransitionRefused(DomainError):
    """The event is unknown or not allowed in the case's current state."""

    code = "transition_refused"

    def __init__(self, case_no: str, state: str, event: str, allowed: Iterable[str], reason: str = "") -> None:
        self.case_no = case_no
        self.state = state
        self.event = event
        self.allowed = sorted(allowed)
        allowed_text = ", ".join(self.allowed) if self.allowed else "none (the case is closed)"
        why = reason or f"event {event!r} is not allowed in state {state!r}"
        super().__init__(f"case {case_no}: {why}; allowed now: {allowed_text}")


class GuardFailed(DomainError):
    """The event is allowed in this state but its conditions (data, documents, limits) are not met."""

    code = "guard_failed"

    def __init__(self, message: str, *, rule: str = "", case_no: str = "", state: str = "", event: str = "") -> None:
        self.rule = rule
        self.case_no = case_no
        self.state = state
        self.event = event
        self.detail = message
        super().__init__(self._compose())

    def _compose(self) -> str:
        where = f"case {self.case_no}" if self.case_no else ""
        if self.state:
            where += f" in state {self.state!r}" if where else f"state {self.state!r}"
        head = f"{where}: {self.event} refused: " if where and self.event else (f"{where}: " if where else "")
        tail = f" ({self.rule})" if self.rule else ""
        return f"{head}{self.detail}{tail}"

    def bind(self, *, case_no: str, state: str, event: str) -> GuardFailed:
        """Fill in the case context once the caller knows it; returns self for ``raise``."""
        self.case_no, self.state, self.event = case_no, state, event
        self.message = self._compose()
        self.args = (self.message,)
        return self


class InvalidEventData(GuardFailed):
    """The event's data is missing, unknown or malformed (a guard on the event's payload)."""

    code = "invalid_event_data"


class ConcurrentUpdate(DomainError):
    """The case changed since the caller read it (expected version mismatch)."""

    code = "concurrent_update"

    def __init__(self, case_no: str, expected: int, actual: int) -> None:
        self.case_no, self.expected, self.actual = case_no, expected, actual
        super().__init__(
            f"case {case_no} was changed by someone else: expected version {expected}, it is now {actual}; "
            "reload the case and try again"
        )


class PermissionDenied(DomainError):
    """The actor may see the case but may not do this (agency kind, role or participation)."""

    code = "permission_denied"


class UnknownActor(PermissionDenied):
    """The named officer does not exist or is inactive."""

    code = "unknown_actor"

    def __init__(self, username: str) -> None:
        super().__init__(f"unknown or inactive officer {username!r}")
        self.username = username


class InvalidInput(DomainError):
    """Input that is wrong regardless of the case's state (unknown agency, bad file, bad date)."""

    code = "invalid_input"


class MeetingNotFound(InvalidInput):
    """No such meeting, or one the caller may not see (the same answer for both)."""

    code = "meeting_not_found"
