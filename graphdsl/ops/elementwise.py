"""Elementwise arithmetic, comparisons, logic and activations, with NumPy broadcasting."""

from __future__ import annotations

from ..ir.types import FLOAT_DTYPES, ShapeError, TensorType, broadcast, normalize_axis
from .registry import Arg, In, OpCall, OpDef, register
from .rules import same_as
from .specs import ACTIVATIONS


def _result_dtype(call: OpCall, a: str, b: str) -> str:
    ta, tb = call.input(a), call.input(b)
    if ta.dtype != tb.dtype:
        raise ShapeError(f"`{call.op.name}` requires operands of one dtype, got {ta} and {tb}",
                         b, code="dtype-mismatch",
                         help=f"convert one side with cast(..., {ta.dtype})")
    return ta.dtype


def _broadcast_rule(dtype_rule: str):
    def rule(call: OpCall) -> TensorType:
        dtype = _result_dtype(call, "x", "y")
        a, b = call.shape("x"), call.shape("y")
        try:
            shape = broadcast(a, b)
        except ShapeError as exc:
            raise ShapeError(f"`{call.op.name}` requires broadcastable shapes: {exc.message}",
                             "y") from None
        if dtype_rule == "bool":
            dtype = "bool"
        elif dtype_rule == "float" and dtype not in FLOAT_DTYPES:
            dtype = "float32"
        return TensorType(dtype, shape)

    return rule


# Piecewise constant: their gradient is zero wherever it exists, so nothing before them
# learns from a loss that reads them (the gradient-reachability check).
_STEP_FUNCTIONS = frozenset({"sign", "floor_divide"})

_BINARY = (
    ("add", "number", "same", "x + y"),
    ("subtract", "number", "same", "x - y"),
    ("multiply", "number", "same", "x * y"),
    ("divide", "number", "float", "x / y (true division; integers give float32)"),
    ("floor_divide", "number", "same",
     "Python's x // y: exact for floats (1.0 // 0.1 is 9.0), so x == (x // y) * y + x % y"),
    ("mod", "number", "same", "Python's x % y: the sign of y, exact for floats"),
    ("power", "number", "same", "x ** y"),
    ("maximum", "number", "same", "max(x, y)"),
    ("minimum", "number", "same", "min(x, y)"),
    ("equal", "any", "bool", "x == y"),
    ("not_equal", "any", "bool", "x != y"),
    ("less", "number", "bool", "x < y"),
    ("less_equal", "number", "bool", "x <= y"),
    ("greater", "number", "bool", "x > y"),
    ("greater_equal", "number", "bool", "x >= y"),
    ("logical_and", "bool", "bool", "x and y"),
    ("logical_or", "bool", "bool", "x or y"),
)
for _name, _dtypes, _rule, _canon in _BINARY:
    register(OpDef(_name, "elementwise", "function", f"Elementwise {_canon}.",
                   inputs=(In("x", _dtypes), In("y", _dtypes)), infer=_broadcast_rule(_rule),
                   canonical=_canon, differentiable=_name not in _STEP_FUNCTIONS))

# Operators in the language and the ops they mean.
OPERATORS = {"+": "add", "-": "subtract", "*": "multiply", "/": "divide", "//": "floor_divide",
             "%": "mod", "**": "power", "@": "matmul", "==": "equal", "!=": "not_equal",
             "<": "less", "<=": "less_equal", ">": "greater", ">=": "greater_equal",
             "and": "logical_and", "or": "logical_or"}


def _matmul(call: OpCall) -> TensorType:
    dtype = _result_dtype(call, "x", "y")
    a, b = call.shape("x", min_rank=1), call.shape("y", min_rank=1)
    a2 = a if len(a) > 1 else (1, *a)
    b2 = b if len(b) > 1 else (*b, 1)
    if a2[-1] != b2[-2]:
        raise ShapeError(f"`@` requires the last dimension of the left side to equal the "
                         f"second-to-last of the right side, got [{', '.join(map(str, a))}] "
                         f"@ [{', '.join(map(str, b))}] ({a2[-1]} vs {b2[-2]})", "y")
    try:
        batch = broadcast(a2[:-2], b2[:-2])
    except ShapeError as exc:
        raise ShapeError(f"`@` batch dimensions do not broadcast: {exc.message}", "y") from None
    shape = (*batch, a2[-2], b2[-1])
    if len(a) == 1:
        shape = (*batch, b2[-1])
    if len(b) == 1:
        shape = shape[:-1]
    return TensorType(dtype, shape)


register(OpDef("matmul", "elementwise", "function",
               "Matrix product with NumPy's rules for batches and 1-D operands.",
               inputs=(In("x", "number"), In("y", "number")), infer=_matmul,
               mask_keep=lambda c: c.input("x").rank is not None and (c.input("x").rank or 0) > 2,
               canonical="numpy.matmul"))

_UNARY = (
    ("negative", "number", "-x"), ("abs", "number", "|x|"), ("square", "number", "x * x"),
    ("exp", "float", "e^x"), ("log", "float", "natural logarithm"),
    ("sqrt", "float", "square root"), ("rsqrt", "float", "1 / sqrt(x)"),
    ("sign", "number", "-1, 0 or 1"), ("erf", "float", "the error function"),
    ("sin", "float", "sine (radians)"), ("cos", "float", "cosine (radians)"),
)
for _name, _dtypes, _canon in _UNARY:
    register(OpDef(_name, "elementwise", "function", f"Elementwise {_canon}.",
                   inputs=(In("x", _dtypes),), infer=lambda c: same_as(c, "x"), canonical=_canon,
                   differentiable=_name not in _STEP_FUNCTIONS))

register(OpDef("stop_gradient", "elementwise", "function",
               "The value of x, through which no gradient flows (PyTorch's detach).",
               inputs=(In("x", "any"),), infer=lambda c: same_as(c, "x"),
               differentiable=False, canonical="forward: x; backward: zero gradient"))

register(OpDef("logical_not", "elementwise", "function", "Elementwise not.",
               inputs=(In("x", "bool"),), infer=lambda c: same_as(c, "x"), canonical="not x"))

# Every activation is also a function of the same name (softmax takes an axis).
for _name, _spec in ACTIVATIONS.items():
    if _name == "softmax":
        continue
    register(OpDef(_name, "elementwise", "function", f"The {_name} activation.",
                   inputs=(In("x", "float"),), infer=lambda c: same_as(c, "x"),
                   canonical=_spec.canonical))


def _softmax(call: OpCall) -> TensorType:
    shape = call.shape("x", min_rank=1)
    normalize_axis(call.args["axis"], len(shape))
    if call.has("where"):
        try:
            broadcast(shape, call.shape("where"))
        except ShapeError as exc:
            raise ShapeError(f"`where` must broadcast to x: {exc.message}", "where") from None
    return same_as(call, "x")


register(OpDef(
    "softmax", "elementwise", "function", "Softmax along an axis, optionally over a mask.",
    inputs=(In("x"), In("where", "bool", optional=True)), args=(Arg("axis", "int", -1),),
    infer=_softmax,
    canonical="exp(x - max) / sum(exp(x - max)) along axis; with where, x is first replaced by "
              "-1e9 where the mask is false (a fully masked row is uniform)",
))
register(OpDef(
    "log_softmax", "elementwise", "function", "Log of the softmax along an axis.",
    inputs=(In("x"),), args=(Arg("axis", "int", -1),), infer=_softmax,
    canonical="x - logsumexp(x) along axis",
))


def _where(call: OpCall) -> TensorType:
    dtype = _result_dtype(call, "x", "y")
    shape = broadcast(broadcast(call.shape("condition"), call.shape("x")), call.shape("y"))
    return TensorType(dtype, shape)


register(OpDef(
    "where", "elementwise", "function", "x where condition holds, else y.",
    inputs=(In("condition", "bool"), In("x", "any"), In("y", "any")), infer=_where,
    canonical="numpy.where(condition, x, y)",
))


def _cast(call: OpCall) -> TensorType:
    from ..ir.types import DTYPES

    dtype = call.args["dtype"]
    if dtype not in DTYPES:
        raise ShapeError(f"unknown dtype {dtype!r}", "dtype", code="argument-value")
    return TensorType(dtype, call.shape("x"))


register(OpDef("cast", "elementwise", "function", "Converts the element type.",
               inputs=(In("x", "any"),), args=(Arg("dtype", "str"),), infer=_cast,
               canonical="bool -> 0/1; float -> int truncates toward zero"))

register(OpDef("clip", "elementwise", "function", "Clamps values into [min, max].",
               inputs=(In("x", "number"),), args=(Arg("min", "number"), Arg("max", "number")),
               infer=lambda c: same_as(c, "x"), canonical="minimum(maximum(x, min), max)"))


def _one_hot(call: OpCall) -> TensorType:
    classes = call.args["num_classes"]
    if classes < 1:
        raise ShapeError(f"`num_classes` must be positive, got {classes}", "num_classes",
                         code="argument-value")
    return TensorType("float32", (*call.shape("x"), classes))


register(OpDef("one_hot", "elementwise", "function", "One-hot float vectors of integer ids.",
               inputs=(In("x", "int"),), args=(Arg("num_classes", "int"),), infer=_one_hot,
               canonical="float32: 1.0 at the id, 0.0 elsewhere, on a new last axis; ids "
                         "outside [0, num_classes) give all zeros"))

def _same_along_axis(call: OpCall) -> TensorType:
    shape = call.shape("x")
    normalize_axis(call.args["axis"], len(shape))  # reports an axis out of range
    return same_as(call, "x")


register(OpDef("l2_normalize", "elementwise", "function", "Scales to unit L2 norm along axis.",
               inputs=(In("x"),), args=(Arg("axis", "int", -1), Arg("epsilon", "float", 1e-12)),
               infer=_same_along_axis,
               canonical="x / sqrt(max(sum(x^2, axis), epsilon))"))


def _constant(call: OpCall) -> TensorType:
    return TensorType(call.args["dtype"], tuple(call.args["shape"]))


register(OpDef("constant", "elementwise", "function",
               "A literal tensor (numbers and nested lists in expressions become constants).",
               inputs=(), args=(Arg("value", "any"), Arg("dtype", "str"), Arg("shape", "any")),
               infer=_constant, mask="none", canonical="the literal value"))
