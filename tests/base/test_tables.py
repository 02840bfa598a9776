"""The one table reader: types, unknown keys, every problem with where it is."""

from __future__ import annotations

from service.base.tables import TableReader, is_string_list


def test_problems_name_the_file_and_the_place() -> None:
    reader = TableReader("policy.toml")
    assert reader.table([], "[limits]") == {}
    reader.known_keys({"ttl": 1, "max_ttl": 2}, {"max_ttl"}, "[tokens]")
    assert reader.problems == [
        "policy.toml: [limits] must be a table",
        "policy.toml: unknown key 'ttl' in [tokens]",
    ]


def test_values_of_the_wrong_type_fall_back_with_a_problem() -> None:
    reader = TableReader("p")
    assert reader.flag("yes", "x.chat") is False
    assert reader.flag(True, "x.sync") is True
    assert reader.integer(True, "cost", low=1, high=9, default=1) == 1  # true is not 1
    assert reader.integer(10, "cost", low=1, high=9, default=1) == 1
    assert reader.integer(5, "cost", low=1, high=9, default=1) == 5
    assert reader.strings(["a", ""], "ids", what="names") == ()
    assert reader.strings(["a", "b"], "ids", what="names") == ("a", "b")
    assert len(reader.problems) == 4


def test_string_lists() -> None:
    assert is_string_list(["a"])
    assert not is_string_list([])
    assert not is_string_list(["a", 1])
    assert not is_string_list("a")
