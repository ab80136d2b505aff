"""A client for any OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp, ...), built on the `openai` package.

Used by the preference-pair LLM generator and by the EMER judge.  The `openai` client brings base_url,
timeouts and retries with backoff on transient failures (connection errors, timeouts, 408/409/429/5xx;
other errors fail at once).  What this module adds:

* the API key comes from the environment variable *named* by `api_key_env` and is checked before the
  first request (a missing key fails at once, naming the variable, instead of 401s on every item); it is
  never stored in the cache or in any message (papermill writes params into the executed notebook, so a
  key must never be a param).  `api_key_env=""` means a server without keys (a local vLLM);
* an on-disk cache keyed by sha256 of (base_url, model, namespace, messages, params), where `namespace`
  is e.g. the judge's rubric version.  A reply is cached only when the caller's `validate` accepts it,
  so an unparseable reply is asked again next time instead of being replayed forever;
* counters (`stats`) of HTTP requests, cache hits, retries and failures, for the caller's report;
* the Batch API: submit a requests file, poll it a bounded number of times, collect the replies.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)

BATCH_DONE = ("completed", "failed", "expired", "cancelled")


class ChatError(RuntimeError):
    """A chat request that failed for good (after retries, or at once when retrying cannot help)."""


class MissingKeyError(ChatError):
    """The environment variable that should hold the API key is not set."""


@dataclass
class ChatStats:
    requests: int = 0  # HTTP requests actually sent (a retry counts again)
    cache_hits: int = 0
    retries: int = 0
    failures: int = 0  # calls to chat() that raised ChatError

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def cache_key(model: str, messages: list[dict[str, Any]], params: dict[str, Any], base_url: str = "",
              namespace: str = "") -> str:
    """sha256 of the canonical JSON of (base_url, model, namespace, messages, params)."""
    blob = json.dumps({"base_url": base_url.rstrip("/"), "model": model, "namespace": namespace,
                       "messages": messages, "params": params},
                      sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def api_key_from_env(api_key_env: str, base_url: str) -> str | None:
    """The key held by the variable `api_key_env` (None for a keyless server: api_key_env == "")."""
    from avere_utils.config import ConfigError, check_env_name

    try:
        check_env_name(api_key_env, "api_key_env")
    except ConfigError as e:
        raise ValueError(str(e)) from None
    if not api_key_env:
        return None
    key = os.environ.get(api_key_env, "")
    if not key:
        raise MissingKeyError(f"environment variable {api_key_env} is not set: it must hold the API key for "
                              f"{base_url} (or set the *_api_key_env parameter to '' for a server without keys)")
    return key


class ChatClient:
    """`ChatClient(base_url, model).chat([{"role": "user", "content": "..."}], temperature=0) -> str`."""

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY",
                 cache_dir: str | os.PathLike | None = None, timeout_s: float = 30,
                 max_retries: int = 3, namespace: str = ""):
        if not base_url:
            raise ValueError("ChatClient needs a base_url such as http://127.0.0.1:8000/v1")
        if max_retries < 0 or timeout_s <= 0:
            raise ValueError(f"ChatClient: bad timeout_s={timeout_s} or max_retries={max_retries}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.namespace = namespace
        self.stats = ChatStats()
        self._lock = threading.Lock()  # chat() may be called from several threads (stats, cache files)
        self._client: Any = None
        api_key_from_env(api_key_env, self.base_url)  # fail now, before any request, when the key is missing

    def __repr__(self) -> str:  # no key here: it is never held by this object
        return (f"ChatClient(base_url={self.base_url!r}, model={self.model!r}, "
                f"api_key_env={self.api_key_env!r}, cache_dir={str(self.cache_dir) if self.cache_dir else None!r})")

    def _openai(self) -> Any:
        if self._client is None:
            import httpx2
            import openai

            def count(request: Any) -> None:
                self._count("requests")

            key = api_key_from_env(self.api_key_env, self.base_url) or "no-key"
            # the key lives inside the openai client only (not in vars(self) beyond that object)
            self._client = openai.OpenAI(api_key=key, base_url=self.base_url, timeout=self.timeout_s,
                                         max_retries=self.max_retries,
                                         http_client=httpx2.Client(event_hooks={"request": [count]}))
        return self._client

    # --- cache -----------------------------------------------------------------------------------------
    def _cache_path(self, key: str) -> Path | None:
        return self.cache_dir / key[:2] / f"{key}.json" if self.cache_dir else None

    def _cache_get(self, key: str, validate: Callable[[str], Any] | None) -> str | None:
        path = self._cache_path(key)
        if path is None or not path.is_file():
            return None
        try:
            content = json.loads(path.read_text())["content"]
            if not isinstance(content, str):
                raise TypeError("content is not text")
            if validate is not None:
                validate(content)  # an entry written before a stricter rule: asked again
        except (OSError, ValueError, KeyError, TypeError) as e:  # a damaged or bad entry is refetched
            log.warning("LLM cache entry %s not usable (%s); asking the endpoint again", path, e)
            return None
        return content

    def _cache_put(self, key: str, messages: list[dict[str, Any]], params: dict[str, Any], content: str) -> None:
        path = self._cache_path(key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.{threading.get_ident()}")
        tmp.write_text(json.dumps({"base_url": self.base_url, "model": self.model, "namespace": self.namespace,
                                   "messages": messages, "params": params, "content": content},
                                  ensure_ascii=False, indent=1))
        os.replace(tmp, path)

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self.stats, name, getattr(self.stats, name) + n)

    def _fail(self, message: str) -> ChatError:
        self._count("failures")
        return ChatError(f"{self.base_url}: {message}")

    # --- chat ------------------------------------------------------------------------------------------
    def chat(self, messages: list[dict[str, Any]], *, validate: Callable[[str], Any] | None = None,
             **params: Any) -> str:
        """The assistant's reply text.  `params` (temperature, max_tokens, ...) go into the request body.

        `validate(content)` raising ValueError keeps the reply out of the cache (it is still returned,
        for the caller to count)."""
        import openai

        key = cache_key(self.model, messages, params, self.base_url, self.namespace)
        cached = self._cache_get(key, validate)
        if cached is not None:
            self._count("cache_hits")
            return cached
        client = self._openai()
        before = self.stats.requests
        try:
            reply = client.chat.completions.create(model=self.model, messages=messages, **params)
        except openai.APIStatusError as e:
            raise self._fail(f"HTTP {e.status_code} ({_short(e)})") from None
        except openai.APITimeoutError:
            raise self._fail(f"timed out after {self.max_retries + 1} attempts ({self.timeout_s:g} s each)") from None
        except openai.APIConnectionError as e:
            raise self._fail(f"gave up after {self.max_retries + 1} attempts ({_short(e)})") from None
        except (openai.OpenAIError, ValueError) as e:  # e.g. a 200 reply that is not JSON
            raise self._fail(f"malformed chat completion reply ({type(e).__name__}: {_short(e)})") from None
        finally:
            self._count("retries", max(0, self.stats.requests - before - 1))
        try:
            content = reply.choices[0].message.content
        except (AttributeError, IndexError, TypeError) as e:
            raise self._fail(f"malformed chat completion reply ({type(e).__name__}: {e})") from None
        if not isinstance(content, str):
            raise self._fail(f"reply content is {type(content).__name__}, not text")
        if validate is not None:
            try:
                validate(content)
            except ValueError:
                return content  # not cached: a rerun asks again
        self._cache_put(key, messages, params, content)
        return content

    # --- Batch API -------------------------------------------------------------------------------------
    def submit_batch(self, requests_file: str | os.PathLike, description: str = "") -> str:
        """Upload a Batch-API requests file (one JSON request per line) and start the batch; its id."""
        import openai

        client = self._openai()
        try:
            with open(requests_file, "rb") as f:
                uploaded = client.files.create(file=f, purpose="batch")
            batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                          completion_window="24h",
                                          metadata={"description": description or Path(requests_file).name})
        except openai.OpenAIError as e:
            raise self._fail(f"batch submission failed ({type(e).__name__}: {_short(e)})") from None
        log.info("batch %s submitted (%s)", batch.id, requests_file)
        return batch.id

    def wait_batch(self, batch_id: str, *, poll_s: float = 10.0, max_polls: int = 8640) -> Any:
        """Poll until the batch is done, at most `max_polls` times (a count, so no clock decides)."""
        import openai

        client = self._openai()
        for n in range(max_polls):
            try:
                batch = client.batches.retrieve(batch_id)
            except openai.OpenAIError as e:
                raise self._fail(f"batch {batch_id}: status request failed ({_short(e)})") from None
            if batch.status in BATCH_DONE:
                if batch.status != "completed":
                    raise self._fail(f"batch {batch_id} ended with status {batch.status!r}")
                return batch
            log.info("batch %s: %s (poll %d/%d)", batch_id, batch.status, n + 1, max_polls)
            time.sleep(poll_s)
        raise self._fail(f"batch {batch_id} not done after {max_polls} polls; rerun to keep waiting")

    def batch_output(self, batch: Any) -> list[dict[str, Any]]:
        """The output rows of a completed batch (one dict per request: custom_id, response, error)."""
        import openai

        client = self._openai()
        rows: list[dict[str, Any]] = []
        try:
            for file_id in (batch.output_file_id, getattr(batch, "error_file_id", None)):
                if file_id:
                    text = client.files.content(file_id).text
                    rows += [json.loads(line) for line in text.splitlines() if line.strip()]
        except (openai.OpenAIError, ValueError) as e:
            raise self._fail(f"batch {batch.id}: output unreadable ({_short(e)})") from None
        return rows


def _short(e: Exception) -> str:
    return str(e).replace("\n", " ")[:200]
