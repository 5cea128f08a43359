import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"


@pytest.fixture
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"{FIXTURES} is missing: the shared fixtures must sit beside the repository")
    return FIXTURES


@pytest.fixture
def shipper_cmd() -> list[str]:
    """Run the installed CLI with this interpreter (no PATH lookups)."""
    return [sys.executable, "-m", "shipper"]
