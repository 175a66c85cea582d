"""Python client media parts (stdlib only): parts already in the service's shape pass through unchanged,
including `{"type": "image", "sha256": ...}` references to media the service received before.

Run: python3 -m unittest discover -s clients/python/tests   (also collected by pytest)
"""
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from reward_client.media import encode_image, to_service_messages  # noqa: E402


class MediaReferenceTest(unittest.TestCase):
    def test_sha256_reference_passes_through(self):
        ref = {"type": "image", "sha256": "ab" * 32}
        self.assertEqual(encode_image(ref), ref)
        msgs = to_service_messages([{"role": "user", "content": [ref, {"type": "text", "text": "what is this?"}]}])
        self.assertEqual(msgs[0]["content"][0], ref)


if __name__ == "__main__":
    unittest.main()
