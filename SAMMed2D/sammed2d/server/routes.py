"""The v1 routes: thin adapters between HTTP and ``SegmentationService``.

Model work runs in worker threads (``run_in_threadpool``) so the event loop keeps answering other
clients while a slice is encoded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, FastAPI, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from .. import __version__
from ..errors import Cancelled, InputError, PromptOutside
from ..intensity import PRESETS
from ..everything import Suggestions
from ..volumes import AXES
from ..wire import IDENTITY_DIRECTION, PROTOCOL_VERSION, pack_mask
from .errors import ApiError, error_response
from .schemas import (
    HANDLE_PATTERN,
    ID_PATTERN,
    Dtype,
    ErrorBody,
    JobInfo,
    Limits,
    ModelInfo,
    PropagateRequest,
    SegmentImageRequest,
    SegmentResponse,
    SegmentSliceRequest,
    ServerInfo,
    SuggestedMask,
    SuggestResponse,
    SuggestSliceRequest,
    VolumeInfo,
)
from .jobs import JobStatus
from .refusals import Busy, Mismatch, Refusal, TooLarge, Unknown
from .service import SegmentationService, SegmentOutcome, SuggestionRun, VolumeMetadata

logger = logging.getLogger(__name__)

CAPABILITIES = ["volumes", "images", "refine", "propagate", "prefetch", "cancel", "suggest"]
#: the HTTP status of each kind of refusal by the service
STATUS: dict[type[Refusal], int] = {Mismatch: 400, Unknown: 404, TooLarge: 413, Busy: 429}
_ERRORS = {status: {"model": ErrorBody} for status in (400, 401, 404, 411, 413, 422, 429, 500)}
_UPLOAD_BODY = {"requestBody": {"required": True, "content": {"application/octet-stream": {
    "schema": {"type": "string", "format": "binary"}}}}}
_STREAM = {200: {"description": "one JSON object per line: started, slice (repeated), then finished or error",
                 "content": {"application/x-ndjson": {"schema": {"type": "string"}}}}}
_SUGGEST_STREAM = {200: {"description": "without stream: the masks; with stream, one JSON object per line: "
                                        "progress (repeated), then suggested (the same fields) or error",
                         "content": {"application/x-ndjson": {"schema": {"type": "string"}}}}}


def build_router(service: SegmentationService, max_request_bytes: int, max_upload_bytes: int) -> APIRouter:
    router = APIRouter(responses=_ERRORS)
    model = service.model
    info = ServerInfo(
        protocol=PROTOCOL_VERSION,
        server_version=__version__,
        model=ModelInfo(
            id=model.name, checkpoint_sha256=model.checkpoint_sha256, device=str(model.device),
            dtype=str(model.acceleration.dtype).removeprefix("torch."), acceleration=model.acceleration.describe(),
            image_size=model.spec.image_size, low_res_size=service.predictor.low_res_size,
        ),
        capabilities=CAPABILITIES, presets=list(PRESETS), axes=list(AXES),
        limits=Limits(
            max_request_bytes=max_request_bytes, max_upload_bytes=max_upload_bytes,
            volume_budget_bytes=service.limits.volume_budget_bytes,
            embedding_budget_bytes=service.limits.embedding_budget_bytes,
            max_results=service.limits.max_results, max_jobs=service.limits.max_jobs,
        ),
    )
    VolumePath = Path(pattern=ID_PATTERN, description="content id (sammed2d.ids.volume_id)")
    JobPath = Path(pattern=HANDLE_PATTERN, description="the job id from the stream's first line or X-Job-Id")

    @router.get("/info", response_model=ServerInfo)
    def get_info() -> ServerInfo:
        """Protocol, model and limits: clients check the protocol before anything else."""
        return info

    @router.get("/volumes/{volume_id}", response_model=VolumeInfo)
    def get_volume(volume_id: str = VolumePath) -> VolumeInfo:
        return _volume_info(service, volume_id)

    @router.head("/volumes/{volume_id}")
    def has_volume(volume_id: str = VolumePath) -> Response:
        """200 when the server holds this content (nothing to upload), 404 otherwise."""
        _volume_info(service, volume_id)
        return Response(status_code=200)

    @router.put("/volumes/{volume_id}", response_model=VolumeInfo, status_code=201, openapi_extra=_UPLOAD_BODY)
    async def put_volume(
        request: Request,
        response: Response,
        volume_id: str = VolumePath,
        shape: list[int] = Query(min_length=3, max_length=3, description="K, J, I sizes"),
        dtype: Dtype = Query(),
        spacing: list[float] = Query([1.0, 1.0, 1.0], min_length=3, max_length=3, description="mm along I, J, K"),
        origin: list[float] = Query([0.0, 0.0, 0.0], min_length=3, max_length=3, description="LPS mm"),
        direction: list[float] = Query(list(IDENTITY_DIRECTION), min_length=9, max_length=9, description="row-major"),
    ) -> VolumeInfo:
        """Upload a volume: the body is the zlib stream of its little-endian C-order voxels (K, J, I).

        The id must be ``sammed2d.ids.volume_id`` of the voxels and geometry; asking first with HEAD
        avoids sending data the server already has.
        """
        body = await request.body()
        metadata = VolumeMetadata(tuple(shape), dtype, tuple(spacing), tuple(origin), tuple(direction))
        _, created = await run_in_threadpool(service.add_volume, volume_id, metadata, body)
        if not created:
            response.status_code = 200
        return _volume_info(service, volume_id)

    @router.delete("/volumes/{volume_id}", status_code=204)
    def delete_volume(volume_id: str = VolumePath) -> Response:
        if service.volumes.remove(volume_id) is None:
            raise ApiError(404, "volume_unknown", f"volume {volume_id} is not on the server")
        return Response(status_code=204)

    @router.post("/volumes/{volume_id}/segment", response_model=SegmentResponse)
    async def segment_slice(body: SegmentSliceRequest, volume_id: str = VolumePath) -> Response:
        """Segment one slice from points, a box and/or an earlier result; the mask comes back as a packed crop."""
        return await run_in_threadpool(lambda: _response(service.segment_slice(volume_id, body)))

    @router.post("/volumes/{volume_id}/suggest", response_model=SuggestResponse, responses=_SUGGEST_STREAM)
    async def suggest_slice(body: SuggestSliceRequest, volume_id: str = VolumePath) -> Response:
        """Everything mode: masks found on one slice from an m×m grid of clicks, filtered by the model's predicted
        IoU, their stability and box NMS (SAM's automatic mask generator; its defaults). Takes m² decoder calls,
        so ``stream`` reports progress as it goes and stops when the stream is closed."""
        run = await run_in_threadpool(service.suggestion, volume_id, body)
        if body.stream:
            return _suggestion_stream(run)
        return await run_in_threadpool(lambda: _json(_suggestions(*run(None, None))))

    @router.post("/images/segment", response_model=SegmentResponse)
    async def segment_image(body: SegmentImageRequest) -> Response:
        """Stateless mode: name the image by its content id; send its pixels only after a 404 image_not_cached."""
        return await run_in_threadpool(lambda: _response(service.segment_image(body)))

    @router.post("/volumes/{volume_id}/propagate", response_class=StreamingResponse, responses=_STREAM)
    async def propagate(body: PropagateRequest, volume_id: str = VolumePath) -> StreamingResponse:
        """Propagate from key slices through the volume, streaming each slice; close the stream to cancel."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        def emit(item: dict[str, Any] | None) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is gone: the server is shutting down
                pass

        job = await run_in_threadpool(service.start_propagation, volume_id, body, emit)

        async def events() -> AsyncIterator[bytes]:
            try:
                yield _line({"event": "started", "job": job.id, "volume": volume_id, "axis": body.axis,
                             "keys": [key.index for key in body.keys]})
                while (item := await queue.get()) is not None:
                    yield _line(item)
            finally:  # also when the client closes the stream: stop computing for nobody
                job.cancel()

        return StreamingResponse(events(), media_type="application/x-ndjson", headers={"X-Job-Id": job.id})

    @router.get("/jobs", response_model=list[JobInfo])
    def list_jobs() -> list[JobInfo]:
        return [JobInfo(**asdict(status)) for status in service.jobs.all()]

    @router.get("/jobs/{job_id}", response_model=JobInfo)
    def get_job(job_id: str = JobPath) -> JobInfo:
        return _job(service.jobs.status(job_id), job_id)

    @router.delete("/jobs/{job_id}", response_model=JobInfo)
    def cancel_job(job_id: str = JobPath) -> JobInfo:
        """Ask a running propagation to stop before its next slice; its stream then ends with cancelled=true."""
        return _job(service.jobs.cancel(job_id), job_id)

    return router


def install_refusal_handlers(app: FastAPI) -> None:
    """The service's refusals and the engine's InputError (what the caller gave wrong) as 4xx answers; anything
    else is ours and goes on to the request guard's logged 500."""

    @app.exception_handler(Refusal)
    async def _refused(_: Request, error: Refusal) -> Response:
        status = next(code for kind, code in STATUS.items() if isinstance(error, kind))
        return error_response(status, error.code, error.detail)

    @app.exception_handler(InputError)
    async def _input(_: Request, error: InputError) -> Response:
        return error_response(400, "prompt_outside" if isinstance(error, PromptOutside) else "bad_request", str(error))


def _volume_info(service: SegmentationService, volume_id: str) -> VolumeInfo:
    volume = service.volume(volume_id)
    geometry = volume.geometry
    return VolumeInfo(id=volume_id, shape=list(volume.shape), dtype=volume.array.dtype.name,
                      spacing=list(geometry.spacing), origin=list(geometry.origin), direction=list(geometry.direction),
                      nbytes=volume.array.nbytes)


def _response(outcome: SegmentOutcome) -> Response:
    """Serialised in the worker thread: one hop to the thread pool per click instead of two (work, then
    FastAPI's response validation), which on a busy CPU costs a scheduler wake-up each."""
    body = SegmentResponse(mask=outcome.packed, score=outcome.score, area=outcome.area, handle=outcome.handle,
                           embedding_cached=outcome.embedding_cached)
    return Response(body.model_dump_json(), media_type="application/json")


def _suggestions(found: Suggestions, cached: bool) -> SuggestResponse:
    masks = [SuggestedMask(mask=pack_mask(item.mask), score=item.score, stability=item.stability, area=item.area,
                           point=list(item.point)) for item in found.masks]
    return SuggestResponse(masks=masks, prompts=found.prompts, decoded=found.decoded, seconds=found.seconds,
                           embedding_cached=cached)


def _json(body: SuggestResponse) -> Response:
    return Response(body.model_dump_json(), media_type="application/json")


def _suggestion_stream(run: SuggestionRun) -> StreamingResponse:
    """``run`` in a worker thread with its progress sent as lines while it works, then its masks. A client that
    closes the stream stops the work at the next batch of grid points: nobody waits for it any more."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    stop = threading.Event()

    def progress(done: int, planned: int) -> None:
        loop.call_soon_threadsafe(lines.put_nowait, {"event": "progress", "done": done, "planned": planned})

    def ended(task: asyncio.Future) -> None:
        error = None if task.cancelled() else task.exception()  # read here: never reported as unretrieved
        if isinstance(error, Cancelled):
            logger.info("suggestions stopped: the client closed the stream (%s)", error)
        lines.put_nowait(None)  # after every progress line: the loop runs its callbacks in order

    task = asyncio.ensure_future(run_in_threadpool(lambda: _suggestions(*run(progress, stop.is_set))))
    task.add_done_callback(ended)

    async def events() -> AsyncIterator[bytes]:
        try:
            while (item := await lines.get()) is not None:
                yield _line(item)
            error = task.exception()
            if error is None:
                yield _line({"event": "suggested", **task.result().model_dump(mode="json")})
            elif isinstance(error, InputError):
                yield _line({"event": "error", "error": "bad_request", "detail": str(error)})
            else:
                logger.error("everything mode failed", exc_info=error)
                yield _line({"event": "error", "error": "internal", "detail": "everything mode failed; see the "
                             "server log"})
        finally:
            stop.set()

    return StreamingResponse(events(), media_type="application/x-ndjson")


def _job(status: JobStatus | None, job_id: str) -> JobInfo:
    if status is None:
        raise ApiError(404, "job_unknown", f"no propagation job {job_id} (unknown, or finished long ago)")
    return JobInfo(**asdict(status))


def _line(item: dict[str, Any]) -> bytes:
    return (json.dumps(item, separators=(",", ":")) + "\n").encode()
