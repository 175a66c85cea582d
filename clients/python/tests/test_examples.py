"""The TRL and verl examples send the right /get_reward payloads (against a local scripted server)."""
import json
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "examples"))
from test_reward_client import ScriptedServer  # noqa: E402
import trl_reward  # noqa: E402
import verl_reward  # noqa: E402


class ExamplesTest(unittest.TestCase):
    def serve(self, rewards):
        srv = ScriptedServer([(200, {}, {"rewards": rewards, "scores": rewards, "extra_logs": {}})])
        self.addCleanup(srv.close)
        return srv

    def test_trl_standard_and_conversational(self):
        srv = self.serve([1.5, -0.5])
        fn = trl_reward.make_reward_func(srv.url, normalize=True)
        self.assertEqual(fn(prompts=["2+2?", "3+3?"], completions=["4", "7"], answer=["4", "6"]), [1.5, -0.5])
        body = json.loads(srv.seen[-1][2])
        self.assertEqual(body["options"], {"normalize": True})
        self.assertEqual(body["messages"][1], [{"role": "user", "content": "3+3?"}, {"role": "assistant", "content": "7"}])
        conv_prompt = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]
        fn(prompts=[conv_prompt, conv_prompt], completions=[[{"role": "assistant", "content": "4"}]] * 2)
        self.assertEqual(json.loads(srv.seen[-1][2])["messages"][0], conv_prompt + [{"role": "assistant", "content": "4"}])

    def test_verl_single_and_batch(self):
        srv = self.serve([0.25])
        verl_reward._client = None
        os.environ["REWARD_SERVICE_URL"] = srv.url
        self.addCleanup(os.environ.pop, "REWARD_SERVICE_URL", None)
        self.assertEqual(verl_reward.compute_score("gsm8k", "4", "4", {"prompt": "2+2?"}), 0.25)
        self.assertEqual(json.loads(srv.seen[-1][2])["messages"], [[{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]])
        self.assertEqual(verl_reward.compute_score_batch(["a"], ["4"], ["4"], [{"prompt": [{"role": "user", "content": "2+2?"}]}]), [0.25])
        with self.assertRaises(ValueError):
            verl_reward.compute_score("gsm8k", "4", "4", {})
        verl_reward._client = None


if __name__ == "__main__":
    unittest.main()
