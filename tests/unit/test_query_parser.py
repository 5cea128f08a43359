"""The SLS query language parser (reference/sls.md §7): structure, precedence, quoting, errors."""
import pytest

from shipper.query.parser import (
    And, Compare, Not, Or, Query, QueryError, Range, Term, fields_used, parse,
)


def word(value, field=None, kind="exact"):
    return Term(field, value, kind)


A, B, C = word("a"), word("b"), word("c")


@pytest.mark.parametrize("text, expected", [
    # fields, bare words, juxtaposition
    ("instance_id: i-bp1f3kq7z2m9w4x6c8v0", word("i-bp1f3kq7z2m9w4x6c8v0", "instance_id")),
    ("state:Stopped", word("Stopped", "state")),
    ("a b", And((A, B))),
    ("a and b and c", And((A, B, C))),
    # precedence, SLS's (reference/sls.md §7): and > not > or, so `not` takes the whole and-chain after it
    ("a or b and c", Or((A, And((B, C))))),
    ("a and b or c", Or((And((A, B)), C))),
    ("not a and b", Not(And((A, B)))),
    ("not a b", Not(And((A, B)))),
    ("a not b and c", And((A, Not(And((B, C)))))),
    ("a and not b and c", And((A, Not(And((B, C)))))),
    ("a b not c", And((A, B, Not(C)))),
    ("a not b not c", And((A, Not(B), Not(C)))),
    ("a not b or c", Or((And((A, Not(B))), C))),
    ("a or not b c", Or((A, Not(And((B, C)))))),
    ("a and not b or c", Or((And((A, Not(B))), C))),
    ("(not a) and b", And((Not(A), B))),
    ("not not a", Not(Not(A))),
    ("a not b", And((A, Not(B)))),
    ("A AND b OR NOT c", Or((And((word("A"), B)), Not(C)))),
    ("(a or b) c", And((Or((A, B)), C))),
    ("a and (b or not (c a))", And((A, Or((B, Not(And((C, A)))))))),
    # quoting
    ('event_name: "Instance:StateChange"', word("Instance:StateChange", "event_name")),
    ('detail: "say \\"hi\\" \\\\ now"', word('say "hi" \\ now', "detail")),
    ('"and"', word("and")),
    ('"two words"', word("two words")),
    ('"abc*"', word("abc*")),
    # phrases (Alibaba Cloud "Phrase search"): #"..." full text or key:#"..."
    ('#"Deleted"', word("Deleted", None, "phrase")),
    ('#"two words"', word("two words", None, "phrase")),
    ('state:#"Deleted"', word("Deleted", "state", "phrase")),
    ('event_name: #"Instance:StateChange" and state: Stopped',
     And((word("Instance:StateChange", "event_name", "phrase"), word("Stopped", "state")))),
    # wildcards
    ("event_name: Instance*", word("Instance*", "event_name", "prefix")),
    ("St?pped", word("St?pped", None, "wildcard")),
    ("a*c", word("a*c", None, "wildcard")),
    ("state: *", word("*", "state", "prefix")),
    ('state: ""', word("", "state")),
    ("not instance_name: *", Not(word("*", "instance_name", "prefix"))),
    # numbers on numeric fields
    ("event_time_ms >= 1772697600000", Compare("event_time_ms", ">=", 1772697600000)),
    ("__time__<1.5", Compare("__time__", "<", 1.5)),
    ("seconds_before_reclaim = -2", Compare("seconds_before_reclaim", "=", -2)),
    ("event_time_ms: 5", Compare("event_time_ms", "=", 5)),
    ("event_time_ms: *", word("*", "event_time_ms", "prefix")),
    ("event_time_ms in [1 2]", Range("event_time_ms", 1, 2, True, True)),
    ("event_time_ms in (1 2.5]", Range("event_time_ms", 1, 2.5, False, True)),
    ("__time__ in [1 2)", Range("__time__", 1, 2, True, False)),
    # `in` is a keyword only in lower case and before a bracket
    ("IN", word("IN")),
    ("a in b", And((A, word("in"), B))),
    # reserved fields
    ("__topic__: lifecycle", word("lifecycle", "__topic__")),
    ("__tag__:__receive_time__: x", word("x", "__tag__:__receive_time__")),
])
def test_search_structure(text, expected):
    assert parse(text) == Query(expected, None)


@pytest.mark.parametrize("text", ["", "   ", "*", " * "])
def test_match_all_is_no_search(text):
    assert parse(text) == Query(None, None)


def test_lone_star_inside_an_expression_is_kept():
    assert parse("* and a") == Query(And((word("*", None, "prefix"), A)), None)


@pytest.mark.parametrize("text, search, sql", [
    ("* | select count(*) as n", None, "select count(*) as n"),
    ("| select 1", None, "select 1"),
    ('"a|b" | select 1', word("a|b"), "select 1"),
    ('detail: "x\\"|y" | select 1', word('x"|y', "detail"), "select 1"),
    ("a | select 'x|y' as s", A, "select 'x|y' as s"),
])
def test_sql_part_is_split_at_the_first_bar_outside_quotes(text, search, sql):
    assert parse(text) == Query(search, sql)


@pytest.mark.parametrize("text, message", [
    ('state: "Stopped', 'unterminated quoted value at column 8'),
    ("(state: Stopped", "missing ')' for the '(' at column 1, found end of search at column 16"),
    ("state: Stopped)", "unexpected ')' at column 15"),
    ("event_name: Instance:StateChange", "unexpected ':' (quote values that contain ':') at column 21"),
    ("state > 3", "numeric comparison on 'state', which is not a numeric field"),
    ("region_id in [1 2]", "numeric comparison on 'region_id'"),
    ("event_time_ms > abc", "expected a number, found 'abc' at column 17"),
    ("event_time_ms: 17726*", "expected a number, found '17726*' at column 16"),
    ("event_time_ms in [1 x]", "expected a number, found 'x' at column 21"),
    ("event_time_ms in [1 2 3]", "expected ']' or ')' to close the range, found '3' at column 23"),
    ("*abc", "a wildcard cannot start a word at column 1"),
    ("state: ?top", "a wildcard cannot start a word at column 8"),
    ("state:", "expected a value after 'state:', found end of search at column 7"),
    ("state: (x)", "expected a value after 'state:', found '(' at column 8"),
    ("and state: x", "expected a search term, found 'and' at column 1"),
    ("a or", "expected a search term, found end of search at column 5"),
    ("a and or b", "expected a search term, found 'or' at column 7"),
    ("()", "expected a search term, found ')' at column 2"),
    ("a ]", "unexpected ']' at column 3"),
    ("1-2: x", "'1-2' is not a field name"),
    ("state: x |  ", "empty SQL after '|' at column 10"),
    ("x | delete from log", "the SQL part must be a SELECT, found 'delete' at column 5"),
    ("x | select count(*", "unclosed '(' at column 17"),
    ("x | select 1)", "unmatched ')' at column 13"),
    ("x | select 'abc", "unterminated string at column 12"),
    ('x | select "abc', "unterminated quoted identifier at column 12"),
    ("x | select 1 /* note", "unterminated comment at column 14"),
    # SLS refuses `not` with a phrase, and wildcards in one (doc-detail/416724)
    ('not #"abc def"', "SLS refuses 'not' in a search with a phrase (#\"abc def\")"),
    ('#"abc" and not state: Running', "SLS refuses 'not' in a search with a phrase (#\"abc\"); use a quoted value "
                                      "(\"abc\") to negate its words at column 12"),
    ('state: #"Stop*"', "SLS does not match wildcards in a phrase (#\"...\"); drop the '#' or the wildcard at column 8"),
    ('event_time_ms: #"5"', "a phrase (#\"...\") searches text, and 'event_time_ms' is a numeric field at column 16"),
    ('#"abc', "unterminated quoted value at column 2"),
])
def test_errors_name_the_problem_and_the_column(text, message):
    with pytest.raises(QueryError) as caught:
        parse(text)
    assert message in str(caught.value)


def test_query_error_is_a_value_error():
    assert issubclass(QueryError, ValueError)


@pytest.mark.parametrize("text, fields", [
    ("*", set()),
    ("a and b", set()),
    ("instance_id: i-1 and not (state: Stopped or event_time_ms > 5) and __topic__: lifecycle",
     {"instance_id", "state", "event_time_ms", "__topic__"}),
    ("event_time_ms in [1 2]", {"event_time_ms"}),
    ("__topic__: lifecycle and (state: Pending or state: Deleted) | select instance_id, "
     "max_by(instance_type, __time__) as type, min(case when state = 'Pending' then event_time end) as created, "
     "max(case when state = 'Deleted' then event_time end) as released group by instance_id "
     "order by released desc limit 1000",
     {"__topic__", "state", "instance_id", "instance_type", "__time__", "event_time"}),
    ("* | select date_trunc('hour', __time__) as h, __topic__ as category, count(DISTINCT event_uid) as n "
     "group by h, category order by h limit 1000",
     {"__time__", "__topic__", "event_uid"}),
    ('* | select "state", log.level, cast(seconds_before_reclaim as double) as s from log',
     {"state", "level", "seconds_before_reclaim"}),
])
def test_fields_used(text, fields):
    assert fields_used(parse(text)) == fields
