"""A small Dockerfile reader, enough to check our Dockerfile's commands without Docker.

Used by ``tests/deploy`` and ``deploy/check_dockerfile_commands.sh``. Handles line
continuations, comments, ``--flag=value`` options, exec (JSON) and shell forms, ``ARG``
defaults and ``ENV`` (``KEY=value`` pairs); not heredocs or escape-directive changes.

    python -m deploy.dockerfile pip-install [--build-arg NAME=VALUE ...]

prints the builder stage's ``pip install`` commands, one shell-quoted line each.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO_ROOT / "Dockerfile"

_FLAG = re.compile(r"--([a-z][a-z-]*)=(\S+)\s+")
_VAR = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)")


@dataclass(frozen=True)
class Instruction:
    """One instruction: ``keyword [--flag=value ...] args``, in build stage ``stage``."""

    stage: str
    keyword: str
    args: str
    line: int
    flags: dict[str, str] = field(default_factory=dict)

    def exec_form(self) -> list[str] | None:
        """The JSON-array form's words, or None for shell form."""
        text = self.args
        if self.keyword == "HEALTHCHECK":
            text = re.sub(r"^CMD\s+", "", text)
        if not text.startswith("["):
            return None
        words = json.loads(text)
        if not (isinstance(words, list) and all(isinstance(w, str) for w in words)):
            raise ValueError(f"line {self.line}: exec form must be a list of strings")
        return words


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join backslash continuations, drop comments and blank lines: (first line no, text)."""
    out: list[tuple[int, str]] = []
    buf: list[str] = []
    start = 0
    for no, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue  # comments inside a continued instruction are dropped, as Docker does
        if not buf:
            start = no
        if stripped.endswith("\\"):
            buf.append(stripped[:-1].strip())
            continue
        buf.append(stripped)
        out.append((start, " ".join(b for b in buf if b)))
        buf = []
    if buf:
        out.append((start, " ".join(buf)))
    return out


def parse(path: Path = DOCKERFILE) -> list[Instruction]:
    """Instructions of ``path`` in order, each tagged with its stage name (or index)."""
    instructions: list[Instruction] = []
    stage = ""
    n_stages = 0
    for no, line in _logical_lines(path.read_text(encoding="utf-8")):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        flags: dict[str, str] = {}
        while m := _FLAG.match(rest):
            flags[m.group(1)] = m.group(2)
            rest = rest[m.end():]
        if keyword == "FROM":
            words = rest.split()
            stage = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(n_stages)
            n_stages += 1
        instructions.append(Instruction(stage, keyword, rest, no, flags))
    return instructions


def substitute(text: str, variables: dict[str, str]) -> str:
    """Expand ``$NAME``, ``${NAME}`` and ``${NAME:-default}`` like the Dockerfile does."""

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3)
        value = variables.get(name, "")
        if m.group(1):  # ${NAME} or ${NAME:-default}: the default also replaces ""
            return value or (m.group(2) or "")
        return value

    return _VAR.sub(repl, text)


def build_args(instructions: list[Instruction], stage: str) -> dict[str, str]:
    """``ARG`` defaults declared in ``stage``."""
    out: dict[str, str] = {}
    for ins in instructions:
        if ins.stage == stage and ins.keyword == "ARG":
            name, _, default = ins.args.partition("=")
            out[name.strip()] = default.strip().strip('"')
    return out


def env(instructions: list[Instruction], stage: str) -> dict[str, str]:
    """``ENV`` variables set in ``stage`` (values unexpanded, e.g. ``/opt/venv/bin:$PATH``)."""
    out: dict[str, str] = {}
    for ins in instructions:
        if ins.stage == stage and ins.keyword == "ENV":
            words = shlex.split(ins.args)
            if words and "=" not in words[0]:  # legacy form: ENV NAME value
                out[words[0]] = " ".join(words[1:])
                continue
            for word in words:
                name, _, value = word.partition("=")
                out[name] = value
    return out


def stages(instructions: list[Instruction]) -> list[str]:
    """Stage names in order; the last one is the image that runs."""
    return [ins.stage for ins in instructions if ins.keyword == "FROM"]


def last(instructions: list[Instruction], keyword: str, stage: str) -> Instruction:
    """The last ``keyword`` instruction of ``stage`` (the one Docker uses for CMD etc.)."""
    found = [i for i in instructions if i.stage == stage and i.keyword == keyword]
    if not found:
        raise LookupError(f"no {keyword} in stage {stage!r}")
    return found[-1]


def pip_install_commands(
    instructions: list[Instruction], stage: str = "builder",
    overrides: dict[str, str] | None = None,
) -> list[list[str]]:
    """Each ``pip install`` in ``stage``'s RUN lines, split into words, ARGs substituted."""
    variables = {**build_args(instructions, stage), **(overrides or {})}
    commands: list[list[str]] = []
    for ins in instructions:
        if ins.stage != stage or ins.keyword != "RUN":
            continue
        for part in re.split(r"\s*&&\s*", ins.args):
            words = [substitute(w, variables) for w in shlex.split(part)]
            if "pip" in words[:3] and "install" in words:
                commands.append(words)
    return commands


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("what", choices=["pip-install"])
    parser.add_argument("--dockerfile", type=Path, default=DOCKERFILE)
    parser.add_argument("--build-arg", action="append", default=[], metavar="NAME=VALUE")
    ns = parser.parse_args(argv)
    overrides = dict(a.split("=", 1) for a in ns.build_arg)
    for words in pip_install_commands(parse(ns.dockerfile), overrides=overrides):
        print(shlex.join(words))


if __name__ == "__main__":
    main()
