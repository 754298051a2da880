"""Schema-driven fuzzing (schemathesis) of every API operation as an admin: no 500, ever.

The app runs on SQLite with one stored study (the real CT) and a dead PACS address, so the
fuzzer meets real rows, real files and a PACS that fails. Each operation gets a bounded number
of generated requests, valid ones (positive) and schema-violating ones (negative).
(schemathesis' own pytest plugin does not run under pytest 9, so the operations are driven
with hypothesis directly.)
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

schemathesis = pytest.importorskip(
    "schemathesis", reason="pip install -r requirements-dev.txt (schemathesis)"
)
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis.checks import response_schema_conformance, status_code_conformance  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402

from medverse.service.db import open_database  # noqa: E402
from tests.service.conftest import ct_files, make_settings, open_api  # noqa: E402
from tests.service.postgres import _free_port  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

EXAMPLES = 30


@dataclass
class Fuzzed:
    """The schema of a running app and an admin's Authorization header."""

    schema: schemathesis.BaseSchema
    headers: dict[str, str]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    """A running app that holds the CT study, its OpenAPI schema, and an admin token."""
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "models").mkdir()
    dead_pacs = f"http://127.0.0.1:{_free_port()}/dicom-web"
    config = make_settings(folder, None, pacs_url=dead_pacs, pacs_timeout_seconds=1.0)
    db = open_database(config)
    running = open_api(config, db, run_worker=False)
    api = next(running)
    client: TestClient = api.client
    assert client.post("/api/studies", files=ct_files(), headers=api.admin).status_code == 201
    yield Fuzzed(schemathesis.openapi.from_asgi("/openapi.json", client.app), api.admin)
    running.close()
    db.dispose()


def _problems(fuzzed: Fuzzed, mode: GenerationMode) -> list[str]:
    # 502/503/504 are the documented answers about the (dead) PACS; 500 means a bug.
    checks = [status_code_conformance, response_schema_conformance]
    problems: list[str] = []
    for result in fuzzed.schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: schemathesis.Case) -> None:
            response = case.call(headers=fuzzed.headers)
            assert response.status_code != 500, f"500: {case.as_curl_command()}"
            case.validate_response(response, checks=checks)

        try:
            run()
        except Unsatisfiable:  # no parameters: nothing to break in negative mode
            continue
        except Exception as error:
            problems.append(f"{operation.label}: {str(error)[:1500]}")
    return problems


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_operation_answers_500(fuzzed: Fuzzed, mode: GenerationMode) -> None:
    problems = _problems(fuzzed, mode)
    assert problems == [], "\n\n".join(problems)
