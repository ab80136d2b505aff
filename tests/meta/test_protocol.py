"""The protocol's texts and names live in avere_utils/protocol.py only: the library and the benchmarks import
them, and every metric key the report reads is one the protocol names."""
from __future__ import annotations

from pathlib import Path

import pytest

from avere_utils import benchmarks, protocol
from avere_utils.models import sft
from avere_utils.pairs import templates
from avere_utils.paths import REPO_ROOT
from avere_utils.report import story, tables

PROMPTS = [protocol.CLASSIFICATION_PROMPT, protocol.EMER_PROMPT]
SOURCES = sorted(p for folder in ("avere_utils", "bench") for p in (REPO_ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("prompt", PROMPTS, ids=["classification", "emer"])
def test_a_protocol_prompt_is_written_once_in_the_python_sources(prompt):
    # the YAMLs and the notebooks' parameters cells hold it too: those are parameters, not copies
    holders = [str(p.relative_to(REPO_ROOT)) for p in SOURCES if prompt in Path(p).read_text()]
    assert holders == ["avere_utils/protocol.py"]


def test_sft_and_the_pairs_use_the_protocol_prompts():
    assert sft.CLASSIFICATION_PROMPT is protocol.CLASSIFICATION_PROMPT and sft.qa_prompt is protocol.qa_prompt
    assert templates.DESCRIPTION_PROMPTS[0] is protocol.EMER_PROMPT  # the EMER prompt among the pair prompts


def test_the_emorealm_prompt_is_the_question_then_the_lettered_choices():
    qa = {"question": "Same emotion?", "choices": ["(A) Yes", "(B) No"]}
    assert protocol.qa_prompt(qa) == "Same emotion? (A) Yes (B) No"


def test_every_metric_key_the_report_reads_is_a_protocol_name():
    names = {*protocol.CLASSIFICATION_METRICS, *protocol.EMER_CRITERIA, *protocol.EMOREALM_TASKS,
             protocol.EMOREALM_AVERAGE, *(f"yes:{k}" for k in protocol.STRESS_KINDS), *protocol.EMER_CUE_RATES}
    benches = set(benchmarks.names())
    read = [(b, k) for _, b, k in tables.TABLE2_COLUMNS + tables.TABLE3_COLUMNS]
    read += [(b, k) for _, b, k, _ in story.QUANTITIES]
    assert not [r for r in read if r[0] not in benches or r[1] not in names]
    assert [k for _, k in tables.EMOREALM_COLUMNS][:-1] == list(protocol.EMOREALM_TASKS)
