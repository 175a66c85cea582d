"""Starts the REAL reward service (node, the repository's default model, CPU) once per test session, unless
REWARD_SERVICE_TEST_URL points at one already running. Tests that need it take the `service_url` fixture."""
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(HERE, ".."))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def service_url():
    given = os.environ.get("REWARD_SERVICE_TEST_URL")
    if given:
        yield given.rstrip("/")
        return
    port = _free_port()
    env = dict(os.environ, PORT=str(port), HOST="127.0.0.1", MODELS_DIR=os.path.join(ROOT, "models"),
               EXECUTION_PROVIDERS="cpu", THREADS="1", LOG_LEVEL="warn", MODEL_POLL_INTERVAL_MS="0",
               REQUEST_TIMEOUT_MS="120000")
    proc = subprocess.Popen(["node", "--import", "tsx", "src/server.ts"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = "http://127.0.0.1:%d" % port
    deadline = time.time() + 120
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError("the service exited: %s" % proc.stderr.read().decode()[-2000:])
            try:
                with urllib.request.urlopen(url + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError("the service did not become ready in 120 s")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
