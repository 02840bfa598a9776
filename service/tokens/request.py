"""What is being asked? Strict parsing of a ``POST /v1/tokens`` body.

Only what the contract names is accepted: duplicate keys, NaN and Infinity, booleans
where integers belong, unknown fields and SIDs are all refused, never ignored.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass

from service.base.errors import InvalidJson, InvalidRequest, InvalidRoom, InvalidTtl, UnknownField
from service.tokens.format import MIN_TTL, TWILIO_MAX_TTL, room_is_acceptable

MAX_BODY_BYTES = 4096
MAX_PUSH_NAME_LENGTH = 32
GRANT_NAMES = ("video", "voice", "chat", "sync", "task_router")


@dataclass(frozen=True)
class VideoRequest:
    room: str


@dataclass(frozen=True)
class VoiceRequest:
    incoming: bool | None = None
    outgoing: bool | None = None
    push: str | None = None


@dataclass(frozen=True)
class ChatRequest:
    push: str | None = None


@dataclass(frozen=True)
class TokenRequest:
    """A well-formed request; whether it is allowed is policy's question."""

    video: VideoRequest | None = None
    voice: VoiceRequest | None = None
    chat: ChatRequest | None = None
    sync: bool = False
    ttl: int | None = None
    #: Only a server-to-server caller may name an identity; others are refused later.
    identity: str | None = None
    #: A TaskRouter Worker token: which Worker is the policy's question, never the caller's
    task_router: bool = False

    @property
    def grant_names(self) -> tuple[str, ...]:
        present = (
            self.video,
            self.voice,
            self.chat,
            True if self.sync else None,
            True if self.task_router else None,
        )
        return tuple(name for name, value in zip(GRANT_NAMES, present, strict=True) if value)

    @property
    def push_names(self) -> tuple[str, ...]:
        names = (self.voice.push if self.voice else None, self.chat.push if self.chat else None)
        return tuple(name for name in names if name is not None)


class _OversizedInteger:
    """Stands in for an integer literal too long to be any accepted value."""


def _parse_int(literal: str) -> int | _OversizedInteger:
    # Bounded before int(): a 5000-digit literal must not cost quadratic time or raise.
    return int(literal) if len(literal) <= 20 else _OversizedInteger()


def _refuse_constant(name: str) -> object:
    raise InvalidJson(f"non-standard JSON constant {name}")


def _object_without_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise InvalidJson("duplicate key in object")
        result[key] = value
    return result


# Clients send a handful of distinct bodies; the result is immutable and depends only on
# the bytes, so a bounded cache saves the JSON parse on most requests. Refusals (raised)
# are never cached.
@functools.lru_cache(maxsize=1024)
def parse_token_request(body: bytes) -> TokenRequest:
    """Parse and validate a request body; raise an ``InvalidRequest`` subclass if it fails."""
    if len(body) > MAX_BODY_BYTES:
        raise InvalidRequest("body over the size limit")
    try:
        text = body.decode("utf-8")
        document = json.loads(
            text,
            object_pairs_hook=_object_without_duplicates,
            parse_constant=_refuse_constant,
            parse_int=_parse_int,
        )
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise InvalidJson("body is not strict UTF-8 JSON") from None
    if not isinstance(document, dict):
        raise InvalidRequest("body must be a JSON object")
    for key in document:
        if key not in ("grants", "ttl", "identity"):
            raise UnknownField(f"unknown top-level field {_printable(key)}")

    grants = document.get("grants")
    if not isinstance(grants, dict) or not grants:
        raise InvalidRequest("grants must be an object naming at least one grant")
    for name in grants:
        if name not in GRANT_NAMES:
            raise UnknownField(f"unknown grant {_printable(name)}")

    return TokenRequest(
        video=_video(grants["video"]) if "video" in grants else None,
        voice=_voice(grants["voice"]) if "voice" in grants else None,
        chat=_chat(grants["chat"]) if "chat" in grants else None,
        sync=_sync(grants["sync"]) if "sync" in grants else False,
        task_router=_task_router(grants["task_router"]) if "task_router" in grants else False,
        ttl=_ttl(document["ttl"]) if "ttl" in document else None,
        identity=_identity(document["identity"]) if "identity" in document else None,
    )


def _members(value: object, grant: str, allowed: tuple[str, ...]) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise InvalidRequest(f"grants.{grant} must be an object")
    for key in value:
        if key not in allowed:
            raise UnknownField(f"unknown field in grants.{grant}: {_printable(key)}")
    return value


def _video(value: object) -> VideoRequest:
    members = _members(value, "video", ("room",))
    if "room" not in members:
        raise InvalidRoom("video grant without a room")
    room = members["room"]
    if not isinstance(room, str) or not room_is_acceptable(room):
        raise InvalidRoom("room is empty, too long or has forbidden characters")
    return VideoRequest(room=room)


def _flag(members: Mapping[str, object], key: str, grant: str) -> bool | None:
    value = members.get(key)
    if value is None and key not in members:
        return None
    if not isinstance(value, bool):
        raise InvalidRequest(f"grants.{grant}.{key} must be true or false")
    return value


def _push(members: Mapping[str, object], grant: str) -> str | None:
    if "push" not in members:
        return None
    name = members["push"]
    if (
        not isinstance(name, str)
        or not 0 < len(name) <= MAX_PUSH_NAME_LENGTH
        or not name.isascii()
        or not name.replace("_", "").isalnum()
    ):
        raise InvalidRequest(f"grants.{grant}.push must name a configured push credential")
    return name


def _voice(value: object) -> VoiceRequest:
    members = _members(value, "voice", ("incoming", "outgoing", "push"))
    request = VoiceRequest(
        incoming=_flag(members, "incoming", "voice"),
        outgoing=_flag(members, "outgoing", "voice"),
        push=_push(members, "voice"),
    )
    if request.incoming is False and request.outgoing is False:
        raise InvalidRequest("a voice grant with neither incoming nor outgoing allows nothing")
    return request


def _chat(value: object) -> ChatRequest:
    return ChatRequest(push=_push(_members(value, "chat", ("push",)), "chat"))


def _sync(value: object) -> bool:
    _members(value, "sync", ())
    return True


def _task_router(value: object) -> bool:
    # No fields: a workspace, a Worker or a role named by the caller is an unknown field.
    _members(value, "task_router", ())
    return True


def _ttl(value: object) -> int:
    # bool is an int subclass in Python: true must not pass as 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidTtl("ttl is not a plain integer")
    if not MIN_TTL <= value <= TWILIO_MAX_TTL:
        raise InvalidTtl(f"ttl outside {MIN_TTL}..{TWILIO_MAX_TTL}")
    return value


def _identity(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidRequest("identity must be a string")
    return value


def _printable(text: str) -> str:
    """A field name made safe for an audit reason: bounded, non-printables escaped."""
    return ascii(text[:64])
