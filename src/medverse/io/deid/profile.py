"""The PS3.15 Annex E Basic Application Level Confidentiality Profile as data, and its actions.

``PROFILE`` holds the action code of Table E.1-1 (DICOM 2024b) for the attributes that occur in
real CT, MR, SEG and their requests/procedure steps; :func:`action_for` turns a code into what
medverse does with one element, under the options medverse applies (see ``medverse.io.deid``).
"""

from __future__ import annotations

from enum import StrEnum

from pydicom.datadict import tag_for_keyword


class Action(StrEnum):
    """What happens to one data element."""

    KEEP = "keep"
    REMOVE = "remove"  # X
    EMPTY = "empty"  # Z: present, zero length
    DUMMY = "dummy"  # D: a non-identifying value of the same VR
    UID = "uid"  # U: consistently remapped UID
    PSEUDONYM = "pseudonym"  # PatientName / PatientID
    SHIFT = "shift"  # dates moved by the patient's offset (Modified Dates option)
    RECURSE = "recurse"  # a sequence whose items are de-identified in turn


# Table E.1-1 action codes, by keyword. Combined codes (X/Z, X/D, Z/D, X/Z/D, X/Z/U*) are kept
# as the table writes them; ``action_for`` resolves them.
PROFILE: dict[str, str] = {
    # --- patient
    "PatientName": "Z",
    "PatientID": "Z/D",
    "IssuerOfPatientID": "X",
    "PatientBirthDate": "Z",
    "PatientBirthTime": "X",
    "PatientSex": "Z",
    "PatientAge": "X",
    "PatientSize": "X",
    "PatientWeight": "X",
    "PatientAddress": "X",
    "PatientTelephoneNumbers": "X",
    "PatientTelecomInformation": "X",
    "PatientMotherBirthName": "X",
    "PatientBirthName": "X",
    "OtherPatientIDs": "X",
    "OtherPatientIDsSequence": "X",
    "OtherPatientNames": "X",
    "EthnicGroup": "X",
    "Occupation": "X",
    "SmokingStatus": "X",
    "AdditionalPatientHistory": "X",
    "PregnancyStatus": "X",
    "LastMenstrualDate": "X",
    "PatientComments": "X",
    "MedicalAlerts": "X",
    "Allergies": "X",
    "PatientReligiousPreference": "X",
    "MilitaryRank": "X",
    "BranchOfService": "X",
    "MedicalRecordLocator": "X",
    "CountryOfResidence": "X",
    "RegionOfResidence": "X",
    "ResponsiblePerson": "X",
    "ResponsibleOrganization": "X",
    "PatientInsurancePlanCodeSequence": "X",
    "InsurancePlanIdentification": "X",
    "PatientState": "X",
    "PatientSexNeutered": "X/Z",
    "SpecialNeeds": "X",
    "PatientTransportArrangements": "X",
    "PatientPrimaryLanguageCodeSequence": "X",
    "ReferencedPatientSequence": "X",
    "ReferencedPatientPhotoSequence": "X",
    # --- study, visit and request
    "StudyDate": "Z",
    "StudyTime": "Z",
    "AccessionNumber": "Z",
    "StudyID": "Z",
    "StudyDescription": "X",
    "StudyIDIssuer": "X",
    "StudyComments": "X",
    "ReasonForStudy": "X",
    "ReferringPhysicianName": "Z",
    "ReferringPhysicianAddress": "X",
    "ReferringPhysicianTelephoneNumbers": "X",
    "ReferringPhysicianIdentificationSequence": "X",
    "ConsultingPhysicianName": "Z",
    "ConsultingPhysicianIdentificationSequence": "X",
    "PhysiciansOfRecord": "X",
    "PhysiciansOfRecordIdentificationSequence": "X",
    "NameOfPhysiciansReadingStudy": "X",
    "PhysiciansReadingStudyIdentificationSequence": "X",
    "RequestingPhysician": "X",
    "RequestingService": "X",
    "RequestedProcedureDescription": "X/Z",
    "RequestedProcedureID": "X",
    "RequestedProcedureComments": "X",
    "RequestedContrastAgent": "X",
    "RequestAttributesSequence": "X",
    "ReasonForTheRequestedProcedure": "X",
    "ReasonForTheImagingServiceRequest": "X",
    "ImagingServiceRequestComments": "X",
    "PlacerOrderNumberImagingServiceRequest": "Z",
    "FillerOrderNumberImagingServiceRequest": "Z",
    "OrderEnteredBy": "X",
    "OrderEntererLocation": "X",
    "OrderCallbackPhoneNumber": "X",
    "AdmissionID": "X",
    "IssuerOfAdmissionID": "X",
    "AdmittingDate": "X",
    "AdmittingTime": "X",
    "AdmittingDiagnosesDescription": "X",
    "AdmittingDiagnosesCodeSequence": "X",
    "CurrentPatientLocation": "X",
    "PatientInstitutionResidence": "X",
    "VisitComments": "X",
    "ServiceEpisodeID": "X",
    "ServiceEpisodeDescription": "X",
    "ReferencedStudySequence": "X/Z",
    "ScheduledProcedureStepDescription": "X",
    "ScheduledProcedureStepID": "X",
    "ScheduledPerformingPhysicianName": "X",
    "ScheduledProcedureStepStartDate": "X",
    "ScheduledProcedureStepStartTime": "X",
    "ScheduledProcedureStepEndDate": "X",
    "ScheduledProcedureStepEndTime": "X",
    "ScheduledProcedureStepLocation": "X",
    "ScheduledStationName": "X",
    "ScheduledStationAETitle": "X",
    "RequestedSeriesDescription": "X",
    # --- series, equipment and performed procedure step
    "SeriesDescription": "X",
    "SeriesDate": "X/D",
    "SeriesTime": "X/D",
    "ProtocolName": "X/D",
    "InstitutionName": "X/Z/D",
    "InstitutionAddress": "X",
    "InstitutionalDepartmentName": "X",
    "InstitutionCodeSequence": "X/Z/D",
    "StationName": "X/Z/D",
    "StationAETitle": "X",
    "RetrieveAETitle": "X",
    "OperatorsName": "X/Z/D",
    "OperatorIdentificationSequence": "X/D",
    "PerformingPhysicianName": "X",
    "PerformingPhysicianIdentificationSequence": "X",
    "DeviceSerialNumber": "X/Z/D",
    "DeviceUID": "U",
    "DetectorID": "X/D",
    "GantryID": "X",
    "GeneratorID": "X",
    "PlateID": "X",
    "CassetteID": "X",
    "UniqueDeviceIdentifier": "X",
    "UDISequence": "X",
    "DateOfLastCalibration": "X",
    "TimeOfLastCalibration": "X",
    "DateTimeOfLastCalibration": "X",
    "DateOfSecondaryCapture": "X",
    "TimeOfSecondaryCapture": "X",
    "AcquisitionDeviceProcessingDescription": "X/D",
    "PerformedProcedureStepID": "X",
    "PerformedProcedureStepDescription": "X",
    "PerformedProcedureStepStartDate": "X",
    "PerformedProcedureStepStartTime": "X",
    "PerformedProcedureStepEndDate": "X",
    "PerformedProcedureStepEndTime": "X",
    "PerformedStationAETitle": "X",
    "PerformedStationName": "X",
    "PerformedLocation": "X",
    "CommentsOnThePerformedProcedureStep": "X",
    "ReferencedPerformedProcedureStepSequence": "X/Z/D",
    "ActualHumanPerformersSequence": "X",
    "HumanPerformerName": "X",
    "HumanPerformerOrganization": "X",
    # --- image, frame and content
    "AcquisitionDate": "X/Z",
    "AcquisitionTime": "X/Z",
    "AcquisitionDateTime": "X/Z/D",
    "ContentDate": "Z/D",
    "ContentTime": "Z/D",
    "InstanceCreationDate": "X/D",
    "InstanceCreationTime": "X/Z/D",
    "FrameAcquisitionDateTime": "D",
    "FrameReferenceDateTime": "D",
    "StartAcquisitionDateTime": "X/D",
    "EndAcquisitionDateTime": "X/D",
    "TimezoneOffsetFromUTC": "X",
    "ImageComments": "X",
    "AcquisitionComments": "X",
    "FrameComments": "X",
    "IdentifyingComments": "X",
    "DerivationDescription": "X",
    "ContrastBolusAgent": "Z/D",
    "ContrastBolusStartTime": "X",
    "ContrastBolusStopTime": "X",
    "InterventionDrugStartTime": "X",
    "InterventionDrugStopTime": "X",
    "RadiopharmaceuticalStartTime": "X",
    "RadiopharmaceuticalStopTime": "X",
    "RadiopharmaceuticalStartDateTime": "X",
    "RadiopharmaceuticalStopDateTime": "X",
    "ReferencedImageSequence": "X/Z/U*",
    "SourceImageSequence": "X/Z/U*",
    "IconImageSequence": "X",
    "ContentCreatorName": "Z/D",
    "ContentCreatorIdentificationCodeSequence": "X",
    "PersonName": "D",
    "VerifyingObserverName": "D",
    "VerifyingOrganization": "D",
    "VerificationDateTime": "D",
    "ObservationDateTime": "X/D",
    "ModifiedAttributesSequence": "X",
    "OriginalAttributesSequence": "X",
    "DigitalSignaturesSequence": "X",
    "DataSetTrailingPadding": "X",
    # --- UIDs (remapped consistently; file meta MediaStorageSOPInstanceUID included)
    "StudyInstanceUID": "U",
    "SeriesInstanceUID": "U",
    "SOPInstanceUID": "U",
    "MediaStorageSOPInstanceUID": "U",
    "FrameOfReferenceUID": "U",
    "ReferencedSOPInstanceUID": "U",
    "ReferencedSOPInstanceUIDInFile": "U",
    "ReferencedFrameOfReferenceUID": "U",
    "RelatedFrameOfReferenceUID": "U",
    "SynchronizationFrameOfReferenceUID": "U",
    "SourceFrameOfReferenceUID": "U",
    "IrradiationEventUID": "U",
    "ConcatenationUID": "U",
    "DimensionOrganizationUID": "U",
    "InstanceCreatorUID": "U",
    "AcquisitionUID": "U",
    "TrackingUID": "U",
    "StorageMediaFileSetUID": "U",
    "PaletteColorLookupTableUID": "U",
    "LargePaletteColorLookupTableUID": "U",
    "PyramidUID": "U",
    "ObservationUID": "U",
    "TransactionUID": "U",
    "UID": "U",
    "FailedSOPInstanceUIDList": "U",
}

# The descriptors the Clean Descriptors option would clean; kept only on the user's word.
DESCRIPTORS = frozenset({"StudyDescription", "SeriesDescription", "ProtocolName"})
PSEUDONYMISED = frozenset({"PatientName", "PatientID"})

_BY_TAG: dict[int, tuple[str, str]] = {}
for _keyword, _code in PROFILE.items():
    _tag = tag_for_keyword(_keyword)
    if _tag is None:  # pragma: no cover - guards the table against typos
        raise RuntimeError(f"deid profile names an unknown DICOM keyword: {_keyword}")
    _BY_TAG[_tag] = (_keyword, _code)

_DUMMY_TEXT = "ANONYMIZED"
_DUMMIES: dict[str, object] = {
    "PN": "ANONYMOUS",
    "DS": "0",
    "IS": "0",
    "US": 0,
    "SS": 0,
    "UL": 0,
    "SL": 0,
    "FL": 0.0,
    "FD": 0.0,
}


def profile_code(tag: int) -> str | None:
    """Return the Table E.1-1 action code for a tag, or None when the profile keeps it.

    Repeating groups are included: curve data (50xx,xxxx), overlay data (60xx,3000) and
    overlay comments (60xx,4000) are removed (X).
    """
    if tag in _BY_TAG:
        return _BY_TAG[tag][1]
    group, element = tag >> 16, tag & 0xFFFF
    if group & 0xFF00 == 0x5000 and group % 2 == 0:
        return "X"
    if group & 0xFF00 == 0x6000 and group % 2 == 0 and element in (0x3000, 0x4000):
        return "X"
    return None


TYPE1_SOMEWHERE = frozenset({"DeviceSerialNumber"})
"""Keywords the profile lets us empty that are Type 1 in some IOD (DeviceSerialNumber in the
Enhanced General Equipment module of enhanced MR/CT): they get the profile's dummy (D) instead,
so the de-identified file stays valid."""


def action_for(tag: int, vr: str, *, keep_descriptions: bool = False) -> Action:
    """Resolve what to do with one element under medverse's options.

    Rules: PatientName/PatientID get the pseudonym; every DA/DT value is shifted unless the
    profile removes it outright (X) or it is the birth date (emptied); times are kept unless
    removed outright; a combined code containing X removes a sequence, else empties or removes
    a value (X/Z, Z/D, X/Z/D -> empty; X/D -> remove); D alone gives a dummy; U remaps UIDs;
    U* keeps a sequence and remaps the UIDs inside; ``TYPE1_SOMEWHERE`` keywords get the dummy
    where the code allows D. Any other person name (PN) is emptied,
    stricter than the profile. Private tags are handled by the caller (always removed).

    Args:
        tag: The element's tag as an int.
        vr: Its value representation.
        keep_descriptions: Keep study/series descriptions and protocol name.
    """
    code = profile_code(tag)
    keyword = _BY_TAG[tag][0] if tag in _BY_TAG else ""
    if keyword in PSEUDONYMISED:
        return Action.PSEUDONYM
    if keep_descriptions and keyword in DESCRIPTORS:
        return Action.KEEP
    if code is None:
        return _unlisted(vr)
    if vr in ("DA", "DT"):
        return _date_action(keyword, code)
    if vr == "TM":
        return Action.REMOVE if code == "X" else Action.KEEP
    if vr == "SQ":
        return _sequence_action(code)
    if keyword in TYPE1_SOMEWHERE and "D" in code:
        return Action.DUMMY
    return _value_action(code, vr)


def _unlisted(vr: str) -> Action:
    if vr in ("DA", "DT"):
        return Action.SHIFT
    if vr == "SQ":
        return Action.RECURSE
    if vr == "PN":
        return Action.EMPTY
    return Action.KEEP


def _date_action(keyword: str, code: str) -> Action:
    if keyword == "PatientBirthDate":
        return Action.EMPTY
    return Action.REMOVE if code == "X" else Action.SHIFT


def _sequence_action(code: str) -> Action:
    if code.endswith("U*"):
        return Action.RECURSE
    if "X" in code or code == "D":
        return Action.REMOVE
    return Action.EMPTY


def _value_action(code: str, vr: str) -> Action:
    if "U" in code:
        return Action.UID if vr == "UI" else Action.REMOVE
    if code == "X" or code == "X/D":
        return Action.REMOVE
    if "Z" in code:
        return Action.EMPTY
    return Action.DUMMY


def dummy_value(vr: str) -> object | None:
    """A non-identifying replacement value for a VR, or None when the element should go."""
    if vr in _DUMMIES:
        return _DUMMIES[vr]
    if vr in ("LO", "SH", "LT", "ST", "UT", "UC", "CS"):
        return _DUMMY_TEXT
    return None
