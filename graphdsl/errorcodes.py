"""Every diagnostic code, stable and documented (docs/errors.md has one section per code)."""

from __future__ import annotations

# code -> one-line meaning. Codes never change once published; add, never rename.
CODES: dict[str, str] = {
    # reading files
    "bad-file": "the file cannot be read as graphdsl source (missing, a directory, binary, "
                "not UTF-8, empty)",
    "import-error": "an imported file is missing, unreadable, or imports itself in a cycle",
    # syntax
    "syntax": "the text does not follow the grammar",
    # names and definitions
    "unknown-name": "a name that is not defined in scope",
    "unknown-argument": "a keyword argument or setting that the callee does not take",
    "duplicate-definition": "a name defined twice in the same scope",
    "missing-argument": "a required argument is not given",
    "too-many-arguments": "more positional arguments than the callee takes",
    "argument-type": "an argument of the wrong kind (a tensor where a number is expected, ...)",
    "argument-value": "an argument with a value outside what the callee allows",
    "not-callable": "a call of something that is not a layer, block, model or function",
    "invalid-statement": "a statement that is not allowed where it stands",
    "unknown-model": "a train block or command names a model that is not defined",
    # graph structure
    "disconnected": "a result depends on a tensor that is not an input of its model",
    "cycle": "a tensor depends on itself",
    "unused-input": "an input reaches no output, loss or metric",
    "unused-target": "a target is used by no loss or metric",
    "unused-parameter": "a trainable parameter reaches no loss of a model that is trained",
    "label-leak": "an output is computed from a target: the forward pass reads the label",
    "head-without-loss": "an output has neither a loss nor the `inference` marking",
    # types and shapes
    "shape-mismatch": "tensor shapes that do not fit the op's rule",
    "dtype-mismatch": "a tensor of the wrong element type for the op",
    "tie-shape": "a tied or structured parameter whose shape does not fit the place it is used",
    "unknown-dimension": "an op needs a dimension that is only known symbolically",
    # masks
    "mask-ignored": "a masked tensor reaches an op that drops its mask without using it",
    # losses, metrics and training
    "loss-not-scalar": "a loss term that does not reduce to a scalar",
    "no-loss": "a model that is trained has no loss",
    "from-logits-mismatch": "a loss's `from_logits` does not fit its prediction: "
                            "probabilities (a softmax or sigmoid output) with `true`, or a "
                            "layer's linear output (logits) with `false`",
    "optimizer-coverage": "a trainable parameter that no optimizer group covers",
    "optimizer-shadowed": "an optimizer pattern that covers no parameter not already covered",
    "train-setting": "a train block setting with a wrong name, kind or value",
    # weights and data (found when training or loading, not by `graphdsl compile`)
    "bad-checkpoint": "a checkpoint file that cannot be read, or is not a graphdsl checkpoint",
    "checkpoint-mismatch": "a checkpoint whose tensors do not fit the model (missing, "
                           "unexpected or mis-shaped)",
    "bad-data": "training data that does not fit the model (missing arrays, wrong dtype or "
                "shape, unreadable file)",
    "non-finite-loss": "training stopped because a loss term became NaN or infinite",
    "weight-map": "a weight map (`graphdsl convert --map`) that cannot be found or read",
    "weight-conversion": "foreign weights that do not convert through the map (unmapped, "
                         "missing or mis-shaped tensors)",
    "non-finite-gradient": "training stopped because a gradient (or the weights) became NaN "
                           "or infinite while the loss was finite",
    "non-finite-checkpoint": "a checkpoint to evaluate holds NaN or infinite weights",
    "run-folder": "the run folder (--out) holds another run, is in use by one, or cannot be "
                  "created",
    # resources
    "memory-limit": "the model's parameters need more memory than the configured limit",
    "resource-limit": "elaborating the program would expand more ops, blocks or repeats than "
                      "the compiler's budget allows",
}

# Codes that `graphdsl compile` never produces: they come from training, evaluation and
# loading weights or data.
RUNTIME_CODES = frozenset({"bad-checkpoint", "checkpoint-mismatch", "bad-data",
                           "non-finite-loss", "weight-map", "weight-conversion",
                           "non-finite-gradient", "non-finite-checkpoint", "run-folder"})
