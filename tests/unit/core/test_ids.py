"""The job and endpoint ID grammar (bot/core/ids.py): what is valid, and why the rest is not."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.core.ids import MAX_ID_LENGTH, id_problem, is_valid_id, shorten
from tests.unit.core.builders import FAST, ids


@pytest.mark.parametrize("value", ["a", "job-1", "ep_2", "A" * MAX_ID_LENGTH, "sync-0f3e-4b5a-u1", "-_-"])
def test_valid_ids(value):
    assert id_problem(value) is None and is_valid_id(value)


@pytest.mark.parametrize(("value", "says"), [
    ("", "empty"),
    ("j" * (MAX_ID_LENGTH + 1), "129 characters"),
    ("job!", "'!'"),
    ("jöb", "'ö'"),
    ("jo b", "a space"),
    ("job/1", "'/'"),
    ("job\n", "a line break"),
    ("<@U1>", "'<'"),
])
def test_invalid_ids_say_why(value, says):
    problem = id_problem(value)
    assert problem is not None and says in problem
    assert not is_valid_id(value)


def test_is_valid_id_rejects_a_trailing_newline():
    # `$` in a regex would match before a final newline; the grammar must not.
    assert not is_valid_id("job-1\n")


def test_shorten_keeps_short_values_and_cuts_long_ones():
    assert shorten("abc") == "abc"
    cut = shorten("x" * 500, 40)
    assert len(cut) == 40 and cut.endswith("…")


@given(ids)
@FAST
def test_every_id_of_the_grammar_is_valid(value):
    assert id_problem(value) is None


@given(st.text(max_size=200))
@FAST
def test_id_problem_agrees_with_the_grammar(value):
    matches = re.fullmatch(r"[A-Za-z0-9_-]{1,128}", value) is not None and "\n" not in value
    assert (id_problem(value) is None) == matches == is_valid_id(value)
