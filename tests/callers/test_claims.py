"""Claims by name or dotted path: nested objects, with exact top-level names first."""

from __future__ import annotations

from service.callers.claims import MISSING, claim_value


def test_a_dotted_path_steps_into_nested_claims() -> None:
    claims = {"realm_access": {"roles": ["agent"]}, "o": {"rol": "admin"}}
    assert claim_value(claims, "realm_access.roles") == ["agent"]
    assert claim_value(claims, "o.rol") == "admin"


def test_an_exact_top_level_name_wins() -> None:
    claims = {"https://example.com/roles": ["agent"], "https://example": {"com/roles": ["x"]}}
    assert claim_value(claims, "https://example.com/roles") == ["agent"]


def test_a_missing_step_or_a_non_object_is_missing() -> None:
    claims = {"a": {"b": 1}, "s": "text"}
    assert claim_value(claims, "a.c") is MISSING
    assert claim_value(claims, "s.x") is MISSING
    assert claim_value(claims, "a.b.c") is MISSING
    assert claim_value(claims, "absent") is MISSING
