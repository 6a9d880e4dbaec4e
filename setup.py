"""The package list for setuptools; all other metadata is in pyproject.toml.

The import package ``graphdsl`` is assembled from three top-level folders, mapped
in ``[tool.setuptools.package-dir]``::

    graphdsl/  -> graphdsl
    backends/  -> graphdsl.backends
    grammar/   -> graphdsl.grammar

``[tool.setuptools.packages.find]`` cannot put the ``graphdsl.`` prefix in front of
what it finds under backends/ (it would install a top-level ``backends``), and an
explicit list breaks the build while a listed folder does not exist yet. So every
folder with an ``__init__.py`` under the three roots becomes a package here, and a
new subpackage (``backends/torch/``, ``graphdsl/ops/``) needs no edit.
"""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent
ROOTS = {"graphdsl": "graphdsl", "graphdsl.backends": "backends", "graphdsl.grammar": "grammar"}


def _packages() -> list[str]:
    found: set[str] = set()
    for name, folder in ROOTS.items():
        root = HERE / folder
        if not (root / "__init__.py").is_file():
            continue
        found.add(name)
        found.update(f"{name}.{sub}" for sub in find_packages(str(root)))
    return sorted(found)


setup(packages=_packages())
