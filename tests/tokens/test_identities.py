"""Voice identities from any subject: deterministic, reversible, never shared."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from service.tokens import VOICE_IDENTITY
from service.tokens.identities import base_identity, subject_of, voice_identity


def test_subjects_voice_accepts_are_kept() -> None:
    assert voice_identity("alice") == "alice"
    assert voice_identity("a_b") == "a_b"
    assert voice_identity("user_42") == "user_42"


def test_documented_examples() -> None:
    assert voice_identity("auth0|123") == "auth0_x7c_123"
    assert voice_identity("a-b") == "a_x2d_b"
    assert voice_identity("a_x2d_b") == "a_x5f_x2d_x5f_b"
    uuid = "6f1c2a9e-3b4d-4e5f-8a6b-7c8d9e0f1a2b"
    assert voice_identity(uuid) == uuid.replace("-", "_x2d_")


def test_a_dash_and_an_underscore_never_share_an_identity() -> None:
    assert voice_identity("a-b") != voice_identity("a_b")
    assert voice_identity("a-b") != voice_identity("a_x2d_b")


def test_base_identity_strips_the_provider_prefix_first() -> None:
    assert base_identity("staff_a_x2d_b", ("staff_", "customer_")) == "staff_a-b"
    assert base_identity("alice") == "alice"


_subjects = st.text(min_size=1, max_size=24)


@given(subject=_subjects)
def test_every_subject_becomes_a_voice_identity_that_decodes_back(subject: str) -> None:
    identity = voice_identity(subject)
    assert identity == voice_identity(subject)  # deterministic
    assert subject_of(identity) == subject  # reversible
    if len(identity) <= 121:
        assert VOICE_IDENTITY.fullmatch(identity)


@given(first=_subjects, second=_subjects)
def test_two_subjects_never_share_a_voice_identity(first: str, second: str) -> None:
    if first != second:
        assert voice_identity(first) != voice_identity(second)


@given(subject=st.sampled_from("ab_-x0|.@").flatmap(lambda c: st.text(alphabet="ab_-x0|.@5f")))
def test_subjects_made_of_escape_lookalikes_never_collide(subject: str) -> None:
    assert subject_of(voice_identity(subject)) == subject
