"""How the CLI shows rows to a person: a plain aligned table."""
from __future__ import annotations

# `shipper search`'s columns for events when the query has no SQL part.
DEFAULT_COLUMNS = ("event_time", "instance_id", "event_name", "state", "event_status", "instance_name", "region_id")


def format_table(columns: list[str], rows: list, max_width: int = 48) -> str:
    """A plain aligned table; long cells are cut with an ellipsis."""
    def cell(value) -> str:
        text = "" if value is None else str(value)
        return text if len(text) <= max_width else text[: max_width - 1] + "…"

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines)
