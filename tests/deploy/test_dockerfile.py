"""The Dockerfile's commands, checked without Docker.

What a build would install is checked by ``deploy/check_dockerfile_commands.sh`` (opt-in,
``make check-docker-install``) and its style by hadolint (``make lint-docker``). Here: the
files it copies, its ENV names, and its CMD and HEALTHCHECK run for real against the app.
"""

from __future__ import annotations

import http.server
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer.main

from deploy import dockerfile
from models.cli import app as cli_app
from models.common.paths import REPO_ROOT
from tests.deploy.facts import (
    CMD,
    DOCKERFILE,
    HEALTHCHECK,
    RUNTIME,
    RUNTIME_ENV,
    SETTINGS_VARIABLES,
    settings_from,
    unknown_variables,
)

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))


# --- .dockerignore: Docker's rules (last matching pattern wins; a match on a parent counts)


def _pattern(text: str) -> re.Pattern[str]:
    out = ""
    for token in re.split(r"(\*\*/|\*\*|\*|\?|\[[^\]]*\])", text.strip("/")):
        if token.startswith("["):
            out += token  # a character class, e.g. *.py[cod]
        else:
            out += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
                token, re.escape(token))
    return re.compile(out)


def _dockerignore() -> list[tuple[bool, re.Pattern[str]]]:
    lines = (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    rules = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    return [(rule.startswith("!"), _pattern(rule.lstrip("!"))) for rule in rules]


def in_build_context(relative: str) -> bool:
    """Whether ``relative`` (a repo path) is sent to ``docker build`` under .dockerignore."""
    parts = Path(relative).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negated, pattern in _dockerignore():
        if any(pattern.fullmatch(p) for p in prefixes):
            excluded = not negated
    return not excluded


def _copies(local_only: bool = True) -> list[dockerfile.Instruction]:
    return [i for i in DOCKERFILE if i.keyword == "COPY" and not (local_only and "from" in i.flags)]


def _copy_sources() -> list[str]:
    return [src for ins in _copies() for src in shlex.split(ins.args)[:-1]]


def test_copied_files_exist_and_are_in_the_build_context() -> None:
    assert _copy_sources(), "the Dockerfile copies nothing from the repo"
    for source in _copy_sources():
        path = REPO_ROOT / source
        assert path.exists(), f"COPY {source}: not in the repository"
        assert in_build_context(source), f"COPY {source}: excluded by .dockerignore"
        files = [f for f in path.rglob("*") if f.is_file() and "__pycache__" not in f.parts]
        for file in files if path.is_dir() else [path]:
            relative = file.relative_to(REPO_ROOT).as_posix()
            assert in_build_context(relative), f"{relative} is excluded by .dockerignore"


def test_dockerignore_keeps_dev_and_runtime_junk_out() -> None:
    for relative in [".venv/bin/python", "runs/word2vec/last.pt", ".git/HEAD", "tests/conftest.py",
                     "benchmarks/x.py", "app/__pycache__/main.cpython-311.pyc", "models/x.pyc",
                     "modelzoo.egg-info/PKG-INFO", ".mypy_cache/x.json", "deploy/k8s/hpa.yaml"]:
        assert not in_build_context(relative), relative
    assert in_build_context("artifacts/word2vec/model.safetensors")


def test_builder_copies_what_pip_install_dot_needs() -> None:
    copied = {Path(s).as_posix().rstrip("/") for s in _copy_sources()}
    assert {"pyproject.toml", "constraints.txt", PYPROJECT["project"]["readme"]} <= copied
    packages = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {p.rstrip("*") for p in packages} <= copied


def test_runtime_copies_the_venv_from_the_builder_and_the_artifacts() -> None:
    stages = dockerfile.stages(DOCKERFILE)
    assert stages == ["builder", "runtime"]
    from_builder = [i for i in _copies(local_only=False) if i.flags.get("from") == "builder"]
    assert [shlex.split(i.args) for i in from_builder] == [["/opt/venv", "/opt/venv"]]
    assert "python -m venv /opt/venv" in [
        i.args for i in DOCKERFILE if i.stage == "builder" and i.keyword == "RUN"]
    artifacts = [shlex.split(i.args) for i in _copies() if i.stage == RUNTIME]
    assert ["artifacts/", RUNTIME_ENV["MODELZOO_ARTIFACTS_DIR"] + "/"] in artifacts


def test_both_stages_use_a_pinned_slim_python_311() -> None:
    bases = [i.args.split()[0] for i in DOCKERFILE if i.keyword == "FROM"]
    assert all(re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", b) for b in bases), bases


def test_builder_installs_the_project_with_constraints_and_no_dev_extras() -> None:
    (command,) = dockerfile.pip_install_commands(DOCKERFILE)
    assert command[:2] == ["pip", "install"] and command[-1] == "."
    assert command[command.index("-c") + 1] == "constraints.txt"
    assert "--extra-index-url" in command or "--index-url" in command
    assert "https://download.pytorch.org/whl/cpu" in command
    (cuda,) = dockerfile.pip_install_commands(DOCKERFILE, overrides={"TORCH_VARIANT": "cu128"})
    assert "https://download.pytorch.org/whl/cu128" in cuda
    assert dockerfile.build_args(DOCKERFILE, "builder") == {"TORCH_VARIANT": "cpu"}


def test_runtime_runs_as_a_non_root_user_and_sets_python_env() -> None:
    user = dockerfile.last(DOCKERFILE, "USER", RUNTIME).args
    assert user.split(":")[0] not in ("root", "0")
    assert RUNTIME_ENV["PYTHONDONTWRITEBYTECODE"] == "1"
    assert RUNTIME_ENV["PYTHONUNBUFFERED"] == "1"
    assert RUNTIME_ENV["PATH"].startswith("/opt/venv/bin:")


def test_env_names_are_settings_fields_or_read_by_the_cmd(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert unknown_variables(set(RUNTIME_ENV)) == set()
    assert "MODELZOO_ARTIFACTS_DIR" in SETTINGS_VARIABLES
    settings = settings_from(RUNTIME_ENV, monkeypatch)
    assert settings.artifacts_dir == Path("/app/artifacts")


def _cmd_words() -> list[str]:
    words = CMD.exec_form()
    assert words is not None, "CMD should use the JSON (exec) form"
    if words[:2] == ["sh", "-c"]:
        words = shlex.split(words[2])
        assert words[0] == "exec", "sh -c should exec the server so it gets SIGTERM as PID 1"
        words = words[1:]
    return words


def test_cmd_runs_a_console_script_with_options_that_exist() -> None:
    words = _cmd_words()
    assert words[0] in PYPROJECT["project"]["scripts"], f"{words[0]} is no console script"
    assert words[1] == "serve"
    serve = typer.main.get_command(cli_app).commands["serve"]  # type: ignore[attr-defined]
    options = {opt for param in serve.params for opt in param.opts}
    flags = {w for w in words[2:] if w.startswith("--")}
    assert flags == {"--host", "--port", "--workers"} and flags <= options


def test_exposed_port_is_the_cmd_port() -> None:
    assert dockerfile.last(DOCKERFILE, "EXPOSE", RUNTIME).args == RUNTIME_ENV["MODELZOO_PORT"]


# --- CMD and HEALTHCHECK, run for real (container paths mapped to this checkout)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _host_env(**overrides: str) -> dict[str, str]:
    """The runtime stage's ENV, with /opt/venv → this venv and /app/artifacts → ./artifacts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELZOO_")}
    for name, value in RUNTIME_ENV.items():
        value = value.replace("/opt/venv", sys.prefix)
        value = value.replace(RUNTIME_ENV["MODELZOO_ARTIFACTS_DIR"], str(REPO_ROOT / "artifacts"))
        env[name] = dockerfile.substitute(value, env)
    return env | overrides


def _healthcheck(env: dict[str, str]) -> int:
    words = HEALTHCHECK.exec_form()
    assert words is not None, "HEALTHCHECK CMD should use the JSON (exec) form"
    timeout = float(HEALTHCHECK.flags["timeout"].removesuffix("s"))
    return subprocess.run(words, env=env, capture_output=True, timeout=timeout).returncode


@pytest.fixture
def served_by_the_cmd(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, str]]]:
    """The image's CMD, started as the container would, serving word2vec on a free port."""
    env = _host_env(MODELZOO_HOST="127.0.0.1", MODELZOO_PORT=str(_free_port()),
                    MODELZOO_MODELS="word2vec")
    words = CMD.exec_form()
    assert words is not None
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(words, env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield proc, env
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            print(log.read_text(errors="replace"))  # shown when the test fails


def test_cmd_serves_and_the_healthcheck_passes_once_ready(
    served_by_the_cmd: tuple[subprocess.Popen[bytes], dict[str, str]],
) -> None:
    proc, env = served_by_the_cmd
    deadline = time.monotonic() + 90
    while _healthcheck(env) != 0:
        assert proc.poll() is None, f"the CMD exited with {proc.returncode}"
        assert time.monotonic() < deadline, "not healthy after 90 s"
        time.sleep(0.2)
    # `docker stop` sends SIGTERM to PID 1: `exec` made that uvicorn, which shuts down
    # gracefully and then re-raises the signal (exit status 143 in Docker's terms).
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) in (0, -signal.SIGTERM)


def test_healthcheck_fails_on_a_closed_port() -> None:
    assert _healthcheck(_host_env(MODELZOO_PORT=str(_free_port()))) != 0


class _NotReady(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(503 if self.path == "/readyz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_healthcheck_fails_while_readyz_is_503() -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), _NotReady)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert _healthcheck(_host_env(MODELZOO_PORT=str(server.server_address[1]))) != 0
    finally:
        server.shutdown()
        server.server_close()
