"""PyTorch implementations of every registered op, one module per op family.

Contract: each implementation is a function taking keyword arguments only, named exactly
as the op's registry entry names them: its tensor inputs (a list for a variadic input,
None for an absent optional one), its parameters (already constrained and masked), its
arguments and call arguments, and ``training`` for ops marked ``random``. It returns a
tensor, or a tuple for ops with several outputs. Layouts are the registry's canonical
ones (Dense kernel [in, units], conv kernels channels last, LSTM gates i, f, c, o).
"""

from __future__ import annotations

from graphdsl.ops.impls import ImplTable

TABLE = ImplTable(__name__, "torch")
IMPLS = TABLE.impls
impl = TABLE.impl
load_all = TABLE.load_all
