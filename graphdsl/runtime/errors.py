"""How a training run ends when it does not finish: its errors, exit codes and the
non-finite stop an engine raises before it applies a step."""

from __future__ import annotations

from graphdsl.diagnostics import Diagnostic, Note

EXIT_OK, EXIT_ERRORS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class TrainError(Exception):
    def __init__(self, diagnostics: list[Diagnostic], code: int = EXIT_ERRORS):
        self.diagnostics = diagnostics
        self.code = code
        super().__init__("; ".join(d.message for d in diagnostics))


def train_error(code: str, message: str, notes: list[str] | None = None,
                help: str | None = None) -> TrainError:
    return TrainError([Diagnostic("error", code, message,
                                  notes=tuple(Note(n) for n in notes or ()), help=help)])


class NonFiniteLoss(Exception):
    """Raised by an engine before it applies a step whose loss terms (``what="loss"``) or
    gradients (``what="gradient"``) are not all finite; ``names`` says which."""

    def __init__(self, terms: list[str], what: str = "loss"):
        self.terms = terms
        self.what = what
        super().__init__(", ".join(terms))


class Interrupted(Exception):
    """The run stopped on Ctrl-C (or SIGTERM) at a step boundary, its state saved."""
