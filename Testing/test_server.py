"""`sammed2d serve` and its client, run for real: a server child process on a loopback port, driven
through `sammed2d.client` (and raw HTTP where the point is what goes over the wire).

Two servers: LiteMedSAM (the default, real weights) for results on real CT and timing under load,
and a tiny seeded random SAM-Med2D for everything where the model's quality does not matter.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import requests
import SimpleITK as sitk
import torch

from conftest import DATA, require
from sammed2d import ids, wire
from sammed2d.client import (
    BadRequest,
    Client,
    LocalServer,
    ProtocolMismatch,
    SAMMed2DClientError,
    ServerNotRunning,
    Unauthorized,
)
from sammed2d.intensity import fit_mapping
from sammed2d.metrics import dice as mask_dice
from sammed2d.models import ViTConfig, load_model
from sammed2d.predictor import Predictor
from sammed2d.propagation import Propagation, PropagationSettings
from sammed2d.server.locking import ModelLock
from sammed2d.session import VolumeSession
from sammed2d.volumes import Geometry, Volume, read_volume

TINY_VIT_JSON = json.dumps(ViTConfig(96, 4, 4, (1, 3)).to_dict())
#: --no-compile: the in-process twin runs eagerly, so both sides do the same arithmetic (compiled: one test below)
TINY = ["--model", "sam-med2d", "--random-weights", "--vit", TINY_VIT_JSON, "--seed", "0", "--threads", "1",
        "--no-compile"]
TINY_LIMITS = ["--memory-budget", "3M", "--max-upload", "2M", "--max-request", "1M", "--prefetch", "1",
               "--max-jobs", "2"]
#: lets a random network propagate through every slice (its scores, shapes and look mean nothing)
PERMISSIVE = {"min_score": 0.0, "min_appearance": 0.0, "min_overlap": 0.0, "max_growth": 1e6, "min_shrink": 0.0,
              "min_agreement": 0.0, "trim_unlike_outline": False}


@pytest.fixture(scope="module")
def tiny_server():
    with LocalServer(TINY + TINY_LIMITS) as server:
        yield server


@pytest.fixture(scope="module")
def lite_server():
    with LocalServer(["--threads", "1", "--no-compile"]) as server:
        yield server


@pytest.fixture(scope="module")
def tiny_model(one_thread):
    torch.manual_seed(0)  # what `serve --random-weights --seed 0` does
    return load_model("sam-med2d", vit=ViTConfig(96, 4, 4, (1, 3)), random_weights=True, device="cpu")


def auth(server: LocalServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token}"}


def assert_error(response: requests.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"} and body["detail"], body
    if code is not None:
        assert body["error"] == code, body
    return body


def synthetic_volume(slices: int = 12, rows: int = 48, cols: int = 56, seed: int = 0) -> np.ndarray:
    """A bright cylinder with noise: a structure that runs through every slice."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:rows, :cols]
    disk = (yy - rows / 2) ** 2 + (xx - cols / 2) ** 2 < (min(rows, cols) / 4) ** 2
    volume = rng.normal(40, 8, (slices, rows, cols)) + 160 * disk[None]
    return volume.astype(np.int16)


def in_process_session(array: np.ndarray, spacing, model, preset: str) -> VolumeSession:
    volume = Volume(array, Geometry(tuple(spacing), (0.0, 0.0, 0.0), wire.IDENTITY_DIRECTION))
    return VolumeSession(volume, Predictor(model), fit_mapping(array, preset))


# results: the same as in-process


def test_info_reports_protocol_model_and_limits(lite_server, litemedsam):
    info = lite_server.client.info
    assert info["protocol"] == wire.PROTOCOL_VERSION
    assert info["model"]["id"] == "litemedsam" and info["model"]["image_size"] == 256
    assert info["model"]["checkpoint_sha256"] == litemedsam.checkpoint_sha256
    assert info["model"]["device"] == "cpu" and info["model"]["dtype"] == "float32"  # LiteMedSAM stays fp32
    assert info["model"]["acceleration"] == litemedsam.acceleration.describe()
    assert {"volumes", "images", "propagate", "refine"} <= set(info["capabilities"])
    assert info["limits"]["max_request_bytes"] > 0 and info["limits"]["volume_budget_bytes"] > 0


def test_real_ct_segmentation_equals_the_in_process_session(lite_server, litemedsam, one_thread):
    path = require(DATA / "pyradiomics" / "lung2_image.nrrd")
    volume = read_volume(path)
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(DATA / "pyradiomics" / "lung2_label.nrrd"))) > 0
    k = int(np.argmax(truth.sum(axis=(1, 2))))
    rows, cols = np.nonzero(truth[k])
    box = [cols.min() - 2.0, rows.min() - 2.0, cols.max() + 3.0, rows.max() + 3.0]
    centre = [[float(cols.mean()), float(rows.mean())]]
    geometry = volume.geometry
    remote = lite_server.client.upload(volume.array, geometry.spacing, geometry.origin, geometry.direction,
                                       preset="ct-lung")
    first = lite_server.client.segment(remote, "K", k, box=box, prefetch=False)
    refined = lite_server.client.segment(remote, "K", k, points=centre + [[box[0] + 1, box[1] + 1]], labels=[1, 0],
                                         previous=first)

    session = VolumeSession(volume, Predictor(litemedsam), fit_mapping(volume.array, "ct-lung"))
    expected_first = session.segment("K", k, box=box)
    expected_refined = session.segment("K", k, points=centre + [[box[0] + 1, box[1] + 1]], point_labels=[1, 0],
                                       mask_logits=expected_first.low_res_logits[0])
    np.testing.assert_array_equal(first.mask, expected_first.masks[0])
    np.testing.assert_array_equal(refined.mask, expected_refined.masks[0])
    assert first.score == pytest.approx(float(expected_first.scores[0]), abs=1e-5)
    assert refined.embedding_cached and not first.embedding_cached
    dice = 2 * (first.mask & truth[k]).sum() / (first.mask.sum() + truth[k].sum())
    assert dice > 0.6, dice  # a real result, not just an equal one


def test_default_server_compiles_at_start_and_agrees_with_the_exact_path():
    """What users get from a plain `sammed2d serve`: the encoder compiled and warmed up before it listens."""
    volume = read_volume(require(DATA / "pyradiomics" / "lung2_image.nrrd"))
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(DATA / "pyradiomics" / "lung2_label.nrrd"))) > 0
    session = VolumeSession(volume, Predictor(load_model("litemedsam", device="cpu", precision="exact")),
                            fit_mapping(volume.array, "ct-lung"))
    geometry = volume.geometry
    with LocalServer([], startup_timeout=900) as server:
        assert "compiled" in server.client.info["model"]["acceleration"]
        remote = server.client.upload(volume.array, geometry.spacing, geometry.origin, geometry.direction,
                                      preset="ct-lung")
        for k in np.flatnonzero(truth.any(axis=(1, 2)))[::3]:
            rows, cols = np.nonzero(truth[k])
            box = [cols.min() - 2.0, rows.min() - 2.0, cols.max() + 3.0, rows.max() + 3.0]
            served = server.client.segment(remote, "K", int(k), box=box, prefetch=False).mask
            expected = session.segment("K", int(k), box=box).masks[0]
            assert mask_dice(served, expected) >= 0.99, k


@pytest.mark.parametrize("axis, index", [("J", 20), ("I", 31)])
def test_resampled_slices_equal_the_in_process_session(tiny_server, tiny_model, axis, index):
    """Slices across 3 mm sections are resampled to square pixels on the server exactly as in-process."""
    array, spacing = synthetic_volume(), (0.8, 0.8, 3.0)
    remote = tiny_server.client.upload(array, spacing)
    session = in_process_session(array, spacing, tiny_model, "minmax")
    height, width = session.volume.slice(axis, index).shape
    box = [2.0, 1.0, width - 3.0, height - 1.5]
    result = tiny_server.client.segment(remote, axis, index, points=[[width / 2, height / 2]], box=box)
    expected = session.segment(axis, index, points=[[width / 2, height / 2]], point_labels=[1], box=box)
    assert result.shape == (height, width)
    np.testing.assert_array_equal(result.mask, expected.masks[0])
    assert result.score == pytest.approx(float(expected.scores[0]), abs=1e-5)


def test_refined_crop_covers_the_result_it_replaces(tiny_server):
    array = synthetic_volume(seed=3)
    remote = tiny_server.client.upload(array)
    first = tiny_server.client.segment(remote, "K", 4, box=[1, 1, 50, 40])
    second = tiny_server.client.segment(remote, "K", 4, points=[[10, 10]], labels=[0], previous=first)
    canvas = first.mask.copy()
    x0, y0, x1, y1 = second.box
    canvas[y0:y1, x0:x1] = second.crop
    np.testing.assert_array_equal(canvas, second.mask)


def test_stateless_images_send_pixels_once_and_equal_the_predictor(tiny_server, tiny_model):
    client = tiny_server.client
    image = np.random.default_rng(5).integers(0, 4000, (70, 90)).astype(np.uint16)
    uploads = client.pixel_uploads
    first = client.segment_image(image, box=[5, 5, 60, 50], preset="percentile")
    assert client.pixel_uploads == uploads + 1 and not first.embedding_cached
    again = client.segment_image(image, box=[5, 5, 60, 50], preset="percentile")
    assert client.pixel_uploads == uploads + 1 and again.embedding_cached
    refined = client.segment_image(image, points=[[30, 30]], previous=first, preset="percentile")

    predictor = Predictor(tiny_model)
    embedding = predictor.encode(fit_mapping(image, "percentile").apply(image))
    expected = predictor.predict(embedding, box=[5, 5, 60, 50])
    np.testing.assert_array_equal(first.mask, expected.masks[0])
    np.testing.assert_array_equal(again.mask, expected.masks[0])
    expected_refined = predictor.predict(embedding, points=[[30, 30]], point_labels=[1],
                                         mask_logits=expected.low_res_logits[0])
    np.testing.assert_array_equal(refined.mask, expected_refined.masks[0])


def test_propagation_streams_the_in_process_result(tiny_server, tiny_model):
    array = synthetic_volume(slices=10)
    client = tiny_server.client
    remote = client.upload(array)
    key = client.segment(remote, "K", 4, box=[10, 8, 46, 40])
    seen = []
    settings = {**PERMISSIVE, "box_memory": 1, "refine_passes": 0, "discover_radius": 0.0}
    stream = client.propagate(remote, "K", {4: key}, settings=settings, progress=lambda *a: seen.append(a))
    slices = {item.index: item for item in stream}
    assert stream.report["cancelled"] is False and sorted(stream.report["computed"]) == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    assert [done for done, _, _ in seen] == list(range(1, 10)) and {planned for _, planned, _ in seen} == {9}

    session = in_process_session(array, (1.0, 1.0, 1.0), tiny_model, "minmax")
    expected_key = session.segment("K", 4, box=[10, 8, 46, 40])
    propagation = Propagation(session, "K", PropagationSettings(**settings))
    propagation.set_key(4, expected_key.masks[0], expected_key.low_res_logits[0], float(expected_key.scores[0]))
    propagation.run()
    assert set(slices) == set(propagation.results)
    for index, result in propagation.results.items():
        np.testing.assert_array_equal(slices[index].mask, result.mask)


def test_propagation_from_a_drawn_mask(tiny_server):
    array = synthetic_volume(slices=6)
    remote = tiny_server.client.upload(array)
    drawn = np.zeros(array.shape[1:], dtype=bool)
    drawn[10:30, 12:40] = True
    report = tiny_server.client.propagate(remote, "K", {2: drawn}, settings=PERMISSIVE).wait()
    assert sorted(report["computed"]) == [0, 1, 3, 4, 5]


def test_neighbours_are_encoded_in_the_background(tiny_server):
    client = tiny_server.client
    remote = client.upload(synthetic_volume(seed=61))
    client.segment(remote, "K", 5, box=[5, 5, 40, 40])  # prefetch radius 1: slices 4 and 6
    time.sleep(2.0)  # two tiny-model encodings take tens of milliseconds; this leaves room for a busy CPU
    assert client.segment(remote, "K", 6, box=[5, 5, 40, 40], prefetch=False).embedding_cached
    assert client.segment(remote, "K", 4, box=[5, 5, 40, 40], prefetch=False).embedding_cached
    assert not client.segment(remote, "K", 8, box=[5, 5, 40, 40], prefetch=False).embedding_cached


# uploads: once, under a budget


def test_second_upload_of_the_same_content_sends_no_pixels(tiny_server):
    array = synthetic_volume(seed=11)
    client = tiny_server.client
    before = client.bytes_uploaded
    first = client.upload(array, (0.5, 0.5, 2.0))
    sent = client.bytes_uploaded - before
    assert first.sent_pixels and sent > 0
    second = client.upload(array.copy(), (0.5, 0.5, 2.0))
    other_client = Client(tiny_server.url, tiny_server.token)
    third = other_client.upload(array, (0.5, 0.5, 2.0))
    assert second.id == first.id == third.id
    assert not second.sent_pixels and not third.sent_pixels
    assert client.bytes_uploaded - before == sent and other_client.bytes_uploaded == 0
    moved = client.upload(array, (0.5, 0.5, 2.5))  # same voxels, other geometry: other content
    assert moved.id != first.id and moved.sent_pixels


def test_eviction_under_the_memory_budget_and_transparent_reupload(tiny_server):
    client = tiny_server.client
    budget = client.info["limits"]["volume_budget_bytes"]
    shape = (36, 128, 128)  # 1.2 MB each: three do not fit in 3 MB
    volumes = [client.upload(np.random.default_rng(100 + i).integers(0, 1000, shape).astype(np.int16))
               for i in range(3)]
    assert 3 * volumes[0].array.nbytes > budget
    assert not client.has_volume(volumes[0].id), "the least recently used volume should have been evicted"
    assert client.has_volume(volumes[2].id)
    uploads = client.pixel_uploads
    result = client.segment(volumes[0], "K", 5, box=[10, 10, 100, 100])
    assert client.pixel_uploads == uploads + 1 and result.shape == (128, 128)
    assert client.has_volume(volumes[0].id)


def test_explicit_delete(tiny_server):
    client = tiny_server.client
    remote = client.upload(synthetic_volume(seed=21))
    assert client.delete(remote) and not client.has_volume(remote.id)
    assert not client.delete(remote)
    client.segment(remote, "K", 0, box=[1, 1, 20, 20])  # the client's copy travels again
    assert client.has_volume(remote.id)


# security


def test_every_route_needs_the_token(tiny_server):
    for headers in ({}, {"Authorization": "Bearer not-the-token"}, {"Authorization": tiny_server.token}):
        for method, path in (("GET", "/v1/info"), ("GET", "/openapi.json"), ("POST", "/v1/images/segment")):
            body = assert_error(requests.request(method, tiny_server.url + path, headers=headers, json={}), 401,
                                "unauthorized")
            assert "token" in body["detail"]
    with pytest.raises(Unauthorized, match="wrong token"):
        Client(tiny_server.url, "not-the-token-at-all")


def test_refuses_a_public_bind_without_an_explicit_token():
    env = {key: value for key, value in os.environ.items() if key != "SAMMED2D_TOKEN"}
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "sammed2d", "serve", "--host", "0.0.0.0", "--port", "0", *TINY],
                            capture_output=True, encoding="utf-8", timeout=120, env=env)
    assert result.returncode != 0
    assert "refusing to listen on 0.0.0.0 without an explicit token" in result.stderr
    assert "listening on" not in result.stdout and time.monotonic() - started < 60
    short = subprocess.run([sys.executable, "-m", "sammed2d", "serve", "--token", "short", *TINY],
                           capture_output=True, encoding="utf-8", timeout=120, env=env)
    assert short.returncode != 0 and "at least 16" in short.stderr


def test_oversized_body_is_refused_from_its_headers(tiny_server):
    """413 arrives although not one byte of the announced 50 MB body was sent."""
    host, port = tiny_server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall((f"PUT /v1/volumes/{'0' * 32}?shape=1&shape=1&shape=1&dtype=uint8 HTTP/1.1\r\n"
                            f"Host: {host}\r\nAuthorization: Bearer {tiny_server.token}\r\n"
                            "Content-Type: application/octet-stream\r\nContent-Length: 50000000\r\n\r\n").encode())
        answer = b""
        while b"}" not in answer and (chunk := connection.recv(65536)):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413") and b'"error":"too_large"' in answer


def test_tls(tmp_path):
    certificate, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                           "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out",
                           str(certificate)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"openssl could not make a test certificate: {made.stderr.decode()[-200:]}")
    with LocalServer(TINY + ["--ssl-certfile", str(certificate), "--ssl-keyfile", str(key)],
                     verify=str(certificate)) as server:
        assert server.url.startswith("https://") and server.client.info["protocol"] == wire.PROTOCOL_VERSION
        with pytest.raises(SAMMed2DClientError, match="TLS"):
            Client(server.url, server.token)  # the system store does not know this certificate
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(server.url.replace("https", "http") + "/v1/info", headers=auth(server), timeout=5)


# bad input: a 4xx with a JSON body saying what to change


@pytest.fixture(scope="module")
def bad_input_volume(tiny_server):
    return tiny_server.client.upload(synthetic_volume(seed=31))


def segment_request(server, volume_id, **fields):
    body = {"axis": "K", "index": 2, "box": [5, 5, 30, 30], **fields}
    return requests.post(f"{server.url}/v1/volumes/{volume_id}/segment", json=body, headers=auth(server))


def put_volume(server, array: np.ndarray, volume_id: str | None = None, data: bytes | None = None, **params):
    query = {"shape": list(array.shape), "dtype": array.dtype.name, **params}
    vid = volume_id or ids.volume_id(array, (1, 1, 1), (0, 0, 0), wire.IDENTITY_DIRECTION)
    return requests.put(f"{server.url}/v1/volumes/{vid}", params=query,
                        data=wire.encode_array(array) if data is None else data,
                        headers={**auth(server), "Content-Type": "application/octet-stream"})


def test_bad_volumes_are_refused(tiny_server):
    array = np.zeros((2, 3, 4), dtype=np.int16)
    body = assert_error(put_volume(tiny_server, array, shape=[2, 3, 5]), 400, "bad_request")
    assert "does not match shape" in body["detail"]
    assert_error(put_volume(tiny_server, array, data=b"not zlib"), 400, "bad_request")
    assert_error(put_volume(tiny_server, array, dtype="complex64"), 422, "invalid_request")
    nan = np.zeros((2, 3, 4), dtype=np.float32)
    nan[1, 1, 1] = np.nan
    assert "NaN" in assert_error(put_volume(tiny_server, nan), 400)["detail"]
    assert_error(put_volume(tiny_server, array, volume_id="f" * 32), 400, "content_mismatch")
    assert_error(put_volume(tiny_server, array, spacing=[1, 0, 1]), 400)
    huge = np.zeros((64, 256, 256), dtype=np.int16)  # 8 MB inflated, a few kB compressed: over the 3 MB budget
    assert "budget" in assert_error(put_volume(tiny_server, huge), 413, "volume_too_large")["detail"]
    with pytest.raises(ValueError, match="dtype complex64 is not supported"):
        tiny_server.client.upload(np.zeros((2, 3, 4), dtype=np.complex64))


@pytest.mark.parametrize("fields, status, code, words", [
    ({"axis": "X"}, 422, "invalid_request", "axis"),
    ({"index": 12}, 400, "bad_request", "outside the volume"),
    ({"points": [{"x": 100, "y": 3}]}, 400, "prompt_outside", "point (100, 3) lies outside the 56×48 slice"),
    ({"box": [5, 5, 60, 30]}, 400, "prompt_outside", "box corner"),
    ({"box": [30, 5, 5, 30]}, 400, "bad_request", "x1 > x0"),
    ({"box": None}, 400, "bad_request", "empty prompt"),
    ({"previous": "0" * 32}, 404, "handle_unknown", "segment again"),
    ({"points": [{"x": 1, "y": 1, "label": 2}]}, 422, "invalid_request", "points"),
    ({"colour": "red"}, 422, "invalid_request", "colour"),
    ({"preset": "ct-liver"}, 422, "invalid_request", "preset"),
])
def test_bad_prompts_are_refused(tiny_server, bad_input_volume, fields, status, code, words):
    body = assert_error(segment_request(tiny_server, bad_input_volume.id, **fields), status, code)
    assert words in body["detail"]


def test_more_bad_requests(tiny_server, bad_input_volume):
    url, headers = tiny_server.url, auth(tiny_server)
    nan = requests.post(f"{url}/v1/volumes/{bad_input_volume.id}/segment", headers={**headers, "Content-Type":
                        "application/json"}, data='{"axis": "K", "index": 1, "points": [{"x": NaN, "y": 1}]}')
    assert_error(nan, 422, "invalid_request")
    assert_error(requests.post(f"{url}/v1/volumes/{bad_input_volume.id}/segment", headers={**headers, "Content-Type":
                 "application/json"}, data="{not json"), 422, "invalid_request")
    assert_error(segment_request(tiny_server, "a" * 32), 404, "volume_unknown")
    assert_error(segment_request(tiny_server, "../../etc/passwd"), 404)
    assert_error(requests.get(f"{url}/v1/nothing-here", headers=headers), 404, "not_found")
    other_slice = tiny_server.client.segment(bad_input_volume, "K", 3, box=[5, 5, 30, 30])
    assert_error(segment_request(tiny_server, bad_input_volume.id, previous=other_slice.handle), 400,
                 "handle_mismatch")
    bad_key = {"axis": "K", "keys": [{"index": 1, "mask": {"shape": [48, 56], "box": [0, 0, 60, 10], "bits": ""}}]}
    assert_error(requests.post(f"{url}/v1/volumes/{bad_input_volume.id}/propagate", json=bad_key, headers=headers),
                 400, "bad_request")
    both = {"axis": "K", "keys": [{"index": 1}]}
    assert_error(requests.post(f"{url}/v1/volumes/{bad_input_volume.id}/propagate", json=both, headers=headers), 400)
    no_memory = {"axis": "K", "keys": [{"index": 1}], "settings": {"box_memory": 0}}
    assert "box_memory" in assert_error(requests.post(f"{url}/v1/volumes/{bad_input_volume.id}/propagate",
                                                      json=no_memory, headers=headers), 422,
                                        "invalid_request")["detail"]
    assert_error(requests.get(f"{url}/v1/jobs/{'0' * 32}", headers=headers), 404, "job_unknown")
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    image = {"image_id": ids.image_id(rgba), "box": [1, 1, 5, 5], "image": wire.encode_image(rgba)}
    assert_error(requests.post(f"{url}/v1/images/segment", json=image, headers=headers), 400, "bad_request")
    assert_error(requests.post(f"{url}/v1/images/segment", json={"image_id": "b" * 32, "box": [1, 1, 5, 5]},
                               headers=headers), 404, "image_not_cached")
    big = requests.post(f"{url}/v1/images/segment", data=b"x" * (2 << 20), headers=headers)
    assert_error(big, 413, "too_large")


def test_client_errors_carry_the_server_detail(tiny_server, bad_input_volume):
    with pytest.raises(BadRequest, match="lies outside the 56×48 slice") as caught:
        tiny_server.client.segment(bad_input_volume, "K", 2, points=[[80, 3]])
    assert caught.value.status == 400 and caught.value.code == "prompt_outside"


# connecting: clear errors


def test_no_server_is_reported_as_such():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ServerNotRunning, match="sammed2d serve"):
        Client(f"http://127.0.0.1:{port}", "x" * 20, retries=0)


def test_another_kind_of_server_is_a_protocol_mismatch():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(ProtocolMismatch, match="SAM-Med2D server"):
            Client(f"http://127.0.0.1:{server.server_address[1]}", "x" * 20)
    finally:
        server.shutdown()


@pytest.mark.parametrize("version, advice", [(wire.PROTOCOL_VERSION + 1, "upgrade the server"),
                                             (wire.PROTOCOL_VERSION - 1, "upgrade this client")])
def test_protocol_mismatch_says_what_to_upgrade(tiny_server, monkeypatch, version, advice):
    import sammed2d.client.client as client_module

    monkeypatch.setattr(client_module, "PROTOCOL_VERSION", version)
    with pytest.raises(ProtocolMismatch, match=advice):
        Client(tiny_server.url, tiny_server.token)


def test_client_imports_no_torch():
    code = ("import sys, sammed2d.client; heavy = {'torch', 'scipy', 'SimpleITK', 'fastapi', 'pydantic', 'uvicorn'}; "
            "print(sorted(heavy & {name.split('.')[0] for name in sys.modules}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, encoding="utf-8", timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr


def test_one_log_line_per_request_with_timing(tiny_server):
    tiny_server.client.connect()
    time.sleep(0.2)
    assert any(re.search(r"GET /v1/info 200 \d+\.\d ms", line) for line in tiny_server.log)


# propagation: cancellable, and never in the way of a click


def _start_long_propagation(server):
    remote = server.client.upload(synthetic_volume(slices=60, rows=32, cols=32, seed=41))
    key = server.client.segment(remote, "K", 0, box=[4, 4, 28, 28], prefetch=False)
    return remote, key


def test_closing_the_stream_cancels_the_propagation(tiny_server):
    client = tiny_server.client
    remote, key = _start_long_propagation(tiny_server)
    stream = client.propagate(remote, "K", {0: key}, settings=PERMISSIVE)
    received = [item for item, _ in zip(stream, range(3))]
    stream.close()
    deadline = time.monotonic() + 20
    while (job := client.job(stream.job_id))["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job["state"] == "cancelled" and len(received) == 3
    assert job["done"] < 59, job
    assert client.connect()["protocol"] == wire.PROTOCOL_VERSION  # still serving


def test_cancel_request_ends_the_stream_with_a_report(tiny_server):
    client = tiny_server.client
    remote, key = _start_long_propagation(tiny_server)
    stream = client.propagate(remote, "K", {0: key}, settings=PERMISSIVE, cancel=lambda: True)
    slices = list(stream)
    assert stream.report["cancelled"] is True
    # slices an earlier run on this volume left are streamed as reused before the new ones
    assert len(slices) == len(stream.report["computed"]) + len(stream.report["reused"]) < 59
    assert client.job(stream.job_id)["state"] == "cancelled"


def test_running_propagations_are_capped(tiny_server):
    client = tiny_server.client
    remote, key = _start_long_propagation(tiny_server)
    streams = [client.propagate(remote, "K", {0: key}, settings=PERMISSIVE) for _ in range(2)]  # --max-jobs 2
    try:
        with pytest.raises(BadRequest, match="propagations are running") as caught:
            client.propagate(remote, "K", {0: key}, settings=PERMISSIVE)
        assert caught.value.status == 429 and caught.value.code == "too_many_jobs"
    finally:
        for stream in streams:
            stream.close()
        deadline = time.monotonic() + 20
        while any(client.job(s.job_id)["state"] == "running" for s in streams) and time.monotonic() < deadline:
            time.sleep(0.05)


def test_interactive_model_calls_go_before_background_ones():
    lock, order = ModelLock(), []

    def call(name: str, background: bool) -> None:
        if background:
            with lock.background(), lock:
                order.append(name)
        else:
            with lock:
                order.append(name)

    lock.acquire()  # a model call is running; a propagation, then a click, queue behind it
    waiters = [threading.Thread(target=call, args=("propagation", True)),
               threading.Thread(target=call, args=("click", False))]
    for waiter in waiters:
        waiter.start()
        time.sleep(0.1)
    lock.release()
    for waiter in waiters:
        waiter.join(5)
    assert order == ["click", "propagation"]


def test_a_click_during_a_propagation_waits_for_at_most_one_model_call(lite_server):
    """Two clients: one propagates with LiteMedSAM, the other clicks meanwhile and is served at once.

    The click waits for the model call under way (at most an encoder run) and then takes its own time (a click
    search: several decoder runs), both measured here on their own; waiting for one more encoder run would add
    a whole first click."""
    worker, clicker = lite_server.client, Client(lite_server.url, lite_server.token)
    remote = worker.upload(synthetic_volume(slices=14, rows=96, cols=96, seed=51))
    started = time.perf_counter()
    key = worker.segment(remote, "K", 7, box=[22, 22, 74, 74], prefetch=False)
    first_click = time.perf_counter() - started  # one encoder run + one decoder run
    started = time.perf_counter()
    clicker.segment(remote, "K", 7, points=[[48, 48]], previous=key, prefetch=False)
    alone = time.perf_counter() - started  # the click's own work, on the cached embedding
    stream = worker.propagate(remote, "K", {7: key})
    events = iter(stream)
    next(events)  # the propagation is under way
    started = time.perf_counter()
    clicked = clicker.segment(remote, "K", 7, points=[[48, 48]], previous=key, prefetch=False)
    latency = time.perf_counter() - started
    assert clicker.job(stream.job_id)["state"] == "running"
    assert clicked.embedding_cached
    assert latency < alone + 1.5 * first_click, (latency, alone, first_click)
    stream.cancel()
    remaining = list(events)
    assert stream.report["cancelled"] and len(remaining) + 1 < 13


def test_every_propagation_setting_can_be_set_through_the_api():
    """The API's options are the engine's settings, field for field, each optional; pairs travel as lists."""
    from dataclasses import fields

    from sammed2d.server.schemas import PropagationOptions

    assert set(PropagationOptions.model_fields) == {field.name for field in fields(PropagationSettings)}
    given = PropagationOptions(discover_percentiles=[20, 80], discover_min_size=0.2, discover_min_contrast=0.4,
                               slice_range=[3, 9]).model_dump(exclude_none=True)
    PropagationSettings(**{name: tuple(value) if isinstance(value, list) else value for name, value in given.items()})


def test_a_correction_re_runs_only_what_it_changes(tiny_server):
    """The same propagation asked again after one key changed recomputes only that key's chains; the unchanged
    key's slices come back reused, and the stream still carries every slice."""
    array = synthetic_volume(slices=12)
    client = tiny_server.client
    remote = client.upload(array)
    low = client.segment(remote, "K", 2, box=[10, 8, 46, 40])
    high = client.segment(remote, "K", 9, box=[10, 8, 46, 40])
    settings = {**PERMISSIVE, "discover_radius": 0.0}
    first = client.propagate(remote, "K", {2: low, 9: high}, settings=settings)
    first_slices = {item.index for item in first}
    assert first.report["reused"] == [] and first_slices
    corrected = client.segment(remote, "K", 9, box=[12, 10, 40, 36])
    again = client.propagate(remote, "K", {2: low, 9: corrected}, settings=settings)
    again_slices = {item.index for item in again}
    report = again.report
    assert report["reused"], "nothing was reused after a one-key correction"
    # key 2's own side is reused, key 9's recomputed; between them each slice is one or the other
    assert {0, 1} <= set(report["reused"]) and {10, 11} <= set(report["computed"])
    assert not set(report["reused"]) & set(report["computed"])
    assert again_slices == set(report["reused"]) | set(report["computed"])
