"""``/api/icu``: ICU wards, FHIR observations in, NEWS2 and alerts out, by ward membership."""
