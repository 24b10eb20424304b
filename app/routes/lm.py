"""Text sampling and scoring with the LSTM language model."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from app.batching import cancel_on_disconnect
from app.deps import LMDep, SettingsDep, get_batcher, require_json
from app.errors import BATCHED_ERROR_RESPONSES, ERROR_RESPONSES, APIError
from app.schemas.lm import (
    GenerateRequest,
    GenerateResponse,
    Sample,
    ScoreRequest,
    ScoreResponse,
    TokenScore,
)
from models.lm.data import EOS

router = APIRouter(prefix="/v1/lm", tags=["lm"], dependencies=[Depends(require_json)])

# the real stream of {"prompt": "the company said", "max_tokens": 3, "seed": 7}
STREAM_EXAMPLE = ('data: {"sample": 0, "token": "it"}\n\n'
                  'data: {"sample": 0, "token": "developed"}\n\n'
                  'data: {"sample": 0, "token": "a"}\n\n'
                  'event: done\ndata: {"seed": 7}\n\n')


def _check_limits(body: GenerateRequest, settings: SettingsDep) -> int:
    """Enforce the settings' bounds (422 naming the limit); return the seed to use."""
    limits = [
        ("max_tokens", body.max_tokens, settings.lm_max_tokens, "MODELZOO_LM_MAX_TOKENS"),
        ("num_samples", body.num_samples, settings.lm_max_samples, "MODELZOO_LM_MAX_SAMPLES"),
        ("prompt words", len(body.prompt.split()), settings.lm_max_prompt_words,
         "MODELZOO_LM_MAX_PROMPT_WORDS"),
    ]
    for name, value, limit, env in limits:
        if value > limit:
            raise APIError(422, f"{name} is {value}; the limit is {limit} ({env})",
                           code="invalid_input")
    return body.seed if body.seed is not None else secrets.randbelow(2**31)


def _render(tokens: list[str]) -> str:
    text = " ".join("\n" if t == EOS else t for t in tokens)
    return text.replace(" \n ", "\n").replace(" \n", "\n").replace("\n ", "\n")


@router.post("/generate", response_model=GenerateResponse, summary="Sample text",
             description="Word-by-word sampling with temperature, top-k and nucleus (top-p) "
             "filtering. Same `seed` and inputs give the same text.",
             responses=ERROR_RESPONSES)
def generate(body: GenerateRequest, model: LMDep, settings: SettingsDep) -> GenerateResponse:
    seed = _check_limits(body, settings)
    tokens: list[list[str]] = [[] for _ in range(body.num_samples)]
    for step in model.stream(body.prompt, body.max_tokens, body.temperature, body.top_k,
                             body.top_p, seed, body.num_samples, body.stop_at_eos):
        if not step.finished:
            tokens[step.sample].append(step.token)
    return GenerateResponse(
        samples=[Sample(text=_render(t), tokens=t) for t in tokens], seed=seed,
        unknown_words=model.encode(body.prompt)[1],
    )


@router.post("/generate/stream", summary="Sample text, streamed (server-sent events)",
             description="The same sampling as `/v1/lm/generate`, one `data:` event per token "
             '(`{"sample", "token"}`), then `event: done` with the seed. Closing the '
             "connection stops the generation.",
             response_class=StreamingResponse,
             responses={200: {"description": "Server-sent events, one per token.",
                              "content": {"text/event-stream": {"example": STREAM_EXAMPLE}}},
                        **ERROR_RESPONSES})
def generate_stream(body: GenerateRequest, model: LMDep,
                    settings: SettingsDep) -> StreamingResponse:
    seed = _check_limits(body, settings)
    steps = model.stream(body.prompt, body.max_tokens, body.temperature, body.top_k,
                         body.top_p, seed, body.num_samples, body.stop_at_eos)

    async def events() -> AsyncIterator[str]:
        async for step in iterate_in_threadpool(steps):  # one token at a time, off the loop
            if not step.finished:
                yield f"data: {json.dumps({'sample': step.sample, 'token': step.token})}\n\n"
        yield f"event: done\ndata: {json.dumps({'seed': seed})}\n\n"

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


@router.post("/score", response_model=ScoreResponse, summary="Score text",
             description="Log-probability of each word given the words before it (from a "
             "sentence start, a final <eos> included) and the perplexity exp(-mean). "
             "Concurrent requests are scored together in one LSTM pass "
             "(`MODELZOO_LM_SCORE_MAX_BATCH_SIZE`, `MODELZOO_LM_SCORE_MAX_WAIT_MS`); 503 "
             "when the queue is full, 504 after `MODELZOO_REQUEST_TIMEOUT_S`.",
             responses=BATCHED_ERROR_RESPONSES)
async def score(body: ScoreRequest, request: Request, model: LMDep,
                settings: SettingsDep) -> ScoreResponse:
    n = len(body.text.split())
    if n == 0:
        raise APIError(422, "text has no words; send at least one word", code="invalid_input")
    if n > settings.lm_max_prompt_words:
        raise APIError(422, f"text has {n} words; the limit is {settings.lm_max_prompt_words} "
                       "(MODELZOO_LM_MAX_PROMPT_WORDS)", code="invalid_input")
    batcher = get_batcher(request, "lm", model.score_many, settings.lm_score_max_batch_size,
                          settings.lm_score_max_wait_ms)
    if batcher is None:  # batching off: this request alone, in the threadpool
        tokens, logprobs, ppl, unknown = await run_in_threadpool(model.score, body.text)
    else:
        [(tokens, logprobs, ppl, unknown)] = await cancel_on_disconnect(
            batcher.submit([body.text]), request.receive)
    return ScoreResponse(
        tokens=[TokenScore(token=t, logprob=round(lp, 6))
                for t, lp in zip(tokens, logprobs, strict=True)],
        perplexity=round(ppl, 4), unknown_words=unknown,
    )
