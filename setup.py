"""Packaging for cloudinitd (metadata lives in pyproject.toml).

The shipped `plans/` and `bootlevels/` folders live at the top of the
repository, where users and reviewers look for them; this build step copies
them into the package as `cloudinitd/data/` so an installed cloudinitd finds
them from any directory.
"""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).parent


class BuildWithPlans(build_py):
    def run(self):
        super().run()
        for folder in ("plans", "bootlevels"):
            target = Path(self.build_lib) / "cloudinitd" / "data" / folder
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(HERE / folder, target)


setup(cmdclass={"build_py": BuildWithPlans})
