"""Loading and copying weights between modules, with errors that name the tensors at fault.

Below the models: the codec, the converters and the trainer all load through here.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize


def load_state_dict_strict(module: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Load ``state`` into ``module``; missing, unexpected or mis-shaped tensors raise ValueError naming them."""
    problems = state_problems({k: tuple(v.shape) for k, v in module.state_dict().items()},
                              {k: tuple(v.shape) for k, v in state.items()})
    if problems:
        raise ValueError(f"{where}: {problems}")
    module.load_state_dict(state, strict=True)


def state_problems(own: dict[str, tuple[int, ...]], state: dict[str, tuple[int, ...]]) -> str:
    """What differs between a module's tensor shapes (``own``, name -> shape) and those given (``state``, e.g. a
    weights file's header): missing, unexpected and mis-shaped tensors ("" when nothing differs)."""
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    shapes = [f"{k}: {state[k]} != {own[k]}" for k in sorted(set(own) & set(state)) if state[k] != own[k]]
    problems = []
    if missing:
        problems.append(f"missing tensors {few(missing)}")
    if extra:
        problems.append(f"unexpected tensors {few(extra)}")
    if shapes:
        problems.append(f"wrong shapes {few(shapes)}")
    return "; ".join(problems)


def copy_weights(source: nn.Module, target: nn.Module, where: str, keep: tuple[str, ...] = ()) -> None:
    """Copy ``source``'s weights into ``target``, the same model with or without weight norm on either side
    (a folded release into a weight-normed training codec, or the reverse): a weight-normed ``target`` module
    gets its (magnitude, direction) as they are when ``source`` has weight norm there too, otherwise from the plain
    weight through the parametrization's inverse. Missing, unexpected or mis-shaped tensors raise ValueError naming
    them. ``keep``: submodules of ``target`` (dotted names) that keep their own weights, which ``source`` need not
    have."""
    folded = {}
    for name, module in source.named_modules():
        if parametrize.is_parametrized(module, "weight"):
            folded[f"{name}.weight"] = module.weight.detach()
    raw = {k: v for k, v in source.state_dict().items() if ".parametrizations.weight." in k}
    def kept(key: str) -> bool:
        return any(key.startswith(f"{k}.") for k in keep)

    state = {k: v for k, v in source.state_dict().items() if ".parametrizations.weight." not in k}
    state.update(folded)
    state = {k: v for k, v in state.items() if not kept(k)}  # what source has there is not used either
    with torch.no_grad():

        wn = {}
        for name, module in target.named_modules():
            if parametrize.is_parametrized(module, "weight") and not kept(f"{name}.weight"):
                key = f"{name}.weight"
                if key not in state:
                    raise ValueError(f"{where}: missing tensor {key}")
                value = state.pop(key)
                if value.shape != module.weight.shape:
                    raise ValueError(f"{where}: wrong shape {key}: {tuple(value.shape)} != "
                                     f"{tuple(module.weight.shape)}")
                wn[key] = (module, value)
        plain = {k: v for k, v in target.state_dict().items()
                 if ".parametrizations.weight." not in k and not kept(k)}
        missing, extra = sorted(set(plain) - set(state)), sorted(set(state) - set(plain))
        shapes = [k for k in set(plain) & set(state) if plain[k].shape != state[k].shape]
        if missing or extra or shapes:
            raise ValueError(f"{where}: " + "; ".join(
                part for part in (missing and f"missing tensors {few(missing)}",
                                  extra and f"unexpected tensors {few(extra)}",
                                  shapes and f"wrong shapes {few(sorted(shapes))}") if part))
        for key, (module, value) in wn.items():
            g, v = (raw.get(f"{key[:-len('weight')]}parametrizations.weight.original{i}") for i in (0, 1))
            tensors = module.parametrizations.weight
            if g is not None and v is not None and (g.shape, v.shape) == (tensors.original0.shape,
                                                                         tensors.original1.shape):
                # weight norm on both sides: the exact magnitude and direction (a round trip through the folded
                # weight may move the weight by a rounding step)
                tensors.original0.copy_(g.to(tensors.original0))
                tensors.original1.copy_(v.to(tensors.original1))
            else:
                module.weight = value.to(module.weight, copy=True)  # right_inverse sets both, on a copy
                # A zero slice (a dead channel) has no direction: v / |v| would be 0 / 0 and fill the weight with
                # NaN. Give it any direction; the magnitude 0 keeps the weight exactly zero.
                dead = (tensors.original0 == 0).expand_as(tensors.original1)
                if dead.any():
                    tensors.original1[dead] = 1.0
        target.load_state_dict(state, strict=False)


def few(items: list[str], n: int = 8) -> str:
    """The first ``n`` names, and how many there are in all when there are more."""
    shown = ", ".join(items[:n])
    return f"[{shown}{f', ... ({len(items)} in all)' if len(items) > n else ''}]"
