"""What does Twilio accept? Limits of the Access Token format that every module shares."""

from __future__ import annotations

import re

#: Twilio refuses an Access Token that lives longer than 24 hours (error 20157).
TWILIO_MAX_TTL = 86400
#: Our floor: shorter tokens expire before a client can use them.
MIN_TTL = 60
#: Video refuses longer identities (error 53201); Conversations and Sync share the bound.
MAX_IDENTITY_LENGTH = 128
#: Voice client identities: what Twilio's `client:` addressing accepts.
VOICE_IDENTITY = re.compile(r"[A-Za-z0-9_]{1,121}")
MAX_ROOM_LENGTH = 128


def _visible(text: str) -> bool:
    """No control, format (bidi overrides), separator, private or unassigned characters.

    That is exactly ``str.isprintable``: categories C* and Z* are refused, except the
    ASCII space.
    """
    return text.isprintable()


def identity_problem(identity: str, *, voice: bool) -> str | None:
    """Why ``identity`` cannot go into a token (with a Voice grant or not), or None."""
    if not identity:
        return "identity is empty"
    if len(identity) > MAX_IDENTITY_LENGTH:
        return "identity is longer than 128 characters"
    if not _visible(identity) or identity != identity.strip():
        return "identity has invisible or control characters"
    if voice and not VOICE_IDENTITY.fullmatch(identity):
        return "identity is not valid for Voice (letters, digits and _ only, at most 121)"
    return None


def room_is_acceptable(room: str) -> bool:
    """A room name: 1-128 visible characters, no leading or trailing space."""
    return 0 < len(room) <= MAX_ROOM_LENGTH and room == room.strip() and _visible(room)
