"""German→English translation with the Multi30k Transformer."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from app.deps import SettingsDep, TranslationDep, require_json
from app.errors import ERROR_RESPONSES, APIError
from app.schemas.translation import TranslateRequest, TranslateResponse, TranslationOut

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


@router.post(
    "/translate", response_model=TranslateResponse, summary="Translate German to English",
    description="Beam search (`beam_size` 1 = greedy) with the GNMT length penalty. Send "
    "`text` for one sentence or `texts` for a batch (translated together, returned in "
    "order). Limits: `MODELZOO_MAX_ITEMS_PER_REQUEST` texts, "
    "`MODELZOO_TRANSLATION_MAX_CHARS` characters each; sources are cut at 200 subwords.",
    responses=ERROR_RESPONSES,
)
def translate(body: TranslateRequest, model: TranslationDep,
              settings: SettingsDep) -> TranslateResponse:
    texts = body.sentences()
    _check_limits(texts, settings)
    results = model.translate(texts, beam_size=body.beam_size, max_length=body.max_length,
                              length_penalty=body.length_penalty)
    return TranslateResponse(
        translations=[TranslationOut(text=r.text, score=round(r.score, 4)) for r in results],
        beam_size=body.beam_size,
    )
