"""Tensor types with symbolic dimensions.

A dimension is an ``int`` or a :class:`Sym`: a polynomial in named sizes with integer
coefficients, kept in a normal form (``B``, ``2*T + 1``, ``64*B*T``), so products and exact
quotients simplify: reshaping ``[B, T, 64]`` to ``[-1, 4]`` gives ``16*B*T``, and back to
``[-1, T, 64]`` gives ``B``. Anything else (``(T - 3) // 2``) becomes an opaque atom named
by its expression, so equal expressions still compare equal.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8")
DTYPES = (*FLOAT_DTYPES, *INT_DTYPES, "bool")
DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8, "int8": 1, "int16": 2,
               "int32": 4, "int64": 8, "uint8": 1, "bool": 1}


@dataclass(frozen=True)
class Sym:
    """sum(coef * monomial) + const. A monomial is atoms joined by `*` in sorted order (an
    atom is a size name, or a parenthesised opaque expression); terms are sorted by monomial
    and no coefficient is zero."""

    terms: tuple[tuple[str, int], ...]
    const: int = 0

    @staticmethod
    def named(name: str) -> Sym:
        return Sym(((name, 1),), 0)

    def __str__(self) -> str:
        parts = []
        for name, coef in self.terms:
            text = name if coef == 1 else f"{coef}*{name}"
            if coef == -1:
                text = f"-{name}"
            parts.append(text)
        if self.const:
            parts.append(str(self.const))
        out = " + ".join(parts).replace("+ -", "- ")
        return out or "0"


Dim = int | Sym
Shape = tuple[Dim, ...]


def _atoms(monomial: str) -> list[str]:
    """`B*T*(H - 3)//(2)` -> its atoms, split at `*` outside parentheses."""
    atoms, depth, start = [], 0, 0
    for i, ch in enumerate(monomial):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "*" and depth == 0:
            atoms.append(monomial[start:i])
            start = i + 1
    atoms.append(monomial[start:])
    return [a for a in atoms if a]


def _monomial(atoms: list[str]) -> str:
    return "*".join(sorted(atoms))


def _opaque(text: str) -> Sym:
    # an atom must not split at `*`; atoms starting with `(` sort first in a monomial, so
    # `(T - 3)//(2)*B` reads left to right as ((T - 3) // 2) * B
    return Sym.named(text if len(_atoms(text)) == 1 else f"({text})")


def _normalise(terms: dict[str, int], const: int) -> Dim:
    kept = tuple(sorted((n, c) for n, c in terms.items() if c != 0))
    return Sym(kept, const) if kept else const


def _parts(d: Dim) -> tuple[dict[str, int], int]:
    if isinstance(d, int):
        return {}, d
    return dict(d.terms), d.const


def _polynomial(d: Dim) -> dict[str, int]:
    """monomial ("" for the constant) -> coefficient."""
    terms, const = _parts(d)
    if const:
        terms[""] = const
    return terms


def _from_polynomial(poly: dict[str, int]) -> Dim:
    const = poly.pop("", 0)
    return _normalise(poly, const)


def dim_add(a: Dim, b: Dim, sign: int = 1) -> Dim:
    ta, ca = _parts(a)
    tb, cb = _parts(b)
    for name, coef in tb.items():
        ta[name] = ta.get(name, 0) + sign * coef
    return _normalise(ta, ca + sign * cb)


def dim_sub(a: Dim, b: Dim) -> Dim:
    return dim_add(a, b, -1)


def dim_mul(a: Dim, b: Dim) -> Dim:
    if isinstance(a, int) and isinstance(b, int):
        return a * b
    out: dict[str, int] = {}
    for ma, ca in _polynomial(a).items():
        for mb, cb in _polynomial(b).items():
            m = _monomial(_atoms(ma) + _atoms(mb))
            out[m] = out.get(m, 0) + ca * cb
    return _from_polynomial(out)


def _divide_monomial(m: str, by: str) -> str | None:
    atoms = _atoms(m)
    for atom in _atoms(by):
        if atom not in atoms:
            return None
        atoms.remove(atom)
    return _monomial(atoms)


def dim_floordiv(a: Dim, b: Dim) -> Dim:
    """a // b: exact polynomial division by a single term (an int, `T`, `64*B`), else an
    opaque atom."""
    if isinstance(a, int) and isinstance(b, int):
        return a // b
    divisor = _polynomial(b)
    if len(divisor) == 1:
        (by, coef), = divisor.items()
        if coef != 0:
            out: dict[str, int] = {}
            for m, c in _polynomial(a).items():
                q = _divide_monomial(m, by)
                if q is None or c % coef:
                    break
                out[q] = out.get(q, 0) + c // coef
            else:
                return _from_polynomial(out)
    return _opaque(f"({a})//({b})")


def dim_str(d: Dim) -> str:
    return str(d)


def dims_equal(a: Dim, b: Dim) -> bool:
    return a == b


def is_known(d: Dim) -> bool:
    return isinstance(d, int)


@dataclass(frozen=True)
class TensorType:
    """dtype, shape (None: unknown after an earlier error) and the node id of its mask."""

    dtype: str
    shape: Shape | None
    mask: str | None = None

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)

    def with_mask(self, mask: str | None) -> TensorType:
        return replace(self, mask=mask)

    def with_shape(self, shape: Shape | None) -> TensorType:
        return replace(self, shape=shape)

    def __str__(self) -> str:
        if self.shape is None:
            return f"{self.dtype}[?]"
        return f"{self.dtype}[{', '.join(map(str, self.shape))}]"

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_DTYPES

    @property
    def is_int(self) -> bool:
        return self.dtype in INT_DTYPES

    @property
    def is_bool(self) -> bool:
        return self.dtype == "bool"


UNKNOWN = TensorType("float32", None)


def shape_str(shape: Shape | None) -> str:
    return "[?]" if shape is None else "[" + ", ".join(map(str, shape)) + "]"


def numel(shape: Shape) -> int | None:
    total = 1
    for d in shape:
        if not isinstance(d, int):
            return None
        total *= d
    return total


class ShapeError(Exception):
    """Raised by an op's shape rule; the elaborator turns it into a positioned diagnostic.

    ``argument`` names the input or argument at fault, so the caret can point at it.
    """

    def __init__(self, message: str, argument: str | int | None = None,
                 code: str = "shape-mismatch", help: str | None = None):
        super().__init__(message)
        self.message = message
        self.argument = argument
        self.code = code
        self.help = help


def broadcast(a: Shape, b: Shape) -> Shape:
    """NumPy broadcasting over symbolic dimensions; raises ShapeError naming both shapes."""
    out: list[Dim] = []
    for i in range(1, max(len(a), len(b)) + 1):
        da = a[-i] if i <= len(a) else 1
        db = b[-i] if i <= len(b) else 1
        if da == db or db == 1:
            out.append(da)
        elif da == 1:
            out.append(db)
        else:
            raise ShapeError(
                f"shapes {shape_str(a)} and {shape_str(b)} do not broadcast: "
                f"dimension {-i} is {da} in one and {db} in the other"
            )
    return tuple(reversed(out))


def normalize_axis(axis: int, rank: int, argument: str = "axis") -> int:
    if not -rank <= axis < rank:
        raise ShapeError(f"axis {axis} is out of range for a tensor of rank {rank}", argument,
                         code="argument-value")
    return axis % rank
