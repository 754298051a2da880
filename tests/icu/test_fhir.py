"""FHIR R4 Observations: validated with fhir.resources, LOINC mapped, stored and scored."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import pytest

from medverse.icu.api import open_runtime
from medverse.icu.fhir import FhirError, parse_json, read_observation
from medverse.icu.parameters import Parameter
from medverse.icu.store import sqlite_url

PULSE: dict[str, Any] = {
    "resourceType": "Observation",
    "id": "hr-1",
    "status": "final",
    "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                              "code": "vital-signs"}]}],
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
    "subject": {"reference": "Patient/p1"},
    "effectiveDateTime": "2026-12-03T12:00:00+00:00",
    "valueQuantity": {"value": 135, "unit": "beats/minute", "system": "http://unitsofmeasure.org",
                      "code": "/min"},
}  # fmt: skip
BLOOD_PRESSURE: dict[str, Any] = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
    "effectiveDateTime": "2026-12-03T12:00:00Z",
    "component": [
        {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
         "valueQuantity": {"value": 88, "code": "mm[Hg]"}},
        {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
         "valueQuantity": {"value": 50, "code": "mm[Hg]"}},
    ],
}  # fmt: skip


def test_valid_observation_is_mapped_stored_and_scored(tmp_path: Path) -> None:
    vitals = read_observation(PULSE, "ICU1", "BED07")
    assert vitals.values == {Parameter.PULSE: 135.0} and vitals.bed_id == "ICU1/BED07"
    assert vitals.observed_at == 1796299200.0 and vitals.message_key == "fhir|ICU1/BED07|hr-1"
    bp = read_observation(BLOOD_PRESSURE, "ICU1", "BED07")
    assert bp.values == {Parameter.SYSTOLIC_BP: 88.0}  # diastolic is not a NEWS2 parameter
    runtime = open_runtime(sqlite_url(tmp_path / "icu.db"))

    async def submit() -> list[Any]:
        runtime.ingestor.start()
        try:
            return [await runtime.ingestor.submit(v) for v in (vitals, bp, vitals)]
        finally:
            await runtime.ingestor.stop()

    first, second, again = asyncio.run(submit())
    assert first.stored and first.scored is not None and first.scored.minimum == 3
    assert second.scored is not None and second.scored.minimum == 6  # pulse 3 + systolic 3
    assert second.scored.completeness == "incomplete" and second.scored.total is None
    assert not again.stored and runtime.store.count() == 2
    runtime.store.dispose()


def _broken(path: list[str | int], value: Any) -> dict[str, Any]:
    payload = copy.deepcopy(PULSE)
    target: Any = payload
    for part in path[:-1]:
        target = target[part]
    if value is None:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return payload


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (["valueQuantity", "value"], "fast", "Observation.valueQuantity.value"),
        (["valueQuantity", "code"], "kPa", "Observation.valueQuantity.code"),
        (["valueQuantity"], None, "Observation.valueQuantity"),
        (["status"], "entered-in-error", "Observation.status"),
        (["effectiveDateTime"], "2026-12", "Observation.effectiveDateTime"),
        (["code", "coding", 0, "code"], "1234-5", "Observation.code"),
        (["resourceType"], "Patient", "Observation.resourceType"),
        (["subject"], "Patient/p1", "Observation.subject"),
    ],
)
def test_invalid_observation_error_names_the_field(path: list, value: Any, field: str) -> None:
    with pytest.raises(FhirError) as caught:
        read_observation(_broken(path, value), "ICU1", "BED07")
    assert caught.value.field.startswith(field), caught.value.one_line()


def test_body_that_is_not_json() -> None:
    with pytest.raises(FhirError, match="not valid JSON"):
        parse_json(b"{nope")
