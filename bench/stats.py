"""The summary every benchmark reports for a figure measured over several runs."""
from __future__ import annotations

import statistics


def spread(values: list[float]) -> dict:
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "runs": values}
