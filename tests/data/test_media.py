"""Decoding (frames, audio, probing, errors) and the feature cache, on small clips written here."""
from __future__ import annotations

import logging
import os
import time

import numpy as np
import pytest
import soundfile as sf

from avere_utils.cache import FeatureCache
from avere_utils.media import (
    MediaError,
    MediaSettings,
    MissingAudioError,
    frame_indices,
    load_audio,
    load_media,
    load_video_frames,
    probe,
)
from avere_utils.synth.encode import write_mp4, write_wav

SR = 16000


def index_frames(n: int, size: int = 64, step: int = 5) -> np.ndarray:
    """Frame k is a flat grey of level 5k: the decoded level tells which frame came back."""
    return np.stack([np.full((size, size, 3), step * k, dtype=np.uint8) for k in range(n)])


def tone(seconds: float, sr: int = SR, f: float = 440.0) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (0.5 * np.sin(2 * np.pi * f * t)).astype(np.float32)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    write_mp4(d / "index48.mp4", index_frames(48), 24)
    write_mp4(d / "with_audio.mp4", index_frames(60, step=4), 30, tone(2.0), SR, 48000, 2)
    write_wav(d / "mono16k.wav", tone(2.0), SR)
    t = np.arange(int(2.0 * 44100)) / 44100
    stereo = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), -0.5 * np.sin(2 * np.pi * 440 * t)], axis=1)
    sf.write(str(d / "stereo44k.wav"), stereo, 44100, subtype="PCM_16")
    good = (d / "index48.mp4").read_bytes()
    (d / "truncated.mp4").write_bytes(good[: len(good) // 3])
    (d / "garbage.mp4").write_bytes(os.urandom(4096))
    (d / "empty.mp4").write_bytes(b"")
    return d


def test_frame_indices_follow_linspace():
    assert frame_indices(48, 8).tolist() == [0, 7, 13, 20, 27, 34, 40, 47]
    assert frame_indices(3, 8).tolist() == [0, 0, 1, 1, 1, 1, 2, 2]  # short clips repeat frames


def test_decoded_frames_are_the_expected_indices(clips):
    frames = load_video_frames(clips / "index48.mp4", n_frames=8, frame_size=56)
    assert frames.shape == (8, 56, 56, 3) and frames.dtype == np.uint8
    decoded_index = np.round(frames.reshape(8, -1).mean(axis=1) / 5).astype(int)
    assert decoded_index.tolist() == frame_indices(48, 8).tolist()


def test_probe_reports_streams_without_decoding(clips):
    v = probe(clips / "index48.mp4")
    assert (v.has_video, v.has_audio, v.n_frames, v.fps) == (True, False, 48, 24.0)
    assert v.duration == pytest.approx(2.0, abs=0.05)
    av_ = probe(clips / "with_audio.mp4")
    assert av_.has_audio and av_.n_frames == 60
    w = probe(clips / "mono16k.wav")
    assert (w.has_video, w.has_audio) == (False, True)


def test_wav_audio_length_and_dtype(clips):
    a = load_audio(clips / "mono16k.wav")
    assert a.dtype == np.float32 and a.ndim == 1 and len(a) == 32000
    assert np.abs(a).max() == pytest.approx(0.5, abs=0.01)


def test_mp4_aac_audio_is_resampled_and_trimmed_to_duration(clips):
    # 48 kHz stereo AAC inside the mp4: back to 16 kHz mono, decoder padding trimmed to the stream duration.
    a = load_audio(clips / "with_audio.mp4")
    assert len(a) == 32000
    assert np.abs(a[4000:28000]).max() == pytest.approx(0.5, abs=0.05)


def test_44k_stereo_wav_is_resampled_to_16k_mono(clips):
    mean = load_audio(clips / "stereo44k.wav", MediaSettings(stereo_to_mono="mean"))
    left = load_audio(clips / "stereo44k.wav", MediaSettings(stereo_to_mono="left"))
    assert mean.ndim == left.ndim == 1 and abs(len(mean) - 32000) <= 2
    assert np.abs(mean).max() < 0.01  # the channels are in antiphase: their mean cancels
    assert np.abs(left[1000:-1000]).max() == pytest.approx(0.5, abs=0.02)


def test_long_audio_is_cut_with_a_warning(clips, caplog):
    with caplog.at_level(logging.WARNING, logger="avere_utils.media"):
        a = load_audio(clips / "mono16k.wav", MediaSettings(max_audio_s=1.5))
    assert len(a) == 24000
    assert any("max_audio_s" in r.getMessage() for r in caplog.records)


def test_load_media_takes_audio_from_wav_else_from_video(clips):
    s = MediaSettings()
    m = load_media(str(clips / "index48.mp4"), str(clips / "mono16k.wav"), s)
    assert m.frames.shape == (8, 56, 56, 3) and len(m.audio) == 32000 and m.sample_rate == SR
    m2 = load_media(str(clips / "with_audio.mp4"), None, s)
    assert len(m2.audio) == 32000


def test_missing_audio_policies(clips):
    v = str(clips / "index48.mp4")
    with pytest.raises(MissingAudioError, match="index48.mp4: no audio stream"):
        load_media(v, None, MediaSettings())
    assert load_media(v, None, MediaSettings(on_missing_audio="skip")).audio is None
    silent = load_media(v, None, MediaSettings(on_missing_audio="silence")).audio
    assert len(silent) == 32000 and not silent.any()


@pytest.mark.parametrize("name, problem", [("truncated.mp4", ""), ("garbage.mp4", "unreadable"),
                                           ("empty.mp4", "empty file"), ("nope.mp4", "file not found")])
def test_bad_files_raise_media_error_naming_the_file(clips, name, problem):
    with pytest.raises(MediaError, match=name) as e:
        load_video_frames(clips / name)
    assert problem in str(e.value)


def test_settings_are_validated():
    with pytest.raises(ValueError, match="stereo_to_mono"):
        MediaSettings(stereo_to_mono="sum")
    with pytest.raises(ValueError, match="on_missing_audio"):
        MediaSettings(on_missing_audio="ignore")


def test_cache_reuses_decoded_arrays_and_invalidates_on_change(clips, tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    v, w = str(clips / "index48.mp4"), str(clips / "mono16k.wav")
    s = MediaSettings()
    first = load_media(v, w, s, cache)
    again = load_media(v, w, s, cache)
    assert (cache.misses, cache.hits) == (1, 1) and len(cache) == 1
    np.testing.assert_array_equal(first.frames, again.frames)
    np.testing.assert_array_equal(first.audio, again.audio)
    load_media(v, w, MediaSettings(frame_size=28), cache)  # other settings: another entry
    assert cache.misses == 2
    copy = tmp_path / "copy.wav"
    copy.write_bytes((clips / "mono16k.wav").read_bytes())
    load_media(v, str(copy), s, cache)
    st = copy.stat()
    os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched file: decoded again
    load_media(v, str(copy), s, cache)
    assert cache.misses == 4


def test_cached_pass_is_much_faster(clips, tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    v, w = str(clips / "with_audio.mp4"), None
    t0 = time.perf_counter()
    load_media(v, w, MediaSettings(), cache)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(10):
        load_media(v, w, MediaSettings(), cache)
    cached = (time.perf_counter() - t0) / 10
    assert first / cached > 5  # the benchmark measures >= 10x over a whole set; one clip is noisier
