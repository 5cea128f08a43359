"""The one build step pyproject.toml cannot say: the wheel carries the embedded default config, the production
template and the SLS content in shipper/_packaged/ (shipper/config_files.py finds them there), while the repository
keeps them at its top level, where DESIGN's layout puts them. MANIFEST.in puts the same files in the sdist."""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PACKAGED = ("config.toml", "deploy/config.production.toml", "dashboards")


class BuildPyWithContent(build_py):
    def run(self):
        super().run()
        if self.editable_mode:  # an editable install reads the checkout in place
            return
        target = Path(self.build_lib, "shipper", "_packaged")
        shutil.rmtree(target, ignore_errors=True)  # a file removed from the repository must not linger from a past build
        for relative in PACKAGED:
            source, destination = Path(relative), target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, destination, dirs_exist_ok=True)
            else:
                shutil.copyfile(source, destination)


setup(cmdclass={"build_py": BuildPyWithContent})
