"""Synchronous client (Python >= 3.8, standard library only).

It retries 502/503/504, timeouts and connection errors with exponential backoff and honours the server's
Retry-After (the service sheds load with 503 + Retry-After; scoring has no side effects, so retrying is safe).
Other 4xx/5xx raise RewardServiceError at once.
"""
import email.utils
import json
import random
import socket
import time
import urllib.error
import urllib.parse
import urllib.request

RETRYABLE_STATUS = frozenset({502, 503, 504})


class RewardServiceError(Exception):
    """A refusal from the service (status and error code from its {error: {code, message}} body)."""

    def __init__(self, status, code, message, attempts):
        super().__init__("%s %s: %s" % (status, code, message))
        self.status = status
        self.code = code
        self.message = message
        self.attempts = attempts
        self.retry_after = None


class Response:
    """What request() returns for any route: status, headers (lower-case names), raw body."""

    def __init__(self, status, headers, content):
        self.status = status
        self.headers = headers
        self.content = content

    @property
    def content_type(self):
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    @property
    def text(self):
        return self.content.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.content) if self.content else {}

    def __repr__(self):
        return "Response(%d, %s, %d bytes)" % (self.status, self.content_type or "-", len(self.content))


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


def read_error(raw, status):
    """(code, message) of an error answer; non-JSON bodies (a proxy's HTML page) keep their first bytes."""
    try:
        err = json.loads(raw).get("error") or {}
        if err.get("code"):
            return err["code"], err.get("message", "")
    except (ValueError, AttributeError):
        pass
    return "http_%d" % status, raw[:200].decode("utf-8", "replace")


def get_reward_body(query=None, prompts=None, labels=None, messages=None, template=None, options=None, model=None,
                    group=None):
    body = {}
    if group is not None:
        body["group"] = group
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
    if model is not None:
        body["model"] = model
    return body


def _id_key(x):
    """The service tells group ids apart by JSON type: the number 7 and the string "7" are different groups."""
    return (isinstance(x, str), x)


def chunks(n, size, group=None):
    """[(start, end)] covering range(n) in pieces of at most `size` (one piece when size is falsy) that never
    split a GRPO group: with a group size, a multiple of it; with group ids, cut only where no id continues
    past the cut (groups laid out one after the other, as trainers do; a piece may exceed `size` when one
    group does, and interleaved ids make one piece)."""
    if not size or n <= size:
        return [(0, n)]
    if group and group.get("ids") is not None:
        ids = list(group["ids"])
        last = {_id_key(x): i for i, x in enumerate(ids)}
        out, start, cut, reach = [], 0, 0, -1
        for i, x in enumerate(ids):
            reach = max(reach, last[_id_key(x)])
            if reach == i:  # every group seen so far ends here: a cut after i keeps them whole
                if i + 1 - start > size and cut > start:
                    out.append((start, cut))
                    start = cut
                cut = i + 1
        return out + [(start, n)]
    if group:
        g = int(group["size"])
        size = max(g, size // g * g)
    return [(i, min(n, i + size)) for i in range(0, n, size)]


def chunk_group(group, a, b):
    """The group spec of the piece [a, b): group ids are per sample, so they are sliced with the samples."""
    if not group or group.get("ids") is None:
        return group
    return dict(group, ids=list(group["ids"])[a:b])


def merge_get_reward(parts):
    """One /get_reward answer from the answers of consecutive chunks (lists concatenated key by key)."""
    if len(parts) == 1:
        return parts[0]
    out = dict(parts[0])
    for key in ("rewards", "scores", "templates"):
        if key in out:
            out[key] = [v for p in parts for v in p.get(key, [])]
    out["extra_logs"] = {k: [v for p in parts for v in p["extra_logs"].get(k, [])] for k in parts[0].get("extra_logs", {})}
    if "advantages" in out:
        adv = dict(out["advantages"])
        offset, groups = 0, []
        for p in parts:
            g = p["advantages"]["group"]
            groups += [x + offset for x in g]
            offset += max(g) + 1 if g else 0
        for k in ("grpo", "dr_grpo", "group_mean", "group_std", "ids"):
            if k in adv:
                adv[k] = [v for p in parts for v in p["advantages"][k]]
        adv["group"] = groups
        out["advantages"] = adv
    return out


class _Base:
    def __init__(self, base_url, api_key=None, max_attempts=6, timeout=180.0, initial_delay=0.25, max_delay=8.0,
                 max_retry_after=60.0, model=None, chunk_size=None):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.max_attempts = max_attempts
        self.timeout = timeout
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.max_retry_after = max_retry_after
        # Default model for every call (a call's own `model` wins); None = the server's default model.
        self.model = model
        # /get_reward samples per request (None = all in one; the service takes whole rollouts).
        self.chunk_size = chunk_size

    def _model(self, model):
        return model if model is not None else self.model

    def _prepare(self, method, path, body, params, headers, content_type):
        url = self.base_url + path
        if params:
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        hdrs = {"accept": "application/json, */*;q=0.5"}
        if body is None:
            data = None
        elif isinstance(body, (bytes, bytearray)):
            data = bytes(body)
            hdrs["content-type"] = content_type or "application/octet-stream"
        else:
            data = json.dumps(body).encode("utf-8")
            hdrs["content-type"] = content_type or "application/json"
        if self.api_key:
            hdrs["authorization"] = "Bearer " + self.api_key
        hdrs.update(headers or {})
        return url, data, hdrs

    def _delay(self, attempt, retry_after):
        return retry_delay(attempt, retry_after, self.initial_delay, self.max_delay, self.max_retry_after)


class RewardClient(_Base):
    """Blocking client. Every scoring call takes `model` (name or name/version; default: the client's)."""

    def __init__(self, base_url, api_key=None, max_attempts=6, timeout=180.0, initial_delay=0.25, max_delay=8.0,
                 max_retry_after=60.0, sleep=time.sleep, model=None, chunk_size=None):
        super().__init__(base_url, api_key, max_attempts, timeout, initial_delay, max_delay, max_retry_after, model, chunk_size)
        self._sleep = sleep

    # --- endpoints -------------------------------------------------------------------------------------
    def get_reward(self, query=None, prompts=None, labels=None, messages=None, template=None, options=None, model=None,
                   chunk_size=None, group=None):
        """OpenRLHF-style call: returns {"rewards": [...], "scores": [...], "extra_logs": {...}}. With
        chunk_size (or the client's), long lists go in several requests, answers merged in order. group
        ({"size": 8} or {"ids": [...]}, optional "on": "raw" | "shaped", "epsilon") adds GRPO advantages
        (answer["advantages"]["grpo"], ["dr_grpo"]; also extra_logs "advantage"); chunks keep groups whole."""
        n = len(query) if query is not None else len(messages or [])
        parts = []
        for a, b in chunks(n, chunk_size or self.chunk_size, group):
            body = get_reward_body(
                query=None if query is None else list(query)[a:b],
                prompts=None if prompts is None else list(prompts)[a:b] if len(prompts) else [],
                labels=labels[a:b] if isinstance(labels, (list, tuple)) else labels,
                messages=None if messages is None else messages[a:b],
                template=template, options=options, model=self._model(model), group=chunk_group(group, a, b))
            parts.append(self.post_json("/get_reward", body))
        return merge_get_reward(parts)

    def score(self, items, model=None, **extra):
        return self.post_json("/v1/score", dict(extra, items=items, **_opt_model(self._model(model))))

    def step_scores(self, messages, steps, model=None):
        """The reward after each step of the response (the last message), in one pass: steps = a list of steps
        (their concatenation is the response) or {"separator": "\\n\\n"}."""
        res = self.score([{"messages": messages, "steps": steps}], model=model)
        return res["results"][0]["step_scores"]

    def compare(self, body, model=None):
        return self.post_json("/v1/compare", dict(body, **_opt_model(self._model(model))))

    def rank(self, body, model=None, group=None):
        """/v1/rank. group ({"size": n} or {"ids": [...]}, optional "on": "raw" | "normalized", "epsilon") adds
        the candidates' GRPO advantages (answer["advantages"]["grpo"], ["dr_grpo"])."""
        extra = {} if group is None else {"group": group}
        return self.post_json("/v1/rank", dict(body, **extra, **_opt_model(self._model(model))))

    def models(self):
        return self.request("GET", "/v1/models").json()

    def post_json(self, path, body):
        return self.request("POST", path, body).json()

    # --- transport -------------------------------------------------------------------------------------
    def request(self, method, path, body=None, params=None, headers=None, content_type=None):
        """Any route. `body`: JSON-able object, or bytes (sent as `content_type`). Returns a Response (use
        .json() for JSON routes, .text for /metrics). Retries 502/503/504 and network errors; raises
        RewardServiceError for other statuses >= 400."""
        url, data, hdrs = self._prepare(method, path, body, params, headers, content_type)
        attempt = 0
        while True:
            attempt += 1
            req = urllib.request.Request(url, data=data, headers=hdrs, method=method)
            retry_after = None
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as res:
                    return Response(res.status, {k.lower(): v for k, v in res.headers.items()}, res.read())
            except urllib.error.HTTPError as err:
                raw = err.read()
                code, message = read_error(raw, err.code)
                retry_after = parse_retry_after(err.headers.get("retry-after"))
                if err.code not in RETRYABLE_STATUS or attempt >= self.max_attempts:
                    failure = RewardServiceError(err.code, code, message, attempt)
                    failure.retry_after = retry_after
                    raise failure
            except (urllib.error.URLError, socket.timeout, ConnectionError, TimeoutError) as err:
                if attempt >= self.max_attempts:
                    raise RewardServiceError(0, "unreachable", "%s %s: %s after %d attempts" % (method, url, err, attempt), attempt)
            self._sleep(self._delay(attempt, retry_after))


def _opt_model(model):
    return {} if model is None else {"model": model}
