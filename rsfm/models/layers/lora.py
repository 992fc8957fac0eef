"""Low-rank adapters (LoRA, Hu et al. 2021) for the ``nn.Linear`` layers of an encoder.

A wrapped layer computes ``W x + b + (alpha / r) * B A x`` with ``A`` [r, in] random and ``B``
[out, r] zero, so a freshly adapted model computes exactly what the original did. The adapted
layer subclasses ``nn.Linear`` and keeps the original ``weight`` / ``bias`` parameters under
their own names, so pretrained state dicts load into an adapted model unchanged (only the
``lora_A`` / ``lora_B`` keys are new) and :func:`merge_lora` folds the update into ``weight``.

Hand-written because peft is not a dependency of rsfm and this is ~100 lines (loralib-style).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

LORA_PARAMETER_PREFIX = "lora_"


class LoRALinear(nn.Linear):
    """``nn.Linear`` with a trainable low-rank update.

    Args:
        in_features: Input size.
        out_features: Output size.
        rank: Rank r of the update.
        alpha: Scaling numerator; the update is multiplied by ``alpha / rank``.
        dropout: Dropout on the adapter's input.
        bias: Whether the layer has a bias.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: int = 4,
        alpha: float = 8.0,
        dropout: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__(in_features, out_features, bias=bias)
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        self.rank = rank
        self.alpha = float(alpha)
        self.scaling = self.alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank, in_features))
        self.lora_B = nn.Parameter(torch.zeros(out_features, rank))
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False
        self.reset_lora_parameters()

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, rank: int = 4, alpha: float = 8.0, dropout: float = 0.0
    ) -> LoRALinear:
        """Wrap an existing layer, sharing (not copying) its weight and bias parameters."""
        adapted = cls(
            linear.in_features,
            linear.out_features,
            rank,
            alpha,
            dropout,
            bias=linear.bias is not None,
        )
        adapted.weight = linear.weight
        adapted.bias = linear.bias
        adapted.to(device=linear.weight.device, dtype=linear.weight.dtype)
        return adapted

    def reset_lora_parameters(self) -> None:
        """``A`` as ``nn.Linear`` initialises weights (Kaiming-uniform), ``B`` zero."""
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B)

    def delta_weight(self) -> torch.Tensor:
        """The update ``(alpha / r) * B A``: [out, in]."""
        return (self.lora_B @ self.lora_A) * self.scaling

    def merge(self) -> None:
        """Fold the update into ``weight`` (inference without adapter overhead)."""
        if not self.merged:
            with torch.no_grad():
                self.weight += self.delta_weight().to(self.weight.dtype)
            self.merged = True

    def unmerge(self) -> None:
        """Undo :meth:`merge` (to continue training the adapter)."""
        if self.merged:
            with torch.no_grad():
                self.weight -= self.delta_weight().to(self.weight.dtype)
            self.merged = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``W x + b`` plus the scaled adapter path unless merged."""
        out = F.linear(x, self.weight, self.bias)
        if self.merged:
            return out
        update = F.linear(F.linear(self.lora_dropout(x), self.lora_A), self.lora_B)
        return out + self.scaling * update

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}, alpha={self.alpha:g}"


def _matches(name: str, target: Sequence[str]) -> bool:
    """A child named ``qkv`` matches target ``qkv``; a dotted target matches the path's end."""
    return any(name == t or name.endswith(f".{t}") for t in target)


def apply_lora(
    module: nn.Module,
    rank: int = 4,
    alpha: float = 8.0,
    target: Sequence[str] = ("qkv", "proj"),
    dropout: float = 0.0,
    freeze: bool = True,
) -> list[str]:
    """Replace the matching ``nn.Linear`` layers of ``module`` by :class:`LoRALinear`, in place.

    Args:
        module: The network to adapt (e.g. a ``SmartiesEncoder``).
        rank: Adapter rank r.
        alpha: Adapter scaling numerator (update scaled by ``alpha / rank``).
        target: Names of the linear layers to adapt: a child name (``qkv`` adapts every
            ``*.qkv``) or a dotted path ending (``attn.proj`` leaves ``mlp.proj`` alone).
        dropout: Dropout on the adapters' input.
        freeze: Also set ``requires_grad=False`` on every non-adapter parameter of ``module``.

    Returns:
        Qualified names of the adapted layers.

    Raises:
        ValueError: If no linear layer matches ``target``.
    """
    names = [
        name
        for name, child in module.named_modules()
        if isinstance(child, nn.Linear) and not isinstance(child, LoRALinear)
        if _matches(name, target)
    ]
    if not names:
        raise ValueError(f"no nn.Linear layer of {type(module).__name__} matches {list(target)}")
    for name in names:
        parent_name, _, child_name = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        linear = getattr(parent, child_name)
        setattr(parent, child_name, LoRALinear.from_linear(linear, rank, alpha, dropout))
    if freeze:
        mark_only_lora_trainable(module)
    return names


def lora_layers(module: nn.Module) -> Iterator[LoRALinear]:
    """Every :class:`LoRALinear` inside ``module``."""
    return (m for m in module.modules() if isinstance(m, LoRALinear))


def lora_parameters(module: nn.Module) -> Iterator[nn.Parameter]:
    """The adapter parameters (``lora_A`` / ``lora_B``) of ``module``."""
    return (p for n, p in module.named_parameters() if n.rpartition(".")[2].startswith("lora_"))


def mark_only_lora_trainable(module: nn.Module) -> None:
    """``requires_grad`` True for adapter parameters, False for every other parameter."""
    for name, param in module.named_parameters():
        param.requires_grad = name.rpartition(".")[2].startswith(LORA_PARAMETER_PREFIX)


def merge_lora(module: nn.Module) -> int:
    """Merge every adapter of ``module`` into its weight; returns the number merged."""
    layers = list(lora_layers(module))
    for layer in layers:
        layer.merge()
    return len(layers)


def unmerge_lora(module: nn.Module) -> int:
    """Undo :func:`merge_lora`; returns the number of layers unmerged."""
    layers = list(lora_layers(module))
    for layer in layers:
        layer.unmerge()
    return len(layers)
