"""The choices the data and model params accept (Literal types, checked once by `config.build`) are the ones the
library's functions accept: one list per choice, checked here, so the two cannot drift apart."""
from __future__ import annotations

import typing

import pytest

from avere_utils import config
from avere_utils.datasets import clipcheck, ravdess
from avere_utils.datasets.params import DataPrepParams
from avere_utils.media import ON_MISSING_AUDIO, STEREO_TO_MONO


def choices(cls: type, name: str) -> tuple[str, ...]:
    return typing.get_args(typing.get_type_hints(cls)[name])


@pytest.mark.parametrize("name, library", [
    ("ravdess_calm_policy", ravdess.CALM_POLICIES), ("ravdess_selection", ravdess.SELECTIONS),
    ("truncated_clips", clipcheck.TRUNCATED_POLICIES), ("stereo_to_mono", STEREO_TO_MONO),
    ("on_missing_audio", ON_MISSING_AUDIO)])
def test_a_params_choices_are_the_librarys(name, library):
    assert choices(DataPrepParams, name) == tuple(library)


def test_a_value_outside_the_choices_is_refused_naming_the_key():
    with pytest.raises(config.ConfigError, match="on_missing_audio"):
        config.build(DataPrepParams, {"on_missing_audio": "ignore"}, "test")
