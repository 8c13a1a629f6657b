"""iCalendar (RFC 5545) invitations for meetings: REQUEST for a new or moved meeting, CANCEL for a
cancelled one. The same UID for every version of a meeting and a growing SEQUENCE, so calendar programs
update the entry instead of adding another. Times carry the Asia/Shanghai time zone (with its VTIMEZONE)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event, vCalAddress, vText

SHANGHAI = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class Invitee:
    """Someone invited: a name, an email address and the agency they speak for."""

    name: str
    email: str
    agency: str


def meeting_ics(
    *,
    uid: str,
    sequence: int,
    title: str,
    starts_at: datetime,
    ends_at: datetime,
    stamp: datetime,
    location: str,
    description: str,
    organizer_name: str,
    organizer_email: str,
    invitees: list[Invitee],
    cancelled: bool = False,
) -> str:
    """The invitation as text (CRLF line endings, as RFC 5545 wants)."""
    cal = Calendar()
    cal.add("prodid", "-//jointcase//Sanming trade-secret liaison//ZH")
    cal.add("version", "2.0")
    cal.add("method", "CANCEL" if cancelled else "REQUEST")
    event = Event()
    event.add("uid", uid)
    event.add("sequence", sequence)
    event.add("dtstamp", stamp)
    event.add("dtstart", starts_at.astimezone(SHANGHAI))
    event.add("dtend", ends_at.astimezone(SHANGHAI))
    event.add("summary", title)
    event.add("location", location)
    event.add("description", description)
    event.add("status", "CANCELLED" if cancelled else "CONFIRMED")
    organizer = vCalAddress(f"mailto:{organizer_email}")
    organizer.params["cn"] = vText(organizer_name)
    event["organizer"] = organizer
    for person in invitees:
        attendee = vCalAddress(f"mailto:{person.email}")
        attendee.params["cn"] = vText(f"{person.name}（{person.agency}）")
        attendee.params["role"] = vText("REQ-PARTICIPANT")
        attendee.params["rsvp"] = vText("TRUE")
        event.add("attendee", attendee, encode=0)
    cal.add_component(event)
    cal.add_missing_timezones()
    return cal.to_ical().decode("utf-8")
