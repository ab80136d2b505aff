"""Synthesising the voice and the ambience of a clip (16 kHz mono float32).

The voice is a series of voiced syllables (a harmonic tone with an envelope).  Each audio part of the
clip's audio emotion sets one aspect: `pitch` (level and contour of the fundamental), `energy` (loudness,
brightness, breathiness) and `tempo` (syllable rate, duration, rhythm; fear's trembling voice adds a
tremolo).  A part that the clip does not render is *masked* with a setting that no emotion uses, so its
cue is absent rather than neutral: pitch -> whispered (noise-excited, no fundamental), energy ->
loudness swinging between quiet and loud at irregular intervals (never a steady level), tempo -> one
continuous phonation (no syllable rhythm at all).  The ambience (irrelevant audio context) is mixed in
underneath at a lower level.

Why these masks: the earlier ones (loudness drawn anywhere in 0.08-0.7 per syllable, irregular syllables
of 0.08-0.45 s) overlapped the rendered settings: random loudness is often "moderate" (neutral's cue), and
irregular timing averages about two syllables a second (sadness's pace).  The tiny reference then said Yes
to 60 % of absent tempo cues and 28 % of absent energy cues (docs/data.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avere_utils.emotions import AUDIO_CONTEXT

TWO_PI = 2 * np.pi


@dataclass(frozen=True)
class PitchStyle:
    f0_start: float  # Hz at syllable start
    f0_end: float  # Hz at syllable end (contour within a syllable)
    jump_at: float = -1.0  # fraction of the syllable where f0 jumps to f0_end (-1: glide)
    vibrato_hz: float = 0.0
    vibrato_depth: float = 0.0  # Hz
    harsh: bool = False  # rich, square-like harmonics


@dataclass(frozen=True)
class EnergyStyle:
    amp: float
    tilt: float  # harmonic k has amplitude k**-tilt (lower = brighter)
    n_harmonics: int = 6
    breath: float = 0.0  # share of noise in the source
    drive: float = 0.0  # soft clipping (shouting)
    sharp_attack: bool = False  # each syllable starts loud and decays fast (exclamation)


@dataclass(frozen=True)
class TempoStyle:
    rate: float  # syllables per second
    duty: float  # syllable length / period
    burst: int = 0  # >0: groups of `burst` quick syllables separated by pauses
    tremolo_hz: float = 0.0


PITCH: dict[str, PitchStyle] = {
    "happiness": PitchStyle(250, 340),
    "sadness": PitchStyle(160, 105),
    "neutral": PitchStyle(185, 185),
    "anger": PitchStyle(125, 120, harsh=True),
    "surprise": PitchStyle(175, 400, jump_at=0.4),
    "disgust": PitchStyle(105, 98, vibrato_hz=2.5, vibrato_depth=10),
    "fear": PitchStyle(310, 300, vibrato_hz=9.0, vibrato_depth=35),
}
ENERGY: dict[str, EnergyStyle] = {
    "happiness": EnergyStyle(0.55, 0.6, 9),
    "sadness": EnergyStyle(0.10, 2.0, 4),
    "neutral": EnergyStyle(0.30, 1.2, 6),
    "anger": EnergyStyle(0.80, 0.4, 10, drive=3.0),
    "surprise": EnergyStyle(0.75, 0.8, 8, sharp_attack=True),
    "disgust": EnergyStyle(0.14, 2.6, 3),
    "fear": EnergyStyle(0.22, 1.4, 5, breath=0.6),
}
TEMPO: dict[str, TempoStyle] = {
    "happiness": TempoStyle(6.0, 0.6),
    "sadness": TempoStyle(2.0, 0.85),
    "neutral": TempoStyle(4.0, 0.6),
    "anger": TempoStyle(7.5, 0.35),
    "surprise": TempoStyle(9.0, 0.5, burst=3),
    "disgust": TempoStyle(1.2, 0.95),
    "fear": TempoStyle(4.0, 0.7, tremolo_hz=11.0),
}
WHISPER = PitchStyle(0, 0)  # masked pitch: noise source, no fundamental
MASKED_ENERGY = EnergyStyle(-1.0, 1.2, 6)  # amp < 0: loudness swinging between the two ranges below
MASKED_TEMPO = TempoStyle(-1.0, 1.0)  # rate < 0: one continuous phonation
SWING_QUIET, SWING_LOUD = (0.05, 0.12), (0.6, 0.8)  # masked energy's levels, alternating
SWING_EVERY = (0.3, 0.9)  # seconds between its turns (irregular: no rate that a tempo cue could match)


def _swinging_loudness(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Masked energy: a loudness curve through alternating quiet and loud levels at irregular turns."""
    knots, levels = [0.0], []
    while knots[-1] < n / sr:
        knots.append(knots[-1] + float(rng.uniform(*SWING_EVERY)))
    loud = bool(rng.integers(2))
    for _ in knots:
        levels.append(float(rng.uniform(*(SWING_LOUD if loud else SWING_QUIET))))
        loud = not loud
    return np.interp(np.arange(n) / sr, knots, levels)


def _syllables(tempo: TempoStyle, seconds: float, rng: np.random.Generator) -> list[tuple[float, float]]:
    """(onset, duration) in seconds."""
    out: list[tuple[float, float]] = []
    t = float(rng.uniform(0.02, 0.12))
    if tempo.rate < 0:  # one continuous phonation
        return [(t, max(seconds - 0.05 - t, 0.0))]
    period = 1.0 / tempo.rate
    i = 0
    while t < seconds - 0.05:
        out.append((t, period * tempo.duty))
        i += 1
        t += period
        if tempo.burst and i % tempo.burst == 0:
            t += 0.3
    return out


def _bandpass_noise(n: int, rng: np.random.Generator, lo: float, hi: float, sr: int) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / sr)
    spec[(f < lo) | (f > hi)] = 0
    x = np.fft.irfft(spec, n)
    return (x / (np.abs(x).max() + 1e-9)).astype(np.float32)


def synth_voice(pitch: PitchStyle, energy: EnergyStyle, tempo: TempoStyle, seconds: float, sr: int,
                rng: np.random.Generator) -> np.ndarray:
    n = int(round(seconds * sr))
    out = np.zeros(n, dtype=np.float64)
    noise = _bandpass_noise(n, rng, 300, 3500, sr)
    swing = _swinging_loudness(n, sr, rng) if energy.amp < 0 else None
    for onset, dur in _syllables(tempo, seconds, rng):
        a, b = int(onset * sr), min(n, int((onset + dur) * sr))
        if b - a < 16:
            continue
        m = b - a
        u = np.linspace(0.0, 1.0, m, endpoint=False)
        tt = np.arange(m) / sr
        # envelope
        if energy.sharp_attack:
            env = np.exp(-4.0 * u) * np.minimum(1.0, u * 40)
        else:
            env = np.sin(np.pi * u) ** 0.6
        amp = energy.amp if swing is None else swing[a:b]
        if tempo.tremolo_hz:
            env = env * (1 - 0.75 * (0.5 + 0.5 * np.sin(TWO_PI * tempo.tremolo_hz * tt)))
        # source
        if pitch.f0_start <= 0:  # whisper
            src = noise[a:b]
        else:
            if pitch.jump_at >= 0:
                f0 = np.where(u < pitch.jump_at, pitch.f0_start, pitch.f0_end)
            else:
                f0 = pitch.f0_start + (pitch.f0_end - pitch.f0_start) * u
            if pitch.vibrato_hz:
                f0 = f0 + pitch.vibrato_depth * np.sin(TWO_PI * pitch.vibrato_hz * tt)
            phase = TWO_PI * np.cumsum(f0) / sr
            k_max = energy.n_harmonics * (2 if pitch.harsh else 1)
            src = np.zeros(m)
            for k in range(1, k_max + 1):
                if k * f0.max() >= sr / 2 - 200:
                    break
                w = k ** (-energy.tilt) if not pitch.harsh else (k ** -0.5 if k % 2 else 0.6 * k ** -0.5)
                src += w * np.sin(k * phase)
            src /= np.abs(src).max() + 1e-9
            if energy.breath:
                src = (1 - energy.breath) * src + energy.breath * noise[a:b]
        y = amp * env * src
        if energy.drive:
            y = np.tanh(energy.drive * y) / np.tanh(energy.drive)* amp
        out[a:b] += y
    return out.astype(np.float32)


def synth_ambience(name: str, seconds: float, sr: int, rng: np.random.Generator, level: float = 0.06) -> np.ndarray:
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    if name == "a low background hum":
        f = float(rng.choice([50.0, 60.0]))
        x = np.sin(TWO_PI * f * t) + 0.6 * np.sin(TWO_PI * 2 * f * t) + 0.4 * np.sin(TWO_PI * 3 * f * t)
        x = x / 2.0 * 2.0
    elif name == "a soft piano tune":
        notes = np.array([523.25, 587.33, 659.25, 783.99, 880.0, 1046.5])
        x = np.zeros(n)
        step = int(0.25 * sr)
        for start in range(0, n, step):
            f = notes[int(rng.integers(len(notes)))]
            m = min(n - start, int(0.6 * sr))
            tt = np.arange(m) / sr
            x[start:start + m] += np.exp(-5 * tt) * (np.sin(TWO_PI * f * tt) + 0.3 * np.sin(TWO_PI * 2 * f * tt))
    elif name == "a ticking clock":
        x = np.zeros(n)
        click = _bandpass_noise(int(0.006 * sr), rng, 2000, 7000, sr) * 4.0
        for start in range(int(rng.uniform(0, 0.5) * sr), n - len(click), int(0.5 * sr)):
            x[start:start + len(click)] += click
    elif name == "birdsong chirps":
        x = np.zeros(n)
        m = int(0.08 * sr)
        tt = np.arange(m) / sr
        for start in range(int(0.1 * sr), n - m, int(0.3 * sr)):
            f = np.linspace(3000, 5000, m)
            x[start:start + m] += np.sin(TWO_PI * np.cumsum(f) / sr) * np.sin(np.pi * tt / tt[-1])
        x *= 1.5
    elif name == "rain noise":
        x = _bandpass_noise(n, rng, 2000, 7500, sr) * 0.8
    else:
        raise KeyError(f"unknown ambience {name!r}; known: {AUDIO_CONTEXT['ambience']}")
    return (level * x).astype(np.float32)


def render_audio(emotion: str, rendered_parts: tuple[str, ...], ambience: str, seconds: float, sr: int,
                 rng: np.random.Generator) -> np.ndarray:
    """The clip's soundtrack: voice (rendered parts of `emotion`, others masked) + ambience, in [-1, 1]."""
    pitch = PITCH[emotion] if "pitch" in rendered_parts else WHISPER
    energy = ENERGY[emotion] if "energy" in rendered_parts else MASKED_ENERGY
    tempo = TEMPO[emotion] if "tempo" in rendered_parts else MASKED_TEMPO
    y = synth_voice(pitch, energy, tempo, seconds, sr, rng) + synth_ambience(ambience, seconds, sr, rng)
    return np.clip(y, -1.0, 1.0).astype(np.float32)
