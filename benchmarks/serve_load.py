"""Serving load test: dynamic batching on vs off vs the predictor in-process, in one run.

For each task (``/v1/translate`` when ``artifacts/translation`` exists, ``/v1/lm/score`` when
``artifacts/lm`` does, ``/v1/match`` on Quora dev pairs when ``artifacts/matching`` does)
and each concurrency (1, 8, 32 by default) prints p50/p95/p99
latency, throughput and errors of

- ``floor``: the same predictor called in this process, back to back, with batches of
  ``min(concurrency, max_batch_size)`` texts (what batching at best achieves; latency is one
  such call);
- ``batched``: the service (uvicorn on loopback, a subprocess) with ``MODELZOO_BATCHING=true``;
- ``unbatched``: the same service with ``MODELZOO_BATCHING=false``;

then the ratios ``batched / floor`` and ``batched / unbatched``. Each closed-loop client
sends one text per request, the next as soon as the previous answer comes, for ``--seconds``.
The client runs on the same machine: on few cores it competes with the server for CPU.
Other ``MODELZOO_*`` variables (e.g. ``MODELZOO_TRANSLATION_MAX_WAIT_MS``) reach the server.

    python benchmarks/serve_load.py [--seconds 10] [--concurrency 1,8,32] [--threads 2]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch

from app.config import Settings
from models.common.paths import REPO_ROOT, artifacts_dir, data_dir

FALLBACK_DE = ["Ein Mann fährt ein Fahrrad.", "Zwei Hunde spielen im Schnee.",
               "Eine Frau liest ein Buch im Park.", "Ein Kind klettert auf einen Baum.",
               "Drei Männer stehen vor einem alten Haus.", "Ein Mädchen spielt Gitarre."]
FALLBACK_EN = ["the company said it expects higher earnings",
               "the stock market fell sharply on friday",
               "analysts said the results were better than expected",
               "the bank will pay a dividend of N cents a share"]


@dataclass
class Task:
    """One endpoint under load: its URL, request bodies and the in-process call."""

    name: str
    url: str
    bodies: list[dict[str, Any]]
    max_batch_size: int
    call: Callable[[list[str]], object]  # the predictor on a batch of texts
    texts: list[str]


@dataclass
class Result:
    latencies: list[float]  # seconds, successful requests (or calls) only
    errors: int
    seconds: float
    items_per_call: int = 1

    @property
    def throughput(self) -> float:
        return len(self.latencies) * self.items_per_call / self.seconds

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) * 1000 if self.latencies else float("nan")


def read_texts(path: Path, fallback: list[str], n: int, gz: bool) -> list[str]:
    if not path.is_file():
        return fallback
    if gz:
        from models.translation.data import read_lines
        lines = read_lines(path)
    else:
        lines = path.read_text(encoding="utf-8").splitlines()
    lines = [line.strip() for line in lines if line.strip()]
    return [" ".join(line.split()[:60]) for line in lines[:n]] or fallback


def _pair(item: str) -> tuple[str, str]:
    a, b = item.split("\t")
    return a, b


def build_tasks(args: argparse.Namespace, settings: Settings) -> list[Task]:
    tasks = []
    root = args.artifacts_dir
    if (root / "translation").is_dir() and "translation" in args.tasks:
        from models.translation.predictor import TranslationPredictor

        tr = TranslationPredictor.load(root / "translation", "cpu")
        texts = read_texts(data_dir() / "multi30k" / "val.de.gz", FALLBACK_DE, 200, gz=True)
        beam = args.beam_size
        tasks.append(Task("translation", "/v1/translate",
                          [{"text": t, "beam_size": beam} for t in texts],
                          settings.translation_max_batch_size,
                          lambda batch: tr.translate(batch, beam_size=beam), texts))
    if (root / "lm").is_dir() and "lm" in args.tasks:
        from models.lm.predictor import LMPredictor

        lm = LMPredictor.load(root / "lm", "cpu")
        texts = read_texts(data_dir() / "ptb" / "ptb.valid.txt", FALLBACK_EN, 200, gz=False)
        tasks.append(Task("lm", "/v1/lm/score", [{"text": t} for t in texts],
                          settings.lm_score_max_batch_size, lm.score_many, texts))
    if (root / "matching").is_dir() and "matching" in args.tasks:
        from models.matching.data import read_pairs, split_path
        from models.matching.predictor import MatchingPredictor

        mp = MatchingPredictor.load(root / "matching", "cpu")
        dev = split_path(data_dir(), "quora", "dev")
        pairs = ([(p.a, p.b) for p in read_pairs(dev)[1][:200]] if dev.is_file()
                 else list(itertools.pairwise(FALLBACK_EN)))
        texts = [f"{a}\t{b}" for a, b in pairs]  # one pair per item, split again below
        tasks.append(Task("matching", "/v1/match",
                          [{"text_a": a, "text_b": b} for a, b in pairs],
                          settings.matching_max_batch_size,
                          lambda batch: mp.score_pairs([_pair(t) for t in batch]),
                          texts))
    return tasks


def floor(task: Task, concurrency: int, seconds: float) -> Result:
    """The predictor in this process, batches of ``min(concurrency, max_batch_size)``."""
    b = min(concurrency, task.max_batch_size)
    task.call(task.texts[:b])  # warm-up
    latencies: list[float] = []
    i, start = 0, time.perf_counter()
    while not latencies or time.perf_counter() - start < seconds:
        batch = [task.texts[(i + k) % len(task.texts)] for k in range(b)]
        i += b
        t0 = time.perf_counter()
        task.call(batch)
        latencies.append(time.perf_counter() - t0)
    return Result(latencies, 0, time.perf_counter() - start, items_per_call=b)


@asynccontextmanager
async def poster(base_url: str, concurrency: int,
                 library: str) -> AsyncIterator[Callable[[str, dict[str, Any]], Awaitable[bool]]]:
    """``post(url, body) -> answered 200`` over a pool of ``concurrency`` connections, with
    aiohttp (lighter per request than httpx, which matters when client and server share two
    cores) or httpx; a transport error counts as not answered."""
    if library == "aiohttp":
        import aiohttp

        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(base_url, connector=connector,
                                         timeout=aiohttp.ClientTimeout(total=120)) as session:
            async def post_aiohttp(url: str, body: dict[str, Any]) -> bool:
                try:
                    async with session.post(url, json=body) as response:
                        await response.read()
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            yield post_aiohttp
        return
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=120, limits=limits) as client:
        async def post_httpx(url: str, body: dict[str, Any]) -> bool:
            try:
                return (await client.post(url, json=body)).status_code == 200
            except httpx.HTTPError:
                return False

        yield post_httpx


async def drive(base_url: str, task: Task, concurrency: int, seconds: float,
                library: str = "aiohttp") -> Result:
    """``concurrency`` closed-loop clients posting one text each, for ``seconds``."""
    latencies: list[float] = []
    errors = 0
    async with poster(base_url, concurrency, library) as post:
        for body in task.bodies[:2]:  # warm-up
            await post(task.url, body)
        start = time.perf_counter()
        end = start + seconds

        async def worker(w: int) -> None:
            nonlocal errors
            i = w
            while time.perf_counter() < end:
                body = task.bodies[i % len(task.bodies)]
                i += concurrency
                t0 = time.perf_counter()
                if await post(task.url, body):
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1

        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        return Result(latencies, errors, time.perf_counter() - start)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server(args: argparse.Namespace, tasks: list[Task], batching: bool) -> Iterator[str]:
    """uvicorn serving the app in a subprocess on loopback; yields its base URL when ready."""
    port = free_port()
    env = {**os.environ, "MODELZOO_BATCHING": str(batching).lower(),
           "MODELZOO_MODELS": ",".join(t.name for t in tasks),
           "MODELZOO_ARTIFACTS_DIR": str(args.artifacts_dir), "MODELZOO_ACCESS_LOG": "false",
           "MODELZOO_DEVICE": "cpu",
           "MODELZOO_MAX_CONCURRENT_REQUESTS": str(max(64, 2 * max(args.concurrency)))}
    if args.threads:
        env["MODELZOO_TORCH_THREADS"] = str(args.threads)
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        cwd=REPO_ROOT, env=env)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not become ready (exit {proc.poll()})")
            time.sleep(0.2)
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def row(label: str, r: Result) -> str:
    return (f"  {label:<10} {len(r.latencies):>7} {r.errors:>6} {r.throughput:>9.1f} "
            f"{r.pct(50):>9.1f} {r.pct(95):>9.1f} {r.pct(99):>9.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    parser.add_argument("--concurrency", type=lambda s: [int(c) for c in s.split(",")],
                        default=[1, 8, 32], help="comma list of client counts")
    parser.add_argument("--tasks", default="translation,lm,matching",
                        help="comma list among translation, lm, matching (each if its "
                        "artifact exists)")
    parser.add_argument("--artifacts-dir", type=Path, default=artifacts_dir())
    parser.add_argument("--beam-size", type=int, default=5, help="translation requests")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads, here and in the server (default: torch's)")
    parser.add_argument("--client", choices=("aiohttp", "httpx"), default=None,
                        help="load generator (default: aiohttp when installed, "
                        "'pip install -e .[bench]')")
    args = parser.parse_args()
    if args.client is None:
        try:
            import aiohttp  # noqa: F401
            args.client = "aiohttp"
        except ImportError:
            args.client = "httpx"
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = Settings(artifacts_dir=args.artifacts_dir)
    tasks = build_tasks(args, settings)
    if not tasks:
        sys.exit(f"no artifacts/translation or artifacts/lm under {args.artifacts_dir}")

    results: dict[tuple[str, str, int], Result] = {}
    for task in tasks:  # the floor first, while no server competes for the CPU
        for c in args.concurrency:
            results[(task.name, "floor", c)] = floor(task, c, args.seconds)
    for mode, batching in (("batched", True), ("unbatched", False)):
        with server(args, tasks, batching) as base_url:
            for task in tasks:
                for c in args.concurrency:
                    results[(task.name, mode, c)] = asyncio.run(
                        drive(base_url, task, c, args.seconds, args.client))

    print(f"\n{args.seconds:g} s per measurement; threads: {torch.get_num_threads()}; "
          f"client: {args.client}; throughput in texts/s, latency in ms")
    for task in tasks:
        extra = f" (beam_size {args.beam_size})" if task.name == "translation" else ""
        print(f"\n{task.url}{extra}: max_batch_size {task.max_batch_size}")
        for c in args.concurrency:
            print(f" concurrency {c}\n  {'':<10} {'n':>7} {'errors':>6} {'texts/s':>9} "
                  f"{'p50':>9} {'p95':>9} {'p99':>9}")
            fl, on, off = (results[(task.name, m, c)] for m in ("floor", "batched", "unbatched"))
            for label, r in (("floor", fl), ("batched", on), ("unbatched", off)):
                print(row(label, r))
            print(f"  batched/floor: throughput {on.throughput / fl.throughput:.2f}x, "
                  f"p50 {on.pct(50) / fl.pct(50):.2f}x;  batched/unbatched: throughput "
                  f"{on.throughput / max(off.throughput, 1e-9):.2f}x, "
                  f"p50 {on.pct(50) / off.pct(50):.2f}x")


if __name__ == "__main__":
    main()
