"""The model backend on a micro Qwen2.5-Omni thinker and clips decoded from the synthetic world's files."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from avere_utils.emotions import EMOTIONS
from avere_utils.models import LoraSettings, load_backend
from avere_utils.models.processor import (
    AUDIO_TOKEN,
    VIDEO_TOKEN,
    VISION_BOS,
    AudioFeaturizer,
    ProcessorSettings,
    audio_output_length,
    patchify_video,
)
from avere_utils.models.sft import qa_answer
from avere_utils.models.tiny import build_tiny_checkpoint
from avere_utils.protocol import CLASSIFICATION_PROMPT, EMER_PROMPT, qa_prompt
from avere_utils.records import Example, Media

pytestmark = pytest.mark.model  # builds or trains a Qwen2.5-Omni thinker: not in make test-fast

CORPUS = [CLASSIFICATION_PROMPT, EMER_PROMPT, *EMOTIONS,
          "The face shows a broad smile and crinkled eyes, which points to happiness.",
          "The voice sounds sad, with a low falling pitch. A yellow background also adds to the feeling."] * 5


def _clip(tmp_path, emotion: str, background: str, seed: int, seconds: float = 2.0) -> Media:
    """A world clip written as mp4 + wav by the synth writers, then decoded by avere_utils.media."""
    from avere_utils.media import MediaSettings, load_media
    from avere_utils.synth.encode import write_mp4, write_wav
    from avere_utils.synth.face import render_frames
    from avere_utils.synth.voice import render_audio

    rng = np.random.default_rng(seed)
    frames = render_frames(56, int(24 * seconds), emotion, ("mouth", "brows", "eyes"), background, "a coffee mug", rng)
    audio = render_audio(emotion, ("pitch", "energy", "tempo"), "rain noise", seconds, 16000, rng)
    video_path, wav_path = tmp_path / f"{seed}.mp4", tmp_path / f"{seed}.wav"
    write_mp4(video_path, frames, 24)
    write_wav(wav_path, audio, 16000)
    return load_media(str(video_path), str(wav_path), MediaSettings(n_frames=8, frame_size=56))


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return build_tiny_checkpoint(tmp_path_factory.mktemp("micro"), CORPUS, size="micro", seed=0)


@pytest.fixture(scope="module")
def backend(ckpt):
    return load_backend(str(ckpt), device="cpu")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    return [_clip(d, "happiness", "a yellow background", 1), _clip(d, "anger", "a blue background", 2)]


def test_decoded_clip_shapes_and_placeholder_counts(backend, clips):
    m = clips[0]
    assert m.frames.shape == (8, 56, 56, 3) and m.audio.dtype == np.float32
    enc = backend.encode_media(m)
    assert enc.grid_thw == (4, 4, 4)  # 8 frames / 2, 56 / 14
    assert enc.n_video_tokens == 4 * 4 * 4 // 4
    n_frames = math.ceil(len(m.audio) / 160)
    assert enc.n_audio_frames == n_frames and enc.n_audio_tokens == audio_output_length(n_frames)
    assert enc.placeholder.count(VIDEO_TOKEN) == enc.n_video_tokens
    assert enc.placeholder.count(AUDIO_TOKEN) == enc.n_audio_tokens
    assert enc.interleaved and enc.placeholder.startswith(VISION_BOS + "<|audio_bos|>")


def test_forward_text_only_differs_from_audio_video(backend, clips):
    resp = "The person looks happy."
    lp, n = backend.sequence_logprobs([Example(EMER_PROMPT, clips[0], resp), Example(EMER_PROMPT, None, resp)])
    assert torch.isfinite(lp).all() and n[0] == n[1] > 1
    assert abs(float(lp[0] - lp[1])) > 1e-4
    text = backend._build([Example(EMER_PROMPT, None, resp)], with_response=True)
    ids = set(text.input_ids.flatten().tolist())
    cfg = backend.thinker.config
    assert not ids & {cfg.video_token_id, cfg.audio_token_id, cfg.audio_start_token_id, cfg.vision_start_token_id}


def test_swapping_video_changes_logprobs(backend, clips):
    a, b = clips
    swapped = Media(frames=b.frames, audio=a.audio)
    lp, _ = backend.sequence_logprobs([Example(CLASSIFICATION_PROMPT, a, "happiness"),
                                       Example(CLASSIFICATION_PROMPT, swapped, "happiness")])
    assert abs(float(lp[0] - lp[1])) > 1e-5


def test_batch_equals_one_by_one_and_shared_media_encoded_once(backend, clips):
    a, b = clips
    exs = [Example(CLASSIFICATION_PROMPT, a, "happiness"), Example(EMER_PROMPT, a, "A broad smile."),
           Example(CLASSIFICATION_PROMPT, None, "anger"), Example(CLASSIFICATION_PROMPT, Media(audio=b.audio), "anger"),
           Example(CLASSIFICATION_PROMPT, Media(frames=b.frames), "anger")]
    calls = {"video": 0}
    orig = backend.thinker.model.get_video_features

    def counting(*args, **kw):
        calls["video"] += 1
        return orig(*args, **kw)

    backend.thinker.model.get_video_features = counting
    try:
        batched, _ = backend.sequence_logprobs(exs)
        one = torch.cat([backend.sequence_logprobs([e])[0] for e in exs])
    finally:
        del backend.thinker.model.get_video_features
    assert calls["video"] == 1 + 3  # one encoder call per batch; the batch's 2 distinct videos in that call
    assert len(backend._build(exs, with_response=True).encoded) == 3  # a is shared: encoded once
    torch.testing.assert_close(batched, one, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("interleaved", [True, False])
def test_positions_equal_get_rope_index_row_by_row(backend, clips, interleaved):
    """_positions memoises the media part of each row and numbers the text after it; the result must be
    get_rope_index's, padding included, for every kind of row (and again when the memo is warm)."""
    import dataclasses

    a, b = clips
    exs = [Example(CLASSIFICATION_PROMPT, a, "happiness"), Example(EMER_PROMPT, a, "A broad smile and crinkled eyes."),
           Example(CLASSIFICATION_PROMPT, None, "anger"), Example(CLASSIFICATION_PROMPT, Media(audio=b.audio), "anger"),
           Example(EMER_PROMPT, Media(frames=b.frames), "A glaring stare.")]
    saved = backend.settings
    backend.settings = dataclasses.replace(saved, audio_in_video=interleaved)
    backend._encoded.clear()
    try:
        batch = backend._build(exs, with_response=True)
        assert any(e.interleaved for e in batch.encoded) == interleaved
        want = torch.ones(3, *batch.input_ids.shape, dtype=torch.long)
        for i, k in enumerate(batch.media_of_row):
            enc = batch.encoded[k] if k is not None else None
            kw = {}
            if enc is not None and enc.grid_thw is not None:
                kw = {"video_grid_thw": torch.tensor([enc.grid_thw]), "second_per_grids": torch.tensor([enc.second_per_grid])}
            if enc is not None and enc.audio_features is not None:
                kw["audio_seqlens"] = torch.tensor([enc.n_audio_frames])
            p, _ = backend.thinker.model.get_rope_index(batch.input_ids[i:i + 1], attention_mask=batch.attention_mask[i:i + 1],
                                                        use_audio_in_video=bool(enc is not None and enc.interleaved), **kw)
            want[:, i] = p[:, 0]
        for _ in range(2):  # cold, then from the memo
            pos, nxt = backend._positions(batch)
            assert torch.equal(pos.cpu(), want)
            valid = batch.attention_mask.bool()
            assert nxt.tolist() == [int(want[:, i][:, valid[i]].max()) + 1 for i in range(len(exs))]
    finally:
        backend.settings = saved
        backend._encoded.clear()


def test_token_memo_hands_out_copies(backend):
    first = backend.response_ids("A broad smile.")
    first.append(-1)
    assert backend.response_ids("A broad smile.") == first[:-1]
    batch = backend._build([Example(EMER_PROMPT, None, "x")] * 2, with_response=True)
    assert torch.equal(batch.input_ids[0], batch.input_ids[1])
    limit, backend.memo_limit = backend.memo_limit, 12  # ids held: cleared, not grown, past the bound
    backend._memo.clear()
    backend._memo_size = 0
    try:
        want = {t: backend.tokenizer(t, add_special_tokens=False)["input_ids"] for t in ("happiness", "A broad smile.",
                                                                                      "The person looks happy.")}
        for _ in range(2):
            for t, ids in want.items():
                assert backend.response_ids(t)[:-1] == ids and backend._memo_size <= 12
    finally:
        backend.memo_limit = limit


def test_length_groups_give_the_batch_logprobs_and_encoder_outputs_in_order(backend, clips):
    """SFT's length-grouped forwards return the one padded forward's log-probs in the examples' order, and
    the encoder outputs they hand over equal a separate encoder pass (models/perception.encoder_outputs)."""
    from avere_utils.models.perception import encoder_outputs
    from avere_utils.models.sft import length_grouped_logprobs

    a, b = clips
    exs = [Example(EMER_PROMPT, a, "The face shows a broad smile, which points to happiness."),
           Example(CLASSIFICATION_PROMPT, b, "anger"), Example(CLASSIFICATION_PROMPT, a, "happiness"),
           Example(EMER_PROMPT, b, "The voice sounds angry, with a loud shouting voice.")]
    whole, n_whole = backend.sequence_logprobs(exs)
    for groups in (1, 2, 3):
        sink: list = []
        grouped, n = length_grouped_logprobs(backend, exs, groups, sink)
        torch.testing.assert_close(grouped.detach(), whole, atol=1e-4, rtol=1e-5)
        assert n.tolist() == n_whole.tolist() and len(sink) == len(exs)
    sep = encoder_outputs(backend, [a, b])
    for (v, au), media in zip(sink, (a, b, a, b)):
        ref_v, ref_a = sep[0] if media is a else sep[1]
        torch.testing.assert_close(v.detach(), ref_v.detach(), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(au.detach(), ref_a.detach(), atol=1e-5, rtol=1e-5)
    backend.thinker.zero_grad(set_to_none=True)


def test_gradients_reach_encoders(backend, clips):
    backend.thinker.zero_grad(set_to_none=True)
    lp, _ = backend.sequence_logprobs([Example(CLASSIFICATION_PROMPT, clips[0], "happiness")], grad=True)
    lp.sum().backward()
    vis = backend.thinker.model.visual.patch_embed.proj.weight.grad
    aud = backend.thinker.model.audio_tower.conv1.weight.grad
    assert vis is not None and vis.abs().sum() > 0 and aud is not None and aud.abs().sum() > 0
    backend.thinker.zero_grad(set_to_none=True)


def test_greedy_generation_is_deterministic_and_cache_matches_no_cache(backend, clips):
    exs = [Example(EMER_PROMPT, clips[0]), Example(CLASSIFICATION_PROMPT, None)]
    g1 = backend.generate(exs, max_new_tokens=8)
    assert g1 == backend.generate(exs, max_new_tokens=8)
    assert g1 == backend.generate(exs, max_new_tokens=8, use_cache=False)
    s1 = backend.generate(exs, max_new_tokens=8, temperature=1.0, seed=3)
    assert s1 == backend.generate(exs, max_new_tokens=8, temperature=1.0, seed=3)


def test_score_choices_equals_sequence_logprobs(backend, clips):
    ex = Example(CLASSIFICATION_PROMPT, clips[1])
    choices = list(EMOTIONS) + ["(B) furrowed brows"]
    scores = backend.score_choices(ex, choices)
    one = torch.cat([backend.sequence_logprobs([Example(ex.prompt, ex.media, c)])[0] for c in choices])
    torch.testing.assert_close(scores, one, atol=1e-4, rtol=1e-5)


def test_lora_targets_llm_only_and_adapter_round_trip(ckpt, clips, tmp_path):
    b = load_backend(str(ckpt), device="cpu", lora=LoraSettings(r=4, alpha=16))
    names = [n for n, p in b.model.named_parameters() if p.requires_grad]
    assert names and all("language_model.layers" in n and "lora_" in n for n in names)
    hit = {n.split(".base_layer")[0] for n, _ in b.model.named_modules() if n.endswith("base_layer")}
    assert not any("audio_tower" in n or "visual" in n for n in hit)
    assert len(hit) == 7 * b.thinker.config.text_config.num_hidden_layers
    ex = [Example(CLASSIFICATION_PROMPT, clips[0], "happiness")]
    base_lp = b.sequence_logprobs(ex)[0]
    with torch.no_grad():  # LoRA B starts at zero: perturb it so the adapter changes the model
        for p in b.trainable_parameters():
            p.add_(0.05 * torch.randn_like(p))
    tuned = b.sequence_logprobs(ex)[0]
    assert abs(float(tuned - base_lp)) > 1e-4
    with b.reference():
        torch.testing.assert_close(b.sequence_logprobs(ex)[0], base_lp)
    b.save_adapter(str(tmp_path / "adapter"))
    b2 = load_backend(str(ckpt), device="cpu", adapter_dir=str(tmp_path / "adapter"))
    torch.testing.assert_close(b2.sequence_logprobs(ex)[0], tuned)
    b3 = load_backend(str(ckpt), device="cpu", lora=LoraSettings(r=4, alpha=16))
    b3.load_adapter(str(tmp_path / "adapter"))
    torch.testing.assert_close(b3.sequence_logprobs(ex)[0], tuned)
    with b2.reference():
        torch.testing.assert_close(b2.sequence_logprobs(ex)[0], base_lp)


def test_checkpoint_round_trip(backend, clips, tmp_path):
    ex = [Example(EMER_PROMPT, clips[0], "The person looks happy.")]
    backend.save_pretrained(str(tmp_path / "copy"))
    again = load_backend(str(tmp_path / "copy"), device="cpu")
    torch.testing.assert_close(again.sequence_logprobs(ex)[0], backend.sequence_logprobs(ex)[0])
    assert again.settings == backend.settings
    assert again.media_settings == backend.media_settings


def test_audio_features_match_whisper_and_long_audio_policy():
    from transformers import WhisperFeatureExtractor

    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(16000 * 3 + 77)).astype(np.float32)
    official = WhisperFeatureExtractor(feature_size=128)(audio, sampling_rate=16000, return_attention_mask=True,
                                                        padding="max_length", return_tensors="np")
    n = int(official["attention_mask"].sum())
    ours = AudioFeaturizer(ProcessorSettings())(audio, 16000)
    assert ours.shape == (128, n)
    np.testing.assert_allclose(ours, official["input_features"][0, :, :n], atol=1e-5)
    long = np.zeros(16000 * 31, dtype=np.float32)
    assert AudioFeaturizer(ProcessorSettings(long_audio="extend"))(long, 16000).shape[1] == 3100
    assert AudioFeaturizer(ProcessorSettings(long_audio="cut"))(long, 16000).shape[1] == 3000


def test_patchify_order_matches_official_layout():
    """The official Qwen2-VL patch order: merge windows of 2x2 patches, channel-major, then time, then pixels."""
    s = ProcessorSettings(min_pixels=28 * 28, max_pixels=56 * 56)
    frames = np.random.default_rng(0).integers(0, 256, (3, 56, 56, 3), dtype=np.uint8)
    patches, grid = patchify_video(frames, s)
    assert grid == (2, 4, 4) and patches.shape == (32, 3 * 2 * 14 * 14)
    norm = (frames.astype(np.float32) / 255 - np.array([0.48145466, 0.4578275, 0.40821073])) / np.array(
        [0.26862954, 0.26130258, 0.27577711])
    norm = np.concatenate([norm, norm[-1:]])  # odd frame count: last frame repeated
    # patch 3 = temporal block 0, merge window (0, 0), in-window position (1, 1) -> patch row 1, col 1
    expected = norm[0:2, 14:28, 14:28, :].transpose(3, 0, 1, 2).reshape(-1)
    np.testing.assert_allclose(patches[3].numpy(), expected, atol=1e-5)
    # patch 4 = merge window (0, 1), first position -> patch row 0, col 2
    expected = norm[0:2, 0:14, 28:42, :].transpose(3, 0, 1, 2).reshape(-1)
    np.testing.assert_allclose(patches[4].numpy(), expected, atol=1e-5)


def test_sft_answer_format():
    qa = {"question": "Do the face and the voice express the same emotion?", "choices": ["(A) Yes", "(B) No"],
          "answer": "B"}
    assert qa_prompt(qa) == "Do the face and the voice express the same emotion? (A) Yes (B) No"
    assert qa_answer(qa) == "No (B)"  # text first, then its letter (protocol.ANSWER_TEMPLATE)


def test_matches_official_qwen2_5_omni_processor(backend, clips):
    """Our inputs vs transformers' Qwen2_5OmniProcessor (needs torchvision, absent on the CPU machine)."""
    try:
        import torchvision  # noqa: F401
    except ImportError:
        pytest.skip("torchvision is not installed: the official Qwen2_5OmniProcessor cannot be built here "
                    "(run on a machine with torchvision)")
    from avere_utils.models.processor_check import compare_with_official

    report = compare_with_official(backend, clips[0], CLASSIFICATION_PROMPT)
    assert report["input_ids_equal"], report
    assert report["video_grid_equal"] and report["pixel_max_abs_diff"] < 1e-4, report
    assert report["audio_frames_equal"] and report["audio_max_abs_diff"] < 1e-4, report
    assert report["second_per_grid_equal"], report


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_bf16_matches_cpu(ckpt, clips):
    """device/dtype auto on a GPU: bf16 log-probs close to fp32 CPU ones, score_choices consistent."""
    gpu = load_backend(str(ckpt))
    cpu = load_backend(str(ckpt), device="cpu")
    assert gpu.device.type == "cuda" and gpu.dtype == torch.bfloat16 and cpu.dtype == torch.float32
    exs = [Example(EMER_PROMPT, clips[0], "The person looks happy."), Example(CLASSIFICATION_PROMPT, None, "anger")]
    torch.testing.assert_close(gpu.sequence_logprobs(exs)[0].cpu(), cpu.sequence_logprobs(exs)[0], atol=0.5, rtol=0.05)
    ex = Example(CLASSIFICATION_PROMPT, clips[1])
    one = torch.cat([gpu.sequence_logprobs([Example(ex.prompt, ex.media, c)])[0] for c in EMOTIONS])
    torch.testing.assert_close(gpu.score_choices(ex, list(EMOTIONS)).cpu(), one.cpu(), atol=0.1, rtol=0.02)
    g = gpu.generate(exs, max_new_tokens=6)
    assert g == gpu.generate(exs, max_new_tokens=6)


def _train_item(i: int, media_dir):
    from avere_utils.records import Item

    qa = [{"task": "modality_agreement", "question": "Do the face and the voice express the same emotion?",
           "choices": ["(A) Yes", "(B) No"], "answer": "A"},
          {"task": "reasoning_basic_video", "question": "Which visual cue explains the emotion?",
           "choices": ["(A) a broad smile", "(B) a blue background"], "answer": "A"}]
    return Item(id=f"t{i}", dataset="train_source", split="train", label="happiness",
                text={"captions": {"description": "The person looks happy: a broad smile can be seen on the face."},
                      "qa": qa})


def test_sft_records_rotation_repeats_and_grouping():
    from avere_utils.models.sft import clip_grouped_batches, sft_records

    items = [_train_item(i, None) for i in range(3)]
    e0 = sft_records(items, epoch=0, qa_per_clip=1, label_repeats=2)
    e1 = sft_records(items, epoch=1, qa_per_clip=1, label_repeats=2)
    assert [r.task for r in e0[:4]] == ["label", "label", "description", "qa"]
    assert e0[3].response == "Yes (A)" and e1[3].response == "a broad smile (A)"  # rotating qa items
    # the rotation is staggered over the clips, so every qa task is taught in every epoch
    assert [r.response for r in e0 if r.task == "qa"] == ["Yes (A)", "a broad smile (A)", "Yes (A)"]
    assert len(sft_records(items)) == 3 * 4  # defaults: one label, the description, every qa item
    batches = clip_grouped_batches(e0, 3, np.random.default_rng(0))
    assert sum(len(b) for b in batches) == len(e0)
    groups = {r.group or r.item_id for r in e0}
    assert len(groups) == 6  # each label copy is its own group; the rest stays with its clip
    with pytest.raises(ValueError, match="unknown SFT task"):
        sft_records(items, ["caption"])


def test_sft_reduces_loss_and_logs_every_step(ckpt, clips, tmp_path):
    import json

    from avere_utils.models.sft import SFTConfig, run_sft

    b = load_backend(str(ckpt), device="cpu")
    items = [_train_item(i, None) for i in range(2)]
    media = {"t0": clips[0], "t1": clips[1]}
    log_file = tmp_path / "reference.jsonl"
    cfg = SFTConfig(epochs=15, batch_size=4, lr=5e-3, seed=0, perception_weight=0.0)  # these items have no cue record
    hist = run_sft(b, items, media.__getitem__, cfg, log_file, qa_per_clip=1)
    lines = [json.loads(x) for x in log_file.read_text().splitlines()]
    assert lines[0]["event"] == "config" and len(lines) == 1 + len(hist) == 1 + lines[0]["steps_planned"]
    assert hist[-1]["loss"] < 0.5 * hist[0]["loss"]
    assert {"loss_label", "loss_description", "loss_qa"} <= set().union(*hist)


def test_planned_epochs_by_steps_covers_max_steps():
    from avere_utils.models.sft import SFTConfig, planned_epochs

    items = [_train_item(i, None) for i in range(3)]  # 4 records per clip with every qa item
    cfg = SFTConfig(epochs=0, max_steps=7, batch_size=4, perception_weight=0.0)
    epochs = planned_epochs(items, ["label", "description", "qa"], cfg, np.random.default_rng(0))
    assert len(epochs) == 3 and sum(len(e) for e in epochs) >= 7  # 3 batches an epoch, 7 steps -> 3 epochs
    with pytest.raises(ValueError, match="max_steps"):
        planned_epochs(items, ["label"], SFTConfig(epochs=0, max_steps=0), np.random.default_rng(0))


def test_a_second_sft_phase_continues_the_log_steps_and_clock(ckpt, clips, tmp_path):
    import json

    from avere_utils.models.sft import SFTConfig, run_sft

    b = load_backend(str(ckpt), device="cpu")
    items = [_train_item(i, None) for i in range(2)]
    media = {"t0": clips[0], "t1": clips[1]}
    log_file = tmp_path / "reference.jsonl"
    first = run_sft(b, items, media.__getitem__, SFTConfig(epochs=1, batch_size=4, perception_weight=0.0), log_file)
    second = run_sft(b, items, media.__getitem__, SFTConfig(epochs=0, max_steps=3, batch_size=4, perception_weight=0.0),
                     log_file, tasks=["label", "qa"], phase="presence", after=first)
    assert len(second) == 3 and [r["step"] for r in first + second] == list(range(len(first) + 3))
    assert {r["phase"] for r in first} == {"sft"} and {r["phase"] for r in second} == {"presence"}
    assert second[0]["seconds"] >= first[-1]["seconds"]
    lines = [json.loads(x) for x in log_file.read_text().splitlines()]
    assert [x.get("phase") for x in lines if x.get("event") == "config"] == ["sft", "presence"]
    assert len(lines) == 2 + len(first) + len(second)


def test_full_omni_folder_loads_its_thinker(ckpt, backend, clips, tmp_path):
    """A full Qwen2.5-Omni folder (model_type qwen2_5_omni, weights under `thinker.`) loads without the talker."""
    import json
    import shutil

    from transformers import Qwen2_5OmniConfig, Qwen2_5OmniForConditionalGeneration

    full_dir = tmp_path / "omni"
    config = Qwen2_5OmniConfig(thinker_config=backend.thinker.config.to_dict(), enable_audio_output=False)
    full = Qwen2_5OmniForConditionalGeneration(config)
    full.thinker.load_state_dict(backend.thinker.state_dict())
    full.save_pretrained(full_dir)
    cfg = json.loads((full_dir / "config.json").read_text())
    cfg["enable_audio_output"] = True  # as released; the loader turns the talker off
    (full_dir / "config.json").write_text(json.dumps(cfg))
    torch.save({}, full_dir / "spk_dict.pt")
    for f in ckpt.iterdir():
        if f.name.startswith(("tokenizer", "chat_template", "avere_processor")):
            shutil.copy(f, full_dir / f.name)
    loaded = load_backend(str(full_dir), device="cpu")
    assert not hasattr(loaded.model, "talker")
    ex = [Example(CLASSIFICATION_PROMPT, clips[0], "happiness")]
    torch.testing.assert_close(loaded.sequence_logprobs(ex)[0], backend.sequence_logprobs(ex)[0])
    from avere_utils.config import load_stage
    from avere_utils.models.reference import link_paper_reference

    p = load_stage("paper", "03_reference_model", {"run_dir": str(tmp_path / "run"), "base_model_path": str(full_dir)})
    ref_dir = link_paper_reference(p)
    linked = load_backend(str(ref_dir), device="cpu")
    assert (ref_dir / "config.json").is_symlink() and linked.settings.media["frame_size"] == p.frame_size
    assert linked.media_settings.frame_size == p.frame_size


def test_balanced_accuracy_and_probe_summary():
    import pandas as pd

    from avere_utils.models.reference import balanced_accuracy, probe_summary

    assert balanced_accuracy([True, True, True, False], [True, True, True, True]) == 0.5  # always Yes
    assert balanced_accuracy([True, False, False], [True, False, True]) == 0.75
    assert math.isnan(balanced_accuracy([True, True], [True, False]))  # no absent cue: undefined
    with pytest.raises(ValueError):
        balanced_accuracy([True], [True, False])
    rows = pd.DataFrame({"modality": ["visual"] * 4 + ["audio"] * 2, "present": [True, True, False, False, True, False],
                         "said_yes": [True, False, False, True, True, True]})
    s = probe_summary(rows)
    assert s["visual"] == {"balanced_accuracy": 0.5, "yes_rate_present": 0.5, "yes_rate_absent": 0.5,
                           "n_present": 2, "n_absent": 2}
    assert s["audio"]["balanced_accuracy"] == 0.5 and s["audio"]["yes_rate_absent"] == 1.0


def test_presence_probe_scores_every_typical_cue(backend, clips):
    from avere_utils.models.reference import presence_probe
    from avere_utils.records import Item
    from avere_utils.synth.text import presence_questions

    record = {"video_emotion": "happiness", "audio_emotion": "happiness",
              "visual": {"present": ["a broad smile"], "absent": ["softly arched brows", "crinkled eyes"], "context": []},
              "audio": {"present": ["a high rising pitch", "a bright loud voice"], "absent": ["a quick lively pace"],
                        "context": []}}
    items = [Item(id="c0", dataset="dfew", split="test", label="happiness", text={"cues": record}),
             Item(id="c1", dataset="dfew", split="test", label="anger", text={})]  # no record: left out
    rows, summary = presence_probe(backend, items, {"c0": clips[0], "c1": clips[1]})
    assert len(rows) == 6 and set(rows.id) == {"c0"}
    assert rows.groupby("modality").present.sum().to_dict() == {"audio": 2, "visual": 1}
    # the margin is log p(Yes) - log p(No) of exactly the question the SFT task teaches
    q = presence_questions(record)[0]
    yes, no = backend.sequence_logprobs([Example(qa_prompt(q), clips[0], a) for a in ("Yes (A)", "No (B)")])[0]
    first = rows[(rows.modality == q["modality"]) & (rows.cue == q["cue"])].iloc[0]
    assert first.margin == pytest.approx(float(yes - no), abs=1e-4) and first.said_yes == bool(yes > no)
    assert set(summary) == {"visual", "audio"} and summary["visual"]["n_absent"] == 2
    with pytest.raises(ValueError, match="no item has a cue record"):
        presence_probe(backend, items[1:], {"c1": clips[1]})


def test_sft_presence_records_rotate_over_the_typical_cues():
    from avere_utils.models.sft import sft_records
    from avere_utils.records import Item

    record = {"video_emotion": "anger", "audio_emotion": "anger",
              "visual": {"present": ["furrowed brows"], "absent": ["tightly pressed lips", "a glaring stare"], "context": []},
              "audio": {"present": ["a harsh low pitch"], "absent": ["a loud shouting voice", "a fast clipped pace"],
                        "context": []}}
    items = [Item(id=f"t{i}", dataset="train_source", split="train", label="anger", text={"cues": record})
             for i in range(2)]
    seen = set()
    for epoch in range(3):
        recs = sft_records(items, ["presence"], epoch=epoch, presence_per_clip=2)
        assert [r.item_id for r in recs] == ["t0", "t0", "t1", "t1"]
        seen |= {r.prompt for r in recs if r.item_id == "t0"}
    assert len(seen) == 6  # three epochs of two cover the clip's six typical cues
    all_q = sft_records(items[:1], ["presence"])
    assert sorted(r.response for r in all_q) == ["No (B)"] * 4 + ["Yes (A)"] * 2


def test_perception_targets_and_loss_follow_the_cue_record(backend, clips):
    from avere_utils.models.perception import (
        PerceptionHead,
        encoder_outputs,
        perception_loss,
        perception_targets,
        video_positions,
    )

    record = {"video_emotion": "anger", "audio_emotion": "sadness",
              "visual": {"present": ["furrowed brows"], "absent": ["tightly pressed lips", "a glaring stare"],
                         "context": ["a blue background", "a coffee mug"]},
              "audio": {"present": ["a low falling pitch", "a slow dragging pace"], "absent": ["a quiet soft voice"],
                        "context": ["rain noise"]}}
    t = perception_targets(record)
    assert t.presence["visual"].tolist() == [0.0, 1.0, 0.0]  # (mouth, brows, eyes): only the brows are drawn
    assert t.emotion["visual"].tolist() == [-100, EMOTIONS.index("anger"), -100]
    assert t.presence["audio"].tolist() == [1.0, 0.0, 1.0]  # (pitch, energy, tempo)
    assert t.emotion["audio"].tolist() == [EMOTIONS.index("sadness"), -100, EMOTIONS.index("sadness")]
    (v, a), = encoder_outputs(backend, [clips[0]])
    hidden = backend.thinker.config.get_text_config().hidden_size
    assert v.shape[-1] == a.shape[-1] == hidden and v.shape[0] % video_positions(backend, clips[0]) == 0
    head = PerceptionHead(hidden, video_positions(backend, clips[0]))
    logits = head(v, a)
    assert logits["visual"].shape == (3, len(EMOTIONS) + 1) and logits["audio"].shape == (3, len(EMOTIONS) + 1)
    loss = perception_loss(logits, t)
    loss.backward()  # the loss reaches the encoders, not only the head
    assert backend.thinker.model.visual.patch_embed.proj.weight.grad.abs().sum() > 0
    backend.model.zero_grad(set_to_none=True)
    # only the present parts carry an emotion term: with every part absent, the loss is the presence BCE alone
    none = {**record, "visual": {**record["visual"], "present": [], "absent": list(VISUAL_CUES_OF_ANGER)}}
    t0 = perception_targets(none)
    lv = head(v, None)
    torch.testing.assert_close(perception_loss(lv, t0), torch.nn.functional.binary_cross_entropy_with_logits(
        lv["visual"][:, 0], torch.zeros(3)))


def test_letter_lookups_are_text_only_and_train_beside_the_perception_loss(ckpt, clips):
    """The `letters` records carry no media (the clip is not shown), ride in their clip's batch, and leave the
    perception loss to the clip's own records even when a lookup comes first in the batch."""
    from avere_utils.models.sft import SFTConfig, perception_step_loss, run_sft, sft_records
    from avere_utils.records import Item

    record = {"video_emotion": "anger", "audio_emotion": "anger",
              "visual": {"present": ["furrowed brows"], "absent": ["a glaring stare"], "context": ["a coffee mug"]},
              "audio": {"present": ["a harsh low pitch"], "absent": [], "context": ["rain noise"]}}
    items = [Item(id=f"t{i}", dataset="train_source", split="train", label="anger", text={"cues": record})
             for i in range(2)]
    recs = sft_records(items, ["label", "letters"], letters_per_clip=2)
    assert [r.task for r in recs] == ["label", "letters", "letters"] * 2
    assert [r.text_only for r in recs] == [False, True, True] * 2
    assert sft_records(items, ["label", "letters"]) == [r for r in recs if r.task == "label"]  # 0 per clip: none
    b = load_backend(str(ckpt), device="cpu")
    from avere_utils.models.perception import PerceptionHead, perception_targets, video_positions

    hidden = b.thinker.config.get_text_config().hidden_size
    head = PerceptionHead(hidden, video_positions(b, clips[0]))
    media = {"t0": clips[0], "t1": clips[1]}
    targets = {it.id: perception_targets(record) for it in items}
    lookup_first = [recs[1], recs[0]]  # the clip's first record in the batch shows no clip
    loss, n = perception_step_loss(b, head, lookup_first, media.__getitem__, targets)
    assert n == 1 and torch.isfinite(loss)
    cfg = SFTConfig(epochs=1, batch_size=6, lr=1e-3, seed=0, perception_weight=1.0)
    hist = run_sft(b, items, media.__getitem__, cfg, None, tasks=["label", "letters"], letters_per_clip=2)
    assert len(hist) == 1 and "loss_letters" in hist[0] and "loss_perception" in hist[0]


VISUAL_CUES_OF_ANGER = ("tightly pressed lips", "furrowed brows", "a glaring stare")


def test_grounded_probe_picks_the_most_likely_cue_list(backend, clips):
    from avere_utils.models.reference import grounded_probe
    from avere_utils.records import Item
    from avere_utils.synth.text import GROUNDED_PROMPTS, grounded_answer

    record = {"video_emotion": "happiness", "audio_emotion": "happiness",
              "visual": {"present": ["a broad smile"], "absent": ["softly arched brows", "crinkled eyes"], "context": []},
              "audio": {"present": ["a high rising pitch", "a bright loud voice"], "absent": ["a quick lively pace"],
                        "context": []}}
    items = [Item(id="c0", dataset="dfew", split="test", label="happiness", text={"cues": record})]
    rows, summary = grounded_probe(backend, items, {"c0": clips[0]})
    assert len(rows) == 6 and rows.groupby("modality").present.sum().to_dict() == {"audio": 2, "visual": 1}
    # the visual decision is the argmax over the 7 non-empty subsets of the three typical cues
    typical = ["a broad smile", "softly arched brows", "crinkled eyes"]
    from itertools import combinations
    subsets = [list(c) for k in (1, 2, 3) for c in combinations(typical, k)]
    scores = backend.score_choices(Example(GROUNDED_PROMPTS["visual"], clips[0]), [grounded_answer(s) for s in subsets])
    best = subsets[int(scores.argmax())]
    vis = rows[rows.modality == "visual"].set_index("cue").said_yes.to_dict()
    assert vis == {c: c in best for c in typical}
    assert summary["visual"]["n_present"] == 1 and summary["audio"]["n_absent"] == 1


# --- data-parallel SFT (models/sft_workers.py) ---------------------------------------------------------
def _sft_as_worker(shard, ckpt, clips, log_file, perception=False):
    """One SFT worker's whole job (module level: spawned workers import it by name)."""
    from avere_utils.models.sft import SFTConfig, run_sft

    b = load_backend(ckpt, device="cpu")
    items = [_train_item(i, None) for i in range(2)]
    media = {"t0": clips[0], "t1": clips[1]}
    # 6 records an epoch in batches of 5 and 1: worker 1's share of the second batch is empty
    cfg = SFTConfig(epochs=2, batch_size=5, lr=5e-3, seed=0, perception_weight=0.0, length_groups=2)
    hist = run_sft(b, items, media.__getitem__, cfg, log_file if shard.is_main else None, qa_per_clip=1, shard=shard)
    return b, hist


def _fail_as_worker(shard):
    if not shard.is_main:
        raise ValueError("worker 1 cannot read its clips")


def test_two_sft_workers_train_what_one_process_trains(ckpt, clips, tmp_path):
    """Two workers, each running one length group of every batch, give the one-process losses and weights up
    to float order; only worker 0 writes the log, and the workers' weights agree bit for bit (the guard
    in run_sft would raise otherwise)."""
    import json

    from avere_utils.models.sft_workers import Shard, sft_workers

    one, h1 = _sft_as_worker(Shard(), str(ckpt), clips, tmp_path / "one.jsonl")
    with sft_workers(2, _sft_as_worker, (str(ckpt), clips, None)) as shard:
        assert (shard.rank, shard.world) == (0, 2)
        two, h2 = _sft_as_worker(shard, str(ckpt), clips, tmp_path / "two.jsonl")
    assert len(h1) == len(h2) == 4
    np.testing.assert_allclose([r["loss"] for r in h2], [r["loss"] for r in h1], rtol=1e-4)
    assert {k for r in h2 for k in r if k.startswith("loss_")} == {k for r in h1 for k in r if k.startswith("loss_")}
    for p1, p2 in zip(one.trainable_parameters(), two.trainable_parameters()):
        torch.testing.assert_close(p2, p1, atol=1e-5, rtol=1e-4)
    lines = [json.loads(x) for x in (tmp_path / "two.jsonl").read_text().splitlines()]
    assert lines[0]["sft_workers"] == 2 and len(lines) == 1 + len(h2)


def test_a_failing_sft_worker_fails_the_stage_with_its_traceback():
    from avere_utils.models.sft_workers import Shard, sft_workers

    with pytest.raises(RuntimeError, match="cannot read its clips"):
        with sft_workers(2, _fail_as_worker, ()):
            pass
    with sft_workers(1, _fail_as_worker, ()) as shard:  # one worker: in-process, nothing spawned
        assert isinstance(shard, Shard) and shard.world == 1
    assert Shard(1, 2, "x").mine([[0, 1], [2], [3, 4]]) == [[2]]
    with pytest.raises(ValueError, match="rendezvous"):
        Shard(0, 2)
