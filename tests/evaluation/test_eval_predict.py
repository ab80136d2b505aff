"""The resumable runner: interruption, resume without recomputing or duplicates, stale files, shards."""
import json

import pytest

from avere_utils.evaluation.predict import (
    Decoding,
    PredictionTask,
    StalePredictionsError,
    read_records,
    run_predictions,
    shard_file,
    stable_seed,
)
from avere_utils.evaluation.testing import FakeBackend, Interrupted, fake_media_fn
from avere_utils.records import Item

pytestmark = pytest.mark.model  # builds or trains a Qwen2.5-Omni thinker: not in make test-fast

LABELS = ["happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear"]


def _items(n=10):
    return [Item(id=f"clip{i:02d}", dataset="dfew", split="test", video=f"/v/{i}.mp4", label=LABELS[i % 7])
            for i in range(n)]


TASK = PredictionTask(prompt_for=lambda it: "Describe the emotion.", generate=True,
                      candidates_for=lambda it: LABELS)


def _run(backend, items, out, batch_size=1, settings=None, **kw):
    return run_predictions(backend, items, out, TASK, Decoding(max_new_tokens=4), settings=settings or {"v": 1},
                           media_fn=fake_media_fn(items), batch_size=batch_size, shard=kw.pop("shard", (0, 1)), **kw)


def test_resume_after_interruption_no_duplicates_nothing_recomputed(tmp_path):
    items = _items(10)
    out = tmp_path / "dfew-x.jsonl"
    crashing = FakeBackend(items, fail_at=4)
    with pytest.raises(Interrupted):
        _run(crashing, items, out)
    done_first = [r["id"] for r in read_records(out)]
    assert len(done_first) == 4 and done_first == crashing.generated

    resumed = FakeBackend(items)
    run = _run(resumed, items, out)
    assert set(resumed.generated).isdisjoint(done_first)  # nothing recomputed
    assert len(resumed.generated) == 6 and run.n_computed == 6
    ids = [r["id"] for r in read_records(out)]
    assert len(ids) == len(set(ids)) == 10  # no duplicates
    assert set(run.records) == {it.id for it in items}
    assert run.records["clip03"]["generation"] == "anger"
    assert run.records["clip03"]["scores"] == [0.0, -1.0, -2.0, -3.0, -4.0, -5.0, -6.0]

    again = FakeBackend(items)
    _run(again, items, out)
    assert again.generated == [] and again.scored == []  # a finished file costs nothing


def test_interrupted_batch_is_redone_whole(tmp_path):
    items = _items(9)
    out = tmp_path / "p.jsonl"
    with pytest.raises(Interrupted):
        _run(FakeBackend(items, fail_at=5), items, out, batch_size=3)
    assert len(read_records(out)) == 3  # the first batch only; the crashed batch wrote nothing
    b = FakeBackend(items)
    _run(b, items, out, batch_size=3)
    assert len(b.generated) == 6 and len(read_records(out)) == 9


def test_partial_last_line_is_cut(tmp_path):
    items = _items(3)
    out = tmp_path / "p.jsonl"
    _run(FakeBackend(items), items[:2], out)
    with open(out, "a") as f:
        f.write('{"id": "clip02", "fingerp')  # killed mid-write
    b = FakeBackend(items)
    run = _run(b, items, out)
    assert b.generated == ["clip02"]
    assert [r["id"] for r in read_records(out)] == ["clip00", "clip01", "clip02"]
    assert len(run.records) == 3


def test_stale_predictions_restart_or_error(tmp_path):
    items = _items(3)
    out = tmp_path / "p.jsonl"
    _run(FakeBackend(items), items, out, settings={"prompt": "old"})
    with pytest.raises(StalePredictionsError, match="other settings"):
        _run(FakeBackend(items), items, out, settings={"prompt": "new"}, stale_policy="error")
    b = FakeBackend(items)
    _run(b, items, out, settings={"prompt": "new"}, stale_policy="restart")
    assert len(b.generated) == 3 and len(read_records(out)) == 3


def test_media_errors_are_counted_not_fatal(tmp_path):
    items = _items(3)
    good = fake_media_fn(items)

    def media(it):
        if it.id == "clip01":
            raise ValueError("/v/1.mp4: unreadable container")
        return good(it)

    b = FakeBackend(items)
    run = run_predictions(b, items, tmp_path / "p.jsonl", TASK, Decoding(), settings={}, media_fn=media,
                          shard=(0, 1))
    assert run.records["clip01"]["generation"] is None and "unreadable" in run.records["clip01"]["error"]
    assert b.generated == ["clip00", "clip02"]


def test_shards_write_their_own_files_and_merge_once(tmp_path):
    items = _items(7)
    out = tmp_path / "p.jsonl"
    b1 = FakeBackend(items)
    _run(b1, items, out, shard=(1, 2))  # process 1 finishes first: its shard waits for the merge
    assert shard_file(out, 1, 2).is_file() and not out.exists()
    assert b1.generated == ["clip01", "clip03", "clip05"]
    b0 = FakeBackend(items)
    run = _run(b0, items, out, shard=(0, 2))  # process 0 merges
    assert b0.generated == ["clip00", "clip02", "clip04", "clip06"]
    ids = [r["id"] for r in read_records(out)]
    assert sorted(ids) == [it.id for it in items] and len(run.records) == 7
    assert not shard_file(out, 0, 2).exists() and not shard_file(out, 1, 2).exists()


def test_duplicate_item_ids_rejected(tmp_path):
    items = _items(2) + _items(1)
    with pytest.raises(ValueError, match="appears twice"):
        _run(FakeBackend(items), items, tmp_path / "p.jsonl")


def test_sampling_seed_is_fixed_and_resume_stable(tmp_path):
    items = _items(4)
    b = FakeBackend(items)
    run_predictions(b, items, tmp_path / "p.jsonl", TASK, Decoding(temperature=0.1, seed=7), settings={},
                    media_fn=fake_media_fn(items), batch_size=2, shard=(0, 1))
    assert [c["seed"] for c in b.calls] == [stable_seed(7, "clip00"), stable_seed(7, "clip02")]
    assert all(c["temperature"] == 0.1 and c["use_cache"] for c in b.calls)
    rec = json.loads((tmp_path / "p.jsonl").read_text().splitlines()[0])
    assert set(rec) >= {"id", "fingerprint", "generation", "candidates", "scores"}


# --- prefix reuse on a real (micro) Qwen2.5-Omni thinker ------------------------------------------------
QUESTIONS = ["What does the face show, and what does the voice add to it?",
             "Which emotion fits the clip best, given the face and the voice?",
             "Is the person calm, or is something else going on in the clip?"]


def test_prefix_reuse_gives_the_same_predictions(tmp_path):
    """Several questions per clip (EmoReAlM's layout) answered with and without reusing each clip's media
    block KV: same generations, same scores up to float order, same best candidate; and reuse did happen."""
    import numpy as np
    import torch

    from avere_utils.models import load_backend
    from avere_utils.models.tiny import build_tiny_checkpoint
    from avere_utils.records import Media

    ckpt = build_tiny_checkpoint(tmp_path / "micro", QUESTIONS + LABELS, size="micro", seed=0)
    backend = load_backend(str(ckpt), device="cpu")
    rng = np.random.default_rng(0)
    clips = [Media(frames=rng.integers(0, 255, (8, 56, 56, 3), dtype=np.uint8),
                   audio=(0.3 * rng.standard_normal(16000)).astype(np.float32)) for _ in range(3)]
    items = [Item(id=f"c{c}q{q}", dataset="emorealm", split="test", video=f"/v/{c}.mp4", label=LABELS[q],
                  text={"q": q}) for c in range(3) for q in range(3)]
    task = PredictionTask(prompt_for=lambda it: QUESTIONS[it.text["q"]], generate=True,
                          candidates_for=lambda it: LABELS)

    def run(reuse: bool, name: str):
        backend.reuse_prefix = reuse
        backend.nest_min_tokens = 16  # the micro clip's media block is short (about 40 tokens)
        before = backend.nested_rows_total
        out = run_predictions(backend, items, tmp_path / name, task, Decoding(max_new_tokens=6), settings={},
                              media_fn=lambda it: clips[int(it.video[3])], batch_size=9, shard=(0, 1))
        return out.records, backend.nested_rows_total - before

    plain, nested_plain = run(False, "plain.jsonl")
    reused, nested_reused = run(True, "reuse.jsonl")
    assert nested_plain == 0 and nested_reused >= 6  # 2 of 3 questions per clip, in generation and in scoring
    for i in plain:
        assert reused[i]["generation"] == plain[i]["generation"]
        torch.testing.assert_close(torch.tensor(reused[i]["scores"]), torch.tensor(plain[i]["scores"]),
                                   atol=1e-4, rtol=0)
        assert np.argmax(reused[i]["scores"]) == np.argmax(plain[i]["scores"])
