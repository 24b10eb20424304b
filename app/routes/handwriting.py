"""Multi-letter handwriting recognition from an uploaded image (multipart/form-data)."""

from __future__ import annotations

import base64
import time
from functools import partial
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, File, Query, Request, UploadFile
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from app.batching import cancel_on_disconnect
from app.deps import HandwritingDep, SettingsDep, get_batcher
from app.errors import BATCHED_ERROR_RESPONSES, APIError, error_doc
from app.schemas.handwriting import Alternative, Character, RecognizeResponse, TextLineBox
from models.handwriting.predictor import HandwritingPredictor, Recognition, annotate

router = APIRouter(prefix="/v1/handwriting", tags=["handwriting"])

IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/bmp", "image/x-ms-bmp",
               "image/tiff")
# Clients that cannot tell the type send one of these; the decoder then decides.
GENERIC_TYPES = ("", "application/octet-stream")

UPLOAD_ERRORS: dict[int | str, dict[str, Any]] = {
    **BATCHED_ERROR_RESPONSES,
    413: error_doc("The upload is over MODELZOO_MAX_UPLOAD_BYTES, or the decoded image over "
                   "MODELZOO_HANDWRITING_MAX_PIXELS (`image_too_large`).", "image_too_large",
                   "the image is 7000×7000 = 49000000 pixels, more than the limit of 40000000; "
                   "downscale it so that width × height <= 40000000 and send it again",
                   {"width": 7000, "height": 7000, "max_pixels": 40000000}),
    415: error_doc("Not an image upload.", "unsupported_media_type",
                   "the file is 'text/markdown'; send a PNG, JPEG, WebP, BMP or TIFF image",
                   {"accepted": list(IMAGE_TYPES)}),
    422: error_doc("Invalid input: no `file` field, an empty file, or data that is not a "
                   "readable image.", "invalid_input", "the data is not a readable image; "
                   "send a complete PNG, JPEG, WebP, BMP or TIFF file"),
}

UPLOAD_DOC = ("The image as the multipart form field `file` (PNG, JPEG, WebP, BMP or TIFF; "
              "size limit `MODELZOO_MAX_UPLOAD_BYTES`).")


def _check_upload(request: Request, file: UploadFile) -> None:
    """415 unless the request is multipart and the part is (or may be) an image."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "multipart/form-data":  # pragma: no cover - FastAPI answers 422 first
        raise APIError(415, "send the image as multipart/form-data in the field 'file'")
    part_type = (file.content_type or "").split(";")[0].strip().lower()
    if part_type not in IMAGE_TYPES + GENERIC_TYPES:
        raise APIError(415, f"the file is {part_type!r}; send a PNG, JPEG, WebP, BMP or TIFF "
                       "image", details={"accepted": list(IMAGE_TYPES)})


async def _read(request: Request, file: UploadFile, settings: SettingsDep) -> bytes:
    _check_upload(request, file)
    data = await file.read()
    if not data:
        raise APIError(422, "the uploaded file is empty; send an image", code="invalid_input")
    if len(data) > settings.max_upload_bytes:  # pragma: no cover - the middleware stops it
        raise APIError(413, f"the image is larger than {settings.max_upload_bytes} bytes")
    return data


def classify_batch(model: HandwritingPredictor, pages: list[np.ndarray]) -> list[np.ndarray]:
    """The batcher's call: the letter crops of several images, uint8 ``(N_i, 64, 64)`` each,
    classified in one CNN pass; float32 ``(N_i, n_classes)`` probabilities per image, in
    order. (The served CNN gives the same probabilities for a crop whatever its batch:
    float32, or static int8 with fixed activation ranges.)"""
    sizes = [len(crops) for crops in pages]
    probs = model.classify(np.concatenate(pages))
    return np.split(probs, np.cumsum(sizes)[:-1])


async def _recognize(request: Request, model: HandwritingPredictor, settings: SettingsDep,
                     data: bytes, pipeline: str = "auto") -> tuple[Recognition, np.ndarray]:
    """``lines``: decode, find and read the lines in the threadpool. ``contours``/``auto``:
    decode and segment in the threadpool, then classify the letters, batched with those of
    concurrent requests (``MODELZOO_HANDWRITING_MAX_BATCH_SIZE`` images per pass); ``auto``
    then reads the lines too, jointly with the contour reading where both found a line."""
    model.check_pipeline(pipeline)
    if pipeline == "lines":
        return await run_in_threadpool(model.recognize, data, settings.handwriting_max_pixels,
                                       settings.handwriting_max_side, "lines")
    page = await run_in_threadpool(model.segment_image, data, settings.handwriting_max_pixels,
                                   settings.handwriting_max_side)
    batcher = get_batcher(request, "handwriting", partial(classify_batch, model),
                          settings.handwriting_max_batch_size, settings.handwriting_max_wait_ms)
    started = time.perf_counter()
    if batcher is None or len(page.crops) == 0:
        probs = await run_in_threadpool(model.classify, page.crops)
    else:
        [probs] = await cancel_on_disconnect(batcher.submit([page.crops]), request.receive)
    contours = model.assemble(page, probs, 1000 * (time.perf_counter() - started))
    if pipeline == "contours":
        return contours, page.rgb
    return await run_in_threadpool(model.finish, contours, page, pipeline), page.rgb


PipelineQuery = Annotated[Literal["auto", "lines", "contours"], Query(
    description="`contours`: segment letters and classify each (best for letters written "
    "apart, e.g. block capitals); `lines`: read each text line whole with the CRNN line "
    "recognizer (mixed case, joined writing, notebook pages); `auto`: both: each line that "
    "both pipelines found is read jointly (the line recognizer's likelihood, the language "
    "model and the letter classifier's evidence scored together over the two readings and "
    "their mixes); the contour reading is the base when the letter classifier is sure of "
    "every letter, else the line reading (measured in "
    "`benchmarks/handwriting_pipeline_rule.py`).")]


def _response(result: Recognition, model: HandwritingPredictor,
              png: bytes | None) -> RecognizeResponse:
    labels = model.classes if result.pipeline == "contours" else model.labels
    return RecognizeResponse(
        text=result.text, lines=result.lines, width=result.width, height=result.height,
        labels=labels, pipeline=result.pipeline,
        line_boxes=[TextLineBox(text=t, box=list(b), words=[list(w) for w in ws],
                                pipeline=result.line_pipeline(i))
                    for i, (t, b, ws) in enumerate(zip(result.lines, result.line_boxes,
                                                       result.word_boxes, strict=False))],
        characters=[Character(char=c.char, confidence=c.confidence, box=list(c.box), line=c.line,
                              word=c.word,
                              alternatives=[Alternative(char=a, confidence=p)
                                            for a, p in c.alternatives])
                    for c in result.letters],
        annotated_png=base64.b64encode(png).decode("ascii") if png is not None else None,
    )


@router.post("/recognize", response_model=RecognizeResponse, summary="Read handwriting",
             description="Reads the text of the image by one of two pipelines (`pipeline`): "
             "`contours` segments it into letters (lines top to bottom, letters left to "
             "right, a space between words) and classifies each with the letter CNN; `lines` "
             "finds the text lines (ruled or plain paper, any part of a photo), deskews them "
             "and reads each whole with the CRNN + CTC line recognizer and a character "
             "language model; `auto` (default) reads both ways and keeps the better "
             "reading of each line. "
             + UPLOAD_DOC + " An image without ink gives empty text. The letters of "
             "concurrent requests are classified together in one batch "
             "(`MODELZOO_HANDWRITING_MAX_BATCH_SIZE` images, `MODELZOO_HANDWRITING_MAX_WAIT_MS`)"
             "; 503 when the queue is full, 504 after `MODELZOO_REQUEST_TIMEOUT_S`.",
             responses=UPLOAD_ERRORS)
async def recognize(
    request: Request,
    file: Annotated[UploadFile, File(description="The image to read.")],
    model: HandwritingDep,
    settings: SettingsDep,
    annotate_image: Annotated[bool, Query(
        alias="annotate", description="Also return the image with boxes and letters drawn "
        "on it (PNG, base64).")] = False,
    pipeline: PipelineQuery = "auto",
) -> RecognizeResponse:
    data = await _read(request, file, settings)
    result, rgb = await _recognize(request, model, settings, data, pipeline)
    png = await run_in_threadpool(annotate, rgb, result) if annotate_image else None
    return _response(result, model, png)


@router.post("/annotate", summary="Read handwritten letters, return the annotated image",
             description="The same recognition as `/v1/handwriting/recognize`, answered with "
             "the image itself (PNG) with each letter's box and prediction drawn on it; the "
             "text is in the `X-Text` header (JSON-escaped). " + UPLOAD_DOC,
             response_class=Response,
             responses={200: {"description": "The annotated image (PNG); the text in `X-Text`.",
                              "content": {"image/png": {
                                  "schema": {"type": "string", "format": "binary"}}},
                              "headers": {"X-Text": {
                                  "description": "The recognized text, JSON-escaped (a line "
                                  "break is `\\n`).", "schema": {"type": "string"}}}},
                        **UPLOAD_ERRORS})
async def annotate_route(
    request: Request,
    file: Annotated[UploadFile, File(description="The image to read.")],
    model: HandwritingDep,
    settings: SettingsDep,
    pipeline: PipelineQuery = "auto",
) -> Response:
    data = await _read(request, file, settings)
    result, rgb = await _recognize(request, model, settings, data, pipeline)
    png = await run_in_threadpool(annotate, rgb, result)
    text = result.text.encode("unicode_escape").decode("ascii")
    return Response(png, media_type="image/png", headers={"X-Text": text})
