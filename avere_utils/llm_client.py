"""A small client for any OpenAI-compatible chat endpoint (`POST {base_url}/chat/completions`).

Used by the preference-pair LLM generator and by the EMER judge.  What it adds over a bare HTTP call:

* a timeout per request, and retries with exponential backoff on transient failures (connection errors,
  timeouts, HTTP 408/409/429/5xx); other HTTP errors and malformed replies fail at once, because
  asking again would give the same answer;
* an on-disk cache keyed by sha256 of (model, messages, params), so that a rerun costs no requests;
* the API key is read from the environment variable *named* by `api_key_env` at request time and is
  never stored on the object, in the cache, or in any error message (papermill writes params into the
  executed notebook, so a key must never be a param);
* counters (`stats`) of requests, cache hits, retries and failures, for the caller's report.

Only the standard library is used (urllib), so no extra dependency is needed.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RETRYABLE_HTTP = frozenset({408, 409, 429, 500, 502, 503, 504})


class ChatError(RuntimeError):
    """A chat request that failed for good (after retries, or at once when retrying cannot help)."""


@dataclass
class ChatStats:
    requests: int = 0  # HTTP attempts actually sent (a retry counts again)
    cache_hits: int = 0
    retries: int = 0
    failures: int = 0  # calls to chat() that raised ChatError

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def cache_key(model: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of (model, messages, params)."""
    blob = json.dumps({"model": model, "messages": messages, "params": params},
                      sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ChatClient:
    """`ChatClient(base_url, model).chat([{"role": "user", "content": "..."}], temperature=0) -> str`."""

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY",
                 cache_dir: str | os.PathLike | None = None, timeout_s: float = 30,
                 max_retries: int = 3, backoff_s: float = 0.5):
        if not base_url:
            raise ValueError("ChatClient needs a base_url such as http://127.0.0.1:8000/v1")
        if max_retries < 0 or timeout_s <= 0 or backoff_s < 0:
            raise ValueError(f"ChatClient: bad timeout_s={timeout_s}, max_retries={max_retries} or backoff_s={backoff_s}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.backoff_s = float(backoff_s)
        self.stats = ChatStats()
        self._lock = threading.Lock()  # chat() may be called from several threads (stats, cache files)

    def __repr__(self) -> str:  # no key here: it is never held by the object
        return (f"ChatClient(base_url={self.base_url!r}, model={self.model!r}, "
                f"api_key_env={self.api_key_env!r}, cache_dir={str(self.cache_dir) if self.cache_dir else None!r})")

    # --- cache -----------------------------------------------------------------------------------------
    def _cache_path(self, key: str) -> Path | None:
        return self.cache_dir / key[:2] / f"{key}.json" if self.cache_dir else None

    def _cache_get(self, key: str) -> str | None:
        path = self._cache_path(key)
        if path is None or not path.is_file():
            return None
        try:
            return json.loads(path.read_text())["content"]
        except (OSError, ValueError, KeyError, TypeError) as e:  # a damaged entry is refetched, not trusted
            log.warning("LLM cache entry %s unreadable (%s); asking the endpoint again", path, e)
            return None

    def _cache_put(self, key: str, messages: list[dict[str, Any]], params: dict[str, Any], content: str) -> None:
        path = self._cache_path(key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.{threading.get_ident()}")
        tmp.write_text(json.dumps({"model": self.model, "messages": messages, "params": params,
                                   "content": content}, ensure_ascii=False, indent=1))
        os.replace(tmp, path)

    # --- requests --------------------------------------------------------------------------------------
    def _post(self, body: bytes) -> bytes:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(f"{self.base_url}/chat/completions", data=body, headers=headers, method="POST")
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
            return resp.read()

    def _parse(self, raw: bytes) -> str:
        try:
            content = json.loads(raw)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise ChatError(f"{self.base_url}: malformed chat completion reply ({type(e).__name__}: "
                            f"{raw[:200]!r})") from None
        if not isinstance(content, str):
            raise ChatError(f"{self.base_url}: reply content is {type(content).__name__}, not text")
        return content

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self.stats, name, getattr(self.stats, name) + 1)

    def chat(self, messages: list[dict[str, Any]], **params: Any) -> str:
        """The assistant's reply text.  `params` (temperature, max_tokens, ...) go into the request body."""
        key = cache_key(self.model, messages, params)
        cached = self._cache_get(key)
        if cached is not None:
            self._count("cache_hits")
            return cached
        body = json.dumps({"model": self.model, "messages": messages, **params}).encode("utf-8")
        last_error = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                self._count("retries")
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            self._count("requests")
            try:
                raw = self._post(body)
            except urllib.error.HTTPError as e:
                last_error = f"HTTP {e.code} {e.reason}"
                if e.code in RETRYABLE_HTTP:
                    log.info("%s: %s (attempt %d/%d)", self.base_url, last_error, attempt + 1, self.max_retries + 1)
                    continue
                self._count("failures")
                raise ChatError(f"{self.base_url}: {last_error} (not retried)") from None
            except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as e:
                reason = getattr(e, "reason", e)
                last_error = f"{type(reason).__name__}: {reason}"
                log.info("%s: %s (attempt %d/%d)", self.base_url, last_error, attempt + 1, self.max_retries + 1)
                continue
            try:
                content = self._parse(raw)
            except ChatError:
                self._count("failures")
                raise
            self._cache_put(key, messages, params, content)
            return content
        self._count("failures")
        raise ChatError(f"{self.base_url}: gave up after {self.max_retries + 1} attempts ({last_error})")
