"""Build hook: the wheel carries docs/*.md, README.md and CHANGELOG.md as redcapfs/docs/ (`redcapfs docs`).

setuptools' package data can only hold files inside a package folder; the docs
live at the top of the source tree, where readers of the repository expect them.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


class BuildWithDocs(build_py):
    """The usual build, then the documentation copied into the package."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "redcapfs" / "docs"
        self.mkpath(str(target))
        sources = sorted((HERE / "docs").glob("*.md")) + [HERE / "README.md", HERE / "CHANGELOG.md"]
        for source in sources:
            if source.is_file():
                self.copy_file(str(source), str(target / source.name))


setup(cmdclass={"build_py": BuildWithDocs})
