"""Install once, run anywhere (issue 14): the sdist and the wheel built from it carry the embedded default,
the production template and the SLS content, and an installed copy finds them from an empty folder.
The full check in a new virtual environment, `shipper run` included, is .ci/install-check."""
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

CONTENT = ["config.toml", "deploy/config.production.toml"] + sorted(
    str(p.relative_to(REPO)) for p in (REPO / "dashboards").rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(sdist, wheel): the sdist built from the checkout, the wheel built from the sdist, as `python -m build` does."""
    out = tmp_path_factory.mktemp("dist")
    name = subprocess.run([sys.executable, "-c", "import sys; from setuptools import build_meta; "
                           "print(build_meta.build_sdist(sys.argv[1]))", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=60, check=True).stdout.split()[-1]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(out / name)],
                   capture_output=True, timeout=120, check=True)
    (wheel,) = out.glob("*.whl")
    return out / name, wheel


def test_sdist_and_wheel_carry_the_config_templates_and_dashboards(built):
    sdist, wheel = built
    with tarfile.open(sdist) as tar:
        in_sdist = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    assert set(CONTENT) | {"setup.py", "MANIFEST.in", "deploy/shipper.service", "deploy/Dockerfile"} <= in_sdist
    with zipfile.ZipFile(wheel) as whl:
        for relative in CONTENT:
            assert whl.read(f"shipper/_packaged/{relative}") == (REPO / relative).read_bytes(), relative


def test_an_installed_wheel_finds_its_content_from_an_empty_folder(built, tmp_path):
    site, empty = tmp_path / "site", tmp_path / "empty"
    empty.mkdir()
    zipfile.ZipFile(built[1]).extractall(site)  # a pure-Python wheel, installed as pip would lay it out
    env = {k: v for k, v in os.environ.items() if k != "SHIPPER_CONFIG"} | {"PYTHONPATH": str(site)}

    def shipper(*args):
        return subprocess.run([sys.executable, "-m", "shipper", *args], cwd=empty, env=env, capture_output=True,
                              text=True, timeout=60)

    packaged = site / "shipper" / "_packaged"
    result = shipper("config")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"# in force: {packaged / 'config.toml'}\n")
    assert f'data_dir = "{empty / "shipper-demo"}"' in result.stdout
    result = shipper("dashboards", "validate")
    assert result.returncode == 0 and result.stderr == f"{packaged / 'dashboards'}: valid\n"
    assert shipper("init", "--production").returncode == 0
    assert (empty / "config.toml").read_bytes() == (REPO / "deploy" / "config.production.toml").read_bytes()
