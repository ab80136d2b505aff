"""No API key's value anywhere: stage 02's LLM path and stage 06's OpenAI-compatible judge run against a local
fake OpenAI-compatible server (tests/chat_stub.py, 127.0.0.1) with the key variable set to a fresh random value;
the value reaches the server (Authorization header) and nothing else: no file under the run folder, no log
record, nothing printed, no parameter papermill would write into an executed notebook.

Running notebooks 02 and 06 under papermill would take minutes, so this calls the library functions the two
stages call (`pairs.build_and_save`, `evaluation.emer.evaluate` with a fake model backend), writing into a tmp
run folder, and checks the notebooks' side by parameterising notebooks 02 and 06 exactly as papermill does
with the parameters `runner.plan` gives them."""
from __future__ import annotations

import json
import logging
import secrets

import nbformat
import pytest
from chat_stub import StubChat, completion
from pairs.test_pairs import _answer_from_prompt, make_items, params_for

from avere_utils import config, runner
from avere_utils.evaluation import emer
from avere_utils.evaluation.params import EmerParams
from avere_utils.evaluation.testing import FakeBackend, fake_media_fn
from avere_utils.pairs import build_and_save
from avere_utils.records import Item

KEY = "AVERE_NO_SECRET_TEST_KEY"
STRICT = '{"clue": 7, "label": 9, "spurious": 6, "hallucination": 5}'
PAPER = ('{"cue_overlap": 6, "cue_overlap_reason": "x", "emotion_consistency": 8, "emotion_consistency_reason": "y", '
         '"emotion_cue_association": 7, "emotion_cue_association_reason": "z", "hallucinated_cues": 4, '
         '"hallucinated_cues_reason": "w"}')
PROMPT = "Ground Truth Description:{reference}\nModel Prediction:{prediction}\nReturn JSON."


def reply(body):
    if body["model"] == "judge-model":
        text = json.dumps(body["messages"])
        return 200, completion(PAPER if "Ground Truth Description" in text else STRICT)
    return 200, completion(_answer_from_prompt(body))


def emer_params(run, url, **kw):
    return config.build(EmerParams, {"run_dir": str(run), "batch_size": 3, "judge": "openai", "judge_base_url": url,
                                     "judge_model": "judge-model", "judge_api_key_env": KEY, **kw}, "test")


def test_the_key_reaches_the_server_and_nothing_else(tmp_path, monkeypatch, caplog, capsys):
    secret = "sk-" + secrets.token_hex(24)
    monkeypatch.setenv(KEY, secret)
    caplog.set_level(logging.DEBUG)
    run = tmp_path / "run"
    items = make_items(tmp_path / "clips", n=24)
    emer_items = [Item(id=f"e{i}", dataset="emer", split="test", video=f"/v/{i}.mp4", label="happiness",
                       text={"reason": f"A broad smile and a high rising pitch ({i})."}) for i in range(4)]
    backend = FakeBackend(emer_items, answer=lambda it: f"Happy: a broad smile ({it.id}).")
    (run / "prompt.txt").parent.mkdir(parents=True)
    (run / "prompt.txt").write_text(PROMPT)
    with StubChat(reply) as stub:
        # stage 02: the LLM generator, its cache, the dataset, stats and the released JSON under the run folder
        pairs = build_and_save(params_for(run, generator="llm", llm_base_url=stub.base_url, llm_api_key_env=KEY,
                                          llm_max_retries=0, released_media_dir=str(tmp_path / "clips")),
                               items, progress=False)
        # stage 06: the kit's rubric one request at a time, then the paper protocol through the Batch API
        strict = emer.evaluate(emer_params(run, stub.base_url, variant="reference"), backend, items=emer_items,
                               media_fn=fake_media_fn(emer_items))
        paper = emer.evaluate(emer_params(run, stub.base_url, variant="avem_dpo", judge_protocol="paper",
                                          judge_prompt_file=str(run / "prompt.txt"), judge_use_batch=True,
                                          judge_batch_poll_s=0.0), backend, items=emer_items,
                              media_fn=fake_media_fn(emer_items))
    assert pairs.stats["llm"]["llm_client_requests"] > 0 and strict["n_judged"] == 4 and paper["n_judged"] == 4
    assert stub.auth_headers and set(stub.auth_headers) == {f"Bearer {secret}"}  # it was used
    files = [f for f in run.rglob("*") if f.is_file()]
    assert len(files) > 10 and any("llm" in str(f) for f in files) and any("judge" in str(f) for f in files)
    leaked = [str(f) for f in files if secret.encode() in f.read_bytes()]
    assert not leaked, leaked
    out, err = capsys.readouterr()
    assert secret not in caplog.text and secret not in out + err
    assert caplog.records  # the logs were captured (what a notebook's output would show)


@pytest.mark.parametrize("stage", ["02_pair_construction", "06_zero_shot_emer"])
def test_papermill_writes_only_the_variable_name_into_the_notebook(stage, monkeypatch):
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    secret = "sk-" + secrets.token_hex(24)
    for var in ("GEMINI_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.setenv(var, secret)
    _, execs = runner.plan("paper", only=[stage], variants=["avem_dpo"])
    assert execs
    for e in execs:
        nb = load_notebook_node(str(runner.NOTEBOOKS_DIR / f"{stage}.ipynb"))
        text = nbformat.writes(parameterize_notebook(nb, e.params))
        assert secret not in text
        assert any(k.endswith("_api_key_env") and v in text for k, v in e.params.items()), "no key variable named"
