"""Suite-wide pytest set-up.

``--block-frameworks``: run as if torch, tensorflow, keras and jax were not
installed (see tests/block_frameworks.py). ``make test`` uses it for tests/core and
tests/diagnostics.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest


def _load_blocker() -> ModuleType:
    # Loaded by path: with --import-mode=importlib the tests folder is not on sys.path.
    path = Path(__file__).with_name("block_frameworks.py")
    spec = importlib.util.spec_from_file_location("_graphdsl_block_frameworks", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--block-frameworks",
        action="store_true",
        default=False,
        help="make torch, tensorflow, keras and jax unimportable, here and in subprocesses",
    )


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("--block-frameworks"):
        return
    blocker = _load_blocker()
    try:
        blocker.install()
    except RuntimeError as exc:
        raise pytest.UsageError(f"--block-frameworks: {exc}") from exc
    config.add_cleanup(blocker.uninstall)


def pytest_report_header(config: pytest.Config) -> str | None:
    if config.getoption("--block-frameworks"):
        return "frameworks blocked: torch, tensorflow, keras and jax are unimportable"
    return None
