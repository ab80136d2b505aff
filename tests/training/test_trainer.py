"""The AVEm-DPO trainer: what reaches the model, how many forward passes, accumulation, resuming."""
from __future__ import annotations

import contextlib
import json
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import backend_with_lora
from torch import nn

from avere_utils.config import build
from avere_utils.models.backend import Backend
from avere_utils.records import Example, Media
from avere_utils.training.data import PairSource
from avere_utils.training.params import TrainParams
from avere_utils.training.step_log import read_log
from avere_utils.training.trainer import Hooks, StopTraining, Trainer, train
from avere_utils.training.variants import VARIANTS

pytestmark = pytest.mark.model  # builds or trains a Qwen2.5-Omni thinker: not in make test-fast


# --- a small fake backend: characters in, log-probs out, and the media matter -------------------------
class FakeBackend(Backend):
    """A bag-of-characters LM whose logits depend on the prompt, the frames and the audio; its only
    trainable parameters are a LoRA-like pair (A, B = 0 at init) that `reference()` switches off."""

    V, D, R = 61, 16, 4

    def __init__(self, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.model = nn.Module()
        self.model.emb = nn.Parameter(torch.randn(self.V, self.D, generator=g), requires_grad=False)
        self.model.media = nn.Parameter(torch.randn(4, self.D, generator=g), requires_grad=False)
        self.model.out = nn.Parameter(torch.randn(self.D, self.V, generator=g) * 0.3, requires_grad=False)
        self.model.lora_A = nn.Parameter(torch.randn(self.D, self.R, generator=g) * 0.3)
        self.model.lora_B = nn.Parameter(torch.zeros(self.R, self.V))
        self.adapters_on = True
        self.device = torch.device("cpu")
        self.tokenizer = None
        self.calls: list[tuple[int, bool, bool]] = []  # (n examples, grad, reference)
        self.media_free: list[int] = []  # per call: how many examples came without media (text-only)

    def _ids(self, text: str) -> torch.Tensor:
        return torch.tensor([ord(c) % self.V for c in text])

    def _media(self, media: Media | None) -> torch.Tensor:
        if media is None:
            return torch.zeros(4)
        f = torch.from_numpy(media.frames.astype(np.float32) / 255.0) if media.frames is not None else torch.zeros(1)
        a = torch.from_numpy(media.audio.astype(np.float32)) if media.audio is not None else torch.zeros(1)
        return torch.stack([f.mean(), f.std(), a.mean(), a.std()])

    def _one(self, ex: Example) -> torch.Tensor:
        m = self.model
        ids = self._ids(ex.response)
        ctx = m.emb[self._ids(ex.prompt)].mean(0) + self._media(ex.media) @ m.media
        h = torch.tanh(m.emb[torch.cat([self._ids(" "), ids[:-1]])] + ctx)
        logits = h @ m.out
        if self.adapters_on:
            logits = logits + h @ m.lora_A @ m.lora_B
        return torch.log_softmax(logits, -1).gather(1, ids[:, None]).sum()

    def sequence_logprobs(self, examples, *, grad=False, share_prefix=False):  # nothing to share here
        self.calls.append((len(examples), grad, not self.adapters_on))
        self.media_free.append(sum(ex.media is None for ex in examples))
        with contextlib.nullcontext() if grad else torch.no_grad():
            lp = torch.stack([self._one(ex) for ex in examples])
        return lp, torch.tensor([len(ex.response) for ex in examples])

    def generate(self, examples, **kw):
        raise NotImplementedError

    def score_choices(self, example, choices):
        raise NotImplementedError

    @contextlib.contextmanager
    def reference(self):
        self.adapters_on = False
        try:
            yield
        finally:
            self.adapters_on = True

    def trainable_parameters(self):
        return iter([self.model.lora_A, self.model.lora_B])

    def save_adapter(self, path):
        Path(path).mkdir(parents=True, exist_ok=True)
        torch.save({"A": self.model.lora_A.detach().clone(), "B": self.model.lora_B.detach().clone()},
                   Path(path) / "adapter.pt")

    def load_adapter(self, path):
        state = torch.load(Path(path) / "adapter.pt")
        with torch.no_grad():
            self.model.lora_A.copy_(state["A"])
            self.model.lora_B.copy_(state["B"])


def fake_rows(n: int = 24) -> list[dict]:
    modalities = ["visual", "audio", "both"]
    rows = []
    for i in range(n):
        mod = modalities[i % 3]
        rows.append({"id": f"s{i}", "clip_id": f"c{i}", "family": "f", "modality": mod, "label": "happiness",
                     "split": "train", "prompt": f"Why is person {i % 5} feeling this way?",
                     "chosen": f"a broad smile {i % 4}", "rejected_vr": f"the yellow wall {i % 3}",
                     "rejected_er": f"clenched fists {i % 2}", "video": f"v{i}", "audio": f"a{i}",
                     "video_l": f"v{(i + 7) % n}" if mod in ("visual", "both") else f"v{i}",
                     "audio_l": f"noise:{i}" if mod in ("audio", "both") else f"a{i}"})
    return rows


def fake_media(path: str, zero_video: bool = False, zero_audio: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(zlib.crc32(path.encode()))
    return rng.integers(0, 255, (2, 4, 4, 3), dtype=np.uint8), rng.normal(size=64).astype(np.float32)


def fake_source(rows: list[dict]) -> PairSource:
    def load(row):
        real = Media(frames=fake_media(row["video"])[0], audio=fake_media(row["audio"])[1])
        rej = Media(frames=fake_media(row["video_l"])[0], audio=fake_media(row["audio_l"])[1])
        return real, rej
    return PairSource(rows, load)


def make_params(tmp_path: Path, **over) -> TrainParams:
    raw = dict(run_dir=str(tmp_path / "run"), device="cpu", learning_rate=0.05, warmup_ratio=0.0,
               per_device_train_batch_size=4, gradient_accumulation_steps=1, save_steps=0, max_grad_norm=0.0)
    raw.update(over)
    return build(TrainParams, raw, "test")


# --- tests ----------------------------------------------------------------------------------------------
N_REJECTIONS = {"avem_dpo": 2, "avem_dpo_reversed": 2, "avem_dpo_policy": 2, "naive_dpo": 1, "vista_dpo": 1,
                "no_pmp": 2, "no_erp": 1, "no_tpd": 2}
ALL = {"visual", "audio", "both"}
PMP_MODALITIES = {"avem_dpo": ALL, "avem_dpo_reversed": ALL, "avem_dpo_policy": ALL, "vista_dpo": {"visual", "both"},
                  "no_erp": ALL, "no_tpd": ALL}
USES_TEXT = {"avem_dpo", "avem_dpo_reversed", "avem_dpo_policy", "no_pmp", "no_erp"}
POLICY_TEXT = {"avem_dpo_policy"}  # the only variant whose policy runs the text-only sequences


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_one_policy_call_per_micro_batch_and_nothing_unneeded(tmp_path, variant):
    rows = fake_rows(12)
    be = FakeBackend()
    params = make_params(tmp_path, variant=variant, max_steps=2, per_device_train_batch_size=3, gradient_accumulation_steps=2)
    trainer = Trainer(params, backend=be, pairs=fake_source(rows))
    trainer.train()
    grad_calls = [c for c in be.calls if c[1]]
    # 2 steps x 2 micro-batches, one policy call each; the policy form adds one over the text-only sequences
    calls_per_micro = 2 if variant in POLICY_TEXT else 1
    assert len(grad_calls) == 2 * 2 * calls_per_micro and not any(c[2] for c in grad_calls)
    visited = trainer.visited_indices(0)
    assert len(visited) == 12
    # per sample: chosen + the variant's rejections + chosen on the PMP input where its PMP applies
    per_sample = [1 + N_REJECTIONS[variant] + (rows[i]["modality"] in PMP_MODALITIES.get(variant, ())) for i in visited]
    text_per_sample = (1 + N_REJECTIONS[variant]) if variant in POLICY_TEXT else 0
    assert sum(c[0] for c in grad_calls) == sum(per_sample) + text_per_sample * len(visited)
    free = [f for c, f in zip(be.calls, be.media_free) if c[1]]
    if variant in POLICY_TEXT:  # the text-only call: every example without media, 3 per sample (micro-batch of 3)
        assert [c[0] for c in grad_calls[1::2]] == free[1::2] == [3 * 3] * 4
        assert free[0::2] == [0] * 4
    else:
        assert free == [0] * 4
    # reference (same sequences) and text-only ones (unique prompt/response pairs) ran once, before training
    responses = ["chosen", "rejected_vr", "rejected_er"] if N_REJECTIONS[variant] == 2 else None
    n_text = 0
    if variant in USES_TEXT:
        pairs = set()
        for i in visited:
            r = rows[i]
            kinds = responses or ["chosen", trainer.plan(i, with_media=False).text[1][1].response]
            pairs |= {(r["prompt"], r.get(k, k)) for k in kinds}
        n_text = len(pairs)
    ref_calls = [c for c in be.calls if c[2]]
    assert not any(c[1] for c in ref_calls)
    assert sum(c[0] for c in ref_calls) == sum(per_sample) + n_text


def test_vista_replaces_only_the_video(tmp_path):
    rows = fake_rows(6)
    trainer = Trainer(make_params(tmp_path, variant="vista_dpo", max_steps=1), backend=FakeBackend(),
                      pairs=fake_source(rows))
    both = next(i for i, r in enumerate(rows) if r["modality"] == "both")
    audio = next(i for i, r in enumerate(rows) if r["modality"] == "audio")
    plan = trainer.plan(both)
    real = dict(plan.policy)["chosen"].media
    pmp = dict(plan.policy)["chosen_pmp"].media
    assert not np.array_equal(pmp.frames, real.frames) and np.array_equal(pmp.audio, real.audio)
    assert not trainer.plan(audio).has_pmp
    full = Trainer(make_params(tmp_path, variant="avem_dpo", max_steps=1), backend=FakeBackend(),
                   pairs=fake_source(rows))
    pmp_full = dict(full.plan(both).policy)["chosen_pmp"].media
    assert not np.array_equal(pmp_full.audio, real.audio) and full.plan(audio).has_pmp


def test_shared_media_object_for_the_real_input(tmp_path):
    trainer = Trainer(make_params(tmp_path, max_steps=1), backend=FakeBackend(), pairs=fake_source(fake_rows(6)))
    plan = trainer.plan(0)
    medias = [ex.media for name, ex in plan.policy if name != "chosen_pmp"]
    assert len(medias) == 3 and all(m is medias[0] for m in medias)


def _grads_at_step1(tmp_path, name, **over):
    captured = {}

    def grab(trainer, step):
        captured["g"] = [p.grad.detach().clone() for p in trainer.trainable]

    params = make_params(tmp_path / name, max_steps=1, **over)
    train(params, backend=FakeBackend(), pairs=fake_source(fake_rows(24)),
          hooks=Hooks(on_before_optimizer_step=grab))
    return captured["g"]


def test_gradient_accumulation_equals_the_large_batch(tmp_path):
    big = _grads_at_step1(tmp_path, "a", per_device_train_batch_size=8, gradient_accumulation_steps=1)
    acc2 = _grads_at_step1(tmp_path, "b", per_device_train_batch_size=4, gradient_accumulation_steps=2)
    acc8 = _grads_at_step1(tmp_path, "c", per_device_train_batch_size=1, gradient_accumulation_steps=8)
    assert big[1].abs().sum() > 0
    for g in (acc2, acc8):
        for x, y in zip(big, g):
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-7)
    # control: half the batch is a different gradient, so the comparison can fail
    half = _grads_at_step1(tmp_path, "d", per_device_train_batch_size=4, gradient_accumulation_steps=1)
    assert not torch.allclose(half[1], big[1], rtol=1e-3)


def test_precomputed_reference_equals_the_on_the_fly_reference(tmp_path):
    rows = fake_rows(24)
    a = train(make_params(tmp_path / "a", max_steps=3, precompute_reference=True), backend=FakeBackend(),
              pairs=fake_source(rows))
    b = train(make_params(tmp_path / "b", max_steps=3, precompute_reference=False), backend=FakeBackend(),
              pairs=fake_source(rows))
    for ra, rb in zip(a.history, b.history):
        assert ra["loss"] == pytest.approx(rb["loss"], rel=1e-5)
        assert ra["margins/response"] == pytest.approx(rb["margins/response"], rel=1e-4, abs=1e-7)


def test_first_step_starts_at_the_reference(tmp_path):
    res = train(make_params(tmp_path, max_steps=1, gamma_tpd=0.0), backend=FakeBackend(),
                pairs=fake_source(fake_rows(24)))
    # LoRA B = 0: policy == reference, every reward is 0 and each term is log 2
    rec = res.history[0]
    assert rec["loss_y"] == pytest.approx(np.log(2), abs=1e-6)
    assert rec["loss_av"] == pytest.approx(np.log(2), abs=1e-6)
    assert rec["rewards/chosen"] == pytest.approx(0.0, abs=1e-6)


def test_training_raises_the_reward_margins_and_logs_every_term(tmp_path):
    params = make_params(tmp_path, num_train_epochs=4, learning_rate=0.05, warmup_ratio=0.1)
    res = train(params, backend=FakeBackend(), pairs=fake_source(fake_rows(24)))
    logs = read_log(params.log_file)
    assert [r["step"] for r in logs] == list(range(1, res.steps + 1))
    for key in ("loss", "loss_y", "loss_av", "rewards/chosen", "rewards/vr", "rewards/er", "rewards/chosen_pmp",
                "margins/response", "margins/pmp", "accuracies/response", "accuracies/pmp", "lr", "tpd_offset"):
        assert key in logs[-1], key
    assert logs[0]["lr"] == 0.0 and max(r["lr"] for r in logs) == pytest.approx(0.05)
    assert logs[-1]["loss"] < logs[0]["loss"] - 0.05
    assert logs[-1]["margins/response"] > 0.5 and logs[-1]["accuracies/response"] == 1.0
    assert (Path(params.output_dir) / "adapter.pt").is_file()
    assert json.loads((Path(params.output_dir) / "training_summary.json").read_text())["steps"] == res.steps


def test_a_killed_run_resumes_without_repeating_a_step(tmp_path):
    rows = fake_rows(24)
    over = dict(num_train_epochs=3, per_device_train_batch_size=2, gradient_accumulation_steps=2, save_steps=2, warmup_ratio=0.2,
                lora_dropout=0.0)
    full = make_params(tmp_path / "full", **over)
    ref = train(full, backend=FakeBackend(), pairs=fake_source(rows))
    assert ref.steps == 18

    def kill(trainer, step, record):
        if step == 7:  # after step 7 was done and logged; the last checkpoint is step 6
            raise StopTraining

    part = make_params(tmp_path / "part", **over)
    with pytest.raises(StopTraining):
        train(part, backend=FakeBackend(), pairs=fake_source(rows), hooks=Hooks(on_step_end=kill))
    # the stage's log appears only with a finished adapter; the working log beside the checkpoints has 1-7
    assert not Path(part.log_file).exists()
    assert [r["step"] for r in read_log(Path(part.checkpoint_dir) / "train_log.jsonl")] == list(range(1, 8))
    resumed = train(part, backend=FakeBackend(), pairs=fake_source(rows))  # a fresh process
    assert resumed.resumed_from_step == 6 and len(resumed.history) == 12
    logs_full, logs_part = read_log(full.log_file), read_log(part.log_file)
    assert [r["step"] for r in logs_part] == list(range(1, 19))  # step 7 is not logged twice
    for a, b in zip(logs_full, logs_part):  # exactly, as the adapter (issue 23: byte-identical resume)
        assert a["loss"] == b["loss"] and a["lr"] == b["lr"]
    fa = torch.load(Path(full.output_dir) / "adapter.pt")
    fb = torch.load(Path(part.output_dir) / "adapter.pt")
    assert fa.keys() == fb.keys() and all(torch.equal(fa[k], fb[k]) for k in fa) and fa["B"].abs().sum() > 0


def test_a_checkpoint_of_other_settings_is_not_resumed(tmp_path, caplog):
    rows = fake_rows(24)
    first = train(make_params(tmp_path, max_steps=2, save_steps=1), backend=FakeBackend(), pairs=fake_source(rows))
    assert first.resumed_from_step == 0
    again = train(make_params(tmp_path, max_steps=2, save_steps=1), backend=FakeBackend(), pairs=fake_source(rows))
    assert again.resumed_from_step == 2 and again.history == []  # a finished run returns at once
    with caplog.at_level("WARNING"):
        other = train(make_params(tmp_path, max_steps=2, save_steps=1, gamma_tpd=0.3), backend=FakeBackend(),
                      pairs=fake_source(rows))
    assert other.resumed_from_step == 0 and len(other.history) == 2
    assert "gamma_tpd" in caplog.text
    # other pairs (ids) are another run too
    changed = [dict(r, id=r["id"] + "x") for r in rows]
    res = train(make_params(tmp_path, max_steps=2, save_steps=1, gamma_tpd=0.3), backend=FakeBackend(),
                pairs=fake_source(changed))
    assert res.resumed_from_step == 0
    # resume: false starts over even when the settings match
    res = train(make_params(tmp_path, max_steps=2, save_steps=1, gamma_tpd=0.3, resume=False),
                backend=FakeBackend(), pairs=fake_source(changed))
    assert res.resumed_from_step == 0 and len(read_log(res.log_file)) == 2


def test_too_few_pairs_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="fewer than one global batch"):
        Trainer(make_params(tmp_path, per_device_train_batch_size=8, gradient_accumulation_steps=4), backend=FakeBackend(),
                pairs=fake_source(fake_rows(10)))


# --- the real tiny Qwen2.5-Omni thinker: the audio and the video reach the LoRA gradients --------------
CORPUS = [r["prompt"] + " " + r[k] for r in fake_rows(12) for k in ("chosen", "rejected_vr", "rejected_er")]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from avere_utils.models.tiny import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("micro"), CORPUS, size="micro", seed=0)


def real_media_source(rows, *, zero: str = "") -> PairSource:
    """8 frames of 56x56 and 1 s of 16 kHz audio per clip; `zero` blanks a part of every input."""
    def clip(path):
        rng = np.random.default_rng(zlib.crc32(path.encode()))
        return (rng.integers(0, 255, (8, 56, 56, 3), dtype=np.uint8),
                (0.3 * rng.standard_normal(16000)).astype(np.float32))

    def load(row):
        (fv, _), (_, fa) = clip(row["video"]), clip(row["audio"])
        (rv, _), (_, ra) = clip(row["video_l"]), clip(row["audio_l"])
        if zero in ("video", "all_video"):
            fv = np.zeros_like(fv)
        if zero in ("audio",):
            fa = np.zeros_like(fa)
        if zero in ("all_video", "rejected_video"):
            rv = np.zeros_like(rv)
        return Media(frames=fv, audio=fa), Media(frames=rv, audio=ra)
    return PairSource(rows, load)


def lora_grads(tiny_dir, tmp_path, zero: str, variant: str = "avem_dpo") -> torch.Tensor:
    backend = backend_with_lora(tiny_dir)
    rows = fake_rows(6)
    params = make_params(tmp_path / f"{variant}-{zero}", variant=variant, per_device_train_batch_size=3,
                         precompute_reference=False, logp_cache_dir="")
    trainer = Trainer(params, backend=backend, pairs=real_media_source(rows, zero=zero))
    out = trainer.micro_batch_loss([0, 1, 2])  # a visual, an audio and a joint-prompt sample
    out.loss.backward()
    return torch.cat([p.grad.reshape(-1) for p in trainer.trainable])


def _rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / a.norm())


def test_audio_and_video_reach_the_lora_gradients(tiny_dir, tmp_path):
    base = lora_grads(tiny_dir, tmp_path, "")
    again = lora_grads(tiny_dir, tmp_path, "")
    assert base.norm() > 0 and _rel_diff(base, again) < 1e-6  # deterministic, so differences below are real
    assert _rel_diff(base, lora_grads(tiny_dir, tmp_path, "video")) > 1e-3
    assert _rel_diff(base, lora_grads(tiny_dir, tmp_path, "audio")) > 1e-3
    # the PMP rejected input reaches them too: change only the rejected video
    assert _rel_diff(base, lora_grads(tiny_dir, tmp_path, "rejected_video")) > 1e-3
    # ... and not for a variant without PMP (the control: the rejected input is never used)
    nopmp = lora_grads(tiny_dir, tmp_path, "", "no_pmp")
    assert _rel_diff(nopmp, lora_grads(tiny_dir, tmp_path, "rejected_video", "no_pmp")) < 1e-6


def test_text_term_gradient_per_tpd_form(tiny_dir, tmp_path, monkeypatch):
    """literal / reversed: the text-only log-probs are cached constants, nothing flows through them; policy:
    the policy's own text-only pass carries a gradient to the LoRA, and without any media."""
    import avere_utils.training.trainer as trainer_mod

    seen, loss = {}, trainer_mod.avem_dpo_loss

    def keep_inputs(inputs, config):
        seen["inputs"] = inputs
        return loss(inputs, config)
    monkeypatch.setattr(trainer_mod, "avem_dpo_loss", keep_inputs)
    backend = backend_with_lora(tiny_dir)
    rows = fake_rows(6)
    for variant in ("avem_dpo", "avem_dpo_reversed", "avem_dpo_policy"):
        params = make_params(tmp_path / variant, variant=variant, per_device_train_batch_size=3, logp_cache_dir="")
        trainer = Trainer(params, backend=backend, pairs=real_media_source(rows))
        trainer.micro_batch_loss([0, 1, 2])
        inp = seen["inputs"]
        assert not inp.text_chosen.requires_grad and not any(v.requires_grad for v in inp.text_rejected.values())
        if variant != "avem_dpo_policy":
            assert inp.policy_text_chosen is None and inp.policy_text_rejected is None
            continue
        text_terms = inp.policy_text_chosen.sum() + sum(v.sum() for v in inp.policy_text_rejected.values())
        grads = torch.autograd.grad(text_terms, trainer.trainable, allow_unused=True)
        assert sum(1 for g in grads if g is not None and g.abs().sum() > 0) == len(trainer.trainable)
        # the policy's text-only log-probs are those of the sequences without media, and not the reference's
        examples = [ex for _, ex in trainer.plan(0).text]
        assert all(ex.media is None for ex in examples)
        with torch.no_grad():
            lp = backend.sequence_logprobs(examples)[0]
            with backend.reference():
                ref = backend.sequence_logprobs(examples)[0]
        torch.testing.assert_close(inp.policy_text_chosen[0].detach(), lp[0], atol=1e-4, rtol=0)
        torch.testing.assert_close(inp.text_chosen[0], ref[0], atol=1e-4, rtol=0)
        assert (lp - ref).abs().max() > 1e-4


def test_command_line_params(tmp_path):
    from avere_utils.training.__main__ import params_from_args, parse_args

    args = parse_args(["--params", "params/tiny/04_avem_dpo_training.yaml", "--variant", "no_tpd",
                       "--set", "gamma_tpd=0.1", "--set", "max_steps=3", "--set", f"run_dir={tmp_path}"])
    p = params_from_args(args)
    assert (p.variant, p.gamma_tpd, p.max_steps) == ("no_tpd", 0.1, 3)
    assert p.output_dir == str(tmp_path / "models" / "no_tpd")
    assert not p.loss_config().needs_text  # the preset switches TPD off; the number stays what was set
    from avere_utils.config import ConfigError

    with pytest.raises(ConfigError, match="variant"):
        params_from_args(parse_args(["--params", "params/tiny/04_avem_dpo_training.yaml", "--variant", "dpo"]))
    with pytest.raises(ConfigError, match="beta_vr"):
        params_from_args(parse_args(["--params", "params/tiny/04_avem_dpo_training.yaml", "--set", "beta_vr=0.7"]))
