"""Keras 3 implementations of every registered op, one module per op family.

The contract is the PyTorch backend's (backends/torch/ops/__init__.py): keyword-only
functions named after the registry's inputs, parameters, arguments and call arguments,
plus ``training`` for random ops, implementing each op's canonical definition exactly.
They are written with ``keras.ops`` (TensorFlow underneath) and run inside a model's
``call``.
"""

from __future__ import annotations

from graphdsl.ops.impls import ImplTable

TABLE = ImplTable(__name__, "keras")
IMPLS = TABLE.impls
impl = TABLE.impl
load_all = TABLE.load_all
