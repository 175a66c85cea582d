"""Python client retry behaviour against a real local HTTP server that refuses first (stdlib only).

Run: python3 -m unittest discover -s clients/python/tests   (also collected by pytest)
"""
import http.server
import json
import os
import sys
import threading
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from reward_client import RewardClient, RewardServiceError, parse_retry_after, retry_delay  # noqa: E402

OK = {"rewards": [0.5], "scores": [0.62], "extra_logs": {}}


class ScriptedServer:
    """Answers each request with the next scripted (status, headers, body); the last entry repeats."""

    def __init__(self, script):
        self.script = script
        self.seen = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self):
                length = int(self.headers.get("content-length") or 0)
                outer.seen.append((self.command, self.path, self.rfile.read(length), self.headers.get("authorization")))
                status, headers, body = outer.script[min(len(outer.seen) - 1, len(outer.script) - 1)]
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

            do_GET = _answer
            do_POST = _answer

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class RetryTest(unittest.TestCase):
    def serve(self, script):
        srv = ScriptedServer(script)
        self.addCleanup(srv.close)
        return srv

    def test_503_retry_after_then_504_then_ok(self):
        srv = self.serve([
            (503, {"retry-after": "2"}, {"error": {"code": "overloaded", "message": "queue full"}}),
            (504, {}, {"error": {"code": "timeout", "message": "deadline"}}),
            (200, {}, OK),
        ])
        sleeps = []
        client = RewardClient(srv.url, api_key="k1", initial_delay=0.1, sleep=sleeps.append)
        res = client.get_reward(query=["q"], prompts=["p"])
        self.assertEqual(res, OK)
        self.assertEqual(len(srv.seen), 3)
        self.assertEqual(sleeps[0], 2.0)  # Retry-After honoured
        self.assertTrue(0.1 <= sleeps[1] <= 0.2)  # backoff for retry 2: cap 0.2, equal jitter
        method, path, body, auth = srv.seen[-1]
        self.assertEqual((method, path, auth), ("POST", "/get_reward", "Bearer k1"))
        self.assertEqual(json.loads(body), {"query": ["q"], "prompts": ["p"], "labels": None})

    def test_gives_up_after_max_attempts(self):
        srv = self.serve([(503, {"retry-after": "1"}, {"error": {"code": "overloaded", "message": "x"}})])
        client = RewardClient(srv.url, max_attempts=3, sleep=lambda s: None)
        with self.assertRaises(RewardServiceError) as ctx:
            client.score([])
        self.assertEqual((ctx.exception.status, ctx.exception.code, ctx.exception.attempts), (503, "overloaded", 3))
        self.assertEqual(len(srv.seen), 3)

    def test_4xx_not_retried(self):
        srv = self.serve([(422, {}, {"error": {"code": "invalid_request", "message": "bad"}})])
        client = RewardClient(srv.url, sleep=lambda s: self.fail("must not sleep"))
        with self.assertRaises(RewardServiceError) as ctx:
            client.rank({})
        self.assertEqual(ctx.exception.code, "invalid_request")
        self.assertEqual(len(srv.seen), 1)

    def test_connection_refused_retried_then_unreachable(self):
        sleeps = []
        client = RewardClient("http://127.0.0.1:1", max_attempts=2, sleep=sleeps.append)
        with self.assertRaises(RewardServiceError) as ctx:
            client.models()
        self.assertEqual(ctx.exception.code, "unreachable")
        self.assertEqual(len(sleeps), 1)

    def test_retry_after_and_delay_tables(self):
        self.assertEqual(parse_retry_after("3"), 3.0)
        self.assertIsNone(parse_retry_after("soon"))
        self.assertIsNone(parse_retry_after(None))
        now = 1795656000.0  # Thu, 26 Nov 2026 01:20:00 GMT
        self.assertAlmostEqual(parse_retry_after("Thu, 26 Nov 2026 01:20:07 GMT", now=now), 7.0, places=6)
        self.assertEqual(retry_delay(1, 120.0, max_retry_after=60.0), 60.0)
        self.assertEqual(retry_delay(3, None, initial_delay=0.1, max_delay=1.0, rand=lambda: 1.0), 0.4)
        self.assertEqual(retry_delay(9, None, initial_delay=0.1, max_delay=1.0, rand=lambda: 0.0), 0.5)


if __name__ == "__main__":
    unittest.main()


class GroupAdvantageChunks(unittest.TestCase):
    def test_chunks_keep_groups_whole_and_merge_offsets_groups(self):
        from reward_client._sync import group_chunk_size, merge_get_reward

        self.assertEqual(group_chunk_size(10, {"size": 4}), 8)
        self.assertEqual(group_chunk_size(3, {"size": 4}), 4)
        self.assertIsNone(group_chunk_size(10, {"ids": ["a", "b"]}))
        self.assertEqual(group_chunk_size(10, None), 10)

        def part(vals, groups):
            adv = {"on": "shaped", "epsilon": 1e-4, "size": 2, "group": groups, "grpo": vals, "dr_grpo": vals,
                   "group_mean": vals, "group_std": vals}
            return {"rewards": vals, "scores": vals, "extra_logs": {"advantage": vals}, "advantages": adv}

        m = merge_get_reward([part([1, -1, 1, -1], [0, 0, 1, 1]), part([-1, 1], [0, 0])])
        self.assertEqual(m["advantages"]["group"], [0, 0, 1, 1, 2, 2])
        self.assertEqual(m["advantages"]["grpo"], [1, -1, 1, -1, -1, 1])
        self.assertEqual(m["extra_logs"]["advantage"], [1, -1, 1, -1, -1, 1])
