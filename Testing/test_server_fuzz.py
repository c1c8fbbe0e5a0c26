"""Property-based requests from the published OpenAPI schema (schemathesis): no input makes a 5xx.

Runs against a real `sammed2d serve` child process with a tiny random model; a bounded number of
examples per operation keeps it to a minute or two on a laptop CPU.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode

from sammed2d.client import LocalServer
from sammed2d.models import ViTConfig

TINY_VIT_JSON = json.dumps(ViTConfig(96, 4, 4, (1, 3)).to_dict())
SERVE = ["--model", "sam-med2d", "--random-weights", "--vit", TINY_VIT_JSON, "--threads", "1", "--no-compile",
         "--memory-budget", "8M", "--max-upload", "4M", "--max-request", "1M", "--log-level", "WARNING"]


@pytest.fixture(scope="module")
def fuzzed_server():
    with LocalServer(SERVE) as server:
        yield server


@pytest.mark.parametrize("mode, examples", [(GenerationMode.POSITIVE, 30), (GenerationMode.NEGATIVE, 15)])
def test_no_input_makes_a_server_error(fuzzed_server, mode, examples):
    """Every operation of /openapi.json, with data that fits its schema (positive) and data that does not."""
    headers = {"Authorization": f"Bearer {fuzzed_server.token}"}
    schema = schemathesis.openapi.from_url(f"{fuzzed_server.url}/openapi.json", headers=headers)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10

    # a volume the server holds, so prompts reach the model instead of stopping at "unknown volume"
    volume = fuzzed_server.client.upload(np.random.default_rng(0).integers(0, 500, (6, 40, 48)).astype(np.int16))

    for operation in operations:
        known = {"volume_id": volume.id} if "{volume_id}" in operation.path and operation.method.upper() != "DELETE" \
            and mode == GenerationMode.POSITIVE else None

        @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode, path_parameters=known))
        def no_server_error(case):
            case.call_and_validate(headers=headers, checks=[not_a_server_error], timeout=60)

        no_server_error()
