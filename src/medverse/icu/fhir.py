"""FHIR R4 Observation in: validated with fhir.resources (its R4B models), LOINC codes mapped.

fhir.resources 7+ has R5 at the package root; R4 and R4B Observations share the fields we read,
so the R4B model (``fhir.resources.R4B``) validates R4 input.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from medverse.core.errors import InputError
from medverse.icu.parameters import Acvpu, Parameter, lookup, to_chart_value
from medverse.icu.vitals import Source, VitalSet

# Observation.status values that carry a usable measurement.
USABLE_STATUS = frozenset({"final", "amended", "corrected", "preliminary"})


class FhirError(InputError):
    """An Observation we cannot use; ``field`` names the offending element.

    Args:
        field: FHIRPath-like location (``Observation.valueQuantity.value``).
        problem: What is wrong with it.
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(f"{field}: {problem}")


def _validate(payload: dict[str, Any]) -> Any:
    from fhir.resources.R4B.observation import Observation

    if payload.get("resourceType") != "Observation":
        raise FhirError("Observation.resourceType", "must be 'Observation'")
    try:
        return Observation.model_validate(payload)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in ("Observation", *first["loc"]))
        raise FhirError(where, first["msg"]) from error


def parse_json(body: bytes | str) -> dict[str, Any]:
    """Decode a JSON body into an object.

    Raises:
        FhirError: If it is not a JSON object.
    """
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise FhirError("Observation", f"not valid JSON: {error}") from error
    if not isinstance(payload, dict):
        raise FhirError("Observation", "must be a JSON object")
    return payload


def read_observation(payload: dict[str, Any], ward: str, bed: str) -> VitalSet:
    """The vital values of one FHIR R4 Observation for ``ward/bed``.

    The value is ``valueQuantity`` (ACVPU as ``valueCodeableConcept`` or ``valueString``);
    a panel (e.g. blood pressure 85354-9) is read from its ``component`` entries.

    Raises:
        FhirError: Naming the field that is invalid, missing or not a NEWS2 parameter.
    """
    observation = _validate(payload)
    if observation.status not in USABLE_STATUS:
        raise FhirError("Observation.status", f"{observation.status!r} is not a measurement")
    values: dict[Parameter, float] = {}
    _read_coded_value(observation, "Observation", values)
    for index, component in enumerate(observation.component or []):
        _read_coded_value(component, f"Observation.component[{index}]", values)
    if not values:
        raise FhirError("Observation.code", "no LOINC code of a NEWS2 parameter")
    when = observation.effectiveDateTime or observation.effectiveInstant or observation.issued
    if not isinstance(when, datetime):
        raise FhirError("Observation.effectiveDateTime", "a full date and time is required")
    if when.tzinfo is None:
        raise FhirError("Observation.effectiveDateTime", "needs a time zone")
    key = observation.id or hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    subject = observation.subject.reference if observation.subject else None
    return VitalSet(
        f"fhir|{ward}/{bed}|{key}", ward, bed, when.timestamp(), values, Source.FHIR, subject
    )


def _read_coded_value(element: Any, where: str, values: dict[Parameter, float]) -> None:
    codings = (element.code.coding or []) if element.code else []
    code = next((c for c in (lookup(k.system or "", k.code or "") for k in codings) if c), None)
    if code is None:
        return
    if code.parameter == Parameter.CONSCIOUSNESS:
        values[code.parameter] = float(_acvpu(element, where))
        return
    quantity = element.valueQuantity
    if quantity is None or quantity.value is None:
        raise FhirError(f"{where}.valueQuantity", f"a value is required for {code.parameter}")
    unit = quantity.code or quantity.unit or ""
    try:
        values[code.parameter] = to_chart_value(code, float(quantity.value), unit)
    except InputError as error:
        raise FhirError(f"{where}.valueQuantity.code", error.problem) from error


def _acvpu(element: Any, where: str) -> Acvpu:
    text = element.valueString
    concept = element.valueCodeableConcept
    if concept is not None and concept.coding:
        text = concept.coding[0].code
    if not text:
        raise FhirError(f"{where}.valueCodeableConcept", "ACVPU level (A, C, V, P or U) required")
    try:
        return Acvpu.from_letter(text)
    except InputError as error:
        raise FhirError(f"{where}.valueCodeableConcept", error.problem) from error
