"""Reading times off the wire."""

from datetime import datetime


def parse_aware_time(text):
    """An aware datetime from ISO 8601 text ("Z" reads as UTC). ValueError, with a message a
    client can act on, for anything else or for a time without its time zone."""
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError("must be an ISO 8601 time, e.g. 2026-11-22T10:00:00Z.") from exc
    if moment.tzinfo is None:
        raise ValueError("must carry its time zone (Z for UTC).")
    return moment
