import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"  # the sample events; their README gives expected values
REPO = Path(__file__).resolve().parents[1]  # the repository root, wherever under tests/ a test module lives


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture
def shipper_cmd() -> list[str]:
    """Run the installed CLI with this interpreter (no PATH lookups)."""
    return [sys.executable, "-m", "shipper"]
