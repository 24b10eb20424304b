"""Memory soak test: every endpoint under a fixed mixed load; is the server's RSS flat?

Starts the service on loopback (uvicorn in a subprocess, ``serve_load.server``: batching on,
the default ``MODELZOO_QUANTIZE=auto`` unless ``--quantize`` says otherwise) with every task
whose artifact exists, then ``--concurrency`` closed-loop clients (httpx) each send requests
round-robin over the endpoints, each request with the next real input:

- ``POST /v1/word2vec/neighbors``: a PTB vocabulary word, k=10;
- ``POST /v1/lm/generate``: the first words of a PTB valid sentence as the prompt, 20 words;
- ``POST /v1/lm/score``: a PTB valid sentence;
- ``POST /v1/translate``: a Multi30k val sentence (the default beam 5);
- ``POST /v1/match``: a Quora dev pair; ``POST /v1/match/rank``: a WikiQA dev question and
  its candidates;
- ``POST /v1/handwriting/recognize``: a JPEG page of handwritten block capitals composed from
  held-out letters, at about 0.3, 0.6 or 1 megapixels.

for ``--seconds`` (default 300). Every ``--interval`` s the server process's resident set size
is sampled (psutil when installed, else ``VmRSS`` of ``/proc/<pid>/status``). Prints requests,
errors (any non-2xx answer or transport error; there must be none) and latency per endpoint,
then the RSS when the server was ready, at the start of the steady state (after
``--warmup`` s, default 60: the allocator and caches grow while new input shapes arrive; the
median of its first 10% of samples), at the end (median of the last 10%),
the maximum, the least-squares slope in MB/min over the steady state, and a verdict: flat
when the growth from start to end of the steady state is below ``--max-growth`` percent.
Exits with status 1 on any error or growth above it. ``--csv`` writes the samples. The
environment (``MODELZOO_*``, ``MALLOC_ARENA_MAX``, ...) reaches the server.

    python benchmarks/serve_memory.py [--seconds 300] [--warmup 60] [--concurrency 8]
        [--interval 2] [--threads 2] [--csv rss.csv]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import itertools
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from app.config import TASKS, Settings
from models.common.paths import artifacts_dir, data_dir

try:
    from benchmarks.serve_load import FALLBACK_DE, FALLBACK_EN, read_texts, server
except ModuleNotFoundError:  # run as a script: benchmarks/ is sys.path[0]
    from serve_load import (  # type: ignore[no-redef]
        FALLBACK_DE,
        FALLBACK_EN,
        read_texts,
        server,
    )

MB = 1024 * 1024


@dataclass
class Endpoint:
    """One route under load and the request arguments it cycles through."""

    name: str
    task: str
    url: str
    requests: list[dict[str, Any]]  # keyword arguments of httpx's post (json= or files=)
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    sent: int = 0

    def record(self, seconds: float, problem: str | None) -> None:
        if problem is None:
            self.latencies.append(seconds)
            return
        self.errors += 1
        if len(self.error_samples) < 3:
            self.error_samples.append(problem)


@dataclass
class _Task:
    """What ``serve_load.server`` reads of a task: its name (for ``MODELZOO_MODELS``)."""

    name: str


def _pages(root: Path) -> list[bytes]:
    """JPEG pages of block capitals at ~0.3, 0.6 and 1 MP (held-out letters when present)."""
    try:
        from benchmarks.handwriting import jpeg_at, make_page
    except ModuleNotFoundError:
        from handwriting import jpeg_at, make_page  # type: ignore[no-redef]

    images = []
    if (root / "handwriting").is_dir():
        from models.handwriting.synth import compose, load_letter_pool

        pool = load_letter_pool(root / "handwriting")
        images = [compose(pool, np.random.default_rng(seed), "clean").image for seed in range(6)]
    else:
        images = [make_page()[0]]
    sizes = (0.3, 0.6, 1.0)
    return [jpeg_at(image, sizes[i % len(sizes)])[0] for i, image in enumerate(images)]


def build_endpoints(served: set[str], data: Path, root: Path, settings: Settings
                    ) -> list[Endpoint]:
    """The endpoints of the tasks in ``served`` with their request bodies."""
    endpoints = []
    english = read_texts(data / "ptb" / "ptb.valid.txt", FALLBACK_EN, 300, gz=False)
    if "word2vec" in served:
        from models.word2vec.vocab import Vocab

        words = [w for w in Vocab.load(root / "word2vec").tokens[:3000] if w.isalpha()]
        endpoints.append(Endpoint("word2vec neighbors", "word2vec", "/v1/word2vec/neighbors",
                                  [{"json": {"word": w, "k": 10}} for w in words[::3]]))
    if "lm" in served:
        endpoints.append(Endpoint("lm generate", "lm", "/v1/lm/generate", [
            {"json": {"prompt": " ".join(t.split()[:3]), "max_tokens": 20, "seed": i}}
            for i, t in enumerate(english)]))
        endpoints.append(Endpoint("lm score", "lm", "/v1/lm/score",
                                  [{"json": {"text": t}} for t in english]))
    if "translation" in served:
        german = read_texts(data / "multi30k" / "val.de.gz", FALLBACK_DE, 300, gz=True)
        endpoints.append(Endpoint("translate", "translation", "/v1/translate",
                                  [{"json": {"text": t}} for t in german]))
    if "matching" in served:
        from models.matching.data import read_pairs, split_path

        quora, wikiqa = (split_path(data, d, "dev") for d in ("quora", "wikiqa"))
        pairs = ([(p.a, p.b) for p in read_pairs(quora)[1][:300]] if quora.is_file()
                 else list(itertools.pairwise(english)))
        endpoints.append(Endpoint("match", "matching", "/v1/match",
                                  [{"json": {"text_a": a, "text_b": b}} for a, b in pairs]))
        questions: dict[str, tuple[str, list[str]]] = {}
        if wikiqa.is_file():
            for p in read_pairs(wikiqa)[1]:
                questions.setdefault(str(p.group), (p.a, []))[1].append(p.b)
        ranked = [(q, c[:settings.matching_max_candidates]) for q, c in questions.values()
                  if len(c) >= 2][:200] or [(english[0], english[1:6])]
        endpoints.append(Endpoint("match rank", "matching", "/v1/match/rank",
                                  [{"json": {"query": q, "candidates": c}} for q, c in ranked]))
    if "handwriting" in served:
        endpoints.append(Endpoint("handwriting recognize", "handwriting",
                                  "/v1/handwriting/recognize",
                                  [{"files": {"file": ("page.jpg", page, "image/jpeg")}}
                                   for page in _pages(data)]))
    return endpoints


# --------------------------------------------------------------------------- the server's RSS

def server_pid() -> int:
    """The uvicorn child process this process started."""
    try:
        import psutil

        children = [p.pid for p in psutil.Process().children()]
    except ImportError:
        children = []
        for task in Path("/proc/self/task").iterdir():
            text = (task / "children").read_text().split()
            children.extend(int(pid) for pid in text)
    for pid in children:
        try:
            if b"uvicorn" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            continue
    if len(children) == 1:
        return children[0]
    raise RuntimeError(f"cannot tell the server among child processes {children}")


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (psutil, else ``VmRSS`` of ``/proc/<pid>/status``)."""
    try:
        import psutil

        return int(psutil.Process(pid).memory_info().rss)
    except ImportError:
        pass
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


# ------------------------------------------------------------------------------------ load

async def soak(base_url: str, endpoints: list[Endpoint], concurrency: int, seconds: float,
               interval: float, pid: int, headers: dict[str, str]
               ) -> list[tuple[float, int, int]]:
    """Drive the endpoints for ``seconds``; return RSS samples ``(t, bytes, requests done)``."""
    samples: list[tuple[float, int, int]] = []
    done = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=120, limits=limits,
                                 headers=headers) as client:
        start = time.perf_counter()
        end = start + seconds

        async def worker(w: int) -> None:
            nonlocal done
            i = w
            while time.perf_counter() < end:
                endpoint = endpoints[i % len(endpoints)]
                kwargs = endpoint.requests[endpoint.sent % len(endpoint.requests)]
                endpoint.sent += 1
                i += 1
                t0 = time.perf_counter()
                problem = None
                try:
                    response = await client.post(endpoint.url, **kwargs)
                    if not 200 <= response.status_code < 300:
                        problem = f"{response.status_code}: {response.text[:200]}"
                except httpx.HTTPError as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                endpoint.record(time.perf_counter() - t0, problem)
                done += 1

        async def sampler() -> None:
            while True:
                now = time.perf_counter()
                samples.append((now - start, rss_bytes(pid), done))
                if now >= end:
                    return
                await asyncio.sleep(min(interval, max(0.0, end - now)))

        await asyncio.gather(sampler(), *(worker(w) for w in range(concurrency)))
        samples.append((time.perf_counter() - start, rss_bytes(pid), done))
    return samples


def mb_per_minute(samples: list[tuple[float, int]]) -> float:
    """Least-squares slope of RSS (MB) over time (minutes) of ``(t_s, bytes)`` samples."""
    if len(samples) < 2:
        return float("nan")
    minutes = np.array([t for t, _ in samples]) / 60
    return float(np.polyfit(minutes, np.array([r for _, r in samples]) / MB, 1)[0])


def report(endpoints: list[Endpoint], samples: list[tuple[float, int, int]], ready_rss: int,
           args: argparse.Namespace) -> bool:
    """Print the per-endpoint table and the memory summary; return whether all is well."""
    elapsed = samples[-1][0]
    print(f"\n{elapsed:.0f} s, concurrency {args.concurrency}, torch threads "
          f"{args.threads or 'default'}, MODELZOO_QUANTIZE="
          f"{os.environ.get('MODELZOO_QUANTIZE', 'auto')}; latency in ms")
    print(f"{'endpoint':<24}{'requests':>9}{'errors':>8}{'req/s':>8}{'p50':>9}{'p95':>9}")
    for e in endpoints:
        n = len(e.latencies) + e.errors
        p50, p95 = ((float(np.percentile(e.latencies, q)) * 1000 for q in (50, 95))
                    if e.latencies else (float("nan"), float("nan")))
        print(f"{e.name:<24}{n:>9}{e.errors:>8}{n / elapsed:>8.2f}{p50:>9.1f}{p95:>9.1f}")
        for sample in e.error_samples:
            print(f"    e.g. {sample}")
    errors = sum(e.errors for e in endpoints)
    total = sum(len(e.latencies) + e.errors for e in endpoints)
    print(f"{'all':<24}{total:>9}{errors:>8}{total / elapsed:>8.2f}")

    steady = [(t, rss) for t, rss, _ in samples if t >= args.warmup]
    if len(steady) < 3:
        print(f"\nonly {len(steady)} RSS samples after the {args.warmup:g} s warm-up: run "
              "longer (--seconds) or sample more often (--interval)")
        return False
    k = max(1, len(steady) // 10)
    rss_start = statistics.median(r for _, r in steady[:k]) / MB
    rss_end = statistics.median(r for _, r in steady[-k:]) / MB
    rss_max = max(r for _, r, _ in samples) / MB
    slope = mb_per_minute(steady)
    half = len(steady) // 2
    halves = (mb_per_minute(steady[:half + 1]), mb_per_minute(steady[half:]))
    growth = 100 * (rss_end / rss_start - 1)
    span = (steady[-1][0] - steady[0][0]) / 60
    print(f"\nserver RSS (MB): ready {ready_rss / MB:.1f}; steady state from {args.warmup:g} s "
          f"({len(steady)} samples every {args.interval:g} s, start/end = median of the first/"
          f"last {k}): start {rss_start:.1f}, end {rss_end:.1f}, max {rss_max:.1f}; "
          f"slope {slope:+.2f} MB/min over {span:.1f} min (first half {halves[0]:+.2f}, second "
          f"half {halves[1]:+.2f}: a second half near 0 is a warm-up that settles, a steady "
          "slope a leak)")
    flat = growth < args.max_growth
    print(f"verdict: {'FLAT' if flat else 'GROWING'}: {growth:+.2f}% from start to end of the "
          f"steady state ({'<' if flat else '>='} {args.max_growth:g}%); errors: {errors}"
          + (" (must be 0)" if errors else ""))
    return flat and errors == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=300.0, help="length of the load")
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds at the start left out of the steady state (default: "
                        "60, or a fifth of --seconds when that is shorter)")
    parser.add_argument("--concurrency", type=int, default=8, help="closed-loop clients")
    parser.add_argument("--interval", type=float, default=2.0, help="RSS sampling period (s)")
    parser.add_argument("--max-growth", type=float, default=5.0,
                        help="RSS growth over the steady state (percent) still called flat")
    parser.add_argument("--tasks", default=",".join(TASKS),
                        help="comma list of tasks to serve and drive (each if its artifact "
                        "exists)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads in the server (default: torch's)")
    parser.add_argument("--quantize", default=None,
                        help="MODELZOO_QUANTIZE for the server (default: inherited, else auto)")
    parser.add_argument("--artifacts-dir", type=Path, default=artifacts_dir())
    parser.add_argument("--data-dir", type=Path, default=data_dir())
    parser.add_argument("--csv", type=Path, help="write the samples (t_s, rss_mb, requests)")
    args = parser.parse_args()
    if args.warmup is None:
        args.warmup = min(60.0, args.seconds / 5)
    if args.warmup >= args.seconds:
        parser.error("--warmup must be shorter than --seconds")
    if args.quantize is not None:
        os.environ["MODELZOO_QUANTIZE"] = args.quantize
    wanted = [t.strip() for t in args.tasks.split(",") if t.strip()]
    served = {t for t in wanted if t in TASKS and (args.artifacts_dir / t).is_dir()}
    if not served:
        sys.exit(f"none of {wanted} has an artifact under {args.artifacts_dir}")
    settings = Settings(artifacts_dir=args.artifacts_dir)
    endpoints = build_endpoints(served, args.data_dir, args.artifacts_dir, settings)
    keys = [k for k in os.environ.get("MODELZOO_API_KEYS", "").split(",") if k.strip()]
    headers = {"X-API-Key": keys[0].strip()} if keys else {}

    # serve_load.server reads artifacts_dir, concurrency and threads from its args
    server_args = argparse.Namespace(artifacts_dir=args.artifacts_dir,
                                     concurrency=[args.concurrency], threads=args.threads)
    print(f"serving {', '.join(sorted(served))}; driving {len(endpoints)} endpoints for "
          f"{args.seconds:g} s ...", file=sys.stderr, flush=True)
    tasks: list[Any] = [_Task(t) for t in sorted(served)]
    with server(server_args, tasks, True) as base_url:
        pid = server_pid()
        ready = rss_bytes(pid)
        samples = asyncio.run(soak(base_url, endpoints, args.concurrency, args.seconds,
                                   args.interval, pid, headers))
    if args.csv:
        with args.csv.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["t_s", "rss_mb", "requests"])
            writer.writerows((round(t, 2), round(r / MB, 2), n) for t, r, n in samples)
    ok = report(endpoints, samples, ready, args)
    if args.csv:
        print(f"wrote {len(samples)} samples to {args.csv}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
