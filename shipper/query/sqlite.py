"""SLS queries translated for the SQLite store (one table per logstore, reference/sls.md §7–§8).

Search part -> a WHERE clause:
- `key: value` matches when the field's tokens contain each of the value's tokens, case-insensitively, as
  SLS documents a quoted `"a b"` ("both tokens"); a phrase `key: #"a b"` needs them consecutively. Tokens
  are split on the SLS default delimiters (DELIMITERS). One difference from SLS: the shipped SLS index gives
  short fields a shorter list (no `:` or `/`), so `event_name: StateChange` matches here but not there.
- `abc*` and `a?c` match per token; `key: *` = non-empty, `not key: *` = missing or empty, `key: ""` = empty.
- Bare words search every text column of the table, tokenized the same way: each token of `"a b"` may be
  in a different column, a phrase `#"a b"` lies within one.
- Numeric comparisons and ranges compare the INTEGER/REAL column; rows without a number never match
  them, so `not x > 5` keeps rows where x is missing, as in SLS.
- Reserved fields: `__time__` = time_ms / 1000, `__topic__` = topic, `__source__` = source_host.

Token matching runs as `sls_match(kind, value, text...)`, a Python function; the store must call
register_functions() on every connection. The value becomes one compiled regex (cached), so each row
costs one C-level regex search per text.

SQL part -> SQLite, by a token-level rewrite: `FROM log` is added where a SELECT has no FROM, and `log`
is a CTE holding the rows the search and time window select. Presto functions are mapped
(count_if, arbitrary, approx_distinct, if, json_extract_scalar, cast types) or registered here
(max_by, min_by, date_trunc, date_format, from_unixtime; times are UTC, SLS uses the project's zone).
Anything but one SELECT is rejected: the local store is read-only for queries. The SQL part reads `log`
only: naming a table is rejected here, and `authorizer()` refuses, as SQLite prepares the query, reads of
any other table (dead letters, sqlite_master), recursive WITH and allocation-bomb functions.
"""
from __future__ import annotations

import datetime as _dt
import difflib
import functools
import re
import sqlite3
from dataclasses import dataclass

from shipper.events import NUMERIC_FIELDS, TABLE_FIELDS
from shipper.query.parser import (
    SQL_KEYWORDS, And, Compare, Node, Not, Or, Query, QueryError, Range, SqlTok, Term,
    identifier_name, significant, sql_tokens,
)
from shipper.times import datetime_from_seconds, format_sql_timestamp, to_utc_datetime

DELIMITERS = ",'\";=()[]{}?@&<>/:\n\t\r "
SQL_DEFAULT_LIMIT = 100  # SLS returns 100 SQL rows unless the SQL says LIMIT

_DELIM_CLASS = "[" + re.escape(DELIMITERS) + "]"
# Full-text search joins the columns with NUL: it ends a token like a delimiter, but a phrase never spans it.
_COLUMN_JOINER = "\0"
_TOKEN_CHAR = "[^" + re.escape(DELIMITERS + _COLUMN_JOINER) + "]"
_SPLIT_ALL = re.compile(_DELIM_CLASS + "+")
_SPLIT_KEEP_WILDCARD = re.compile("[" + re.escape(DELIMITERS.replace("?", "")) + "]+")
_RESERVED_COLUMNS = {"__time__": "(time_ms / 1000)", "__topic__": '"topic"', "__source__": '"source_host"'}
_NUMERIC = NUMERIC_FIELDS | {"__time__"}


def to_sqlite(q: Query, table: str, *, since_ms: int | None = None, until_ms: int | None = None,
              limit: int | None = None) -> tuple[str, list]:
    """A complete SELECT (with ? parameters).

    Without a SQL part: the matching rows' schema fields, newest first, at most `limit` (all when None).
    With one: the SQL over the CTE `log`; when it has no LIMIT of its own, `limit` (default SLS's 100) is
    appended.
    The window is [since_ms, until_ms) on time_ms, like GetLogs' [from, to).
    """
    if table not in TABLE_FIELDS:
        raise QueryError(f"unknown table {table!r}; tables: {', '.join(TABLE_FIELDS)}")
    params: list = []
    conditions = []
    if q.search is not None:
        conditions.append(_Where(table, params).node(q.search))
    if since_ms is not None:
        conditions.append("time_ms >= ?")
        params.append(since_ms)
    if until_ms is not None:
        conditions.append("time_ms < ?")
        params.append(until_ms)
    where = " WHERE " + " AND ".join(conditions) if conditions else ""
    rows = f'SELECT * FROM "{table}"' + where
    if q.sql is None:
        # The schema's fields, as SLS answers them; not the store's own time_ms, topic, source_host.
        fields = ", ".join(f'"{f}"' for f in TABLE_FIELDS[table])
        sql = f'SELECT {fields} FROM "{table}"{where} ORDER BY time_ms DESC'
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return sql, params
    body, has_limit = _rewrite_sql(q.sql, table)
    sql = f"WITH log AS ({rows}) {body}"
    if not has_limit:
        sql += " LIMIT ?"
        params.append(SQL_DEFAULT_LIMIT if limit is None else limit)
    return sql, params


# Functions a query may not call: allocation bombs (randomblob(1e9)) and native code.
_DENIED_FUNCTIONS = frozenset({"randomblob", "zeroblob", "load_extension"})


def authorizer(table: str, *, sql_part: bool, refused: list[str]):
    """An sqlite3 authorizer for one translated query: it may SELECT, read `table` (with a SQL part, only
    through the CTE `log`, so that the search and the time window apply) and call functions other than
    _DENIED_FUNCTIONS; nothing else: no other table (dead letters, sqlite_master), no pragma, no recursive
    WITH. What it refuses is appended to `refused`, for the error message."""
    def check(action: int, arg1, arg2, _database, source) -> int:
        if action == sqlite3.SQLITE_SELECT:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_READ and _reads_log(table, sql_part, arg1, arg2, source):
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_FUNCTION and arg2.lower() not in _DENIED_FUNCTIONS:
            return sqlite3.SQLITE_OK
        refused.append(_refusal(action, arg1, arg2))
        return sqlite3.SQLITE_DENY
    return check


def _reads_log(table: str, sql_part: bool, read_table: str, column: str, source) -> bool:
    """Whether a read is of the searched rows. Without a SQL part the query reads the table itself. With
    one, reads of the table come through `log` (SQLite names the CTE as their source), or from `log` once
    SQLite materialized it. A read of no column (count(*)) comes without the CTE's name; it is `log`'s, as
    the SQL part cannot name a table (_check_read_only)."""
    if not sql_part:
        return read_table == table
    return read_table == "log" or read_table == table and (source == "log" or column == "")


def _refusal(action: int, arg1, arg2) -> str:
    if action == sqlite3.SQLITE_READ:
        return f"reading {arg1!r} (query `log`, which holds the searched rows)"
    if action == sqlite3.SQLITE_FUNCTION:
        return f"the function {arg2}()"
    if action == sqlite3.SQLITE_RECURSIVE:
        return "a recursive WITH"
    return f"anything but one SELECT of `log` (this query touches {arg1 or arg2!r})"


def _concat(*values):
    return None if any(v is None for v in values) else "".join(str(v) for v in values)


def register_functions(conn: sqlite3.Connection) -> None:
    """The functions translated queries call; needed on every connection that runs them."""
    conn.create_function("sls_match", -1, _sls_match, deterministic=True)
    conn.create_function("date_trunc", 2, _date_trunc, deterministic=True)
    conn.create_function("date_format", 2, _date_format, deterministic=True)
    conn.create_function("from_unixtime", 1, _from_unixtime, deterministic=True)
    # SLS's concat(), which SQLite gains only in 3.44: SLS content uses it where Presto would use `||`.
    conn.create_function("concat", -1, _concat, deterministic=True)
    conn.create_aggregate("max_by", 2, _MaxBy)
    conn.create_aggregate("min_by", 2, _MinBy)


# ---------------------------------------------------------------------------------------------------
# Search part

def _column(field: str, table: str) -> str:
    if field in _RESERVED_COLUMNS:
        return _RESERVED_COLUMNS[field]
    valid = TABLE_FIELDS[table]
    if field not in valid:
        known = list(valid) + list(_RESERVED_COLUMNS)
        near = difflib.get_close_matches(field, known, n=5, cutoff=0.6) or known
        raise QueryError(f"unknown field {field!r} in {table!r}; did you mean: {', '.join(near)}")
    return f'"{field}"'


def _token_regex(word: str, kind: str) -> str:
    if kind == "exact":
        return re.escape(word)
    return "".join(_TOKEN_CHAR + "*" if ch == "*" else _TOKEN_CHAR if ch == "?" else re.escape(ch) for ch in word)


@functools.lru_cache(maxsize=256)
def _phrase_regex(kind: str, value: str) -> re.Pattern:
    """Matches the value's tokens as a consecutive phrase of whole tokens, in lower-cased text."""
    split = _SPLIT_ALL if kind == "exact" else _SPLIT_KEEP_WILDCARD
    words = [w for w in split.split(value.lower()) if w]
    if not words:
        raise QueryError(f"{value!r} has no searchable token (it is all delimiters)")
    if kind != "exact" and any(w[0] in "*?" for w in words):
        raise QueryError(f"{value!r}: a wildcard cannot start a word")
    phrase = (_DELIM_CLASS + "+").join(_token_regex(w, kind) for w in words)
    # The phrase must start a token. The check sits after the first character (always a literal), not
    # before it, so that re scans for that literal instead of trying every position: ~15x faster.
    first = re.escape(words[0][0])
    return re.compile(f"{first}(?<!{_TOKEN_CHAR}{first}){phrase[len(first):]}(?!{_TOKEN_CHAR})")


def _is_number(column: str) -> str:
    return f"typeof({column}) IN ('integer', 'real')"


@dataclass
class _Where:
    table: str
    params: list

    def node(self, node: Node) -> str:
        if isinstance(node, And):
            return "(" + " AND ".join(self.node(item) for item in node.items) + ")"
        if isinstance(node, Or):
            return "(" + " OR ".join(self.node(item) for item in node.items) + ")"
        if isinstance(node, Not):
            return "NOT " + self.node(node.item)
        if isinstance(node, Compare):
            return self.compare(_column(node.field, self.table), node.op, node.value)
        if isinstance(node, Range):
            column = _column(node.field, self.table)
            low = self.compare(column, ">=" if node.low_inclusive else ">", node.low)
            high = self.compare(column, "<=" if node.high_inclusive else "<", node.high)
            return f"({low} AND {high})"
        return self.term(node)

    def compare(self, column: str, op: str, value: int | float) -> str:
        self.params.append(value)
        return f"({column} {op} ? AND {_is_number(column)})"

    def term(self, term: Term) -> str:
        if term.field is None:
            if term.value == "*":
                return "1"
            columns = [f'"{f}"' for f in TABLE_FIELDS[self.table] if f not in NUMERIC_FIELDS]
            return self.match(term, columns)
        column = _column(term.field, self.table)
        if term.field in _NUMERIC:
            if term.value == "*":
                return _is_number(column)
            return f"NOT {_is_number(column)}"  # `key: ""`; parse() made `key: 5` a Compare
        if term.value == "*":
            return f"coalesce({column}, '') <> ''"
        if term.value == "" and term.kind == "exact":
            return f"coalesce({column}, '') = ''"
        return self.match(term, [column])

    def match(self, term: Term, columns: list[str]) -> str:
        """One sls_match per token (SLS: `"a b"` = a and b), or one for the whole phrase."""
        parts = [("exact", term.value)] if term.kind == "phrase" else _token_terms(term)
        tests = []
        for kind, value in parts:
            _phrase_regex(kind, value)  # fail here, not per row
            self.params += [kind, value]
            tests.append(f"sls_match(?, ?, {', '.join(columns)})")
        return tests[0] if len(tests) == 1 else "(" + " AND ".join(tests) + ")"


def _token_terms(term: Term) -> list[tuple[str, str]]:
    """(kind, token) for each token of a non-phrase value; `*` and `?` stay wildcards in unquoted words."""
    split = _SPLIT_ALL if term.kind == "exact" else _SPLIT_KEEP_WILDCARD
    tokens = [w for w in split.split(term.value) if w]
    if not tokens:
        raise QueryError(f"{term.value!r} has no searchable token (it is all delimiters)")
    return [(term.kind, w) for w in tokens]


def _sls_match(kind: str, value: str, *texts) -> bool:
    text = texts[0] if len(texts) == 1 else _COLUMN_JOINER.join(t for t in texts if t is not None)
    return text is not None and _phrase_regex(kind, value).search(str(text).lower()) is not None


# ---------------------------------------------------------------------------------------------------
# SQL part

_CLAUSES_AFTER_FROM = frozenset({"where", "group", "having", "order", "limit", "offset", "window"})
_COMPOUND = frozenset({"union", "intersect", "except"})
_WRITES = frozenset({"attach", "detach", "pragma", "insert", "update", "delete", "drop", "create", "alter"})
_RENAMED = {"arbitrary": "max", "if": "iif", "json_extract_scalar": "json_extract"}
_UNSUPPORTED = frozenset({"approx_percentile", "time_series"})
_CAST_TYPES = {
    "double": "REAL", "real": "REAL", "float": "REAL", "decimal": "REAL",
    "bigint": "INTEGER", "integer": "INTEGER", "int": "INTEGER", "smallint": "INTEGER", "tinyint": "INTEGER",
    "boolean": "INTEGER", "varchar": "TEXT", "char": "TEXT", "string": "TEXT",
}
_TRUNC_UNITS = ("second", "minute", "hour", "day", "week", "month", "quarter", "year")
_FROM_LOG = [SqlTok("ident", "FROM", -1), SqlTok("ident", "log", -1)]


def _sql_error(problem: str, tok: SqlTok) -> QueryError:
    return QueryError(f"{problem} at column {tok.pos + 1} of the SQL part")


@dataclass
class _Group:
    """A parenthesized run of tokens."""
    open: SqlTok
    items: list  # SqlTok | _Group


def _rewrite_sql(sql: str, table: str) -> tuple[str, bool]:
    """SLS SQL -> SQLite SQL, and whether it has a LIMIT of its own."""
    tokens = significant(sql_tokens(sql))
    _check_read_only(tokens)
    _check_quoted_columns(tokens, table)
    items = _group(tokens)
    _add_from_log(items)
    has_limit = any(isinstance(it, SqlTok) and it.kind == "ident" and it.text.lower() == "limit" for it in items)
    return _render(_rewrite(items)), has_limit


def _check_read_only(tokens: list[SqlTok]) -> None:
    for tok in tokens:
        if tok.text == ";":
            raise _sql_error("the local store is read-only for queries: one SELECT only, no ';'", tok)
        if tok.kind == "ident" and tok.text.lower() in _WRITES:
            raise _sql_error(f"the local store is read-only for queries: {tok.text!r} is not allowed", tok)
        if tok.kind == "punct" and tok.text in "?:@$":
            raise _sql_error(f"{tok.text!r} (a parameter) is not allowed", tok)
        if tok.kind == "qident" and identifier_name(tok).startswith("__tag__:"):
            raise _sql_error(f"{tok.text} is not kept by the local store", tok)
        if tok.kind in ("ident", "qident") and identifier_name(tok).lower() in TABLE_FIELDS:
            raise _sql_error(f"{tok.text}: the SQL part reads `log` (the rows the search and time window select), "
                             f"not a table", tok)


def _check_quoted_columns(tokens: list[SqlTok], table: str) -> None:
    """A double-quoted name must be a column or an alias: SLS (Presto) reads `"x"` as a column, where SQLite
    would silently take an unknown one for the string 'x'."""
    known = {f.lower() for f in TABLE_FIELDS[table]} | set(_RESERVED_COLUMNS)
    known |= {identifier_name(tok).lower() for i, tok in enumerate(tokens) if _is_alias(tokens, i)}
    for tok in tokens:
        name = identifier_name(tok) if tok.kind == "qident" else None
        if name is not None and name.lower() not in known:
            raise _sql_error(f"{tok.text} is not a column of {table}: double quotes name a column, as in SLS; "
                             f"write a string in single quotes: '{name}'", tok)


def _is_alias(tokens: list[SqlTok], i: int) -> bool:
    """Whether tokens[i] names an alias: after AS, or a quoted name right after an expression (`count(*) "n"`)."""
    if identifier_name(tokens[i]) is None or i == 0:
        return False
    before = tokens[i - 1]
    if before.kind == "ident" and before.text.lower() == "as":
        return True
    ends_expression = before.text == ")" or before.kind in ("qident", "number", "string") or (
        before.kind == "ident" and before.text.lower() not in SQL_KEYWORDS)
    return tokens[i].kind == "qident" and ends_expression


def _group(tokens: list[SqlTok]) -> list:
    """Nest tokens by parentheses (parse() checked they balance)."""
    stack = [[]]
    for tok in tokens:
        if tok.text == "(":
            group = _Group(tok, [])
            stack[-1].append(group)
            stack.append(group.items)
        elif tok.text == ")":
            stack.pop()
        else:
            stack[-1].append(tok)
    return stack[0]


def _add_from_log(items: list) -> None:
    """Insert `FROM log` into every SELECT, at any depth, that has no FROM (SLS makes it optional)."""
    in_select_list = False
    i = 0
    while i < len(items):
        item = items[i]
        if isinstance(item, _Group):
            _add_from_log(item.items)
        elif item.kind == "ident":
            word = item.text.lower()
            if in_select_list and (word in _CLAUSES_AFTER_FROM or word in _COMPOUND):
                items[i:i] = _FROM_LOG
                i += len(_FROM_LOG)
            if word == "select":
                in_select_list = True
            elif word == "from" or word in _CLAUSES_AFTER_FROM or word in _COMPOUND:
                in_select_list = False
        i += 1
    if in_select_list:
        items.extend(_FROM_LOG)


def _split_args(items: list) -> list[list]:
    args = [[]]
    for item in items:
        if isinstance(item, SqlTok) and item.text == ",":
            args.append([])
        else:
            args[-1].append(item)
    return args


def _string_literal(arg: list, function: str, what: str, at: SqlTok) -> str:
    if len(arg) != 1 or not isinstance(arg[0], SqlTok) or arg[0].kind != "string":
        raise _sql_error(f"{function} needs a literal {what} (a quoted string)", at)
    return arg[0].text[1:-1].replace("''", "'")


def _rewrite(items: list) -> list[str]:
    """Text pieces of the SQLite form of one parenthesis level."""
    out = []
    i = 0
    while i < len(items):
        item = items[i]
        following = items[i + 1] if i + 1 < len(items) else None
        if isinstance(item, _Group):
            out.append("(" + _render(_rewrite(item.items)) + ")")
        elif item.kind == "ident" and item.text.lower() not in SQL_KEYWORDS and isinstance(following, _Group):
            out.append(_call(item, following))
            i += 1
        else:
            name = identifier_name(item)
            out.append(_RESERVED_COLUMNS.get(name, item.text) if name else item.text)
        i += 1
    return out


def _call(name_tok: SqlTok, args: _Group) -> str:
    name = name_tok.text.lower()
    inner = _render(_rewrite(args.items))
    if name in _UNSUPPORTED:
        raise _sql_error(f"{name_tok.text} is not supported by the local store", name_tok)
    if name == "count_if":
        return f"sum(CASE WHEN {inner} THEN 1 ELSE 0 END)"
    if name == "approx_distinct":
        return f"count(DISTINCT {inner})"
    if name in ("cast", "try_cast"):
        return _cast(name_tok, args)
    if name == "date_trunc":
        unit = _string_literal(_split_args(args.items)[0], "date_trunc", "unit", name_tok)
        if unit.lower() not in _TRUNC_UNITS:
            raise _sql_error(f"date_trunc unit {unit!r} is not one of {', '.join(_TRUNC_UNITS)}", name_tok)
    if name == "date_format":
        split = _split_args(args.items)
        if len(split) != 2:
            raise _sql_error("date_format takes (time, format)", name_tok)
        _python_format(_string_literal(split[1], "date_format", "format", name_tok))
    return f"{_RENAMED.get(name, name_tok.text)}({inner})"


def _cast(name_tok: SqlTok, args: _Group) -> str:
    as_at = max((i for i, it in enumerate(args.items)
                 if isinstance(it, SqlTok) and it.kind == "ident" and it.text.lower() == "as"), default=None)
    type_tok = args.items[as_at + 1] if as_at is not None and as_at + 1 < len(args.items) else None
    if not isinstance(type_tok, SqlTok):
        raise _sql_error(f"{name_tok.text} needs (value AS type)", name_tok)
    sqlite_type = _CAST_TYPES.get(type_tok.text.lower())
    if sqlite_type is None:
        raise _sql_error(f"cast to {type_tok.text} is not supported by the local store", type_tok)
    return f"CAST({_render(_rewrite(args.items[:as_at]))} AS {sqlite_type})"


def _render(pieces: list[str]) -> str:
    """Pieces joined by spaces, except around '.' and before ','."""
    text = ""
    previous = None
    for piece in pieces:
        if previous is not None and previous != "." and piece not in (",", "."):
            text += " "
        text += piece
        previous = piece
    return text


# ---------------------------------------------------------------------------------------------------
# Functions registered on the connection

class _MaxBy:
    """max_by(x, t): the x of the row with the greatest t (rows with a NULL t are ignored)."""

    def __init__(self):
        self.key = None
        self.value = None

    def better(self, key) -> bool:
        return key > self.key

    def step(self, value, key):
        if key is not None and (self.key is None or self.better(key)):
            self.key, self.value = key, value

    def finalize(self):
        return self.value


class _MinBy(_MaxBy):
    def better(self, key) -> bool:
        return key < self.key


# The time functions below read their values with shipper.times; a value that is neither Unix seconds nor
# timestamp text gives None (SQL NULL) rather than failing the whole query.

def _from_unixtime(value) -> str | None:
    try:
        t = datetime_from_seconds(float(value))
    except (TypeError, ValueError):
        return None
    return None if t is None else format_sql_timestamp(t)


def _date_trunc(unit: str, value) -> str | None:
    t = to_utc_datetime(value)
    if t is None:
        return None
    unit = unit.lower()
    t = t.replace(microsecond=0)
    if unit != "second":
        t = t.replace(second=0)
    if unit not in ("second", "minute"):
        t = t.replace(minute=0)
    if unit not in ("second", "minute", "hour"):
        t = t.replace(hour=0)
    if unit == "week":
        t -= _dt.timedelta(days=t.weekday())
    elif unit in ("month", "quarter", "year"):
        month = {"month": t.month, "quarter": t.month - (t.month - 1) % 3, "year": 1}[unit]
        t = t.replace(month=month, day=1)
    return format_sql_timestamp(t)


# Presto/MySQL date_format specifiers -> Python strftime; those without an equivalent are rejected.
_FORMAT_SPECIFIERS = {
    "Y": "%Y", "y": "%y", "m": "%m", "d": "%d", "H": "%H", "h": "%I", "I": "%I", "i": "%M", "s": "%S",
    "S": "%S", "f": "%f", "p": "%p", "T": "%H:%M:%S", "r": "%I:%M:%S %p", "j": "%j", "a": "%a", "W": "%A",
    "b": "%b", "M": "%B", "%": "%%",
}


@functools.lru_cache(maxsize=64)
def _python_format(presto: str) -> str:
    out = []
    i = 0
    while i < len(presto):
        ch = presto[i]
        if ch != "%":
            out.append(ch)
        elif i + 1 < len(presto) and presto[i + 1] in _FORMAT_SPECIFIERS:
            out.append(_FORMAT_SPECIFIERS[presto[i + 1]])
            i += 1
        else:
            raise QueryError(f"date_format: {presto[i:i + 2]!r} in {presto!r} is not supported by the local store")
        i += 1
    return "".join(out)


def _date_format(value, presto_format: str) -> str | None:
    t = to_utc_datetime(value)
    return None if t is None else t.strftime(_python_format(presto_format))
