"""The SLS query language: parsed here, passed through to SLS, translated for the SQLite store."""
from shipper.query.parser import (
    And, Compare, Node, Not, Or, Query, QueryError, Range, Term, fields_used, parse,
)
from shipper.query.sqlite import register_functions, to_sqlite

__all__ = [
    "And", "Compare", "Node", "Not", "Or", "Query", "QueryError", "Range", "Term",
    "fields_used", "parse", "register_functions", "to_sqlite",
]
