"""The CLI's --since/--from/--to window (shipper.times.window): every form its error names is accepted."""
import re

import pytest

from shipper.times import window

DAY_MS = 86_400_000
JUNE_14 = 1749859200000  # 2025-06-14T00:00:00Z


def test_a_date_is_its_whole_day_in_utc():
    assert window(None, "2025-06-14", "2025-06-14") == (JUNE_14, JUNE_14 + DAY_MS)
    assert window(None, "2025-06-14", None) == (JUNE_14, None)


@pytest.mark.parametrize("text, ms", [
    ("2025-06-14T01:15:02Z", JUNE_14 + 4502_000),
    ("2025-06-14 01:15:02", JUNE_14 + 4502_000),  # as SLS shows times; no zone means UTC
    ("2025-06-14T09:15:02+08:00", JUNE_14 + 4502_000),
    ("1749863702", JUNE_14 + 4502_000),
    ("1749863702000", JUNE_14 + 4502_000),
])
def test_a_time_is_that_moment_as_from_and_as_to(text, ms):
    assert window(None, text, text) == (ms, ms)


def test_the_error_names_only_forms_it_accepts():
    with pytest.raises(ValueError) as refused:
        window(None, "yesterday", None)
    forms = re.search(r"use (.*)$", str(refused.value)).group(1).replace(" or ", ", ").split(", ")
    assert "2025-06-14" in forms
    for form in forms:
        window(None, {"epoch seconds": "1749863702"}.get(form, form), None)


@pytest.mark.parametrize("start, end, message", [
    ("2025-13-01", None, "is not a time"),
    ("2025-06-15", "2025-06-14T12:00:00Z", "--from is later than --to"),
])
def test_mistakes_are_named(start, end, message):
    with pytest.raises(ValueError, match=message):
        window(None, start, end)
