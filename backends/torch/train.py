"""`graphdsl train` and `graphdsl eval` on PyTorch.

One step: forward and loss in one generated pass, backward (per optimizer group when
groups minimise their own losses), gradient clipping, optimizer steps, then constraint
projections. Progress shows steps/s, ETA, the total loss and every named term and
metric; each epoch ends with a summary, and `metrics.jsonl` in the run folder logs the
same. Checkpoints (the backend-neutral format of graphdsl/checkpoint.py) are written
every N steps and at the end; `--resume` continues from the latest one and, on CPU with a
fixed seed, ends bit-identical to an uninterrupted run. Ctrl-C writes a checkpoint and
exits; a non-finite loss stops with a diagnostic naming the term and keeps the last good
checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from graphdsl import checkpoint as ckpt
from graphdsl.compiler import Program
from graphdsl.data import DataError, Dataset, is_text, load_npz, load_text_corpus, save_vocab
from graphdsl.diagnostics import Diagnostic, Note
from graphdsl.ir import ModelGraph
from graphdsl.ops.specs import Spec, default_spec
from graphdsl.patterns import matches
from graphdsl.train_config import SETTINGS, loss_terms_named

from .module import GraphModule, LossResult, build_module

EXIT_OK, EXIT_ERRORS, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class TrainError(Exception):
    def __init__(self, diagnostics: list[Diagnostic], code: int = EXIT_ERRORS):
        self.diagnostics = diagnostics
        self.code = code
        super().__init__("; ".join(d.message for d in diagnostics))


def _error(code: str, message: str, notes: list[str] | None = None,
           help: str | None = None) -> TrainError:
    return TrainError([Diagnostic("error", code, message,
                                  notes=tuple(Note(n) for n in notes or ()), help=help)])


# ---- settings -----------------------------------------------------------------------------


@dataclass
class Settings:
    """The train block's settings with the command line's overrides applied."""

    values: dict[str, Any]
    optimizers: list[tuple[str, Spec]]
    restore: list[tuple[str, str]]
    out: str
    resume: bool = False
    compile: bool = False
    log: Any = None

    def __getitem__(self, key: str) -> Any:
        return self.values[key]


def resolve_settings(program: Program, model: ModelGraph, overrides: Mapping[str, Any],
                     out: str | None = None, resume: bool = False,
                     compile: bool = False) -> Settings:
    values = {k: default for k, (_, default, _) in SETTINGS.items()}
    config = model.train
    if config is not None:
        values.update(config.settings)
    for key, value in overrides.items():
        if value is not None:
            values[key] = value
    if overrides.get("data"):
        values["data"] = os.path.abspath(overrides["data"])
    optimizers = [(p, s) for p, s, _ in config.optimizers] if config else []
    if not optimizers:
        spec = default_spec("optimizer", "adam")
        if values.get("lr") is not None:
            spec = Spec("optimizer", "adam", tuple({**dict(spec.args),
                                                    "lr": values["lr"]}.items()))
        optimizers = [("*", spec)]
    elif overrides.get("lr") is not None:  # --lr overrides every group's rate
        optimizers = [(p, Spec(s.kind, s.name, tuple({**dict(s.args),
                                                      "lr": overrides["lr"]}.items())))
                      for p, s in optimizers]
    folder = out or os.path.join("runs", model.name)
    return Settings(values, optimizers, list(config.restore) if config else [], folder,
                    resume, compile)


# ---- data ---------------------------------------------------------------------------------


@dataclass
class Data:
    train: Dataset
    valid: Dataset
    vocab: list[str] | None = None


def load_data(model: ModelGraph, settings: Settings) -> Data:
    path = settings["data"]
    if not path:
        raise _error("bad-data", f"no data for model `{model.name}`",
                     help='set `data = "file.npz"` in its train block, or pass --data')
    try:
        if is_text(path):
            vocab_file = os.path.join(settings.out, "vocab.json")
            train, valid, vocab = load_text_corpus(
                path, model, sequence_length=settings["sequence_length"],
                tokenizer=settings["tokenizer"], vocab_size=settings["vocab_size"],
                validation=settings["validation"], vocab_file=vocab_file)
            return Data(train, valid, vocab)
        dataset = load_npz(path, model)
    except DataError as exc:
        raise TrainError(exc.diagnostics) from None
    train, valid = dataset.split(settings["validation"], settings["seed"])
    return Data(train, valid)


# ---- optimizers and schedules -------------------------------------------------------------


def make_optimizers(module: GraphModule, model: ModelGraph,
                    settings: Settings) -> list[tuple[str, Spec, torch.optim.Optimizer, list[str]]]:
    tensors = module.canonical_tensors()
    trainable = [model.node(p)["name"] for p in model.trainable_params()]
    taken: set[str] = set()
    groups = []
    for pattern, spec in settings.optimizers:
        names = [n for n in trainable if n not in taken and matches(pattern, n)]
        taken.update(names)
        if not names:
            continue
        params = [tensors[n] for n in names]
        a = dict(spec.args)
        if spec.name == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(
                params, lr=a["lr"], momentum=a["momentum"], nesterov=a["nesterov"],
                weight_decay=a["weight_decay"])
        elif spec.name == "adam":
            opt = torch.optim.Adam(params, lr=a["lr"], betas=(a["beta_1"], a["beta_2"]),
                                   eps=a["epsilon"], weight_decay=a["weight_decay"])
        else:
            opt = torch.optim.AdamW(params, lr=a["lr"], betas=(a["beta_1"], a["beta_2"]),
                                    eps=a["epsilon"], weight_decay=a["weight_decay"])
        groups.append((pattern, spec, opt, names))
    missing = [n for n in trainable if n not in taken]
    if missing:
        raise _error("optimizer-coverage", f"{len(missing)} trainable parameters belong to no "
                     "optimizer group", [f"`{n}`" for n in missing[:10]])
    return groups


def lr_factor(schedule: Spec | None, step: int, total: int) -> float:
    """Multiplier of every group's base rate at ``step`` (0-based) of ``total`` steps."""
    if schedule is None:
        return 1.0
    warmup = int(schedule.get("warmup", 0))
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule.name == "constant":
        return 1.0
    if schedule.name == "step":
        return float(schedule["gamma"]) ** ((step - warmup) // int(schedule["step_size"]))
    progress = min(max(step - warmup, 0) / max(total - warmup, 1), 1.0)
    floor = float(schedule.get("min_lr", 0.0))
    if schedule.name == "cosine":
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return floor + (1 - floor) * (1 - progress)


# ---- the run ------------------------------------------------------------------------------


@dataclass
class History:
    epochs: list[dict[str, Any]] = field(default_factory=list)


class Trainer:
    def __init__(self, program: Program, model: ModelGraph, settings: Settings,
                 device: str, precision: str, quiet: bool = False):
        self.program = program
        self.model = model
        self.settings = settings
        self.device = torch.device(device)
        self.precision = precision
        self.quiet = quiet
        self.seed = int(settings["seed"])
        torch.manual_seed(self.seed)
        self.module = build_module(model, seed=self.seed).to(self.device)
        self.restore_from_files()
        self.groups = make_optimizers(self.module, model, settings)
        self.runner = torch.compile(self.module, fullgraph=True) if settings.compile \
            else self.module
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.per_group_losses = any(spec.get("loss") for _, spec, _, _ in self.groups)
        self.scaler = torch.amp.GradScaler(enabled=precision == "fp16" and
                                           self.device.type == "cuda")

    # -- weights
    def restore_from_files(self) -> None:
        for pattern, path in self.settings.restore:
            try:
                arrays = ckpt.select(self.model, ckpt.load_checkpoint(path), pattern,
                                     source=os.path.basename(path), exact=False)
            except ckpt.CheckpointError as exc:
                raise TrainError(exc.diagnostics) from None
            self.module.load_arrays(arrays)
            self.say(f"restored {len(arrays)} tensors matching `{pattern}` from {path}")

    def say(self, text: str) -> None:
        if not self.quiet:
            from rich.console import Console

            Console(stderr=True, highlight=False).print(text)

    # -- batches
    def to_device(self, batch: Mapping[str, np.ndarray]) -> tuple[dict[str, torch.Tensor],
                                                                  dict[str, torch.Tensor]]:
        inputs = {k: torch.from_numpy(np.ascontiguousarray(batch[k])).to(self.device)
                  for k in self.module.input_names}
        targets = {k: torch.from_numpy(np.ascontiguousarray(batch[k])).to(self.device)
                   for k in self.module.target_names}
        return inputs, targets

    def autocast(self) -> Any:
        if self.precision == "fp32":
            return torch.autocast(self.device.type, enabled=False)
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def losses(self, batch: Mapping[str, np.ndarray]) -> LossResult:
        inputs, targets = self.to_device(batch)
        with self.autocast():
            return self.runner.compute_losses(inputs, targets)  # type: ignore[operator, union-attr, no-any-return]

    # -- one step
    def train_step(self, batch: Mapping[str, np.ndarray], total_steps: int) -> LossResult:
        self.module.train()
        factor = lr_factor(self.settings["schedule"], self.step, total_steps)
        for _, spec, opt, _ in self.groups:
            for group in opt.param_groups:
                group["lr"] = float(spec["lr"]) * factor
        result = self.losses(batch)
        self.check_finite(result)
        for _, _, opt, _ in self.groups:
            opt.zero_grad(set_to_none=True)
        if self.per_group_losses:
            self.backward_per_group(result)
        else:
            self.scaler.scale(result.total).backward()
        clip = self.settings["clip_norm"]
        for _, _, opt, _ in self.groups:
            self.scaler.unscale_(opt)
        if clip:
            params = [p for _, _, opt, _ in self.groups for g in opt.param_groups
                      for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, float(clip))
        for _, _, opt, _ in self.groups:
            self.scaler.step(opt)
        self.scaler.update()
        self.module.project_constraints()
        self.step += 1
        return result

    def backward_per_group(self, result: LossResult) -> None:
        """Each group steps on the gradient of its own losses (a GAN's two players)."""
        grads: list[list[torch.Tensor | None]] = []
        for _, spec, opt, _ in self.groups:
            names = spec.get("loss")
            if names:
                wanted = {self.model.node(n)["name"] for name in names
                          for n in loss_terms_named(self.model, name)}
                loss = sum(v for k, v in result.terms.items() if k in wanted)
            else:
                loss = result.total
            params = [p for g in opt.param_groups for p in g["params"]]
            grads.append(list(torch.autograd.grad(loss, params, retain_graph=True,
                                                  allow_unused=True)))
        for (_, _, opt, _), group_grads in zip(self.groups, grads, strict=True):
            params = [p for g in opt.param_groups for p in g["params"]]
            for p, g in zip(params, group_grads, strict=True):
                p.grad = g

    def check_finite(self, result: LossResult) -> None:
        bad = [name for name, value in result.terms.items()
               if not bool(torch.isfinite(value.detach()).all())]
        if bad:
            raise TrainError([Diagnostic(
                "error", "non-finite-loss",
                f"loss term{'s' * (len(bad) > 1)} {', '.join(f'`{b}`' for b in bad)} became "
                f"non-finite at step {self.step + 1} (epoch {self.epoch + 1}); training "
                "stopped", notes=(Note("the last good checkpoint is kept"),),
                help="lower the learning rate, clip gradients (`clip_norm = 1.0`), or check "
                     "the data for NaN or infinite values")])

    # -- evaluation
    @torch.no_grad()
    def evaluate(self, data: Dataset, batch: int) -> dict[str, float]:
        self.module.eval()
        sums: dict[str, float] = {}
        metric_sums: dict[str, list[float]] = {}
        count = 0
        for b in data.batches(batch, self.seed, 0, shuffle=False):
            n = len(next(iter(b.values())))
            result = self.losses(b)
            for name, value in result.terms.items():
                sums[name] = sums.get(name, 0.0) + float(value) * n
            sums["loss"] = sums.get("loss", 0.0) + float(result.total) * n
            for name, (total, valid) in result.metrics.items():
                acc = metric_sums.setdefault(name, [0.0, 0.0])
                acc[0] += float(total)
                acc[1] += float(valid)
            count += n
        out = {k: v / max(count, 1) for k, v in sums.items()}
        out.update({k: s / max(c, 1e-12) for k, (s, c) in metric_sums.items()})
        return out

    # -- checkpoints
    def weights_path(self, step: int) -> str:
        return os.path.join(self.settings.out, "checkpoints", f"step-{step:08d}.safetensors")

    def save(self, final: bool = False) -> str:
        arrays = self.module.export_arrays()
        meta = ckpt.model_metadata(self.model, self.program.file, step=self.step,
                                   epoch=self.epoch, backend="torch")
        path = os.path.join(self.settings.out, "final.safetensors") if final \
            else self.weights_path(self.step)
        ckpt.save_checkpoint(path, arrays, meta)
        state_path = path.replace(".safetensors", ".state.safetensors")
        tensors, state = self.training_state()
        ckpt.save_state(state_path, tensors, state)
        pointer = {"weights": os.path.relpath(path, self.settings.out),
                   "state": os.path.relpath(state_path, self.settings.out),
                   "step": self.step, "graph_hash": self.model.graph_hash()}
        ckpt.atomic_write_bytes(os.path.join(self.settings.out, "latest.json"),
                                json.dumps(pointer, indent=2).encode())
        return path

    def training_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        tensors: dict[str, np.ndarray] = {
            "rng.torch": torch.get_rng_state().numpy()}
        if self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device).numpy()
        scalars: dict[str, Any] = {"step": self.step, "epoch": self.epoch,
                                   "batch_in_epoch": self.batch_in_epoch,
                                   "graph_hash": self.model.graph_hash(), "groups": []}
        names = {id(t): n for n, t in self.module.canonical_tensors().items()}
        for i, (_, _, opt, _) in enumerate(self.groups):
            group_scalars = {}
            for p, state in opt.state.items():
                name = names[id(p)]
                for key, value in state.items():
                    if torch.is_tensor(value) and value.dim() > 0:
                        tensors[f"opt{i}.{name}.{key}"] = value.detach().cpu().numpy()
                    else:
                        group_scalars[f"{name}.{key}"] = float(value)
            scalars["groups"].append(group_scalars)
        return tensors, scalars

    def resume(self) -> bool:
        pointer_path = os.path.join(self.settings.out, "latest.json")
        if not os.path.exists(pointer_path):
            return False
        with open(pointer_path, encoding="utf-8") as fh:
            pointer = json.load(fh)
        if pointer.get("graph_hash") != self.model.graph_hash():
            raise _error("checkpoint-mismatch", f"{pointer_path} was written by a different "
                         f"version of model `{self.model.name}`",
                         help="resume with the program that wrote it, or use a new --out")
        weights = ckpt.load_checkpoint(os.path.join(self.settings.out, pointer["weights"]))
        try:
            self.module.load_arrays(ckpt.select(self.model, weights, "*", source="checkpoint"))
        except ckpt.CheckpointError as exc:
            raise TrainError(exc.diagnostics) from None
        tensors, state = ckpt.load_state(os.path.join(self.settings.out, pointer["state"]))
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        torch.set_rng_state(torch.from_numpy(tensors["rng.torch"].copy()))
        if "rng.cuda" in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(torch.from_numpy(tensors["rng.cuda"].copy()), self.device)
        by_name = self.module.canonical_tensors()
        for i, (_, _, opt, names) in enumerate(self.groups):
            scalars = state["groups"][i] if i < len(state["groups"]) else {}
            for name in names:
                p = by_name[name]
                entry: dict[str, Any] = {}
                prefix = f"opt{i}.{name}."
                for key, value in tensors.items():
                    if key.startswith(prefix):
                        entry[key[len(prefix):]] = torch.from_numpy(value.copy()).to(p.device)
                for key, value in scalars.items():
                    if key.startswith(name + "."):
                        entry[key[len(name) + 1:]] = torch.tensor(value)
                if entry:
                    opt.state[p] = entry
        return True

    # -- the loop
    def fit(self, data: Data, log: Any) -> History:
        batch = int(self.settings["batch"])
        epochs = int(self.settings["epochs"])
        per_epoch = data.train.steps_per_epoch(batch)
        if per_epoch == 0:
            raise _error("bad-data", "the training split is empty",
                         help="use more data or a smaller `validation` share")
        total = per_epoch * epochs
        if self.settings["steps"]:
            total = min(total, int(self.settings["steps"]))
        every = self.settings["checkpoint_every"]
        history = History()
        progress = log.progress(total, self.step)
        try:
            while self.step < total:
                epoch_terms: dict[str, float] = {}
                seen = 0
                for b in data.train.batches(batch, self.seed, self.epoch,
                                            start=self.batch_in_epoch):
                    result = self.train_step(b, total)
                    self.batch_in_epoch += 1
                    values = {"loss": float(result.total.detach())}
                    values.update({k: float(v.detach()) for k, v in result.terms.items()})
                    for k, (s, c) in result.metrics.items():
                        values[k] = float(s) / max(float(c), 1e-12)
                    for k, v in values.items():
                        epoch_terms[k] = epoch_terms.get(k, 0.0) + v
                    seen += 1
                    progress.update(self.step, values, self.epoch)
                    log.record({"step": self.step, "epoch": self.epoch + 1, "split": "train",
                                **values, "lr": self.groups[0][2].param_groups[0]["lr"]})
                    if every and self.step % int(every) == 0:
                        self.save()
                    if self.step >= total:
                        break
                if self.batch_in_epoch >= per_epoch:
                    self.epoch += 1
                    self.batch_in_epoch = 0
                self.end_epoch(data, batch, epoch_terms, seen, log, history)
        except KeyboardInterrupt:
            progress.stop()
            path = self.save()
            self.say(f"interrupted at step {self.step}: checkpoint written to {path}; "
                     "continue with --resume")
            raise
        progress.stop()
        self.save(final=True)
        return history

    def end_epoch(self, data: Data, batch: int, terms: dict[str, float], seen: int, log: Any,
                  history: History) -> None:
        train = {k: v / max(seen, 1) for k, v in terms.items()}
        valid = self.evaluate(data.valid, batch) if len(data.valid) else {}
        if valid and data.vocab is not None:
            valid["perplexity"] = math.exp(min(valid["loss"], 50.0))
        summary = {"epoch": self.epoch, "step": self.step, "train": train, "valid": valid}
        history.epochs.append(summary)
        log.epoch(summary)


# ---- logging ------------------------------------------------------------------------------


class RunLog:
    """metrics.jsonl, TensorBoard scalars when tensorboard is installed, and the console."""

    def __init__(self, folder: str, quiet: bool):
        os.makedirs(folder, exist_ok=True)
        self.path = os.path.join(folder, "metrics.jsonl")
        self.file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.quiet = quiet
        self.board = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.board = SummaryWriter(os.path.join(folder, "tensorboard"))
        except ImportError:
            pass

    def record(self, entry: dict[str, Any]) -> None:
        self.file.write(json.dumps(entry) + "\n")
        if self.board is not None:
            for key, value in entry.items():
                if isinstance(value, float):
                    self.board.add_scalar(f"{entry.get('split', 'train')}/{key}", value,
                                          entry.get("step", 0))

    def epoch(self, summary: dict[str, Any]) -> None:
        self.record({"split": "valid", "step": summary["step"], "epoch": summary["epoch"],
                     **summary["valid"]})
        self.file.flush()
        if self.quiet:
            return
        from rich.console import Console

        def fmt(values: dict[str, float]) -> str:
            return "  ".join(f"{k} {v:.4g}" for k, v in values.items())

        Console(stderr=True, highlight=False).print(
            f"epoch {summary['epoch']}  step {summary['step']}  train: {fmt(summary['train'])}"
            + (f"  |  valid: {fmt(summary['valid'])}" if summary["valid"] else ""))

    def progress(self, total: int, start: int) -> Progress:
        return Progress(total, start, self.quiet)

    def close(self) -> None:
        self.file.close()
        if self.board is not None:
            self.board.close()


class Progress:
    """A rich progress bar with steps/s, ETA, the loss and every term, updated live."""

    def __init__(self, total: int, start: int, quiet: bool):
        self.bar = None
        self.last = 0.0
        if quiet:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as RichProgress

        self.bar = RichProgress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(),
                                MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                                TimeRemainingColumn(), TextColumn("{task.fields[values]}"),
                                console=Console(stderr=True), transient=False)
        self.task = self.bar.add_task("train", total=total, completed=start, epoch=1,
                                      rate="", values="")
        self.started = time.perf_counter()
        self.start_step = start
        self.bar.start()

    def update(self, step: int, values: dict[str, float], epoch: int) -> None:
        if self.bar is None:
            return
        now = time.perf_counter()
        rate = (step - self.start_step) / max(now - self.started, 1e-9)
        if now - self.last > 0.2:
            text = "  ".join(f"{k} {v:.4g}" for k, v in values.items())
            self.bar.update(self.task, completed=step, epoch=epoch + 1,
                            rate=f"{rate:.1f} steps/s", values=text)
            self.last = now

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


# ---- commands -----------------------------------------------------------------------------


def pick_device(requested: str | None) -> str:
    if requested in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise _error("train-setting", "--device cuda: no CUDA device is available here",
                     help="use --device cpu or auto")
    return str(requested)


def models_to_train(program: Program, name: str | None) -> list[ModelGraph]:
    if name:
        return [program.model(name)]
    trained = [m for m in program.models.values() if m.train is not None]
    return trained or [program.model()]


def train_model(program: Program, model: ModelGraph, overrides: Mapping[str, Any],
                out: str | None = None, resume: bool = False, compile: bool = False,
                quiet: bool = False) -> tuple[Trainer, History, Data]:
    """Train one model from Python: the work of `graphdsl train`."""
    settings = resolve_settings(program, model, overrides, out, resume, compile)
    device = pick_device(settings["device"])
    precision = settings["precision"]
    trainer = Trainer(program, model, settings, device, precision, quiet)
    if resume and not trainer.resume():
        trainer.say(f"nothing to resume in {settings.out}: starting fresh")
    data = load_data(model, settings)
    if data.vocab is not None:
        save_vocab(os.path.join(settings.out, "vocab.json"), data.vocab)
    log = RunLog(settings.out, quiet)
    try:
        history = trainer.fit(data, log)
    finally:
        log.close()
    return trainer, history, data


def _print_diagnostics(diagnostics: list[Diagnostic], program: Program) -> None:
    from graphdsl.cli import report

    report(diagnostics, program.sources)


def run_train(program: Program, args: Any) -> int:
    overrides = {"data": args.data, "epochs": args.epochs, "batch": args.batch,
                 "lr": args.lr, "seed": args.seed, "steps": args.steps,
                 "precision": args.precision, "device": args.device}
    results = []
    try:
        for model in models_to_train(program, args.model):
            out = args.out if args.out and args.model else (
                os.path.join(args.out, model.name) if args.out else None)
            trainer, history, data = train_model(program, model, overrides, out, args.resume,
                                                 args.compile, quiet=args.json)
            final = history.epochs[-1] if history.epochs else {}
            results.append({"model": model.name, "parameters": model.parameter_count,
                            "trainable_parameters": model.trainable_count,
                            "steps": trainer.step, "train": final.get("train", {}),
                            "valid": final.get("valid", {}),
                            "weights": os.path.join(trainer.settings.out,
                                                    "final.safetensors")})
    except TrainError as exc:
        _print_diagnostics(exc.diagnostics, program)
        return exc.code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    if args.json:
        print(json.dumps({"ok": True, "runs": results}, indent=2))
    else:
        print_results(results)
    return EXIT_OK


def print_results(results: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="results", title_justify="left")
    keys = sorted({k for r in results for k in r["valid"]})
    for col in ("model", "parameters", "steps", *[f"valid {k}" for k in keys]):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in results:
        table.add_row(r["model"], f"{r['parameters']:,}", str(r["steps"]),
                      *[f"{r['valid'][k]:.4g}" if k in r["valid"] else "-" for k in keys])
    Console(highlight=False).print(table)


def run_eval(program: Program, args: Any) -> int:
    model = program.model(args.model)
    overrides = {"data": args.data, "batch": args.batch, "seed": args.seed,
                 "device": args.device}
    try:
        settings = resolve_settings(program, model, overrides,
                                    out=os.path.dirname(os.path.abspath(args.weights)))
        trainer = Trainer(program, model, settings, pick_device(settings["device"]), "fp32",
                          quiet=True)
        try:
            arrays = ckpt.select(model, ckpt.load_checkpoint(args.weights), "*",
                                 source=os.path.basename(args.weights))
        except ckpt.CheckpointError as exc:
            raise TrainError(exc.diagnostics) from None
        trainer.module.load_arrays(arrays)
        data = load_data(model, settings)
        split = data.valid if len(data.valid) else data.train
        values = trainer.evaluate(split, int(settings["batch"]))
        if data.vocab is not None:
            values["perplexity"] = math.exp(min(values["loss"], 50.0))
    except TrainError as exc:
        _print_diagnostics(exc.diagnostics, program)
        return exc.code
    if args.json:
        print(json.dumps({"ok": True, "model": model.name, "samples": len(split), **values},
                         indent=2))
    else:
        for key, value in values.items():
            print(f"{key:>24}  {value:.6g}")
    return EXIT_OK


__all__ = ["Trainer", "run_eval", "run_train", "train_model"]
