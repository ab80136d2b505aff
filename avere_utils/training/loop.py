"""The one training skeleton: the supervised warm start (`models/sft.run_sft`) and the AVEm-DPO trainer
(`training/trainer.Trainer`) both run their optimizer steps through `TrainingLoop.run`.

A step, top to bottom (`TrainingLoop.run`): the schedule's learning rate, zero the gradients, each loss of
the step and its backward, the gradients combined over the processes, clipping, the optimizer step, the
schedule advanced, one record written.  What differs between the two trainings is passed in: the losses of
a step (the SFT: one per batch, this SFT worker's share; the DPO: one per micro-batch, so that gradient
accumulation holds one graph at a time), how the gradients are combined (the SFT workers sum them,
`models/sft_workers.Shard.sum_grads_`; the DPO's accelerate processes average them), the record, and where
it goes.  Checkpoints and the tracker are the DPO's and ride in its `after_step` and `write`.

Both schedules are torch `LambdaLR`s (the DPO's from transformers' `get_scheduler`): the learning rate of
a step is set when the schedule is built (step 0) and each time it advances, as `base_lr * factor(step)`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import torch


@dataclass
class StepResult:
    """What a step leaves for its record."""

    step: Any  # the item of `steps` this step ran
    outputs: list[Any]  # what `losses` gave beside each loss, in order
    lr: float  # the learning rate the optimizer stepped with
    grad_norm: float  # the gradients' norm before clipping
    started: float  # time.perf_counter() at the step's start


@dataclass
class TrainingLoop:
    parameters: Sequence[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: Any  # a torch LRScheduler
    # (step) -> (loss, output) pairs; each loss goes through `backward` before the next is computed
    losses: Callable[[Any], Iterable[tuple[torch.Tensor, Any]]]
    combine_gradients: Callable[[Sequence[torch.nn.Parameter]], None]  # over the processes, in place
    record: Callable[[StepResult], dict[str, Any]]
    write: Callable[[dict[str, Any]], None]  # the one writer of a step's record (log file, bar, tracker)
    max_grad_norm: float = 0.0  # 0: no clipping (the norm is still recorded)
    backward: Callable[[torch.Tensor], None] = torch.Tensor.backward
    before_optimizer_step: Callable[[Any], None] | None = None  # sees the combined gradients
    after_step: Callable[[Any, dict[str, Any]], None] | None = None  # after the record is written

    def run(self, steps: Iterable[Any]) -> list[dict[str, Any]]:
        """One optimizer step per item of `steps`; the records, in order."""
        history: list[dict[str, Any]] = []
        for step in steps:
            started = time.perf_counter()
            lr = self.scheduler.get_last_lr()[0]  # set by the schedule when it was built or last advanced
            self.optimizer.zero_grad(set_to_none=True)
            outputs = []
            for loss, output in self.losses(step):
                self.backward(loss)
                outputs.append(output)
            self.combine_gradients(self.parameters)
            if self.before_optimizer_step is not None:
                self.before_optimizer_step(step)
            grad_norm = clip_gradients(self.parameters, self.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            record = self.record(StepResult(step, outputs, lr, grad_norm, started))
            history.append(record)
            self.write(record)
            if self.after_step is not None:
                self.after_step(step, record)
        return history


def clip_gradients(parameters: Sequence[torch.nn.Parameter], max_norm: float) -> float:
    """Clip the gradients to `max_norm` (when > 0); their norm before clipping."""
    if max_norm > 0:
        return float(torch.nn.utils.clip_grad_norm_(parameters, max_norm))
    return float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in parameters if p.grad is not None])))


def reduce_gradients_(parameters: Sequence[torch.nn.Parameter], reduce_: Callable[[torch.Tensor], Any]) -> None:
    """Every gradient replaced by its part of `reduce_` (an in-place all-reduce) applied to all of them
    flattened into one tensor: one message per step.  A parameter this process did not reach counts as a
    zero gradient, so every process ends with a gradient for every parameter."""
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in parameters])
    reduce_(flat)
    pos = 0
    for p in parameters:
        n = p.numel()
        p.grad = flat[pos:pos + n].view_as(p).clone()
        pos += n
