"""The frozen encoders' outputs stored by one pass and read back by the next (models/encoder_store.py)."""
from __future__ import annotations

import logging
import zlib

import numpy as np
import pytest
import torch
from conftest import backend_with_lora

from avere_utils.config import build
from avere_utils.media import MediaSettings, load_media
from avere_utils.models.encoder_store import EncoderStore
from avere_utils.pairs.inputs import load_pair_media
from avere_utils.records import Example, Media
from avere_utils.training.data import PairSource
from avere_utils.training.params import TrainParams
from avere_utils.training.trainer import Trainer

pytestmark = pytest.mark.model

CORPUS = ["Why does the person seem happy?", "a broad smile and a bright voice", "the yellow wall",
          "clenched fists", "What does the voice say about the mood?"]


@pytest.fixture(scope="module")
def micro_dir(tmp_path_factory):
    from avere_utils.models.tiny import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("micro"), CORPUS, size="micro", seed=0)


def clip(name: str) -> Media:
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    return Media(frames=rng.integers(0, 255, (8, 56, 56, 3), dtype=np.uint8),
                 audio=(0.3 * rng.standard_normal(16000)).astype(np.float32),
                 frames_key=f"v:{name}", audio_key=f"a:{name}")


def examples() -> list[Example]:
    a, b = clip("a"), clip("b")
    swapped = Media(frames=b.frames, audio=a.audio, frames_key=b.frames_key, audio_key=a.audio_key)
    return [Example(CORPUS[0], a, CORPUS[1]), Example(CORPUS[0], a, CORPUS[2]),
            Example(CORPUS[4], b, CORPUS[3]), Example(CORPUS[0], swapped, CORPUS[1])]


def forbid_encoders(backend, monkeypatch) -> None:
    def refuse(*a, **k):
        raise AssertionError("an encoder ran although its output was stored")
    monkeypatch.setattr(backend.thinker.model, "get_video_features", refuse)
    monkeypatch.setattr(backend.thinker.model, "get_audio_features", refuse)


@pytest.mark.parametrize("share_prefix", [False, True])
def test_stored_outputs_give_the_same_log_probs_and_the_encoders_do_not_run_again(micro_dir, tmp_path,
                                                                                 monkeypatch, share_prefix):
    backend = backend_with_lora(micro_dir)
    with torch.no_grad():
        plain = backend.sequence_logprobs(examples(), share_prefix=share_prefix)[0]
        store = EncoderStore(tmp_path / "enc", "model-1")
        backend.use_encoder_store(store)
        first = backend.sequence_logprobs(examples(), share_prefix=share_prefix)[0]
        # two clips, each stream once: the swapped input's frames and audio are those of b and a
        assert store.stats() == {"hits": 0, "misses": 4, "writes": 4}
        forbid_encoders(backend, monkeypatch)
        again = backend.sequence_logprobs(examples(), share_prefix=share_prefix)[0]
    assert store.hits == 4
    assert torch.equal(first, again)  # read back bit for bit
    assert torch.allclose(plain, first, atol=1e-5, rtol=0)  # one clip per encoder call: fp order only


def test_store_entries_belong_to_one_model_and_a_damaged_one_is_recomputed(micro_dir, tmp_path, caplog):
    backend = backend_with_lora(micro_dir)
    with torch.no_grad():
        backend.use_encoder_store(EncoderStore(tmp_path / "enc", "model-1"))
        ref = backend.sequence_logprobs(examples()[:1])[0]
        other = EncoderStore(tmp_path / "enc", "model-2")  # another checkpoint: nothing of model-1 is read
        backend.use_encoder_store(other)
        backend.sequence_logprobs(examples()[:1])
        assert other.stats() == {"hits": 0, "misses": 2, "writes": 2}
        damaged = other.path_for("v:a")
        damaged.write_bytes(b"not a safetensors file")
        with caplog.at_level(logging.WARNING):
            again = backend.sequence_logprobs(examples()[:1])[0]
    assert str(damaged) in caplog.text and other.writes == 3
    assert torch.allclose(ref, again, atol=1e-6, rtol=0)


def test_a_media_without_keys_is_computed_and_never_stored(micro_dir, tmp_path):
    backend = backend_with_lora(micro_dir)
    store = EncoderStore(tmp_path / "enc", "m")
    backend.use_encoder_store(store)
    bare = clip("a")
    bare.frames_key = bare.audio_key = ""
    with torch.no_grad():
        backend.sequence_logprobs([Example(CORPUS[0], bare, CORPUS[1])])
    assert store.stats() == {"hits": 0, "misses": 0, "writes": 0}


def test_the_store_refuses_encoders_that_train_or_drop_out(micro_dir, tmp_path):
    backend = backend_with_lora(micro_dir)
    p = next(backend.thinker.model.visual.parameters())
    p.requires_grad_(True)
    with pytest.raises(ValueError, match="frozen encoders"):
        backend.use_encoder_store(EncoderStore(tmp_path, "m"))
    p.requires_grad_(False)
    backend.thinker.model.audio_tower.config.dropout = 0.1
    with pytest.raises(ValueError, match="dropout"):
        backend.use_encoder_store(EncoderStore(tmp_path, "m"))


def test_decoded_media_and_pmp_inputs_carry_the_keys_of_their_sources(tmp_path):
    from avere_utils.synth.encode import write_mp4, write_wav

    rng = np.random.default_rng(0)
    for name in ("x", "y"):
        write_mp4(tmp_path / f"{name}.mp4", rng.integers(0, 255, (6, 32, 32, 3), dtype=np.uint8), fps=6,
                  audio=(0.1 * rng.standard_normal(16000)).astype(np.float32))
        write_wav(tmp_path / f"{name}.wav", (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000)
    s = MediaSettings(n_frames=4, frame_size=32)
    x = load_media(str(tmp_path / "x.mp4"), str(tmp_path / "x.wav"), s)
    assert x.frames_key.startswith("v:") and x.audio_key.startswith("a:")
    assert load_media(str(tmp_path / "x.mp4"), str(tmp_path / "x.wav"), s).frames_key == x.frames_key
    assert load_media(str(tmp_path / "x.mp4"), None, s).audio_key != x.audio_key  # the video's own audio
    assert load_media(str(tmp_path / "x.mp4"), None, MediaSettings(n_frames=2, frame_size=32)).frames_key \
        != x.frames_key  # other decode settings, other frames
    y = load_media(str(tmp_path / "y.mp4"), str(tmp_path / "y.wav"), s)
    row = {"id": "p", "video": str(tmp_path / "x.mp4"), "audio": str(tmp_path / "x.wav")}
    _, visual = load_pair_media({**row, "video_l": str(tmp_path / "y.mp4"), "audio_l": str(tmp_path / "x.wav")}, s)
    assert (visual.frames_key, visual.audio_key) == (y.frames_key, x.audio_key)
    _, audio = load_pair_media({**row, "video_l": str(tmp_path / "x.mp4"), "audio_l": str(tmp_path / "y.wav")}, s)
    assert (audio.frames_key, audio.audio_key) == (x.frames_key, y.audio_key)
    _, noise = load_pair_media({**row, "video_l": "noise:3", "audio_l": "noise:4"}, s)
    _, noise2 = load_pair_media({**row, "video_l": "noise:3", "audio_l": "noise:5"}, s)
    assert noise.frames_key == noise2.frames_key != x.frames_key and noise.audio_key != noise2.audio_key


def test_training_with_the_store_reads_what_the_reference_pass_wrote(micro_dir, tmp_path, monkeypatch):
    """Every stream a step needs, the PMP inputs' included (composed by the trainer from the real and the
    rejected media), is written by the reference pass; a second run on the same store runs no encoder."""
    rows = [{"id": f"s{i}", "clip_id": f"c{i}", "family": "f", "modality": ("visual", "audio", "both")[i % 3],
             "label": "happiness", "split": "train", "prompt": CORPUS[0], "chosen": CORPUS[1],
             "rejected_vr": CORPUS[2], "rejected_er": CORPUS[3], "video": f"v{i}", "audio": f"a{i}",
             "video_l": f"v{i + 1}", "audio_l": f"a{i + 1}"} for i in range(4)]

    def load(row):
        real = clip(row["video"])
        donor = clip(row["video_l"])
        return real, Media(frames=donor.frames, audio=donor.audio, frames_key=donor.frames_key,
                           audio_key=donor.audio_key)

    losses, stats = {}, {}
    for name, folder in (("off", ""), ("on", str(tmp_path / "enc")), ("again", str(tmp_path / "enc"))):
        params = build(TrainParams, dict(run_dir=str(tmp_path / name), device="cpu", per_device_train_batch_size=2,
                                         gradient_accumulation_steps=1, save_steps=0, max_steps=2, learning_rate=1e-3,
                                         encoder_cache_dir=folder), "test")
        backend = backend_with_lora(micro_dir)
        if name == "again":
            forbid_encoders(backend, monkeypatch)
        trainer = Trainer(params, backend=backend, pairs=PairSource(rows, load))
        losses[name] = [r["loss"] for r in trainer.train().history]
        if folder:
            stats[name] = trainer.encoder_store.stats()
    # the reference pass (precompute) wrote every stream once; the steps read them back, missing none
    assert stats["on"]["writes"] == stats["on"]["misses"] > 0 and stats["on"]["hits"] >= stats["on"]["writes"]
    # a second run on the same store runs no encoder at all, and trains the same
    assert stats["again"]["misses"] == stats["again"]["writes"] == 0 < stats["again"]["hits"], stats
    assert losses["again"] == losses["on"]
    assert len(losses["on"]) == 2 and np.allclose(losses["on"], losses["off"], atol=1e-5, rtol=0), losses
    summary = (tmp_path / "on" / "models" / "avem_dpo" / "training_summary.json").read_text()
    assert f'"writes": {stats["on"]["writes"]}' in summary
