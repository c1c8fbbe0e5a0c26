"""The client of ``sammed2d serve``: numpy and requests only, so it runs in Slicer's Python.

Only idempotent calls (info, volume look-up, upload by content id, delete, job queries) are
retried; a click or a propagation is sent once, so a flaky network never runs it twice.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import requests

from .. import __version__
from ..ids import image_id, volume_id
from ..wire import IDENTITY_DIRECTION, PROTOCOL_VERSION, encode_array, encode_image, pack_mask, unpack_crop, wire_dtype
from .errors import (
    ApiError,
    BadRequest,
    Cancelled,
    ProtocolMismatch,
    SAMMed2DClientError,
    ServerError,
    ServerNotRunning,
    ServerTimeout,
    Unauthorized,
    VolumeEvicted,
)

logger = logging.getLogger(__name__)

Points = Sequence[Sequence[float]] | np.ndarray
ProgressCallback = Callable[[int, int, int], None]  # (done, planned, slice index)


@dataclass(frozen=True)
class Timeouts:
    """Seconds; ``model`` covers a first click (encoder on a CPU) and each slice of a propagation, ``suggest`` one
    slice of Everything mode (m² decoder calls: minutes on a CPU for a 32×32 grid)."""

    connect: float = 5.0
    quick: float = 30.0
    model: float = 300.0
    upload: float = 900.0
    suggest: float = 3600.0


@dataclass
class RemoteVolume:
    """A volume the server holds (or held): the client keeps the array to upload it again if evicted."""

    id: str
    array: np.ndarray = field(repr=False)
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]
    preset: str
    #: whether the last upload sent the voxels (False: the server had them already)
    sent_pixels: bool = False

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)


@dataclass(frozen=True)
class PackedResult:
    """A mask as the server sends it: the crop of its bounding box inside the slice."""

    shape: tuple[int, int]
    box: tuple[int, int, int, int] | None  # x0, y0, x1, y1 (exclusive); None for an empty crop
    crop: np.ndarray = field(repr=False)

    @property
    def mask(self) -> np.ndarray:
        """The full-size boolean mask."""
        mask = np.zeros(self.shape, dtype=bool)
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            mask[y0:y1, x0:x1] = self.crop
        return mask

    @classmethod
    def from_wire(cls, packed: Mapping[str, Any]) -> "PackedResult":
        box, crop = unpack_crop(packed)
        return cls((int(packed["shape"][0]), int(packed["shape"][1])), box, crop)


@dataclass(frozen=True)
class SegmentResult(PackedResult):
    """One click's answer. The crop also covers the result it refines, so writing it over that one is exact."""

    score: float = 0.0
    area: int = 0
    handle: str = ""  # pass as ``previous`` to refine, or as a propagation key
    embedding_cached: bool = False


@dataclass(frozen=True)
class PropagatedSlice(PackedResult):
    index: int = 0
    score: float = 0.0
    done: int = 0
    planned: int = 0


@dataclass(frozen=True)
class SuggestedMask(PackedResult):
    """One mask of Everything mode."""

    score: float = 0.0  # the model's predicted IoU
    stability: float = 0.0
    area: int = 0
    point: tuple[float, float] = (0.0, 0.0)  # the grid click (x, y) it answers


@dataclass(frozen=True)
class SuggestResult:
    """Everything mode's answer for one slice: its masks, best rated first, and what they cost."""

    masks: list[SuggestedMask]
    prompts: int
    decoded: int
    seconds: float
    embedding_cached: bool


class PropagationStream:
    """Per-slice results as the server computes them; ``report`` holds the final summary.

    Iterate it (or call ``wait``). ``cancel()`` asks the server to stop and lets the stream end with
    ``report['cancelled']``; ``close()`` drops the stream at once (the server stops too).
    """

    def __init__(self, client: "Client", response: requests.Response, progress: ProgressCallback | None,
                 cancel: Callable[[], bool] | None) -> None:
        self._client = client
        self._response = response
        self._progress = progress
        self._should_cancel = cancel
        self._lines = response.iter_lines(chunk_size=None)
        self.job_id: str = response.headers.get("X-Job-Id", "")
        self.report: dict[str, Any] | None = None
        self._cancel_sent = False

    def __iter__(self) -> Iterator[PropagatedSlice]:
        try:
            for line in self._lines:
                if not line:
                    continue
                event = json.loads(line)
                kind = event.get("event")
                if kind == "slice":
                    result = PropagatedSlice(**_packed_fields(event["mask"]), index=event["index"],
                                             score=event["score"], done=event["done"], planned=event["planned"])
                    if self._progress is not None:
                        self._progress(result.done, result.planned, result.index)
                    yield result
                    if self._should_cancel is not None and not self._cancel_sent and self._should_cancel():
                        self.cancel()
                elif kind == "finished":
                    self.report = event
                    return
                elif kind == "error":
                    raise _stream_error(event, "propagation failed")
        except requests.exceptions.RequestException as error:
            raise SAMMed2DClientError(f"the propagation stream from {self._client.url} broke: {error}") from None
        finally:
            self._response.close()
        if self.report is None:
            raise SAMMed2DClientError("the propagation stream ended without its final report (server stopped?)")

    def wait(self) -> dict[str, Any]:
        """Consume the stream; returns the report."""
        for _ in self:
            pass
        assert self.report is not None
        return self.report

    def cancel(self) -> None:
        if self.job_id and not self._cancel_sent:
            self._cancel_sent = True
            self._client.cancel_job(self.job_id)

    def close(self) -> None:
        self._response.close()

    def __enter__(self) -> "PropagationStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Client:
    """Talks to one server; ``connect()`` (done by default) checks the protocol before anything else."""

    def __init__(self, url: str, token: str, *, timeouts: Timeouts = Timeouts(), retries: int = 2,
                 verify: bool | str = True, connect: bool = True) -> None:
        self.url = url.rstrip("/")
        self.timeouts = timeouts
        self.retries = retries
        self._http = requests.Session()
        self._http.headers.update({"Authorization": f"Bearer {token}", "User-Agent": f"sammed2d-client/{__version__}"})
        self._verify = verify  # per request: a session-wide setting loses to REQUESTS_CA_BUNDLE
        self.info: dict[str, Any] = {}
        self.bytes_uploaded = 0
        self.pixel_uploads = 0
        if connect:
            self.connect()

    # handshake

    def connect(self) -> dict[str, Any]:
        """Fetch ``/v1/info`` and refuse a server of another protocol version."""
        try:
            response = self._request("GET", "/v1/info", idempotent=True, timeout=self.timeouts.quick)
            info = response.json()
        except BadRequest as error:
            raise ProtocolMismatch(
                f"{self.url} does not answer GET /v1/info like a SAM-Med2D server (HTTP {error.status}): check the "
                "address and port, or upgrade the server (pip install -U sammed2d) if it is very old"
            ) from None
        except ValueError:
            raise ProtocolMismatch(f"{self.url} answered /v1/info with something other than JSON: not a SAM-Med2D "
                                   "server; check the address and port") from None
        protocol = info.get("protocol") if isinstance(info, dict) else None
        if protocol != PROTOCOL_VERSION:
            if isinstance(protocol, int) and protocol > PROTOCOL_VERSION:
                advice = ("upgrade this client: update the SAM-Med2D extension in Slicer's Extensions Manager "
                          "(or pip install -U sammed2d)")
            else:
                advice = ("upgrade the server: pip install -U sammed2d on the server machine and restart "
                          "`sammed2d serve`")
            raise ProtocolMismatch(f"the server at {self.url} speaks protocol {protocol}, this client "
                                   f"{PROTOCOL_VERSION}: {advice}")
        self.info = info
        return info

    # volumes

    def upload(self, array: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0),
               origin: Sequence[float] = (0.0, 0.0, 0.0), direction: Sequence[float] = IDENTITY_DIRECTION,
               *, preset: str = "minmax") -> RemoteVolume:
        """Make the volume (K, J, I array, geometry as SimpleITK has it) available on the server.

        The server is asked by content id first; the voxels travel only when it does not have them.
        ``preset`` is the intensity mapping used for this volume's segmentations.
        """
        array = np.asarray(array)
        if array.ndim != 3:
            raise ValueError(f"a volume is a 3D (K, J, I) array; got shape {array.shape}")
        wire_dtype(array.dtype)
        geometry = tuple(float(v) for v in spacing), tuple(float(v) for v in origin), tuple(float(v) for v in direction)
        volume = RemoteVolume(volume_id(array, *geometry), array, *geometry, preset=preset)
        self._ensure_uploaded(volume)
        return volume

    def has_volume(self, volume_id_: str) -> bool:
        response = self._request("HEAD", f"/v1/volumes/{volume_id_}", idempotent=True, timeout=self.timeouts.quick,
                                 accept=(404,))
        return response.status_code == 200

    def delete(self, volume: RemoteVolume | str) -> bool:
        """Free the server's copy; returns False when it held none."""
        vid = volume.id if isinstance(volume, RemoteVolume) else volume
        response = self._request("DELETE", f"/v1/volumes/{vid}", idempotent=True, timeout=self.timeouts.quick,
                                 accept=(404,))
        return response.status_code == 204

    def _ensure_uploaded(self, volume: RemoteVolume) -> None:
        if self.has_volume(volume.id):
            volume.sent_pixels = False
            return
        data = encode_array(volume.array)
        params = {"shape": list(volume.array.shape), "dtype": volume.array.dtype.name, "spacing": list(volume.spacing),
                  "origin": list(volume.origin), "direction": list(volume.direction)}
        self._request("PUT", f"/v1/volumes/{volume.id}", idempotent=True, timeout=self.timeouts.upload, params=params,
                      data=data, headers={"Content-Type": "application/octet-stream"})
        self.bytes_uploaded += len(data)
        self.pixel_uploads += 1
        volume.sent_pixels = True
        logger.info("uploaded volume %s (%d bytes compressed)", volume.id, len(data))

    def _with_volume(self, volume: RemoteVolume, call: Callable[[], requests.Response]) -> requests.Response:
        """Run ``call``; if the server evicted the volume meanwhile, upload it again and retry once."""
        try:
            return call()
        except VolumeEvicted:
            logger.info("the server evicted volume %s; uploading it again", volume.id)
            self._ensure_uploaded(volume)
            return call()

    # segmentation

    def segment(self, volume: RemoteVolume, axis: str, index: int, points: Points | None = None,
                labels: Sequence[int] | None = None, box: Sequence[float] | None = None,
                previous: SegmentResult | str | None = None, multimask: bool | None = None,
                prefetch: bool = True) -> SegmentResult:
        """Segment slice ``index`` normal to ``axis`` (K, J or I); coordinates in the slice's pixels (x = column)."""
        body = _prompt(points, labels, box, previous, multimask)
        body.update(axis=axis, index=int(index), preset=volume.preset, prefetch=prefetch)
        response = self._with_volume(volume, lambda: self._request(
            "POST", f"/v1/volumes/{volume.id}/segment", json=body, timeout=self.timeouts.model))
        return _segment_result(response.json())

    def segment_image(self, image: np.ndarray, points: Points | None = None, labels: Sequence[int] | None = None,
                      box: Sequence[float] | None = None, previous: SegmentResult | str | None = None,
                      multimask: bool | None = None, preset: str = "minmax") -> SegmentResult:
        """Stateless mode for one 2D image (H×W or H×W×3): pixels are sent only if the server lacks them."""
        image = np.asarray(image)
        body = _prompt(points, labels, box, previous, multimask)
        body.update(image_id=image_id(image), preset=preset)
        try:
            response = self._request("POST", "/v1/images/segment", json=body, timeout=self.timeouts.model)
        except BadRequest as error:
            if error.code != "image_not_cached":
                raise
            body["image"] = encode_image(image)
            self.bytes_uploaded += len(body["image"]["data"])
            self.pixel_uploads += 1
            response = self._request("POST", "/v1/images/segment", json=body, timeout=self.timeouts.model)
        return _segment_result(response.json())

    def suggest(self, volume: RemoteVolume, axis: str, index: int, settings: Mapping[str, Any] | None = None,
                progress: Callable[[int, int], None] | None = None,
                cancel: Callable[[], bool] | None = None) -> SuggestResult:
        """Everything mode on slice ``index`` normal to ``axis``: masks from a grid of clicks, filtered as SAM's
        automatic mask generator does. ``settings`` are fields of ``sammed2d.everything.EverythingSettings``
        (points_per_side, pred_iou_thresh, stability_score_thresh, ...); omitted ones keep the engine's defaults.

        With ``progress`` or ``cancel`` the answer streams: ``progress(done, planned)`` is called per batch of grid
        points and ``cancel()`` polled there; when it says so the stream is closed (the server stops) and
        ``Cancelled`` is raised."""
        streaming = progress is not None or cancel is not None
        body = {"axis": axis, "index": int(index), "preset": volume.preset, "settings": dict(settings or {}),
                "stream": streaming}
        response = self._with_volume(volume, lambda: self._request(
            "POST", f"/v1/volumes/{volume.id}/suggest", json=body, timeout=self.timeouts.suggest, stream=streaming))
        if not streaming:
            return _suggest_result(response.json())
        try:
            for line in response.iter_lines(chunk_size=None):
                event = json.loads(line) if line else {}
                kind = event.get("event")
                if kind == "suggested":
                    return _suggest_result(event)
                if kind == "error":
                    raise _stream_error(event, "everything mode failed")
                if kind == "progress" and progress is not None:
                    progress(int(event["done"]), int(event["planned"]))
                if cancel is not None and cancel():
                    raise Cancelled(f"suggestions on slice {index} cancelled; the server stopped them")
        except requests.exceptions.RequestException as error:
            raise SAMMed2DClientError(f"the suggestion stream from {self.url} broke: {error}") from None
        finally:
            response.close()
        raise SAMMed2DClientError("the suggestion stream ended without its masks (server stopped?)")

    # propagation

    def propagate(self, volume: RemoteVolume, axis: str, keys: Mapping[int, SegmentResult | np.ndarray],
                  settings: Mapping[str, Any] | None = None, progress: ProgressCallback | None = None,
                  cancel: Callable[[], bool] | None = None) -> PropagationStream:
        """Start a propagation from key slices (results of ``segment`` or drawn masks) and stream its slices.

        ``progress(done, planned, index)`` is called per slice; ``cancel()`` is polled per slice.
        """
        body = {"axis": axis, "preset": volume.preset, "settings": dict(settings or {}),
                "keys": [_key(index, key) for index, key in sorted(keys.items())]}
        response = self._with_volume(volume, lambda: self._request(
            "POST", f"/v1/volumes/{volume.id}/propagate", json=body, timeout=self.timeouts.model, stream=True))
        return PropagationStream(self, response, progress, cancel)

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        return self._request("DELETE", f"/v1/jobs/{job_id}", idempotent=True, timeout=self.timeouts.quick).json()

    def job(self, job_id: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/jobs/{job_id}", idempotent=True, timeout=self.timeouts.quick).json()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # transport

    def _request(self, method: str, path: str, *, timeout: float, idempotent: bool = False,
                 accept: tuple[int, ...] = (), **kwargs: Any) -> requests.Response:
        attempts = 1 + (self.retries if idempotent else 0)
        failure: SAMMed2DClientError | None = None
        for attempt in range(attempts):
            if attempt:
                time.sleep(0.25 * 2 ** (attempt - 1))
            try:
                response = self._http.request(method, self.url + path, timeout=(self.timeouts.connect, timeout),
                                              verify=self._verify, **kwargs)
            except requests.exceptions.SSLError as error:
                raise SAMMed2DClientError(f"TLS with {self.url} failed: {error} (check the certificate, or pass "
                                          "verify= the server's CA file)") from None
            except requests.exceptions.ConnectTimeout:
                failure = ServerNotRunning(self.url, "connection timed out")
                continue
            except requests.exceptions.Timeout:
                raise ServerTimeout(self.url, timeout) from None  # the server may still be working: never re-send
            except requests.exceptions.ConnectionError as error:
                failure = ServerNotRunning(self.url, _reason(error))
                continue
            if response.status_code in (502, 503, 504) and attempt + 1 < attempts:
                failure = _error(self.url, response)
                continue
            if response.status_code < 400 or response.status_code in accept:
                return response
            raise _error(self.url, response)
        assert failure is not None
        raise failure


def _prompt(points: Points | None, labels: Sequence[int] | None, box: Sequence[float] | None,
            previous: SegmentResult | str | None, multimask: bool | None) -> dict[str, Any]:
    point_list = [] if points is None else np.asarray(points, dtype=float).reshape(-1, 2).tolist()
    label_list = [1] * len(point_list) if labels is None else [int(v) for v in labels]
    if len(label_list) != len(point_list):
        raise ValueError(f"{len(point_list)} points but {len(label_list)} labels")
    body: dict[str, Any] = {
        "points": [{"x": x, "y": y, "label": label} for (x, y), label in zip(point_list, label_list)]}
    if box is not None:
        body["box"] = [float(v) for v in box]
    if previous is not None:
        body["previous"] = previous.handle if isinstance(previous, SegmentResult) else previous
    if multimask is not None:
        body["multimask"] = multimask
    return body


def _key(index: int, key: SegmentResult | np.ndarray) -> dict[str, Any]:
    if isinstance(key, SegmentResult):
        return {"index": int(index), "handle": key.handle}
    return {"index": int(index), "mask": pack_mask(np.asarray(key, dtype=bool))}


def _stream_error(event: Mapping[str, Any], fallback: str) -> ApiError:
    """A stream's error line as the error a plain response with it would have raised."""
    code, detail = event.get("error", "internal"), event.get("detail", fallback)
    return BadRequest(400, code, detail) if code == "bad_request" else ServerError(500, code, detail)


def _suggest_result(answer: Mapping[str, Any]) -> SuggestResult:
    masks = [SuggestedMask(**_packed_fields(item["mask"]), score=float(item["score"]),
                           stability=float(item["stability"]), area=int(item["area"]),
                           point=(float(item["point"][0]), float(item["point"][1])))
             for item in answer["masks"]]
    return SuggestResult(masks, int(answer["prompts"]), int(answer["decoded"]), float(answer["seconds"]),
                         bool(answer["embedding_cached"]))


def _packed_fields(packed: Mapping[str, Any]) -> dict[str, Any]:
    result = PackedResult.from_wire(packed)
    return {"shape": result.shape, "box": result.box, "crop": result.crop}


def _segment_result(body: Mapping[str, Any]) -> SegmentResult:
    return SegmentResult(**_packed_fields(body["mask"]), score=float(body["score"]), area=int(body["area"]),
                         handle=body["handle"], embedding_cached=bool(body["embedding_cached"]))


def _error(url: str, response: requests.Response) -> SAMMed2DClientError:
    try:
        body = response.json()
        code, detail = str(body["error"]), str(body["detail"])
    except (ValueError, KeyError, TypeError):
        code, detail = "http_error", (response.text[:200] or response.reason or "no explanation")
    status = response.status_code
    if status == 401:
        return Unauthorized(url, detail)
    if status >= 500:
        return ServerError(status, code, detail)
    if code == "volume_unknown":
        return VolumeEvicted(status, code, detail)
    return BadRequest(status, code, detail)


def _reason(error: Exception) -> str:
    text = str(error)
    for known in ("Connection refused", "Name or service not known", "No route to host", "Connection reset"):
        if known in text:
            return known.lower()
    return type(error).__name__
