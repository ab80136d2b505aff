"""The one training skeleton (training/loop.py) shared by the SFT and the DPO trainer: its step sequence, the
SFT's schedule as a LambdaLR, the gradient combination and the clipping."""
import torch

from avere_utils.models.sft import _lr_factor
from avere_utils.numerics import adamw
from avere_utils.training.loop import TrainingLoop, clip_gradients, reduce_gradients_


def _model() -> torch.nn.Linear:
    torch.manual_seed(0)
    return torch.nn.Linear(4, 2)


def _batches(n: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(3, 4, generator=g) for _ in range(n)]


def test_the_sft_schedule_as_a_lambda_lr_sets_the_learning_rates_it_set_by_hand():
    """lr = base * factor, the same float operation: bit-identical through warmup and decay."""
    total, warmup, base = 40, 6, 3e-3
    opt = adamw(_model().parameters(), lr=base)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, total, warmup))
    for step in range(total):
        assert opt.param_groups[0]["lr"] == schedule.get_last_lr()[0] == base * _lr_factor(step, total, warmup)
        opt.step()
        schedule.step()


def test_the_skeleton_takes_the_steps_of_a_hand_written_loop():
    """Same weights, bit for bit, and one record per step with the learning rate the step used."""
    total, warmup, base, batches = 8, 3, 1e-2, _batches(8)

    def loss_of(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        return model(x).pow(2).mean()

    hand = _model()
    opt = adamw(hand.parameters(), lr=base)
    lrs = []
    for step, x in enumerate(batches):
        for g in opt.param_groups:
            g["lr"] = base * _lr_factor(step, total, warmup)
        lrs.append(opt.param_groups[0]["lr"])
        opt.zero_grad(set_to_none=True)
        loss_of(hand, x).backward()
        torch.nn.utils.clip_grad_norm_(list(hand.parameters()), 0.5)
        opt.step()

    model = _model()
    params = list(model.parameters())
    opt = adamw(params, lr=base)
    seen = []
    loop = TrainingLoop(params, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, total, warmup)),
                        losses=lambda step: [(loss_of(model, batches[step]), step)],
                        combine_gradients=lambda ps: None,
                        record=lambda done: {"step": done.step, "lr": done.lr, "outputs": done.outputs},
                        write=seen.append, max_grad_norm=0.5)
    history = loop.run(range(total))
    assert history == seen and [r["step"] for r in history] == list(range(total))
    assert [r["lr"] for r in history] == lrs and [r["outputs"] for r in history] == [[s] for s in range(total)]
    for a, b in zip(hand.parameters(), model.parameters()):
        assert torch.equal(a, b)


def test_each_loss_goes_backward_before_the_next_is_computed():
    """Micro-batches: one graph at a time, and the step's gradient is their sum."""
    model = _model()
    params = list(model.parameters())
    opt = torch.optim.SGD(params, lr=0.0)
    events = []

    def losses(step):
        for x in _batches(3):
            events.append("forward")
            yield model(x).sum(), None

    def backward(loss):
        events.append("backward")
        loss.backward()

    TrainingLoop(params, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0), losses=losses,
                 combine_gradients=lambda ps: None, record=lambda done: {}, write=lambda r: None,
                 backward=backward).run(range(1))
    assert events == ["forward", "backward"] * 3


def test_reduce_gradients_counts_a_missing_gradient_as_zero():
    a, b = torch.nn.Parameter(torch.ones(2, 2)), torch.nn.Parameter(torch.ones(3))
    a.grad = torch.full((2, 2), 2.0)

    def double(flat):
        flat *= 2

    reduce_gradients_([a, b], double)
    assert torch.equal(a.grad, torch.full((2, 2), 4.0)) and torch.equal(b.grad, torch.zeros(3))


def test_clip_gradients_returns_the_norm_before_clipping_and_clips_only_when_asked():
    p = torch.nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([3.0, 4.0])
    assert clip_gradients([p], 0.0) == 5.0 and torch.equal(p.grad, torch.tensor([3.0, 4.0]))
    assert clip_gradients([p], 1.0) == 5.0 and abs(float(p.grad.norm()) - 1.0) < 1e-5
