"""The PyTorch engine of `graphdsl train` / `graphdsl eval` (the driver: graphdsl/runtime/training.py).

One step: forward and loss in one generated pass, backward (per optimizer group when
groups minimise their own losses), gradient clipping, optimizer steps, constraint
projections. Optimizer moments and the random-number state travel as numpy arrays, so
checkpoints never hold pickles.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from graphdsl.compiler import Program
from graphdsl.elaborate.train_block import loss_terms_named
from graphdsl.ir.graph import ModelGraph
from graphdsl.ir.patterns import matches
from graphdsl.ops.specs import Spec
from graphdsl.runtime import training
from graphdsl.runtime.engine import StepResult
from graphdsl.runtime.errors import NonFiniteLoss, train_error
from graphdsl.runtime.settings import Settings

from . import distributed as dist_
from .module import GraphModule, LossResult, build_module


def pick_device(requested: str | None) -> torch.device:
    if requested in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise train_error("train-setting", "--device cuda: no CUDA device is available here",
                          help="use --device cpu or auto")
    return torch.device(str(requested))


def make_optimizer(spec: Spec, params: list[torch.Tensor],
                   compiled: bool = False) -> torch.optim.Optimizer:
    a = dict(spec.args)
    # A compiled step reads the rate from a tensor, so the schedule changing it each step
    # does not recompile; the foreach kernels refuse a tensor rate, and compiling fuses anyway.
    lr: Any = torch.tensor(float(a["lr"])) if compiled else a["lr"]
    more: dict[str, Any] = {"foreach": False} if compiled else {}
    if spec.name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=a["momentum"],
                               nesterov=a["nesterov"], weight_decay=a["weight_decay"], **more)
    if spec.name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(a["beta_1"], a["beta_2"]),
                                eps=a["epsilon"], weight_decay=a["weight_decay"], **more)
    if spec.name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=a["rho"], eps=a["epsilon"],
                                   weight_decay=a["weight_decay"], momentum=a["momentum"],
                                   centered=a["centered"], **more)
    if spec.name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, eps=a["epsilon"],
                                   weight_decay=a["weight_decay"],
                                   initial_accumulator_value=a["initial_accumulator_value"],
                                   **more)
    return torch.optim.AdamW(params, lr=lr, betas=(a["beta_1"], a["beta_2"]),
                             eps=a["epsilon"], weight_decay=a["weight_decay"], **more)


class TorchEngine:
    def __init__(self, program: Program, model: ModelGraph, settings: Settings):
        self.model = model
        self.settings = settings
        self.world, self.device = dist_.join(pick_device(settings["device"]))
        self.precision = settings["precision"]
        self.accumulate = int(settings["accumulate"])
        # Initial weights come from the seed alone (numpy), the same in every process;
        # dropout draws differ between processes, as their rows do.
        torch.manual_seed(int(settings["seed"]) + self.world.rank)
        self.module: GraphModule = build_module(
            model, seed=int(settings["seed"]), program_models=program.models,
            checkpoint_activations=bool(settings["checkpoint_activations"]))
        self.module.to(self.device)
        # Groups that minimise their own losses take gradients with torch.autograd.grad,
        # which DDP does not see: their gradients are averaged by hand (dist_).
        self.per_group_losses = any(spec.get("loss") for _, spec in settings.optimizers)
        train_pass, eval_pass = dist_.wrap(self.module, self.world, self.device,
                                           bool(settings.values.get("shard")),
                                           ddp=not self.per_group_losses)
        self.ddp = train_pass
        # Training and evaluation compile apart (two functions, so two caches): evaluation
        # runs without gradients and on other batch sizes, and must not evict or recompile
        # the training graph. Shapes are static: a short last batch compiles once more.
        self.train_pass: Any = torch.compile(train_pass, dynamic=False,
                                             fullgraph=self.world.size == 1) \
            if settings.compile else train_pass
        self.eval_pass: Any = torch.compile(_EvalPass(eval_pass), dynamic=False) \
            if settings.compile else eval_pass
        tensors = self.module.canonical_tensors()
        trainable = [model.node(p)["name"] for p in model.trainable_params()]
        taken: set[str] = set()
        self.groups: list[tuple[Spec, torch.optim.Optimizer, list[str]]] = []
        for pattern, spec in settings.optimizers:
            names = [n for n in trainable if n not in taken and matches(pattern, n)]
            taken.update(names)
            if names:
                self.groups.append((spec, make_optimizer(spec, [tensors[n] for n in names],
                                                         settings.compile), names))
        missing = [n for n in trainable if n not in taken]
        if missing:
            raise train_error("optimizer-coverage", f"{len(missing)} trainable parameters "
                              "belong to no optimizer group", [f"`{n}`" for n in missing[:10]])
        self.scaler = torch.amp.GradScaler(enabled=self.precision == "fp16" and
                                           self.device.type == "cuda")
        self.step_optimizers: Any = self._step_optimizers
        if settings.compile and not self.scaler.is_enabled():
            self.step_optimizers = torch.compile(self._step_optimizers)
        self.spare: dict[str, np.ndarray] | None = None  # a row for a process with none

    # -- batches
    def _tensors(self, batch: Mapping[str, np.ndarray],
                 names: tuple[str, ...]) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(np.asarray(batch[k], order="C")).to(self.device)
                for k in names}

    def _losses(self, batch: Mapping[str, np.ndarray], run: Any) -> LossResult:
        inputs = self._tensors(batch, self.module.input_names)
        targets = self._tensors(batch, self.module.target_names)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
            return run(inputs, targets)  # type: ignore[no-any-return]

    def _passes(self, batch: Mapping[str, np.ndarray]
                ) -> list[tuple[Mapping[str, np.ndarray], float]]:
        """The step's forward passes and the weight of each one's mean loss.

        This process's rows are cut into `accumulate` passes. Weighting pass i by
        n_i * processes / N (N rows in the step over all processes) makes the sum of the
        weighted gradients, averaged over processes by DDP, the gradient of the mean over
        all N rows: the same step as one pass over the whole batch. A pass with no rows
        (a short last batch) runs one spare row at weight 0, so every process makes the
        same collective calls."""
        rows = len(next(iter(batch.values())))
        if rows and self.spare is None:
            self.spare = {k: v[:1] for k, v in batch.items()}
        cuts = np.array_split(np.arange(rows), self.accumulate)
        counts = [float(len(c)) for c in cuts]
        total = sum(self.world.sum({"n": sum(counts)}).values())
        scale = self.world.size / max(total, 1.0)
        out: list[tuple[Mapping[str, np.ndarray], float]] = []
        for cut, count in zip(cuts, counts, strict=True):
            if count:
                out.append(({k: v[cut[0]: cut[-1] + 1] for k, v in batch.items()},
                            count * scale))
            else:
                out.append((self.spare or batch, 0.0))
        return out

    def _step_optimizers(self) -> None:
        for _, opt, _ in self.groups:
            self.scaler.step(opt)

    @staticmethod
    def _result(result: LossResult) -> StepResult:
        return StepResult(float(result.total.detach()),
                          {k: float(v.detach()) for k, v in result.terms.items()},
                          {k: (float(s), float(c)) for k, (s, c) in result.metrics.items()})

    # -- steps
    def train_step(self, batch: Mapping[str, np.ndarray], lr_factor: float) -> StepResult:
        self.module.train()
        for spec, opt, _ in self.groups:
            for group in opt.param_groups:
                if torch.is_tensor(group["lr"]):
                    group["lr"].fill_(float(spec["lr"]) * lr_factor)
                else:
                    group["lr"] = float(spec["lr"]) * lr_factor
        for _, opt, _ in self.groups:
            opt.zero_grad(set_to_none=True)
        passes = self._passes(batch)
        summaries = []
        for i, (part, weight) in enumerate(passes):
            last = i == len(passes) - 1
            with dist_.no_sync(self.ddp, last or self.per_group_losses):
                result = self._losses(part, self.train_pass)
                summary = self._weighted(self._result(result), weight)
                bad = [k for k, v in summary.terms.items() if not np.isfinite(v)]
                if bad:  # the sum is the same in every process, so all stop together
                    raise NonFiniteLoss(bad)
                summaries.append(summary)
                if self.per_group_losses:
                    self._backward_per_group(result, weight)
                else:
                    self.scaler.scale(result.total * weight).backward()
        if self.per_group_losses and self.world.size > 1:
            dist_.average_gradients((p for _, opt, _ in self.groups for g in opt.param_groups
                                     for p in g["params"]), self.world)
        summary = StepResult(sum(s.total for s in summaries),
                             {k: sum(s.terms[k] for s in summaries) for k in summaries[0].terms},
                             {k: (sum(s.metrics[k][0] for s in summaries),
                                  sum(s.metrics[k][1] for s in summaries))
                              for k in summaries[0].metrics})
        for _, opt, _ in self.groups:
            self.scaler.unscale_(opt)
        if not self.scaler.is_enabled():  # fp16's scaler skips such steps by design
            self._check_gradients()
        clip = self.settings["clip_norm"]
        if clip:
            params = [p for _, opt, _ in self.groups for g in opt.param_groups
                      for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, float(clip))
        self.step_optimizers()
        self.scaler.update()
        dist_.settle(self.ddp)
        self.module.project_constraints()
        return summary

    def _check_gradients(self) -> None:
        """Raise NonFiniteLoss("gradient") before any optimizer sees a NaN or inf gradient;
        one device-to-host sync per step."""
        params = [p for _, opt, _ in self.groups for g in opt.param_groups for p in g["params"]
                  if p.grad is not None]
        if not params:
            return
        finite = torch.stack([torch.isfinite(p.grad).all() for p in params])
        if bool(finite.all()):
            return
        names = {id(t): n for n, t in self.module.canonical_tensors().items()}
        bad = [names.get(id(p), "?") for p, ok in zip(params, finite.tolist(), strict=True)
               if not ok]
        for _, opt, _ in self.groups:
            opt.zero_grad(set_to_none=True)
        raise NonFiniteLoss(bad, what="gradient")

    def _weighted(self, result: StepResult, weight: float) -> StepResult:
        """A pass's values at its share of the step, summed over the processes: the
        logged loss is the mean over the whole global batch."""
        share = weight / self.world.size
        if self.world.size == 1:
            if share == 1.0:
                return result
            return StepResult(result.total * share,
                              {k: v * share for k, v in result.terms.items()},
                              result.metrics if share else
                              {k: (0.0, 0.0) for k in result.metrics})
        flat = {"total": result.total * share,
                **{f"t.{k}": v * share for k, v in result.terms.items()},
                **{f"m.{k}.{i}": (v[i] if share else 0.0) for k, v in result.metrics.items()
                   for i in (0, 1)}}
        summed = self.world.sum(flat)
        return StepResult(summed["total"], {k: summed[f"t.{k}"] for k in result.terms},
                          {k: (summed[f"m.{k}.0"], summed[f"m.{k}.1"])
                           for k in result.metrics})

    def _backward_per_group(self, result: LossResult, weight: float) -> None:
        """Each group steps on the gradient of its own losses (a GAN's two players)."""
        grads = []
        for spec, opt, _ in self.groups:
            names = spec.get("loss")
            if names:
                wanted = {self.model.node(n)["name"] for name in names
                          for n in loss_terms_named(self.model, name)}
                loss = sum(v for k, v in result.terms.items() if k in wanted)
            else:
                loss = result.total
            params = [p for g in opt.param_groups for p in g["params"]]
            grads.append(torch.autograd.grad(loss * weight, params, retain_graph=True,
                                             allow_unused=True))
        for (_, opt, _), group_grads in zip(self.groups, grads, strict=True):
            params = [p for g in opt.param_groups for p in g["params"]]
            for p, g in zip(params, group_grads, strict=True):
                if g is not None:  # accumulated passes add up
                    p.grad = g if p.grad is None else p.grad + g

    @torch.no_grad()
    def eval_batch(self, batch: Mapping[str, np.ndarray]) -> StepResult:
        self.module.eval()
        result = self._result(self._losses(batch, self.eval_pass))
        dist_.settle(self.ddp)
        return result

    # -- weights and state
    def export_arrays(self) -> dict[str, np.ndarray]:
        # Under --shard each process holds a shard: gathered here, so the file is the same.
        return {k: dist_.gathered(v) for k, v in self.module.canonical_tensors().items()}

    def load_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        targets = self.module.canonical_tensors()
        for name, value in arrays.items():
            dist_.assign(targets[name], value)

    def training_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        tensors: dict[str, np.ndarray] = {"rng.torch": torch.get_rng_state().numpy()}
        if self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device).numpy()
        names = {id(t): n for n, t in self.module.canonical_tensors().items()}
        groups = []
        for i, (_, opt, _) in enumerate(self.groups):
            scalars = {}
            for p, state in opt.state.items():
                for key, value in state.items():
                    if torch.is_tensor(value) and value.dim() > 0:
                        tensors[f"opt{i}.{names[id(p)]}.{key}"] = dist_.gathered(value)
                    else:
                        scalars[f"{names[id(p)]}.{key}"] = float(value)
            groups.append(scalars)
        return tensors, {"groups": groups}

    def load_training_state(self, tensors: Mapping[str, np.ndarray],
                            state: Mapping[str, Any]) -> None:
        torch.set_rng_state(torch.from_numpy(np.array(tensors["rng.torch"])))
        if "rng.cuda" in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(torch.from_numpy(np.array(tensors["rng.cuda"])),
                                     self.device)
        by_name = self.module.canonical_tensors()
        for i, (_, opt, names) in enumerate(self.groups):
            scalars = state["groups"][i] if i < len(state["groups"]) else {}
            for name in names:
                p = by_name[name]
                entry: dict[str, Any] = {}
                prefix = f"opt{i}.{name}."
                for key, value in tensors.items():
                    if key.startswith(prefix):
                        entry[key[len(prefix):]] = dist_.like(value, p)
                for key, value in scalars.items():
                    if key.startswith(name + "."):
                        entry[key[len(name) + 1:]] = torch.tensor(value)
                if entry:
                    opt.state[p] = entry

    def loader(self, batches: Any, workers: int) -> Any:
        from .loader import loader

        return loader(batches, workers)

    def open_board(self, folder: str) -> Any:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
        import os

        return SummaryWriter(os.path.join(folder, "tensorboard"))


class _EvalPass(torch.nn.Module):
    """The loss pass under a code object of its own: torch.compile keys its cache on the
    code it compiles, so compiling evaluation leaves the training graph alone."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, inputs: Mapping[str, torch.Tensor],
                targets: Mapping[str, torch.Tensor]) -> LossResult:
        return self.inner(inputs, targets)  # type: ignore[no-any-return]


def train_model(program: Program, model: ModelGraph, overrides: Mapping[str, Any],
                out: str | None = None, resume: bool = False, compile: bool = False,
                quiet: bool = False, force: bool = False, callbacks: list[Any] | None = None
                ) -> tuple[Any, training.History, training.Data]:
    """Train one model on PyTorch; returns (loop, history, data). ``loop.engine.module``
    is the trained module."""
    return training.train_model(program, model, TorchEngine, overrides, out, resume, compile,
                                quiet, force, callbacks)


def run_train(program: Program, args: Any) -> int:
    return training.run_train(program, args, TorchEngine)


def run_eval(program: Program, args: Any) -> int:
    from graphdsl.runtime.evaluate import run_eval as evaluate

    return evaluate(program, args, TorchEngine)
