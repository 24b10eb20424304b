"""Text-pair matching: duplicate-question scoring and answer ranking (DSSM, MV-LSTM,
MatchPyramid, ESIM, and ensembles averaging their probabilities)."""

from __future__ import annotations

from functools import partial

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from app.batching import cancel_on_disconnect
from app.deps import MatchingDep, SettingsDep, get_batcher, require_json
from app.errors import BATCHED_ERROR_RESPONSES, ERROR_RESPONSES, APIError, error_doc
from app.schemas.matching import (
    MatchModelInfo,
    MatchModelsResponse,
    MatchRequest,
    MatchResponse,
    MatchScore,
    RankedCandidateOut,
    RankRequest,
    RankResponse,
)
from models.matching.predictor import MatchingPredictor

router = APIRouter(prefix="/v1", tags=["matching"])

_NOT_FOUND: dict[int | str, dict[str, object]] = {404: error_doc(
    "Unknown `model`; the message lists the served models.", "not_found",
    "unknown model 'bert'; served models: dssm-quora, dssm-wikiqa, ensemble-quora, esim-quora, "
    "esim-wikiqa, matchpyramid-quora, matchpyramid-wikiqa, mvlstm-quora, mvlstm-wikiqa",
    {"models": ["dssm-quora", "dssm-wikiqa", "ensemble-quora", "esim-quora", "esim-wikiqa",
                "matchpyramid-quora", "matchpyramid-wikiqa", "mvlstm-quora", "mvlstm-wikiqa"]})}


def _check_chars(texts: list[tuple[str, str]], settings: SettingsDep) -> None:
    """422 naming the over-long text (``(where, text)`` pairs) and the setting."""
    limit = settings.matching_max_chars
    for where, text in texts:
        if len(text) > limit:
            raise APIError(422, f"{where} has {len(text)} characters; the limit is {limit} "
                           "(MODELZOO_MATCHING_MAX_CHARS)", code="invalid_input",
                           details={"field": where, "limit": limit})


def _check_match_limits(body: MatchRequest, settings: SettingsDep) -> None:
    pairs = body.pair_list()
    if len(pairs) > settings.max_items_per_request:
        raise APIError(422, f"too many pairs: {len(pairs)}; send at most "
                       f"{settings.max_items_per_request} per request "
                       "(MODELZOO_MAX_ITEMS_PER_REQUEST)", code="invalid_input",
                       details={"limit": settings.max_items_per_request})
    prefix = [""] if body.is_single else [f"pairs[{i}]." for i in range(len(pairs))]
    _check_chars([(f"{p}{side}", text) for p, pair in zip(prefix, pairs, strict=True)
                  for side, text in zip(("text_a", "text_b"), pair, strict=True)], settings)


def _check_rank_limits(body: RankRequest, settings: SettingsDep) -> None:
    limit = settings.matching_max_candidates
    if len(body.candidates) > limit:
        raise APIError(422, f"too many candidates: {len(body.candidates)}; send at most "
                       f"{limit} per request (MODELZOO_MATCHING_MAX_CANDIDATES)",
                       code="invalid_input", details={"limit": limit})
    _check_chars([("query", body.query)]
                 + [(f"candidates[{i}]", c) for i, c in enumerate(body.candidates)], settings)


def score_batch(predictor: MatchingPredictor, items: list[tuple[str, str, str]]) -> list[float]:
    """The batcher's call: ``(text_a, text_b, model name)`` items of one model, scored
    together; one probability per item, in order."""
    model = items[0][2]
    return predictor.score_pairs([(a, b) for a, b, _ in items], model=model).scores


@router.post(
    "/match", response_model=MatchResponse, response_model_exclude_none=True,
    dependencies=[Depends(require_json)], summary="Score text pairs (duplicate questions)",
    description="Probability that two texts match, e.g. that two questions ask the same "
    "thing (Quora question pairs). Send `text_a` + `text_b` for one pair (the answer has "
    "`score` and `label` at the top level and in `results`) or `pairs` for several (one "
    "result per pair, in order). `label` is `score >= threshold`, with the threshold tuned "
    "on the model's dev split. `model` picks a served model (`GET /v1/match/models`); "
    "unknown words still get a score (letter trigrams). Limits: "
    "`MODELZOO_MAX_ITEMS_PER_REQUEST` pairs, `MODELZOO_MATCHING_MAX_CHARS` characters per "
    "text. Concurrent requests for the same model are batched together "
    "(`MODELZOO_MATCHING_MAX_BATCH_SIZE`, `MODELZOO_MATCHING_MAX_WAIT_MS`); 503 when the "
    "queue is full, 504 after `MODELZOO_REQUEST_TIMEOUT_S`.",
    responses={**BATCHED_ERROR_RESPONSES, **_NOT_FOUND},
)
async def match(body: MatchRequest, request: Request, model: MatchingDep,
                settings: SettingsDep) -> MatchResponse:
    _check_match_limits(body, settings)
    pairs = body.pair_list()
    matcher = model.resolve(body.model, "match")  # 404 before anything is queued
    batcher = get_batcher(request, "matching", partial(score_batch, model),
                          settings.matching_max_batch_size, settings.matching_max_wait_ms)
    if batcher is None:  # batching off: this request alone, in the threadpool
        scores = (await run_in_threadpool(model.score_pairs, pairs, matcher.name)).scores
    else:
        scores = await cancel_on_disconnect(
            batcher.submit([(a, b, matcher.name) for a, b in pairs], key=matcher.name),
            request.receive)
    threshold = matcher.threshold
    results = [MatchScore(score=round(s, 6), label=s >= threshold) for s in scores]
    single = results[0] if body.is_single else None
    return MatchResponse(model=matcher.name, threshold=threshold, results=results,
                         score=single.score if single else None,
                         label=single.label if single else None)


@router.post(
    "/match/rank", response_model=RankResponse, dependencies=[Depends(require_json)],
    summary="Rank candidates against a query (answer selection)",
    description="Scores every candidate against `query` (side a = query, side b = candidate, "
    "as in `/v1/match`) and returns them best first (ties keep request order), cut to "
    "`top_k`. Each result carries its index in the request. The default model is the best "
    "on WikiQA dev MAP. Limits: `MODELZOO_MATCHING_MAX_CANDIDATES` candidates, "
    "`MODELZOO_MATCHING_MAX_CHARS` characters per text.",
    responses={**ERROR_RESPONSES, **_NOT_FOUND},
)
async def rank(body: RankRequest, model: MatchingDep, settings: SettingsDep) -> RankResponse:
    _check_rank_limits(body, settings)
    name, ranked = await run_in_threadpool(model.rank, body.query, body.candidates, body.model,
                                           body.top_k)
    return RankResponse(model=name, results=[
        RankedCandidateOut(index=c.index, text=c.text, score=round(c.score, 6)) for c in ranked])


@router.get(
    "/match/models", response_model=MatchModelsResponse,
    summary="List the matching models",
    description="Every served matching model (architecture, training dataset, decision "
    "threshold, dev metrics, parameters) and which one each endpoint uses by default. An "
    "ensemble (`arch` `ensemble`) scores a pair with the mean of its `members`' "
    "probabilities and is the default when its dev metric is the best.",
    responses={503: ERROR_RESPONSES[503]},
)
async def match_models(model: MatchingDep) -> MatchModelsResponse:
    return MatchModelsResponse(
        default_match=model.defaults["match"], default_rank=model.defaults["rank"],
        models=[MatchModelInfo(**info) for info in model.models_info()])
