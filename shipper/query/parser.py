"""The SLS query language, parsed: `<search>` or `<search> | <SQL>` (reference/sls.md §7).

Search grammar, lowest precedence first. SLS documents the precedence `:` > quotes > `()` > `and` > `not`
> `or` (reference/sls.md §7; Alibaba Cloud "Search syntax", doc-detail/29060), so `not` takes the whole
`and` chain after it, as a binary operator (`a not b` = a and not b) or a prefix:

    or_expr   := not_expr ("or" not_expr)*
    not_expr  := negated (["and"] "not" negated)*       `a not b and c` = a and not (b and c)
    negated   := "not" negated | and_expr               `not a and b` = not (a and b)
    and_expr  := primary (["and"] primary)*             juxtaposition means and; stops before `[and] not`
    primary   := "(" or_expr ")" | name ":" value | name op number | name "in" ("["|"(") n n ("]"|")")
               | word | "quoted" | #"phrase"

`and not` reads as `not`: `a and not b and c` = a and not (b and c). `and`/`or`/`not` are
case-insensitive; `in` is lower-case only, as in SLS.

Values: a word, a double-quoted value with backslash escapes, or a phrase `#"..."`. A quoted value of
several tokens means each token (`msg: "http error"` = `msg: http and msg: error`, doc-detail/29060); a
phrase `#"http error"` means those tokens consecutively (Alibaba Cloud "Phrase search", doc-detail/416724).
SLS refuses `not` in a search that has a phrase, and wildcards in a phrase (same page): so do we. A word
containing `*`/`?` is a prefix (`abc*`) or wildcard (`a?c*d`) term; a wildcard may not start a word, except
the lone `*` (match all; as a value, `key: *` means the field is present). Inside quotes `*` and `?` are
literal. Values containing `:` or spaces must be quoted, as in SLS.

On a numeric field `key: 5` is `key = 5`, and `key: *` / `key: ""` test presence as for text.
Numeric comparisons and ranges are accepted only on numeric fields (events.NUMERIC_FIELDS and
`__time__`). SLS silently turns them into full-text searches on a text field, which is never what
was meant; we reject them instead.

The SQL part is kept as text (checked to be one SELECT with balanced parentheses); the SQLite store
translates it (query/sqlite.py), SLS receives it unchanged.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import NamedTuple, Union

from shipper.events import NUMERIC_FIELDS

NUMERIC_SEARCH_FIELDS = NUMERIC_FIELDS | {"__time__"}
_INT64 = range(-(2**63), 2**63)


class QueryError(ValueError):
    """A query that cannot be parsed or translated; the message says what and where (1-based column)."""


@dataclass(frozen=True)
class Term:
    """`field: value`, or a bare word/phrase when field is None. value is as written, unescaped."""
    field: str | None
    value: str
    kind: str  # 'exact' | 'prefix' | 'wildcard': each token of value; 'phrase': the tokens consecutively


@dataclass(frozen=True)
class Compare:
    field: str
    op: str  # '>', '>=', '<', '<=', '='
    value: int | float


@dataclass(frozen=True)
class Range:
    field: str
    low: int | float
    high: int | float
    low_inclusive: bool
    high_inclusive: bool


@dataclass(frozen=True)
class And:
    items: tuple


@dataclass(frozen=True)
class Or:
    items: tuple


@dataclass(frozen=True)
class Not:
    item: "Node"


Node = Union[Term, Compare, Range, And, Or, Not]
MATCH_ALL = Term(None, "*", "prefix")


@dataclass(frozen=True)
class Query:
    search: Node | None  # None: match every row
    sql: str | None


def parse(text: str) -> Query:
    """The query's search tree and SQL text; QueryError names the problem and its column."""
    bar = _find_bar(text)
    search_text = text if bar is None else text[:bar]
    search = _SearchParser(search_text).parse()
    if search == MATCH_ALL:
        search = None
    if bar is None:
        return Query(search, None)
    sql_offset = bar + 1
    sql = text[sql_offset:]
    _check_sql(sql, sql_offset)
    return Query(search, sql.strip())


def fields_used(q: Query) -> set[str]:
    """Every field the query names, reserved ones (`__time__`) as written.

    The SQL part is read without a full SQL parser: identifiers that are not keywords, function names,
    qualifiers, table names or `AS` aliases count as fields (an alias given without AS is not recognized).
    """
    found = set() if q.search is None else _search_fields(q.search)
    if q.sql is not None:
        found |= _sql_fields(q.sql)
    return found


def _search_fields(node: Node) -> set[str]:
    if isinstance(node, (And, Or)):
        return set().union(*(_search_fields(item) for item in node.items))
    if isinstance(node, Not):
        return _search_fields(node.item)
    return set() if node.field is None else {node.field}


# ---------------------------------------------------------------------------------------------------
# Search part

def _find_bar(text: str) -> int | None:
    """Index of the `|` that starts the SQL part: the first one outside a quoted phrase."""
    in_quotes = False
    i = 0
    while i < len(text):
        ch = text[i]
        if in_quotes and ch == "\\":
            i += 2
            continue
        if ch == '"':
            in_quotes = not in_quotes
        elif ch == "|" and not in_quotes:
            return i
        i += 1
    return None


class _Tok(NamedTuple):
    kind: str  # 'word', 'quoted', 'phrase', 'colon', 'op', '(', ')', '[', ']', 'end'
    text: str  # for 'quoted' and 'phrase': the unescaped value
    pos: int   # 0-based offset in the query


_SEARCH_PUNCT = {":": "colon", "(": "(", ")": ")", "[": "[", "]": "]"}
_WORD_RE = re.compile(r'[^\s()\[\]:"<>=]+')
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_NUMBER_RE = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def _search_tokens(text: str) -> list[_Tok]:
    tokens = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in _SEARCH_PUNCT:
            tokens.append(_Tok(_SEARCH_PUNCT[ch], ch, i))
            i += 1
        elif ch in "<>=":
            op = text[i:i + 2] if text[i:i + 2] in (">=", "<=") else ch
            tokens.append(_Tok("op", op, i))
            i += len(op)
        elif ch == '"' or text.startswith('#"', i):
            start = i
            kind, opening = ("quoted", i) if ch == '"' else ("phrase", i + 1)
            value, i = _quoted(text, opening)
            tokens.append(_Tok(kind, value, start))
        else:
            word = _WORD_RE.match(text, i).group()
            tokens.append(_Tok("word", word, i))
            i += len(word)
    tokens.append(_Tok("end", "", len(text)))
    return tokens


def _quoted(text: str, start: int) -> tuple[str, int]:
    """The unescaped value of the quoted text starting at `start`, and the offset after its closing quote."""
    chars = []
    i = start + 1
    while i < len(text) and text[i] != '"':
        if text[i] == "\\" and i + 1 < len(text):
            i += 1
        chars.append(text[i])
        i += 1
    if i >= len(text):
        raise _error("unterminated quoted value", start)
    return "".join(chars), i + 1


def _error(problem: str, pos: int) -> QueryError:
    return QueryError(f"{problem} at column {pos + 1}")


def _describe(tok: _Tok) -> str:
    if tok.kind == "end":
        return "end of search"
    if tok.kind == "quoted":
        return f'"{tok.text}"'
    if tok.kind == "phrase":
        return f'#"{tok.text}"'
    return f"'{tok.text}'"


def _is_keyword(tok: _Tok, *keywords: str) -> bool:
    return tok.kind == "word" and tok.text.lower() in keywords


def _number(tok: _Tok) -> int | float:
    if tok.kind != "word" or not _NUMBER_RE.fullmatch(tok.text):
        raise _error(f"expected a number, found {_describe(tok)}", tok.pos)
    try:
        value = int(tok.text)
    except ValueError:
        value = float(tok.text)
    # Stores compare 64-bit integers and finite doubles; SQLite cannot even bind a larger int.
    if isinstance(value, int) and value not in _INT64 or isinstance(value, float) and not math.isfinite(value):
        raise _error(f"{tok.text} is out of range (whole numbers lie within ±{2**63 - 1}, others must be finite)", tok.pos)
    return value


def _word_term(field: str | None, tok: _Tok) -> Term:
    value = tok.text
    if value == "*":
        return Term(field, value, "prefix")
    if value[0] in "*?":
        raise _error("a wildcard cannot start a word", tok.pos)
    wild = [ch for ch in value if ch in "*?"]
    if not wild:
        return Term(field, value, "exact")
    if wild == ["*"] and value.endswith("*"):
        return Term(field, value, "prefix")
    return Term(field, value, "wildcard")


def _quoted_term(field: str | None, tok: _Tok) -> Term:
    if tok.kind == "quoted":
        return Term(field, tok.text, "exact")
    if "*" in tok.text or "?" in tok.text:
        raise _error("SLS does not match wildcards in a phrase (#\"...\"); drop the '#' or the wildcard", tok.pos)
    return Term(field, tok.text, "phrase")


class _SearchParser:
    def __init__(self, text: str):
        self.tokens = _search_tokens(text)
        self.i = 0

    def parse(self) -> Node | None:
        if self.peek().kind == "end":
            return None
        node = self.or_expr()
        tok = self.peek()
        if tok.kind != "end":
            raise _error(f"unexpected {_describe(tok)}", tok.pos)
        self.check_phrase_without_not()
        return node

    def check_phrase_without_not(self) -> None:
        """SLS refuses `not` in a search with a phrase (doc-detail/416724: `not #"abc def"` is invalid)."""
        phrase = next((t for t in self.tokens if t.kind == "phrase"), None)
        negation = next((t for t in self.tokens if _is_keyword(t, "not")), None)
        if phrase is not None and negation is not None:
            raise _error(f"SLS refuses 'not' in a search with a phrase ({_describe(phrase)}); "
                         f"use a quoted value (\"{phrase.text}\") to negate its words", negation.pos)

    def peek(self, ahead: int = 0) -> _Tok:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def take(self) -> _Tok:
        tok = self.peek()
        self.i += 1
        return tok

    def or_expr(self) -> Node:
        items = [self.not_expr()]
        while _is_keyword(self.peek(), "or"):
            self.take()
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def not_expr(self) -> Node:
        """`a not b`: a and not b, where b is the whole `and` chain (SLS: `and` binds tighter than `not`)."""
        items = [self.negated()]
        while self.at_not():
            if _is_keyword(self.take(), "and"):
                self.take()
            items.append(Not(self.negated()))
        if len(items) == 1:
            return items[0]
        head = items[0].items if isinstance(items[0], And) else (items[0],)
        return And(head + tuple(items[1:]))

    def at_not(self) -> bool:
        """At `not` or `and not` (which reads as `not`)."""
        return _is_keyword(self.peek(), "not") or _is_keyword(self.peek(), "and") and _is_keyword(self.peek(1), "not")

    def negated(self) -> Node:
        if _is_keyword(self.peek(), "not"):
            self.take()
            return Not(self.negated())
        return self.and_expr()

    def and_expr(self) -> Node:
        items = [self.primary()]
        while not self.at_not():
            tok = self.peek()
            if _is_keyword(tok, "and"):
                self.take()
            elif not self.starts_term(tok):
                break
            items.append(self.primary())
        return items[0] if len(items) == 1 else And(tuple(items))

    @staticmethod
    def starts_term(tok: _Tok) -> bool:
        return tok.kind in ("(", "quoted", "phrase") or (tok.kind == "word" and not _is_keyword(tok, "and", "or", "not"))

    def primary(self) -> Node:
        tok = self.take()
        if tok.kind == "(":
            node = self.or_expr()
            close = self.take()
            if close.kind != ")":
                raise _error(f"missing ')' for the '(' at column {tok.pos + 1}, found {_describe(close)}", close.pos)
            return node
        if tok.kind in ("quoted", "phrase"):
            return _quoted_term(None, tok)
        if tok.kind != "word" or _is_keyword(tok, "and", "or", "not"):
            raise _error(f"expected a search term, found {_describe(tok)}", tok.pos)
        after = self.peek()
        if after.kind == "colon":
            return self.field_term(self.field_name(tok))
        if after.kind == "op":
            self.take()
            return Compare(self.numeric_field(tok), after.text, _number(self.take()))
        if after.kind == "word" and after.text == "in" and self.peek(1).kind in ("[", "("):
            self.take()
            return self.range(self.numeric_field(tok))
        if after.kind in ("[", "]"):
            raise _error(f"unexpected {_describe(after)}", after.pos)
        return _word_term(None, tok)

    def field_name(self, tok: _Tok) -> str:
        """`name` of `name: value`; `__tag__:key` keeps its inner colon."""
        if tok.text == "__tag__" and self.peek(1).kind == "word" and self.peek(2).kind == "colon":
            self.take()
            return f"__tag__:{self.take().text}"
        if not _NAME_RE.fullmatch(tok.text):
            raise _error(f"'{tok.text}' is not a field name (quote values that contain ':')", tok.pos)
        return tok.text

    def numeric_field(self, tok: _Tok) -> str:
        name = self.field_name(tok)
        if name not in NUMERIC_SEARCH_FIELDS:
            numeric = ", ".join(sorted(NUMERIC_SEARCH_FIELDS))
            raise _error(f"numeric comparison on '{name}', which is not a numeric field ({numeric}); "
                         "SLS would silently run it as a full-text search", tok.pos)
        return name

    def field_term(self, field: str) -> Term | Compare:
        """`field: value`; on a numeric field a number means `field = number`."""
        self.take()  # the colon
        tok = self.take()
        if tok.kind in ("quoted", "phrase"):
            term = _quoted_term(field, tok)
        elif tok.kind == "word":
            term = _word_term(field, tok)
        else:
            raise _error(f"expected a value after '{field}:', found {_describe(tok)}", tok.pos)
        if self.peek().kind == "colon":
            raise _error("unexpected ':' (quote values that contain ':')", self.peek().pos)
        if field in NUMERIC_SEARCH_FIELDS and term.kind == "phrase":
            raise _error(f"a phrase (#\"...\") searches text, and '{field}' is a numeric field", tok.pos)
        if field in NUMERIC_SEARCH_FIELDS and term.value not in ("", "*"):
            return Compare(field, "=", _number(tok))
        return term

    def range(self, field: str) -> Range:
        open_tok = self.take()
        low, high = _number(self.take()), _number(self.take())
        close = self.take()
        if close.kind not in ("]", ")"):
            raise _error(f"expected ']' or ')' to close the range, found {_describe(close)}", close.pos)
        return Range(field, low, high, open_tok.kind == "[", close.kind == "]")


# ---------------------------------------------------------------------------------------------------
# SQL part: a tokenizer shared with the SQLite translation

class SqlTok(NamedTuple):
    kind: str  # 'space', 'comment', 'string', 'qident', 'ident', 'number', 'punct'
    text: str
    pos: int   # 0-based offset in the SQL text


_SQL_TOKEN_RE = re.compile(r"""
    (?P<space>\s+)
  | (?P<comment>--[^\n]*|/\*.*?\*/)
  | (?P<string>'(?:[^']|'')*')
  | (?P<qident>"(?:[^"]|"")*"|`[^`]*`)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[^\W\d]\w*)
  | (?P<punct><=|>=|<>|!=|\|\||.)
""", re.VERBOSE | re.DOTALL)

_UNTERMINATED = {"'": "unterminated string", '"': "unterminated quoted identifier",
                 "`": "unterminated quoted identifier"}


def sql_tokens(sql: str, offset: int = 0) -> list[SqlTok]:
    """Tokens of an SQL text; errors give the column counted from `offset` (where the SQL starts)."""
    tokens = []
    for m in _SQL_TOKEN_RE.finditer(sql):
        kind, text = m.lastgroup, m.group()
        if kind == "punct" and text in _UNTERMINATED:
            raise _error(_UNTERMINATED[text], offset + m.start())
        if kind == "punct" and text == "/" and sql.startswith("/*", m.start()):
            raise _error("unterminated comment", offset + m.start())
        tokens.append(SqlTok(kind, text, m.start()))
    return tokens


def significant(tokens: list[SqlTok]) -> list[SqlTok]:
    return [t for t in tokens if t.kind not in ("space", "comment")]


def identifier_name(tok: SqlTok) -> str | None:
    """The name an ident or quoted ident stands for; None for other tokens."""
    if tok.kind == "ident":
        return tok.text
    if tok.kind == "qident":
        return tok.text[1:-1].replace('""', '"')
    return None


def _check_sql(sql: str, offset: int) -> None:
    tokens = significant(sql_tokens(sql, offset))
    if not tokens:
        raise _error("empty SQL after '|'", offset - 1)
    if tokens[0].kind != "ident" or tokens[0].text.lower() != "select":
        raise _error(f"the SQL part must be a SELECT, found '{tokens[0].text}'", offset + tokens[0].pos)
    opened = []
    for tok in tokens:
        if tok.text == "(":
            opened.append(tok)
        elif tok.text == ")":
            if not opened:
                raise _error("unmatched ')'", offset + tok.pos)
            opened.pop()
    if opened:
        raise _error("unclosed '('", offset + opened[-1].pos)


SQL_KEYWORDS = frozenset("""
    select from where group by having order limit offset as and or not in is null like between case when
    then else end distinct all asc desc nulls first last on join left right full inner outer cross using
    union intersect except true false exists over partition rows range preceding following unbounded
    current row filter with interval escape at time zone second minute hour day week month quarter year
    log
""".split())


def _sql_fields(sql: str) -> set[str]:
    tokens = significant(sql_tokens(sql))
    found = set()
    for i, tok in enumerate(tokens):
        name = identifier_name(tok)
        if name is None or (tok.kind == "ident" and name.lower() in SQL_KEYWORDS):
            continue
        before = tokens[i - 1].text.lower() if i else ""
        after = tokens[i + 1].text if i + 1 < len(tokens) else ""
        if after in ("(", ".") or before in ("as", "from", "join"):
            continue
        found.add(name)
    aliases = {identifier_name(tokens[i + 1]) for i, tok in enumerate(tokens[:-1]) if tok.text.lower() == "as"}
    return found - aliases
