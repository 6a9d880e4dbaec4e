"""Parameter constraints: re-parameterisations (torch.nn.utils.parametrize) and the
projections applied after each optimizer step. Definitions: graphdsl/runtime/weights.py."""

from __future__ import annotations

import torch
from torch import nn

from graphdsl.ops.specs import Spec


class Reparametrization(nn.Module):
    """The constrained value computed from an unconstrained stored tensor at each use."""

    def __init__(self, spec: Spec):
        super().__init__()
        self.kind = spec.name
        self.axis = int(spec.get("axis", 0))
        self.max_value = float(spec.get("max_value", 0.0))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.kind == "simplex":
            return torch.softmax(w, dim=self.axis)
        if self.kind == "non_neg":
            return nn.functional.softplus(w)
        norm = w.norm(dim=self.axis, keepdim=True).clamp_min(1e-12)
        if self.kind == "unit_norm":
            return w / norm
        return w * torch.clamp(self.max_value / norm, max=1.0)


def _simplex_projection(v: torch.Tensor, axis: int) -> torch.Tensor:
    """Euclidean projection onto the probability simplex along ``axis`` (Duchi et al.)."""
    moved = v.movedim(axis, -1)
    u, _ = torch.sort(moved, dim=-1, descending=True)
    cumulative = u.cumsum(-1) - 1.0
    index = torch.arange(1, u.shape[-1] + 1, device=v.device, dtype=v.dtype)
    condition = u - cumulative / index > 0
    rho = (condition * torch.arange(u.shape[-1], device=v.device)).argmax(-1, keepdim=True)
    theta = cumulative.gather(-1, rho) / (rho + 1).to(v.dtype)
    return torch.clamp(moved - theta, min=0.0).movedim(-1, axis)


@torch.no_grad()
def project_(w: torch.Tensor, spec: Spec) -> None:
    """Project ``w`` in place onto the constraint set."""
    axis = int(spec.get("axis", 0))
    if spec.name == "non_neg":
        w.clamp_(min=0.0)
    elif spec.name == "unit_norm":
        w.div_(w.norm(dim=axis, keepdim=True).clamp_min(1e-12))
    elif spec.name == "max_norm":
        norm = w.norm(dim=axis, keepdim=True).clamp_min(1e-12)
        w.mul_(torch.clamp(float(spec["max_value"]) / norm, max=1.0))
    elif spec.name == "simplex":
        w.copy_(_simplex_projection(w, axis))
    else:
        raise ValueError(f"unknown constraint {spec.name}")
