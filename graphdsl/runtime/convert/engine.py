"""Applying a weight map: foreign arrays in, the model's canonical arrays out.

Nothing stops at the first problem: every foreign tensor that no rule or `ignore` takes,
every tensor of the model that nothing produces, every shape that does not fit and every
transform that fails is collected, and all of them are raised together as one
`weight-conversion` diagnostic whose notes point at the rules in the map file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphdsl.diagnostics import Diagnostic, Note, Span, did_you_mean
from graphdsl.ir.graph import ModelGraph
from graphdsl.runtime.checkpoint import CheckpointError, expected_tensors
from graphdsl.runtime.convert.mapfile import Rule, Transform, WeightMap


class _Failed(Exception):
    def __init__(self, message: str, span: Span):
        super().__init__(message)
        self.span = span


@dataclass
class _Made:
    value: np.ndarray
    source: str
    span: Span


def convert_arrays(foreign: dict[str, np.ndarray], wmap: WeightMap, model: ModelGraph,
                   foreign_label: str = "the file") -> dict[str, np.ndarray]:
    """The model's checkpoint tensors made from ``foreign`` through ``wmap``; raises
    CheckpointError listing every problem."""
    problems: list[Note] = []
    arrays = _strip_prefixes(foreign, wmap.prefixes)
    used: set[str] = set()
    _apply_ties(arrays, wmap, used, problems)
    expected = expected_tensors(model)
    dtypes = _target_dtypes(model)
    made: dict[str, _Made] = {}
    tried: set[str] = set()  # targets a rule tried to make (its failure is already a note)
    for rule in wmap.rules:
        _apply_rule(rule, arrays, expected, dtypes, made, used, tried, problems, model.name)
    ignored = {n for n in arrays if any(p.regex().fullmatch(n) for p in wmap.ignores)}
    for name in sorted(set(arrays) - used - ignored):
        problems.append(Note(f"not mapped: `{name}` {list(arrays[name].shape)} of "
                             f"{foreign_label}: no rule or `ignore` takes it"))
    out = {name: m.value for name, m in made.items()}
    for name, mask in _kernel_masks(model).items():
        out[name] = mask
    for name in sorted(set(expected) - set(out) - tried):
        problems.append(_missing(name, expected[name], wmap, arrays))
    if problems:
        raise CheckpointError([Diagnostic(
            "error", "weight-conversion",
            f"{foreign_label} does not convert to model `{model.name}` through the map "
            f"({len(problems)} problem{'s' * (len(problems) != 1)})",
            notes=tuple(problems), file=wmap.file,
            help="fix the rules the notes point at, or `ignore` foreign tensors the model "
                 "does not use")])
    return out


def _strip_prefixes(foreign: dict[str, np.ndarray], prefixes: list[str]
                    ) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, value in foreign.items():
        short = next((name[len(p):] for p in prefixes if name.startswith(p)), name)
        out.setdefault(short, value)
    return out


def _apply_ties(arrays: dict[str, np.ndarray], wmap: WeightMap, used: set[str],
                problems: list[Note]) -> None:
    """`tie COPY = ORIGINAL`: one tensor saved under two names (HF's `lm_head.weight` is
    `wte.weight`). The copy is checked and dropped; alone, it stands for the original."""
    for tie in wmap.ties:
        pattern = tie.copy.regex()
        for name in sorted(arrays):
            m = pattern.fullmatch(name)
            if m is None:
                continue
            original = tie.original.fill(m.groupdict())
            if original not in arrays:
                arrays[original] = arrays[name]
            elif arrays[original].shape != arrays[name].shape or \
                    not np.array_equal(arrays[original], arrays[name]):
                problems.append(Note(f"`{name}` and `{original}` differ, but the map ties "
                                     "them (the model stores one tensor)", tie.span))
            used.add(name)


def _target_dtypes(model: ModelGraph) -> dict[str, str]:
    out = {}
    for node in model.params:
        data = model.node(node)
        dtype = data["type"].dtype
        out[data["name"]] = "float32" if dtype == "bfloat16" else dtype
    return out


def _kernel_masks(model: ModelGraph) -> dict[str, np.ndarray]:
    """A fixed kernel mask is part of the program, not of any foreign file."""
    out = {}
    for node in model.params:
        data = model.node(node)
        if data["kernel_mask"] is not None:
            out[data["name"] + "_mask"] = np.asarray(data["kernel_mask"], dtype=np.float32)
    return out


def _apply_rule(rule: Rule, arrays: dict[str, np.ndarray],
                expected: dict[str, tuple[int, ...]], dtypes: dict[str, str],
                made: dict[str, _Made], used: set[str], tried: set[str],
                problems: list[Note], model_name: str) -> None:
    # A rule that matches nothing is no problem by itself (a map may spell a tensor the
    # ways different releases of a tool saved it); the tensors it should have made are
    # reported as missing, at this rule.
    pattern = rule.sources[0].regex()
    for name in sorted(arrays):
        m = pattern.fullmatch(name)
        if m is None:
            continue
        captures = m.groupdict()
        sources = [s.fill(captures) for s in rule.sources]
        targets = [t.fill(captures) for t in rule.targets]
        absent = [s for s in sources if s not in arrays]
        if absent:
            problems.append(Note(f"`{name}` needs `{absent[0]}` too, which the file lacks",
                                 rule.sources[sources.index(absent[0])].span))
            continue
        used.update(sources)
        tried.update(targets)
        unknown = [t for t in targets if t not in expected]
        if unknown:
            close = did_you_mean(unknown[0], expected)
            hint = f"; did you mean `{close[0]}`?" if close else ""
            problems.append(Note(f"`{name}` maps to `{unknown[0]}`, which model "
                                 f"`{model_name}` does not have{hint}", rule.span))
            continue
        try:
            values = _run_transforms(rule.transforms, [arrays[s] for s in sources],
                                     [expected[t] for t in targets], rule.span)
        except _Failed as exc:
            problems.append(Note(f"`{name}`: {exc}", exc.span))
            continue
        for target, value in zip(targets, values, strict=True):
            if tuple(value.shape) != tuple(expected[target]):
                problems.append(Note(f"shape: `{name}` gives {list(value.shape)} for "
                                     f"`{target}`, which is {list(expected[target])} in model "
                                     f"`{model_name}`", rule.span))
                continue
            value = np.asarray(value.astype(dtypes[target]), order="C")
            if target in made:
                # Two foreign tensors for one model tensor: the model ties what the other
                # tool kept apart, which is right only if they hold the same numbers.
                if not np.array_equal(made[target].value, value):
                    problems.append(Note(
                        f"`{target}` is made from `{made[target].source}` (line "
                        f"{made[target].span.line}) and from `{name}`, which differ; the "
                        "model has one tensor for both", rule.span))
                continue
            made[target] = _Made(value, name, rule.span)


def _run_transforms(transforms: list[Transform], values: list[np.ndarray],
                    target_shapes: list[tuple[int, ...]], rule_span: Span) -> list[np.ndarray]:
    for t in transforms:
        try:
            values = _transform(t, values, target_shapes)
        except (ValueError, IndexError) as exc:  # numpy's AxisError is both
            raise _Failed(f"`{t.name}` fails on {[list(v.shape) for v in values]}: {exc}",
                          t.span) from None
    return values


def _transform(t: Transform, values: list[np.ndarray],
               target_shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    a = t.args
    if t.name == "concat":
        return [np.concatenate(values, axis=int(a[0]))]
    if t.name == "add":
        total = values[0].astype(np.float64)
        for v in values[1:]:
            total = total + v
        return [total.astype(values[0].dtype)]
    if t.name == "split":
        axis = int(a[0])
        if len(a) > 1:
            cuts = np.cumsum([int(x) for x in a[1:]])[:-1]
            parts = np.split(values[0], cuts, axis=axis)
        else:
            parts = np.split(values[0], len(target_shapes), axis=axis)
        return list(parts)
    if t.name == "transpose":
        perm = [int(x) for x in a] or None
        return [np.transpose(v, perm) for v in values]
    if t.name == "reshape":
        if a:
            return [v.reshape([int(x) for x in a]) for v in values]
        if len(values) != len(target_shapes):
            raise ValueError("`reshape` without sizes needs one part per target")
        return [v.reshape(s) for v, s in zip(values, target_shapes, strict=True)]
    if t.name == "slice":
        axis, start, stop = (int(x) for x in a)
        return [v[(slice(None),) * (axis % v.ndim) + (slice(start, stop),)] for v in values]
    if t.name == "cast":
        return [v.astype(str(a[0])) for v in values]
    if t.name == "scale":
        return [v * float(a[0]) for v in values]
    raise ValueError(f"unknown transform {t.name}")


def _missing(name: str, shape: tuple[int, ...], wmap: WeightMap,
             arrays: dict[str, np.ndarray]) -> Note:
    """A tensor of the model that nothing made: point at the rule meant to make it."""
    for rule in wmap.rules:
        for target in rule.targets:
            m = target.regex().fullmatch(name)
            if m is None:
                continue
            wanted = [s.fill(m.groupdict()) if set(s.captures) <= m.groupdict().keys()
                      else s.text for s in rule.sources]
            lacking = [w for w in wanted if w not in arrays] or wanted
            return Note(f"missing: `{name}` {list(shape)}: the file lacks `{lacking[0]}`",
                        rule.span)
    return Note(f"missing: `{name}` {list(shape)}: no rule makes it")
