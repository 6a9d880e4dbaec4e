"""Run tests as if no deep-learning framework were installed.

The core (parse, elaborate, check, ``graphdsl compile``) must never import torch,
tensorflow, keras or jax. ``install()`` makes those imports fail the way they fail on
a machine without them:

* ``sys.modules[name] = None`` for each blocked top-level name, so ``import torch``
  raises ``ModuleNotFoundError`` and ``importlib.util.find_spec("torch")`` returns
  ``None``, exactly as when the package is absent;
* a ``sys.meta_path`` finder in first place that refuses the same names, in case a
  test removes those ``sys.modules`` entries;
* a ``sitecustomize.py`` put in front of ``PYTHONPATH``, so Python subprocesses
  that a test starts (``graphdsl compile ...``) are blocked too.

Use it through pytest: ``pytest --block-frameworks tests/core`` (the option is
registered in ``tests/conftest.py``; ``make test`` runs tests/core and
tests/diagnostics this way). A framework that is already imported when blocking
starts cannot be hidden any more, so ``install()`` refuses, naming it.
"""

from __future__ import annotations

import importlib.abc
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

BLOCKED: tuple[str, ...] = (
    "torch",
    "torchvision",
    "torchaudio",
    "tensorflow",
    "tf_keras",
    "keras",
    "jax",
    "jaxlib",
)

ENV_FLAG = "GRAPHDSL_TESTS_BLOCK_FRAMEWORKS"

_SITECUSTOMIZE = """\
# Written by tests/block_frameworks.py: block frameworks in this subprocess too.
import importlib.util as _u

_spec = _u.spec_from_file_location("_graphdsl_block_frameworks", {path!r})
_mod = _u.module_from_spec(_spec)
_spec.loader.exec_module(_mod)
_mod.block_imports()
"""


def _is_blocked(fullname: str) -> bool:
    return fullname.partition(".")[0] in BLOCKED


class FrameworkBlocker(importlib.abc.MetaPathFinder):
    """Refuses every module whose top-level name is in ``BLOCKED``."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> None:
        if _is_blocked(fullname):
            raise ModuleNotFoundError(
                f"No module named {fullname!r} "
                "(blocked by tests/block_frameworks.py: the core must work without it)",
                name=fullname,
            )
        return None


_state: dict[str, object] = {}


def already_imported() -> list[str]:
    """Blocked modules that are really imported in this process."""
    return sorted(
        name for name, mod in sys.modules.items() if mod is not None and _is_blocked(name)
    )


def block_imports() -> None:
    """Block the frameworks in this process only (no subprocess set-up)."""
    loaded = already_imported()
    if loaded:
        raise RuntimeError(
            "cannot block frameworks that are already imported: " + ", ".join(loaded[:5])
        )
    if not any(isinstance(f, FrameworkBlocker) for f in sys.meta_path):
        sys.meta_path.insert(0, FrameworkBlocker())
    for name in BLOCKED:
        sys.modules[name] = None  # type: ignore[assignment]


def unblock_imports() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, FrameworkBlocker)]
    for name in BLOCKED:
        if name in sys.modules and sys.modules[name] is None:
            del sys.modules[name]


def install() -> None:
    """Block the frameworks here and in Python subprocesses started from here."""
    block_imports()
    folder = Path(tempfile.mkdtemp(prefix="graphdsl-block-frameworks-"))
    (folder / "sitecustomize.py").write_text(
        _SITECUSTOMIZE.format(path=str(Path(__file__).resolve())), encoding="utf-8"
    )
    _state["folder"] = folder
    _state["PYTHONPATH"] = os.environ.get("PYTHONPATH")
    _state[ENV_FLAG] = os.environ.get(ENV_FLAG)
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(folder) + (os.pathsep + old if old else "")
    os.environ[ENV_FLAG] = "1"


def uninstall() -> None:
    unblock_imports()
    for key in ("PYTHONPATH", ENV_FLAG):
        if key not in _state:
            continue
        old = _state.pop(key)
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = str(old)
    folder = _state.pop("folder", None)
    if isinstance(folder, Path):
        shutil.rmtree(folder, ignore_errors=True)
