"""ChatClient (on the `openai` package) against a stub OpenAI-compatible server on 127.0.0.1."""
from __future__ import annotations

import json

import pytest
from chat_stub import StubChat, completion

from avere_utils.llm_client import ChatClient, ChatError, MissingKeyError, cache_key

MESSAGES = [{"role": "user", "content": "Say hi"}]
SECRET = "sk-test-0123456789-very-secret"


def echo(body):
    return 200, completion("hi: " + body["messages"][-1]["content"])


def test_success_sends_model_params_and_key_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("STUB_KEY", SECRET)
    with StubChat(echo) as stub:
        client = ChatClient(stub.base_url, "stub-model", api_key_env="STUB_KEY", cache_dir=tmp_path)
        assert client.chat(MESSAGES, temperature=0.0, max_tokens=5) == "hi: Say hi"
    body = stub.requests[0]
    assert body["model"] == "stub-model" and body["temperature"] == 0.0 and body["max_tokens"] == 5
    assert stub.auth_headers == [f"Bearer {SECRET}"]
    assert client.stats.as_dict() == {"requests": 1, "cache_hits": 0, "retries": 0, "failures": 0}
    # The key is read from the environment at request time: never on the object, never in the cache.
    assert SECRET not in repr(client) and SECRET not in json.dumps(vars(client), default=str)
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert SECRET not in f.read_text()


def test_missing_key_fails_before_the_first_request_naming_the_variable(monkeypatch):
    monkeypatch.delenv("STUB_KEY_UNSET", raising=False)
    with StubChat(echo) as stub:
        with pytest.raises(MissingKeyError, match="environment variable STUB_KEY_UNSET is not set"):
            ChatClient(stub.base_url, "m", api_key_env="STUB_KEY_UNSET")
    assert stub.requests == []


def test_keyless_server_with_empty_api_key_env():
    with StubChat(echo) as stub:
        assert ChatClient(stub.base_url, "m", api_key_env="").chat(MESSAGES) == "hi: Say hi"
    assert len(stub.requests) == 1


@pytest.mark.parametrize("value", [SECRET, "openai_api_key", "MY-KEY"])
def test_api_key_env_must_be_a_variable_name_and_is_not_echoed(value):
    with pytest.raises(ValueError, match="NAME of an environment variable") as err:
        ChatClient("http://127.0.0.1:9/v1", "m", api_key_env=value)
    assert value not in str(err.value)


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-stub")


def test_cache_hit_makes_no_request(tmp_path):
    with StubChat(echo) as stub:
        first = ChatClient(stub.base_url, "m", cache_dir=tmp_path)
        assert first.chat(MESSAGES, temperature=0) == "hi: Say hi"
        second = ChatClient(stub.base_url, "m", cache_dir=tmp_path)  # a rerun: a fresh client, same cache
        assert second.chat(MESSAGES, temperature=0) == "hi: Say hi"
        # Different params or model are different keys.
        assert second.chat(MESSAGES, temperature=0.5) == "hi: Say hi"
    assert len(stub.requests) == 2
    assert second.stats.requests == 1 and second.stats.cache_hits == 1
    assert cache_key("m", MESSAGES, {"temperature": 0}) != cache_key("m2", MESSAGES, {"temperature": 0})
    # the endpoint and the namespace (a judge's rubric version) are part of the key
    assert cache_key("m", MESSAGES, {}, "http://a/v1") != cache_key("m", MESSAGES, {}, "http://b/v1")
    assert cache_key("m", MESSAGES, {}, "http://a/v1", "rubric-1") != cache_key("m", MESSAGES, {}, "http://a/v1", "rubric-2")
    assert (tmp_path / cache_key("m", MESSAGES, {"temperature": 0}, stub.base_url)[:2]).is_dir()


def test_same_request_to_another_endpoint_is_not_served_from_cache(tmp_path):
    with StubChat(echo) as a, StubChat(lambda b: (200, completion("other"))) as b:
        assert ChatClient(a.base_url, "m", cache_dir=tmp_path).chat(MESSAGES) == "hi: Say hi"
        assert ChatClient(b.base_url, "m", cache_dir=tmp_path).chat(MESSAGES) == "other"


def test_reply_rejected_by_validate_is_not_cached(tmp_path):
    def must_be_json(text):
        json.loads(text)

    with StubChat(lambda b: (200, completion("not json"))) as stub:
        client = ChatClient(stub.base_url, "m", cache_dir=tmp_path)
        assert client.chat(MESSAGES, validate=must_be_json) == "not json"
        assert client.chat(MESSAGES, validate=must_be_json) == "not json"
    assert len(stub.requests) == 2 and not list(tmp_path.rglob("*.json"))


def test_timeout_then_retry_succeeds(tmp_path):
    with StubChat(echo) as stub:
        stub.slow_next, stub.delay_s = 1, 1.0
        client = ChatClient(stub.base_url, "m", timeout_s=0.2, max_retries=2)
        assert client.chat(MESSAGES) == "hi: Say hi"
    assert client.stats.requests == 2 and client.stats.retries == 1 and client.stats.failures == 0


def test_gives_up_after_max_retries():
    with StubChat(lambda body: (503, "busy")) as stub:
        client = ChatClient(stub.base_url, "m", max_retries=2)
        with pytest.raises(ChatError, match="HTTP 503"):
            client.chat(MESSAGES)
    assert len(stub.requests) == 3 and client.stats.retries == 2 and client.stats.failures == 1


def test_client_error_is_not_retried():
    with StubChat(lambda body: (400, '{"error": "bad request"}')) as stub:
        client = ChatClient(stub.base_url, "m", max_retries=3)
        with pytest.raises(ChatError, match="HTTP 400"):
            client.chat(MESSAGES)
    assert len(stub.requests) == 1 and client.stats.failures == 1


@pytest.mark.parametrize("body", ["not json at all", '{"choices": []}', '{"choices": [{"message": {"content": 3}}]}'])
def test_malformed_reply_fails_and_is_not_cached(tmp_path, body):
    with StubChat(lambda b: (200, body)) as stub:
        client = ChatClient(stub.base_url, "m", cache_dir=tmp_path)
        with pytest.raises(ChatError, match="malformed|not text|HTTP"):
            client.chat(MESSAGES)
    assert client.stats.failures == 1 and not list(tmp_path.rglob("*.json"))


def test_damaged_cache_entry_is_refetched(tmp_path):
    with StubChat(echo) as stub:
        client = ChatClient(stub.base_url, "m", cache_dir=tmp_path)
        client.chat(MESSAGES)
        (entry,) = tmp_path.rglob("*.json")
        entry.write_text("{truncated")
        assert client.chat(MESSAGES) == "hi: Say hi"
    assert len(stub.requests) == 2


def test_batch_submit_poll_collect(tmp_path):
    requests = tmp_path / "requests.jsonl"
    requests.write_text("".join(json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
                                            "body": {"model": "m", "messages": [{"role": "user", "content": cid}]}})
                                + "\n" for cid in ("a", "b")))
    with StubChat(echo) as stub:
        stub.batch_polls_pending = 2
        client = ChatClient(stub.base_url, "m")
        bid = client.submit_batch(requests)
        batch = client.wait_batch(bid, poll_s=0.0, max_polls=5)
        rows = client.batch_output(batch)
    assert [r["custom_id"] for r in rows] == ["a", "b"]
    assert rows[1]["response"]["body"]["choices"][0]["message"]["content"] == "hi: b"
    assert [p for p in stub.paths if "batches/" in p] == [f"GET /v1/batches/{bid}"] * 3


def test_batch_not_done_after_max_polls_is_an_error(tmp_path):
    requests = tmp_path / "requests.jsonl"
    requests.write_text(json.dumps({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
                                    "body": {"model": "m", "messages": MESSAGES}}) + "\n")
    with StubChat(echo) as stub:
        stub.batch_polls_pending = 10
        client = ChatClient(stub.base_url, "m")
        bid = client.submit_batch(requests)
        with pytest.raises(ChatError, match="not done after 2 polls"):
            client.wait_batch(bid, poll_s=0.0, max_polls=2)
