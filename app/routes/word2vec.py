"""Nearest words, similarity, analogies and 2-D pictures from the word2vec models."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Response

from app.deps import SettingsDep, Word2VecDep, require_json
from app.errors import ERROR_RESPONSES, APIError, error_doc
from app.schemas.word2vec import (
    AnalogyRequest,
    AnalogyResponse,
    BatchNeighborsItem,
    BatchNeighborsRequest,
    BatchNeighborsResponse,
    Neighbor,
    NeighborsRequest,
    NeighborsResponse,
    PlotRequest,
    SimilarityItem,
    SimilarityRequest,
    SimilarityResponse,
)

router = APIRouter(prefix="/v1/word2vec", tags=["word2vec"], dependencies=[Depends(require_json)])

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: error_doc("A word is not in the vocabulary, or `model` names no served model.",
                   "not_found", "not in the vocabulary: 'xyzzy'. The model knows the 9858 "
                   "words of the Penn Treebank training set seen at least 5 times (lowercase, "
                   "'<unk>' for rare words and 'N' for numbers)", {"unknown": ["xyzzy"]})
}
UNKNOWN_MODEL: dict[int | str, dict[str, Any]] = {
    404: error_doc("`model` names no served model.", "not_found",
                   "unknown word2vec model 'glove': choose one of 'skipgram', 'cbow' "
                   "(default 'skipgram')", {"models": ["skipgram", "cbow"]})
}


def _check_items(n: int, limit: int, what: str) -> None:
    if n > limit:
        raise APIError(422, f"too many {what}: {n}; send at most {limit} per request "
                       "(MODELZOO_MAX_ITEMS_PER_REQUEST)", code="invalid_input")


@router.post(
    "/neighbors", response_model=NeighborsResponse, summary="Nearest words",
    description="The `k` words with the highest cosine similarity to `word` (itself "
    "excluded), best first. Unknown word: 404.",
    responses={**ERROR_RESPONSES, **NOT_FOUND},
)
def neighbors(body: NeighborsRequest, model: Word2VecDep) -> NeighborsResponse:
    model.get_vectors(body.model)  # an unknown model is a 404 before the word is looked up
    word = model.canonical(body.word)
    (found,) = model.neighbors([word], body.k, body.model)
    assert found is not None
    return NeighborsResponse(word=word, neighbors=[Neighbor(word=w, cosine=c) for w, c in found])


@router.post(
    "/neighbors/batch", response_model=BatchNeighborsResponse, summary="Nearest words, batched",
    description="Nearest words for many words in one call; an unknown word gets "
    "`neighbors: null` and an `error`, the others are answered.",
    responses={**ERROR_RESPONSES, **UNKNOWN_MODEL},
)
def neighbors_batch(
    body: BatchNeighborsRequest, model: Word2VecDep, settings: SettingsDep
) -> BatchNeighborsResponse:
    _check_items(len(body.words), settings.max_items_per_request, "words")
    found = model.neighbors(body.words, body.k, body.model)
    return BatchNeighborsResponse(results=[
        BatchNeighborsItem(
            word=w,
            neighbors=None if f is None else [Neighbor(word=x, cosine=c) for x, c in f],
            error=model.unknown_message([w]) if f is None else None,
        )
        for w, f in zip(body.words, found, strict=True)
    ])


@router.post(
    "/similarity", response_model=SimilarityResponse, summary="Cosine similarity of word pairs",
    description="Cosine per pair; a pair with an unknown word gets `cosine: null` and lists "
    "the unknown words, without failing the other pairs.",
    responses={**ERROR_RESPONSES, **UNKNOWN_MODEL},
)
def similarity(
    body: SimilarityRequest, model: Word2VecDep, settings: SettingsDep
) -> SimilarityResponse:
    _check_items(len(body.pairs), settings.max_items_per_request, "pairs")
    scored = model.similarity(body.pairs, body.model)
    return SimilarityResponse(results=[
        SimilarityItem(pair=p, cosine=cos, unknown=unknown)
        for p, (cos, unknown) in zip(body.pairs, scored, strict=True)
    ])


@router.post(
    "/analogy", response_model=AnalogyResponse, summary="Word analogy (3CosAdd)",
    description="The `k` words nearest `a - b + c` by cosine, the three input words "
    "excluded: `king - man + woman`. Unknown word: 404 naming it.",
    responses={**ERROR_RESPONSES, **NOT_FOUND},
)
def analogy(body: AnalogyRequest, model: Word2VecDep) -> AnalogyResponse:
    answers = model.analogy(body.a, body.b, body.c, body.k, body.model)
    return AnalogyResponse(
        query=f"{body.a} - {body.b} + {body.c}",
        answers=[Neighbor(word=w, cosine=c) for w, c in answers],
    )


@router.post(
    "/plot", response_class=Response, summary="Picture of words in 2-D (PNG)",
    description="The words' vectors projected to 2-D (`pca`, the default, or `tsne`) and "
    "drawn as labelled points: a 1000x750 `image/png`. Words not in the vocabulary are left "
    "out of the picture and listed, percent-encoded and comma-separated, in the "
    "`X-Unknown-Words` header (empty when all are known); the drawn words are in "
    "`X-Plotted-Words`. 422 for fewer than 2 distinct known words or more than 100 words.",
    responses={
        200: {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
              "description": "The picture (1000x750 PNG); headers `X-Unknown-Words`, "
              "`X-Plotted-Words`.",
              "headers": {
                  "X-Unknown-Words": {"description": "Words left out (not in the "
                                      "vocabulary), percent-encoded, comma-separated; empty "
                                      "when all are known.", "schema": {"type": "string"}},
                  "X-Plotted-Words": {"description": "The words drawn, percent-encoded, "
                                      "comma-separated.", "schema": {"type": "string"}}}},
        **ERROR_RESPONSES, **UNKNOWN_MODEL,
    },
)
def plot(body: PlotRequest, model: Word2VecDep) -> Response:
    png, plotted, unknown = model.plot(body.words, body.method, body.model)
    return Response(png, media_type="image/png", headers={
        "X-Unknown-Words": ",".join(quote(w, safe="") for w in unknown),
        "X-Plotted-Words": ",".join(quote(w, safe="") for w in plotted),
        "Cache-Control": "no-store",
    })
