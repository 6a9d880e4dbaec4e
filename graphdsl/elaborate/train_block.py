"""Checking a `train` block: settings, optimizer groups, freezing, restores."""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

from graphdsl.diagnostics import DiagnosticSink, Note, source_text, suggestion_help
from graphdsl.ir.graph import ModelGraph, TrainConfig
from graphdsl.ir.patterns import matches
from graphdsl.ops.specs import Spec
from graphdsl.syntax import tree as ast

if TYPE_CHECKING:
    from graphdsl.elaborate.core import Elaborator

# name -> (kind, default, check, meaning)
SETTINGS: dict[str, tuple[str, Any, str]] = {
    "data": ("str", None, "an .npz archive, a folder of .npy files (memory-mapped), a token "
             "file (.bin / .npy of uint16 or uint32 ids) or a text corpus (.txt / .txt.gz) for "
             "a language model; relative to the program (data.md)"),
    "epochs": ("int", 1, "passes over the training data"),
    "batch": ("int", 32, "samples per forward pass, over all processes together"),
    "accumulate": ("int", 1, "forward passes whose gradients add up to one optimizer step "
                   "(the same step as a batch this many times larger)"),
    "lr": ("float", None, "learning rate of every optimizer group that sets none"),
    "schedule": ("schedule", None, "learning-rate schedule: constant, step, cosine, linear"),
    "clip_norm": ("float", None, "clip the global gradient norm to this value"),
    "checkpoint_every": ("int", None, "write a checkpoint every N steps (and at the end)"),
    "seed": ("int", 0, "seed of initialisers, data order, dropout and sampling "
             "(0 to 2^32 - 1)"),
    "validation": ("float", 0.1, "share of the data held out for validation (unless "
                   "`val_data` is given)"),
    "val_data": ("str", None, "a separate validation set, of the same kind as `data` (all "
                 "of it validates); relative to the program"),
    "steps": ("int", None, "stop after this many steps"),
    "sequence_length": ("int", 64, "text corpora: tokens per training sequence"),
    "tokenizer": ("str", "word", "text corpora: \"word\" or \"char\""),
    "vocab_size": ("int", None, "text corpora: keep the most frequent ids, the rest map to "
                   "<unk>"),
    "precision": ("str", "fp32", "fp32, bf16 or fp16"),
    "device": ("str", "auto", "auto, cpu or cuda"),
    "monitor": ("str", "loss", "the value `patience` and `keep_best` watch: the loss, a "
                "loss term or a metric, of the validation pass (of the epoch's training "
                "steps without validation data)"),
    "mode": ("str", "auto", "whether `monitor` improves going down (min) or up (max); "
             "auto: min for the loss, its terms and perplexity, max for metrics"),
    "min_delta": ("float", 0.0, "the least change of `monitor` that counts as improvement"),
    "patience": ("int", None, "early stopping: stop after this many epochs without "
                 "improvement of `monitor`"),
    "keep_best": ("int", None, "keep the checkpoints of the N best epochs by `monitor` in "
                  "best/, ranked in best.json"),
    "keep_last": ("int", None, "keep only the N newest periodic checkpoints"),
    "checkpoint_activations": ("bool", False, "recompute each copy of a repeated block's "
                               "activations in the backward pass instead of keeping them "
                               "(PyTorch, torch.utils.checkpoint)"),
    "windows": ("str", "random", "token files: \"random\" windows (nanoGPT) or "
                "\"sequential\" ones"),
    "workers": ("int", 0, "background processes that load batches (PyTorch DataLoader); 0 "
                "loads in a background thread"),
    "shard": ("bool", False, "under torchrun, shard parameters, gradients and optimizer state "
              "over the processes (FSDP2)"),
    "devices": ("int", 1, "Keras: replicas of tf.distribute.MirroredStrategy"),
    "adapt": ("str", None, "Keras' `adapt`: the Normalization layers whose paths match this "
              "pattern take the mean and variance of their input over the training data "
              "before the first step (each must read a model input)"),
}
# Keras' fit() and PyTorch Lightning's names of train settings -> graphdsl's (or a hint).
SETTING_HABITS = {
    "batch_size": "batch", "learning_rate": "lr", "num_epochs": "epochs", "n_epochs": "epochs",
    "max_epochs": "epochs", "validation_split": "validation", "clipnorm": "clip_norm",
    "gradient_clip_val": "clip_norm", "max_steps": "steps", "steps_per_epoch": "steps",
    "metrics": "metrics are statements of the model: `metric accuracy(logits, y)`",
    "loss": "losses are statements of the model: `loss mse(p, y)`",
    "optimizer": "an optimizer covers a pattern of parameters: `optimizer * = adam(lr = 1e-3)`",
}
MAX_SEED = 2**32 - 1  # what numpy, torch and TensorFlow all take
CHOICES = {"precision": ("fp32", "bf16", "fp16"), "device": ("auto", "cpu", "cuda"),
           "tokenizer": ("word", "char"), "mode": ("auto", "min", "max"),
           "windows": ("random", "sequential")}


def check_train_block(train: ast.TrainDef, graph: ModelGraph, sink: DiagnosticSink,
                      base_dir: str, elaborator: Elaborator) -> TrainConfig:
    from graphdsl.elaborate.values import Const, Poison, Scope, describe

    config = TrainConfig(span=train.span)
    scope = Scope(elaborator.namespace, "", graph.formals, None, graph.name)
    pending_lr: list[int] = []  # optimizer groups that set no lr of their own
    spans: dict[str, Any] = {}
    for stmt in train.body:
        if isinstance(stmt, ast.Setting):
            name = stmt.name.name
            if name in config.settings:
                sink.error("duplicate-definition", f"setting `{name}` is given twice",
                           stmt.name.span)
                continue
            if name not in SETTINGS:
                habit = SETTING_HABITS.get(name)
                sink.error("train-setting", f"unknown train setting `{name}`", stmt.name.span,
                           help=(f"graphdsl calls it `{habit}`" if habit in SETTINGS else habit)
                           or suggestion_help(name, SETTINGS) or
                           "settings: " + ", ".join(SETTINGS))
                continue
            kind = SETTINGS[name][0]
            if kind == "schedule":
                value = elaborator.opcalls.eval_spec(stmt.value, "schedule", scope)
                if isinstance(value, Spec):
                    config.settings[name] = value
                continue
            value = elaborator.expressions.eval(stmt.value, scope)
            if isinstance(value, Poison):
                continue  # its error is reported
            v = value.value if isinstance(value, Const) else None
            ok = {"str": isinstance(v, str),
                  "int": isinstance(v, int) and not isinstance(v, bool),
                  "bool": isinstance(v, bool),
                  "float": isinstance(v, (int, float)) and not isinstance(v, bool)}[kind]
            if not ok:
                got = source_text(v) if isinstance(value, Const) else describe(value)
                sink.error("train-setting", f"`{name}` takes {'an' if kind == 'int' else 'a'} "
                           f"{kind}, got {got}", stmt.value.span)
                continue
            problem = setting_problem(name, v)
            if problem:
                sink.error("train-setting", f"`{name}` {problem}", stmt.value.span)
                continue
            spans[name] = stmt.value.span
            if name in ("data", "val_data"):
                written, v = v, os.path.normpath(os.path.join(base_dir, str(v)))
                if not os.path.exists(v) and not elaborator.missing_files_ok:
                    # A warning: `graphdsl train --data FILE` may supply the data instead.
                    sink.warning("train-setting", f"`{name}`: no file {source_text(written)}",
                                 stmt.value.span,
                                 help=f"paths are relative to the program: looked at {v}")
            config.settings[name] = float(v) if kind == "float" else v  # type: ignore[arg-type]
        elif isinstance(stmt, ast.OptimizerStmt):
            spec = elaborator.opcalls.eval_spec(stmt.value, "optimizer", scope)
            if isinstance(spec, Spec):
                if spec.get("loss") is not None:
                    _check_group_losses(spec, stmt, graph, sink)
                explicit_lr = isinstance(stmt.value, ast.Call) and (
                    bool(stmt.value.args) or any(k.name == "lr" for k in stmt.value.keywords))
                if not explicit_lr:
                    pending_lr.append(len(config.optimizers))
                config.optimizers.append((stmt.pattern.text, spec, stmt.pattern.span))
        elif isinstance(stmt, ast.FreezeStmt):
            config.freeze.append(stmt.pattern.text)
            hits = [p for p in graph.param_nodes() if matches(stmt.pattern.text,
                                                             graph.node(p)["name"])]
            if not hits:
                sink.warning("optimizer-shadowed", f"`freeze {stmt.pattern.text}` matches no "
                             "parameter", stmt.pattern.span,
                             help=pattern_help(stmt.pattern.text,
                                               [graph.node(p)["name"] for p in
                                                graph.param_nodes()]))
            for p in hits:
                graph.node(p)["trainable"] = False
        elif isinstance(stmt, ast.RestoreStmt):
            config.restore.append((stmt.pattern.text, os.path.normpath(
                os.path.join(base_dir, stmt.path.value))))
    if "lr" in config.settings:
        for i in pending_lr:
            pattern, spec, span = config.optimizers[i]
            args = dict(spec.args)
            args["lr"] = config.settings["lr"]
            config.optimizers[i] = (pattern, Spec(spec.kind, spec.name, tuple(args.items())),
                                    span)
    if "monitor" in config.settings:
        _check_monitor(str(config.settings["monitor"]), graph, sink, spans["monitor"])
    if "adapt" in config.settings:
        _check_adapt(str(config.settings["adapt"]), graph, sink, spans["adapt"])
    if not graph.losses and not graph.loss_statements:
        sink.error("no-loss", f"model `{graph.name}` has a train block but no loss",
                   train.model.span, help="add `loss ...` to the model")
    _assign_groups(config, graph, sink)
    return config


def _check_monitor(name: str, graph: ModelGraph, sink: DiagnosticSink, span: Any) -> None:
    """`monitor` names a value a run logs: the loss, a loss term, a metric or perplexity."""
    logged = ["loss", *(graph.node(n)["name"] for n in graph.losses),
              *(graph.node(n)["name"] for n in graph.metrics), "perplexity"]
    if name not in logged:
        sink.error("train-setting", f"`monitor` names `{name}`, which the run does not log",
                   span, help=suggestion_help(name, logged) or
                   "it logs: " + ", ".join(logged))


def adapted_layers(graph: ModelGraph, pattern: str) -> tuple[list[tuple[str, str, Any]],
                                                             list[str]]:
    """The Normalization layers `adapt = pattern` sets from the data, as (layer path, the
    model input it reads, its axis), and the problems of the layers it matches but cannot
    set."""
    found, problems = [], []
    for path, record in graph.layers.items():
        if record.op != "Normalization" or not matches(pattern, path):
            continue
        if record.args.get("mean") is not None:
            problems.append(f"`{path}`: its `mean` and `variance` are arguments")
            continue
        sources = set()
        for call in record.calls:
            for producer, edge in graph.in_edges(call):
                if edge["port"] == "x":
                    sources.add(producer)
        inputs = [n for n in sources if graph.node(n)["kind"] == "input"]
        if len(sources) != 1 or len(inputs) != 1:
            problems.append(f"`{path}`: it reads " + ("a computed tensor" if len(sources) == 1
                                                      else "several tensors") +
                            ", not one model input")
            continue
        found.append((path, graph.node(inputs[0])["name"], record.args.get("axis", -1)))
    return found, problems


def _check_adapt(pattern: str, graph: ModelGraph, sink: DiagnosticSink, span: Any) -> None:
    found, problems = adapted_layers(graph, pattern)
    if problems:
        sink.error("train-setting", f"`adapt = {source_text(pattern)}` cannot set "
                   + "; ".join(problems), span,
                   help="adapt computes the statistics of a model input from the data: apply "
                        "the Normalization to the input directly, or give mean and variance")
    elif not found:
        layers = [p for p, r in graph.layers.items() if r.op == "Normalization"]
        sink.error("train-setting", f"`adapt = {source_text(pattern)}` matches no "
                   "Normalization layer", span,
                   help=(pattern_help(pattern, layers) or "its Normalization layers: "
                         + ", ".join(f"`{p}`" for p in layers)) if layers else
                   "add a `Normalization(axis = -1)` layer to adapt")


def loss_terms_named(graph: ModelGraph, name: str) -> list[str]:
    """Loss nodes a group's `loss = name` refers to: the term, or every `name.*` term."""
    return [n for n in graph.losses if graph.node(n)["name"] == name or
            graph.node(n)["name"].startswith(name + ".")]


def _check_group_losses(spec: Spec, stmt: ast.OptimizerStmt, graph: ModelGraph,
                        sink: DiagnosticSink) -> None:
    existing = [graph.node(n)["name"] for n in graph.losses]
    for name in spec["loss"]:
        if not loss_terms_named(graph, name):
            sink.error("train-setting", f"optimizer `{stmt.pattern.text}` minimises `{name}`, "
                       "but the model has no loss term of that name", stmt.value.span,
                       help=suggestion_help(name, existing) or
                       ("its loss terms: " + ", ".join(existing) if existing else None))


def setting_problem(name: str, v: Any) -> str | None:
    if name in ("epochs", "batch", "checkpoint_every", "steps", "sequence_length",
                "vocab_size", "patience", "keep_best", "keep_last", "accumulate",
                "devices") and v < 1:
        return f"must be at least 1, got {v}"
    if name == "workers" and v < 0:
        return f"must be at least 0, got {v}"
    if name in ("lr", "clip_norm") and not (v > 0 and math.isfinite(v)):
        return f"must be a positive number, got {v}"
    if name == "min_delta" and not (v >= 0 and math.isfinite(v)):
        return f"must be at least 0, got {v}"
    if name == "seed" and not 0 <= v <= MAX_SEED:
        return f"must be in 0 .. {MAX_SEED:,}, got {v}"
    if name == "validation" and not 0 <= v < 1:
        return f"must be in [0, 1), got {v}"
    if name in CHOICES and v not in CHOICES[name]:
        return (f"must be one of {', '.join(map(source_text, CHOICES[name]))}, got "
                f"{source_text(v)}")
    return None


def _check_group_reach(config: TrainConfig, graph: ModelGraph, sink: DiagnosticSink) -> None:
    """A group that minimises named losses must reach each of its parameters through them."""
    import networkx as nx

    node_of = {graph.node(p)["name"]: p for p in graph.trainable_params()}
    for pattern, spec, span in config.optimizers:
        names = spec.get("loss")
        if not names:
            continue
        terms = [n for name in names for n in loss_terms_named(graph, name)]
        if not terms:
            continue
        reach: set[str] = set()
        for t in terms:
            reach |= nx.ancestors(graph.graph, t)
        stranded = [n for n, g in config.groups.items() if g == pattern and
                    node_of.get(n) not in reach]
        if stranded:
            shown = ", ".join(f"`{n}`" for n in stranded[:6])
            sink.error("unused-parameter", f"optimizer `{pattern}` minimises "
                       f"{', '.join(names)}, which does not depend on {shown}"
                       + (f" and {len(stranded) - 6} more" if len(stranded) > 6 else ""),
                       span, help="give the group a loss that uses them, or freeze them")


def pattern_help(pattern: str, names: list[str]) -> str | None:
    """`did you mean `encoder.*`?` for a pattern that matches nothing: the candidates are the
    parameter names cut to the pattern's shape (its `*` segments kept), so the suggestion
    is a pattern of the same form, and one that matches."""
    parts = pattern.split(".")
    candidates: set[str] = set()
    for name in names:
        segments = name.split(".")
        if len(segments) < len(parts):
            continue
        shaped = [p if p == "*" else s for p, s in zip(parts, segments, strict=False)]
        candidates.add(".".join(shaped))
    return suggestion_help(pattern, [c for c in candidates
                                     if any(matches(c, n) for n in names)])


def _assign_groups(config: TrainConfig, graph: ModelGraph, sink: DiagnosticSink) -> None:
    """Each trainable parameter joins the first optimizer pattern that matches its name."""
    trainable = [graph.node(p)["name"] for p in graph.trainable_params()]
    if not config.optimizers:
        config.groups = {name: "*" for name in trainable}
        return
    for pattern, _, span in config.optimizers:
        hits = [n for n in trainable if matches(pattern, n)]
        new = [n for n in hits if n not in config.groups]
        for n in new:
            config.groups[n] = pattern
        if not hits:
            sink.warning("optimizer-shadowed", f"optimizer pattern `{pattern}` matches no "
                         "trainable parameter", span,
                         help=pattern_help(pattern, trainable))
        elif not new:
            sink.warning("optimizer-shadowed", f"optimizer pattern `{pattern}` only matches "
                         "parameters that an earlier pattern already covers", span)
    _check_group_reach(config, graph, sink)
    missing = [n for n in trainable if n not in config.groups]
    if missing:
        shown = ", ".join(f"`{n}`" for n in missing[:8])
        more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        prefixes = sorted({n.split(".")[0] for n in missing})
        sink.error("optimizer-coverage",
                   f"{len(missing)} trainable parameter{'s' * (len(missing) != 1)} "
                   f"belong{'s' * (len(missing) == 1)} to no optimizer group: {shown}{more}",
                   config.optimizers[0][2] if config.optimizers else config.span,
                   notes=[Note("optimizer groups are matched in order; the first match wins",
                               None)],
                   help="add a group for them, e.g. " + " / ".join(
                       f"`optimizer {p}.* = adam(lr = 1e-3)`" for p in prefixes[:2])
                   + ", freeze them, or end with `optimizer * = ...`")
