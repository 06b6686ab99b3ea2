"""The processes of a training run: the device, this process's rank, and the decisions all ranks take together.

One process, or several under ``torchrun`` (gloo on CPU, nccl on GPU, any number of nodes). Gradients are averaged
with one flattened all-reduce per optimizer rather than by wrapping modules in ``DistributedDataParallel``:
acoustic level dropout leaves different parameters unused from step to step, the discriminators run several
forwards per backward, and distillation heads live outside the codec; a plain all-reduce handles all of these with
one code path (DDP would need ``find_unused_parameters`` and a wrapper per module).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn


class Ranks:
    """Joins (or starts) the process group that ``torchrun`` describes in the environment, and picks the device.

    device: ``"auto"`` (CUDA when available), ``"cuda"`` or ``"cpu"``. bf16: autocast to bfloat16 on CUDA.
    """

    def __init__(self, device: str, bf16: bool) -> None:
        use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
        if device == "cuda" and not torch.cuda.is_available():
            raise ValueError("train.device is 'cuda' but no CUDA device is available")
        self.owns_group = False  # a group this object started, and so ends in close()
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
            if use_cuda:
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group("nccl" if use_cuda else "gloo")
            self.owns_group = True
        self.distributed = dist.is_initialized() and dist.get_world_size() > 1
        self.rank = dist.get_rank() if self.distributed else 0
        self.world_size = dist.get_world_size() if self.distributed else 1
        self.device = torch.device("cuda", torch.cuda.current_device()) if use_cuda else torch.device("cpu")
        self.autocast = use_cuda and bf16

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes logs, checkpoints and the release."""
        return self.rank == 0

    def all_true(self, flag: bool) -> bool:
        """Whether ``flag`` holds on every rank (all ranks get the same answer)."""
        if not self.distributed:
            return flag
        t = torch.tensor([0.0 if flag else 1.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() == 0.0)

    def any_true(self, flag: bool) -> bool:
        """Whether ``flag`` holds on any rank (all ranks get the same answer)."""
        if not self.distributed:
            return flag
        t = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def average_gradients(self, params: list[nn.Parameter]) -> None:
        """Average gradients over ranks with one flat all-reduce; a parameter unused on every rank keeps no
        gradient (ranks agree on which: dropout draws are shared)."""
        if not self.distributed:
            return
        used = [p for p in params if p.grad is not None]
        if not used:
            return
        flat = torch.cat([p.grad.reshape(-1) for p in used])
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for p in used:
            n = p.grad.numel()
            p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
            offset += n

    def check_same_state(self, module: nn.Module, step: int) -> bool:
        """Raise unless every rank holds the same state of ``module`` (weights and buffers such as EMA codebooks),
        compared by per-tensor checksums; True when they do."""
        if not self.distributed:
            return True
        state = module.state_dict()
        sums = torch.stack([v.detach().double().sum() for v in state.values()]).to(self.device)
        lo, hi = sums.clone(), sums.clone()
        dist.all_reduce(lo, op=dist.ReduceOp.MIN)
        dist.all_reduce(hi, op=dist.ReduceOp.MAX)
        differ = [k for k, a, b in zip(state, lo.tolist(), hi.tolist()) if a != b]
        if differ:
            raise RuntimeError(f"step {step}: ranks diverged; tensors differ across ranks: {differ[:8]}")
        return True

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def close(self) -> None:
        """End the process group if this object started it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
        self.owns_group = False
