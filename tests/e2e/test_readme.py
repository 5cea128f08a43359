"""The README's front door stays true: CI runs exactly the README's test command."""
from tests.conftest import REPO


def code_blocks(text: str) -> list[str]:
    return [block.split("\n", 1)[1].strip() for block in text.split("```")[1::2]]


def test_ci_runs_the_readme_test_command():
    ci_command = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci_command in code_blocks((REPO / "README.md").read_text())


def test_quick_start_runs_the_console_script_on_the_shipped_config():
    readme = (REPO / "README.md").read_text()
    first = code_blocks(readme)[0]
    assert first.endswith("shipper run") and "pip install -e ." in first
    assert 'shipper = "shipper.cli:main"' in (REPO / "pyproject.toml").read_text()
    assert (REPO / "config.toml").exists()
