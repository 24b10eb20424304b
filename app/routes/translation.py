"""German→English translation with the Multi30k Transformer."""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from app.batching import cancel_on_disconnect
from app.deps import SettingsDep, TranslationDep, get_batcher, require_json
from app.errors import BATCHED_ERROR_RESPONSES, APIError
from app.schemas.translation import TranslateRequest, TranslateResponse, TranslationOut
from models.translation.predictor import Translation, TranslationPredictor

router = APIRouter(prefix="/v1", tags=["translation"], dependencies=[Depends(require_json)])


def _check_limits(texts: list[str], settings: SettingsDep) -> None:
    """422 naming the limit and its environment variable."""
    if len(texts) > settings.max_items_per_request:
        raise APIError(422, f"too many texts: {len(texts)}; send at most "
                       f"{settings.max_items_per_request} per request "
                       "(MODELZOO_MAX_ITEMS_PER_REQUEST)", code="invalid_input")
    for i, text in enumerate(texts):
        if len(text) > settings.translation_max_chars:
            where = "text" if len(texts) == 1 else f"texts[{i}]"
            raise APIError(422, f"{where} has {len(text)} characters; the limit is "
                           f"{settings.translation_max_chars} (MODELZOO_TRANSLATION_MAX_CHARS)",
                           code="invalid_input", details={"index": i})


class Decoding(NamedTuple):
    """Decoding parameters: the batch key (texts decoded differently never share a batch)."""

    beam_size: int
    max_length: int | None
    length_penalty: float


def translate_batch(model: TranslationPredictor,
                    items: list[tuple[str, Decoding]]) -> list[Translation]:
    """The batcher's call: texts that share one :class:`Decoding`, translated together."""
    decoding = items[0][1]
    return model.translate([text for text, _ in items], **decoding._asdict())


@router.post(
    "/translate", response_model=TranslateResponse, summary="Translate German to English",
    description="Beam search (`beam_size` 1 = greedy) with the GNMT length penalty. Send "
    "`text` for one sentence or `texts` for a batch (translated together, returned in "
    "order). Limits: `MODELZOO_MAX_ITEMS_PER_REQUEST` texts, "
    "`MODELZOO_TRANSLATION_MAX_CHARS` characters each; sources are cut at 200 subwords. "
    "Concurrent requests with the same decoding parameters are batched together "
    "(`MODELZOO_TRANSLATION_MAX_BATCH_SIZE`, `MODELZOO_TRANSLATION_MAX_WAIT_MS`); 503 when "
    "the queue is full, 504 after `MODELZOO_REQUEST_TIMEOUT_S`.",
    responses=BATCHED_ERROR_RESPONSES,
)
async def translate(body: TranslateRequest, request: Request, model: TranslationDep,
                    settings: SettingsDep) -> TranslateResponse:
    texts = body.sentences()
    _check_limits(texts, settings)
    decoding = Decoding(body.beam_size, body.max_length, body.length_penalty)
    batcher = get_batcher(request, "translation", partial(translate_batch, model),
                          settings.translation_max_batch_size, settings.translation_max_wait_ms)
    if batcher is None:  # batching off: this request alone, in the threadpool
        results = await run_in_threadpool(model.translate, texts, **decoding._asdict())
    else:
        results = await cancel_on_disconnect(
            batcher.submit([(t, decoding) for t in texts], key=decoding), request.receive)
    return TranslateResponse(
        translations=[TranslationOut(text=r.text, score=round(r.score, 4)) for r in results],
        beam_size=body.beam_size,
    )
