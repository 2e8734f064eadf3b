"""Without SECRET_KEY a real daphne serves loopback only: it refuses to start on 0.0.0.0."""

from __future__ import annotations

import subprocess
import sys
import urllib.request

import pytest

from .servers import HOST, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]


def development_env(server_base_env: dict[str, str], key_file) -> dict[str, str]:
    env = {k: v for k, v in server_base_env.items() if k not in ("SECRET_KEY", "JWT_SIGNING_KEY")}
    env.update(DEBUG="1", DEV_SECRET_KEY_FILE=str(key_file))
    return env


def test_daphne_with_the_development_key_refuses_to_start_on_every_interface(server_base_env, tmp_path):
    command = [sys.executable, "-m", "daphne", "-b", "0.0.0.0", "-p", str(free_port()), "project.asgi:application"]
    done = subprocess.run(command, env=development_env(server_base_env, tmp_path / "key"), capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode != 0
    assert "only allowed on a loopback address" in done.stderr and "0.0.0.0" in done.stderr


def test_daphne_with_the_development_key_serves_on_loopback(server_base_env, tmp_path):
    port = free_port()
    command = [sys.executable, "-m", "daphne", "-b", HOST, "-p", str(port), "project.asgi:application"]
    process = subprocess.Popen(command, env=development_env(server_base_env, tmp_path / "key"),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    output = []
    try:
        for line in process.stdout:  # daphne says when it listens: no polling
            output.append(line)
            if "Listening on TCP address" in line:
                break
        else:
            pytest.fail(f"daphne exited ({process.wait()}) before listening")
        with urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=30) as response:
            assert response.status == 200
        # It says so once, as a message alone: no warning category, no line of source code.
        said = [line for line in output if "development key" in line]
        assert len(said) == 1 and "loopback only" in said[0], output
        assert not any("UserWarning" in line or "check_serving" in line for line in output), output
    finally:
        process.terminate()
        process.wait(30)
