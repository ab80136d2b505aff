"""`make lab`: JupyterLab starts (also as root) on the port given by LAB_PORT, answers /api/contents with a
token, lists the eight notebooks, and stops."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from avere_utils import config
from avere_utils.paths import REPO_ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.slow
def test_make_lab_serves_the_notebooks_with_a_token(tmp_path):
    port, token = free_port(), "avere-test-token"
    env = {**os.environ, "JUPYTER_TOKEN": token}
    log = open(tmp_path / "lab.log", "w")
    # -o: never reinstall from inside a test (the venv running this test is the installed one)
    proc = subprocess.Popen(["make", "-s", "-o", ".venv/.installed", "lab", f"LAB_PORT={port}"], cwd=REPO_ROOT,
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        listing = None
        for _ in range(240):  # bounded by attempts: up to ~2 minutes on a busy machine
            if proc.poll() is not None:
                break
            req = urllib.request.Request(f"http://127.0.0.1:{port}/api/contents",
                                         headers={"Authorization": f"token {token}"})
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    listing = json.loads(resp.read())
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        assert listing is not None, f"JupyterLab did not answer on port {port}:\n{(tmp_path / 'lab.log').read_text()}"
        names = sorted(c["name"] for c in listing["content"] if c["type"] == "notebook")
        assert names == sorted(f"{stage}.ipynb" for stage in config.STAGES) and len(names) == 8
        # without the token the API refuses
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents", timeout=5)
        assert err.value.code == 403
    finally:
        stop(proc)
        log.close()
    assert proc.returncode is not None
