"""Standard-library client for the reward service (Python >= 3.8, no third-party packages).

Copy this one file next to your training code. It retries 502/503/504, timeouts and connection errors with
exponential backoff and honours the server's Retry-After (the service sheds load with 503 + Retry-After;
scoring has no side effects, so retrying is safe). Other 4xx/5xx raise RewardServiceError at once.

    from reward_client import RewardClient
    rm = RewardClient("http://127.0.0.1:8080")
    rm.get_reward(query=["<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\nHello!<|im_end|>"])
    rm.score([{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}])
"""

import email.utils
import json
import random
import socket
import time
import urllib.error
import urllib.request

__all__ = ["RewardClient", "RewardServiceError", "parse_retry_after", "retry_delay"]

RETRYABLE_STATUS = frozenset({502, 503, 504})


class RewardServiceError(Exception):
    """A refusal from the service (status and error code from its {error: {code, message}} body)."""

    def __init__(self, status, code, message, attempts):
        super().__init__("%s %s: %s" % (status, code, message))
        self.status = status
        self.code = code
        self.message = message
        self.attempts = attempts


def parse_retry_after(value, now=None):
    """Retry-After as seconds (delta-seconds or an HTTP-date), or None when absent or malformed."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        at = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if at is None:
        return None
    now = time.time() if now is None else now
    return max(0.0, at.timestamp() - now)


def retry_delay(retry, retry_after, initial_delay=0.25, max_delay=8.0, max_retry_after=60.0, rand=random.random):
    """Seconds to wait before retry number `retry` (1-based). The server's Retry-After wins (capped);
    otherwise exponential backoff with equal jitter, so many refused workers do not return in lockstep."""
    if retry_after is not None:
        return min(retry_after, max_retry_after)
    cap = min(max_delay, initial_delay * (2 ** max(0, retry - 1)))
    return cap / 2 + cap / 2 * rand()


class RewardClient:
    def __init__(self, base_url, api_key=None, max_attempts=6, timeout=180.0, initial_delay=0.25,
                 max_delay=8.0, max_retry_after=60.0, sleep=time.sleep):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.max_attempts = max_attempts
        self.timeout = timeout
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.max_retry_after = max_retry_after
        self._sleep = sleep

    # --- endpoints -------------------------------------------------------------------------------------
    def get_reward(self, query=None, prompts=None, labels=None, messages=None, template=None, options=None):
        """OpenRLHF-style call: returns {"rewards": [...], "scores": [...], "extra_logs": {...}}."""
        body = {}
        if query is not None:
            body["query"] = list(query)
            body["prompts"] = list(prompts) if prompts is not None else []
            body["labels"] = labels
        if messages is not None:
            body["messages"] = messages
        if template is not None:
            body["template"] = template
        if options is not None:
            body["options"] = options
        return self.request("POST", "/get_reward", body)

    def score(self, items, **extra):
        return self.request("POST", "/v1/score", dict(extra, items=items))

    def compare(self, body):
        return self.request("POST", "/v1/compare", body)

    def rank(self, body):
        return self.request("POST", "/v1/rank", body)

    def models(self):
        return self.request("GET", "/v1/models")

    # --- transport -------------------------------------------------------------------------------------
    def request(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"accept": "application/json"}
        if data is not None:
            headers["content-type"] = "application/json"
        if self.api_key:
            headers["authorization"] = "Bearer " + self.api_key
        attempt = 0
        while True:
            attempt += 1
            req = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
            retry_after = None
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as res:
                    raw = res.read()
                    return json.loads(raw) if raw else {}
            except urllib.error.HTTPError as err:
                raw = err.read()
                code, message = _read_error(raw, err.code)
                if err.code not in RETRYABLE_STATUS or attempt >= self.max_attempts:
                    raise RewardServiceError(err.code, code, message, attempt)
                retry_after = parse_retry_after(err.headers.get("retry-after"))
            except (urllib.error.URLError, socket.timeout, ConnectionError, TimeoutError) as err:
                if attempt >= self.max_attempts:
                    raise RewardServiceError(0, "unreachable", "%s %s%s: %s after %d attempts"
                                             % (method, self.base_url, path, err, attempt), attempt)
            self._sleep(retry_delay(attempt, retry_after, self.initial_delay, self.max_delay, self.max_retry_after))


def _read_error(raw, status):
    try:
        err = json.loads(raw).get("error") or {}
        if err.get("code"):
            return err["code"], err.get("message", "")
    except (ValueError, AttributeError):
        pass
    return "http_%d" % status, raw[:200].decode("utf-8", "replace")
