"""The agent the tests talk to: the socket of one the caller runs
(``KOMLOGD_TEST_AGENT_SOCKET``, set by the Rust integration test), or a
komlogd started here from ``target/debug/komlogd`` (or ``KOMLOGD_BIN``)."""

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _binary():
    given = os.environ.get("KOMLOGD_BIN")
    if given:
        return Path(given)
    return REPO / "target" / "debug" / "komlogd"


@pytest.fixture(scope="session")
def agent_socket():
    given = os.environ.get("KOMLOGD_TEST_AGENT_SOCKET")
    if given:
        yield given
        return
    binary = _binary()
    if not binary.exists():
        pytest.skip(
            "no komlogd agent: %s is not built (cargo build -p komlogd), "
            "and KOMLOGD_TEST_AGENT_SOCKET is not set" % binary
        )
    with tempfile.TemporaryDirectory() as home:
        config = Path(home) / "komlogd.yaml"
        config.write_text("- username: me\n")
        sock = Path(home) / "komlogd.sock"
        env = dict(os.environ, HOME=home)
        env.pop("KOMLOGD_LOG", None)
        agent = subprocess.Popen(
            [str(binary), "-c", str(config)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 60
            while not sock.exists():
                if agent.poll() is not None:
                    pytest.fail("komlogd exited: %s" % agent.stderr.read().decode())
                if time.monotonic() > deadline:
                    pytest.fail("komlogd did not open its socket within 60 s")
                time.sleep(0.02)
            yield str(sock)
        finally:
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(30)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait(10)
