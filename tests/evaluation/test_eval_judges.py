"""EMER judges: the OpenAI-compatible judge against a stub server on 127.0.0.1, the rubric parser, the
exact cue judge (hand-computed), the aggregation of failures, the Batch-API file and the local HF judge."""
import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from avere_utils.evaluation.judges import (
    CRITERIA,
    CueJudge,
    JudgeResult,
    OpenAIJudge,
    cue_rates,
    judge_summary,
    parse_judge_reply,
    rates_to_scores,
    to_scale,
    write_batch_requests,
)
from avere_utils.records import Item

GOOD = '{"clue": 7, "label": 9, "spurious": 6, "hallucination": 5}'


class StubServer:
    """A minimal OpenAI-compatible /chat/completions endpoint playing a script of behaviours."""

    def __init__(self, script):
        self.script = list(script)  # each: ("reply", content) | ("sleep", seconds, content)
        self.requests = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                step = stub.script.pop(0) if stub.script else ("reply", GOOD)
                if step[0] == "sleep":
                    time.sleep(step[1])
                content = step[-1]
                data = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


ITEM = Item(id="e1", dataset="emer", split="test", label="happiness",
            text={"reason": "A broad smile and a high rising pitch suggest happiness."})


def _judge(url, tmp_path, **kw):
    kw.setdefault("timeout_s", 2.0)
    return OpenAIJudge(url, "judge-model", api_key_env="AVERE_TEST_JUDGE_KEY", cache_dir=str(tmp_path / "cache"),
                       max_retries=2, **kw)


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("AVERE_TEST_JUDGE_KEY", "sk-test-123")


def test_valid_reply_and_key_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("AVERE_TEST_JUDGE_KEY", "sk-test-123")
    with StubServer([("reply", "Sure! " + GOOD)]) as srv:
        judge = _judge(srv.url, tmp_path)
        r = judge.judge(ITEM, "The person smiles broadly: happy.")
    assert r.scores == {"clue": 7.0, "label": 9.0, "spurious": 6.0, "hallucination": 5.0}
    assert len(srv.requests) == 1 and srv.requests[0]["path"] == "/v1/chat/completions"
    assert srv.requests[0]["auth"] == "Bearer sk-test-123"
    body = srv.requests[0]["body"]
    assert body["model"] == "judge-model" and "broad smile" in body["messages"][1]["content"]
    assert "sk-test-123" not in json.dumps(judge.describe())


def test_malformed_json_is_reasked_then_counted(tmp_path):
    with StubServer([("reply", "{clue: seven"), ("reply", GOOD)]) as srv:
        r = _judge(srv.url, tmp_path, parse_retries=2).judge(ITEM, "happy")
    assert r.scores is not None and r.attempts == 2 and len(srv.requests) == 2
    # the re-ask is a different request (so the cache cannot replay the bad reply)
    assert srv.requests[1]["body"]["messages"][-1]["role"] == "user"
    assert len(srv.requests[1]["body"]["messages"]) == 4

    with StubServer([("reply", "no json here")] * 3) as srv:
        judge = _judge(srv.url, tmp_path / "b", parse_retries=2)
        r = judge.judge(ITEM, "happy")
    assert r.scores is None and r.error == "unparseable reply" and r.attempts == 3
    assert judge.describe()["n_failed"] == 1
    s = judge_summary([r, JudgeResult(parse_judge_reply(GOOD))])
    assert s.n_failed == 1 and s.n_judged == 1
    assert s.means["clue"] == pytest.approx(7.0)  # the failure is counted, never averaged in


def test_timeout_then_retry(tmp_path):
    with StubServer([("sleep", 1.5, GOOD), ("reply", GOOD)]) as srv:
        judge = _judge(srv.url, tmp_path, timeout_s=0.4)
        r = judge.judge(ITEM, "happy")
    assert r.scores is not None
    stats = judge.describe()["client_stats"]
    assert stats["retries"] == 1 and stats["requests"] == 2


def test_cache_hit_makes_rescoring_free(tmp_path):
    with StubServer([("reply", GOOD)]) as srv:
        _judge(srv.url, tmp_path).judge(ITEM, "happy")
        again = _judge(srv.url, tmp_path)
        r = again.judge(ITEM, "happy")
    assert r.scores["label"] == 9.0
    assert len(srv.requests) == 1 and again.describe()["client_stats"]["cache_hits"] == 1


def test_request_failure_is_counted(tmp_path):
    judge = _judge("http://127.0.0.1:9/v1", tmp_path, timeout_s=0.2)  # nothing listens on port 9
    r = judge.judge(ITEM, "happy")
    assert r.scores is None and r.error.startswith("request failed")


@pytest.mark.parametrize("reply", ["", "{}", '{"clue": 11, "label": 1, "spurious": 1, "hallucination": 1}',
                                   '{"clue": "x", "label": 1, "spurious": 1, "hallucination": 1}', "[1, 2]"])
def test_parse_judge_reply_rejects(reply):
    with pytest.raises(ValueError):
        parse_judge_reply(reply)


def test_parse_judge_reply_accepts_fenced_json():
    assert parse_judge_reply("```json\n" + GOOD + "\n```")["hallucination"] == 5.0


CUES = {"video_emotion": "happiness", "audio_emotion": "happiness",
        "visual": {"present": ["a broad smile", "crinkled eyes"], "absent": ["softly arched brows"],
                   "context": ["a yellow background", "a coffee mug"]},
        "audio": {"present": ["a high rising pitch"], "absent": ["a bright loud voice"],
                  "context": ["a low background hum"]}}


def test_cue_rates_by_hand():
    answer = ("She looks happy: a broad smile, softly arched brows, a yellow background and a bright loud voice.")
    r = cue_rates(answer, CUES, "happiness", reference="a broad smile and a high rising pitch")
    # cited: smile (present), arched brows (absent), yellow background (context), loud voice (absent)
    assert r["clue_recall"] == pytest.approx(1 / 2)  # reference cites smile + pitch; answer has smile
    assert r["label_match"] == 1.0
    assert r["spurious_rate"] == pytest.approx(1 / 4)
    assert r["hallucination_rate"] == pytest.approx(2 / 4)
    s = rates_to_scores(r)
    assert s == {"clue": pytest.approx(5.5), "label": 10.0, "spurious": pytest.approx(1 + 9 * 0.75),
                 "hallucination": pytest.approx(5.5)}
    # without cues in the reference text, the clip's present relevant cues are the reference
    r2 = cue_rates("crinkled eyes; sad", CUES, "happiness", reference="no cue phrases here")
    assert r2["clue_recall"] == pytest.approx(1 / 3) and r2["label_match"] == 0.0
    assert to_scale(0) == 1.0 and to_scale(1) == 10.0


def test_cue_judge_counts_missing_records_and_answers():
    judge = CueJudge()
    no_cues = Item(id="x", dataset="emer", split="test", label="happiness", text={"reason": "r"})
    assert judge.judge(no_cues, "happy").scores is None
    item = Item(id="y", dataset="emer", split="test", label="happiness", text={"reason": "r", "cues": CUES})
    empty = judge.judge(item, "")
    s = judge_summary([empty, judge.judge(item, "a broad smile, happy")])
    assert s.n_no_answer == 1 and s.n_judged == 1 and s.means["label"] == pytest.approx(10.0)
    assert all(s.means[k] is not None and not math.isnan(s.means[k]) for k in CRITERIA)


def test_batch_requests_file(tmp_path):
    path = write_batch_requests(tmp_path / "b.jsonl", [("e1", "ref one", "ans one"), ("e2", "ref", "ans")], "gpt-4o")
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [x["custom_id"] for x in lines] == ["e1", "e2"]
    assert lines[0]["url"] == "/v1/chat/completions" and lines[0]["body"]["model"] == "gpt-4o"
    assert "ans one" in lines[0]["body"]["messages"][1]["content"]


def test_hf_judge_local_model_unparseable_is_counted(tmp_path):
    """A tiny random causal LM built here (no download): its replies are gibberish, so every judgement
    must end as a counted failure after the re-asks, never as a score."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from avere_utils.evaluation.judges import HFJudge

    vocab = {w: i for i, w in enumerate(["<unk>", "<pad>", "<eos>", "{", "}", "clue", "label", ":", "7", "a"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>")
    fast.chat_template = "{% for m in messages %}{{ m['content'] }} {% endfor %}"
    fast.save_pretrained(tmp_path / "judge")
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, pad_token_id=1, eos_token_id=2)
    LlamaForCausalLM(cfg).save_pretrained(tmp_path / "judge")
    judge = HFJudge(str(tmp_path / "judge"), device="cpu", max_new_tokens=4, parse_retries=1)
    r = judge.judge(ITEM, "happy")
    assert r.scores is None and r.error == "unparseable reply" and r.attempts == 2
    assert judge.describe()["name"] == "hf" and judge.describe()["n_failed"] == 1


# --- issue 14: failures never cached, cache keyed on the endpoint, the paper protocol, the Batch API -----
from chat_stub import StubChat, completion  # noqa: E402

PAPER_PROMPT = ("Rate the prediction against the ground truth.\nReturn {\"cue_overlap\": int, ...}\n"
                "Ground Truth Description:{reference}\nModel Prediction:{prediction}")
PAPER_GOOD = ('```json\n{"cue_overlap": 6, "cue_overlap_reason": "x", "emotion_consistency": 8, '
              '"emotion_consistency_reason": "y", "emotion_cue_association": 7, "emotion_cue_association_reason": "z", '
              '"hallucinated_cues": 4, "hallucinated_cues_reason": "w"}\n```')


def test_unparseable_reply_is_not_cached_and_is_asked_again_on_rerun(tmp_path):
    replies = iter(["no json"] * 3 + [GOOD])
    with StubChat(lambda body: (200, completion(next(replies)))) as stub:
        first = _judge(stub.base_url, tmp_path, parse_retries=2).judge(ITEM, "happy")
        again = _judge(stub.base_url, tmp_path, parse_retries=2).judge(ITEM, "happy")
    assert first.scores is None and first.error == "unparseable reply"
    assert again.scores == parse_judge_reply(GOOD) and len(stub.requests) == 4
    cached = [json.loads(f.read_text())["content"] for f in (tmp_path / "cache").rglob("*.json")]
    assert cached == [GOOD]


def test_cache_is_keyed_on_the_endpoint(tmp_path):
    other = '{"clue": 2, "label": 2, "spurious": 2, "hallucination": 2}'
    with StubChat(lambda b: (200, completion(GOOD))) as a, StubChat(lambda b: (200, completion(other))) as b:
        assert _judge(a.base_url, tmp_path).judge(ITEM, "happy").scores["clue"] == 7.0
        assert _judge(b.base_url, tmp_path).judge(ITEM, "happy").scores["clue"] == 2.0


def test_missing_key_fails_at_construction_naming_the_variable(tmp_path, monkeypatch):
    from avere_utils.llm_client import MissingKeyError

    monkeypatch.delenv("AVERE_TEST_JUDGE_KEY")
    with pytest.raises(MissingKeyError, match="environment variable AVERE_TEST_JUDGE_KEY is not set"):
        _judge("http://127.0.0.1:9/v1", tmp_path)


def test_paper_protocol_reference_then_prediction_400_tokens_released_keys(tmp_path):
    prompt = tmp_path / "prompt.txt"
    prompt.write_text(PAPER_PROMPT)
    with StubChat(lambda body: (200, completion(PAPER_GOOD))) as stub:
        judge = _judge(stub.base_url, tmp_path, protocol="paper", prompt_file=str(prompt))
        r = judge.judge(ITEM, "The person smiles broadly: happy.")
    assert r.scores == {"clue": 6.0, "label": 8.0, "spurious": 7.0, "hallucination": 4.0}
    (body,) = stub.requests
    assert body["max_completion_tokens"] == 400 and "temperature" not in body
    (message,) = body["messages"]  # one user message, no system prompt
    assert message["role"] == "user"
    text = message["content"]
    assert text.index("A broad smile") < text.index("The person smiles broadly")  # reference first
    assert '{"cue_overlap": int, ...}' in text  # the prompt's own braces survive


def test_paper_protocol_drops_an_unparseable_reply_without_re_asking(tmp_path):
    prompt = tmp_path / "prompt.txt"
    prompt.write_text(PAPER_PROMPT)
    with StubChat(lambda body: (200, completion('{"cue_overlap": 6}'))) as stub:
        r = _judge(stub.base_url, tmp_path, protocol="paper", prompt_file=str(prompt)).judge(ITEM, "happy")
    assert r.scores is None and r.error == "unparseable reply" and len(stub.requests) == 1


@pytest.mark.parametrize("text, match", [("no fields", "lacks {reference} and {prediction}"),
                                         ("{prediction} then {reference}", "must come first")])
def test_paper_prompt_file_is_checked(tmp_path, text, match):
    prompt = tmp_path / "prompt.txt"
    prompt.write_text(text)
    with pytest.raises(ValueError, match=match):
        _judge("http://127.0.0.1:9/v1", tmp_path, protocol="paper", prompt_file=str(prompt))
    with pytest.raises(FileNotFoundError, match="judge_prompt_file"):
        _judge("http://127.0.0.1:9/v1", tmp_path, protocol="paper", prompt_file=str(tmp_path / "none.txt"))


def test_batch_judging_collects_into_judged_rows_and_a_rerun_reuses_the_batch(tmp_path):
    prompt = tmp_path / "prompt.txt"
    prompt.write_text(PAPER_PROMPT)
    items = [Item(id=f"e{i}", dataset="emer", split="test", text={"reason": f"reference {i}"}) for i in range(4)]
    answers = {"e0": "good one", "e1": "bad one", "e2": "", "e3": "good two"}

    def reply(body):
        text = body["messages"][0]["content"]
        return 200, completion("not json" if "bad one" in text else PAPER_GOOD)

    with StubChat(reply) as stub:
        judge = _judge(stub.base_url, tmp_path, protocol="paper", prompt_file=str(prompt))
        results = judge.judge_batch(items, answers, tmp_path / "batch.jsonl", poll_s=0.0, max_polls=5)
        again = _judge(stub.base_url, tmp_path, protocol="paper", prompt_file=str(prompt)).judge_batch(
            items, answers, tmp_path / "batch.jsonl", poll_s=0.0, max_polls=5)
    assert [r.error for r in results] == [None, "unparseable reply", "no answer", None]
    assert results[0].scores == {"clue": 6.0, "label": 8.0, "spurious": 7.0, "hallucination": 4.0}
    s = judge_summary(results)
    assert s.n_judged == 2 and s.n_failed == 1 and s.n_no_answer == 1 and s.means["clue"] == 6.0
    assert [r.scores for r in again] == [r.scores for r in results]
    assert sum(p == "POST /v1/batches" for p in stub.paths) == 1  # the rerun paid for no second batch
    lines = [json.loads(x) for x in (tmp_path / "batch.jsonl").read_text().splitlines()]
    assert [x["custom_id"] for x in lines] == ["e0", "e1", "e3"]  # the missing prediction is not sent
    assert lines[0]["body"]["model"] == "judge-model" and lines[0]["body"]["max_completion_tokens"] == 400


def test_summary_is_null_when_nothing_was_judged():
    s = judge_summary([JudgeResult(None, error="request failed: HTTP 401"), JudgeResult(None, error="no answer")])
    assert s.means == {k: None for k in CRITERIA} and s.n_judged == 0 and s.n_failed == 1 and s.n_no_answer == 1
