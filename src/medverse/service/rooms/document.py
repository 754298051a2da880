"""The room document: one serialisable state per study (annotations, presenter, version)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

MAX_ANNOTATIONS = 2000
MAX_TEXT = 2000
# Patient space is a few hundred millimetres across; anything far beyond is a client bug.
MAX_COORDINATE_MM = 100_000.0
ANNOTATION_ID_PATTERN = r"^[A-Za-z0-9-]{1,64}$"


def _finite_point(point: tuple[float, float, float]) -> tuple[float, float, float]:
    if not all(math.isfinite(c) and abs(c) <= MAX_COORDINATE_MM for c in point):
        raise ValueError(f"coordinates must be finite millimetres within ±{MAX_COORDINATE_MM:g}")
    return point


Point3 = Annotated[tuple[float, float, float], AfterValidator(_finite_point)]


class AnnotationKind(StrEnum):
    """What an annotation is: a text comment, a named landmark, or a measurement."""

    COMMENT = "comment"
    LANDMARK = "landmark"
    DISTANCE = "distance"
    VOLUME = "volume"


# How many points each kind is pinned to.
POINTS_PER_KIND = {
    AnnotationKind.COMMENT: 1,
    AnnotationKind.LANDMARK: 1,
    AnnotationKind.DISTANCE: 2,
    AnnotationKind.VOLUME: 1,
}


class Annotation(BaseModel):
    """One annotation pinned to 3D patient positions (RAS+ millimetres).

    Attributes:
        id: Chosen by the client that creates it (unique in the room).
        kind: Comment, landmark, distance or volume.
        points: One point (two for a distance), RAS+ mm.
        text: The comment, the landmark name, or a note on the measurement.
        value: The measured value, always computed by the server: mm for a distance, mL for
            a volume (the labelled structure in the study's newest segmentation).
        label: For a volume: the label value of the structure measured.
        author: Who made it (user name, set by the server).
        color: The author's colour in the room when it was made (``#rrggbb``).
        version: The room version that last changed it.
    """

    model_config = ConfigDict(frozen=True)

    id: str = Field(pattern=ANNOTATION_ID_PATTERN)
    kind: AnnotationKind
    points: list[Point3] = Field(min_length=1, max_length=2)
    text: str = Field("", max_length=MAX_TEXT)
    value: float | None = None
    label: int | None = Field(None, ge=0, le=65535)
    author: str = ""
    color: str = "#ffffff"
    version: int = 0


class RoomDocument(BaseModel):
    """The whole shared state of one room; ``version`` counts the edits applied to it.

    Attributes:
        study_id: The study the room is about.
        version: Number of edits applied (0 for a room nobody has edited).
        presenter: The user name of the presenter others may follow, if any.
        annotations: Every annotation, in the order they were made.
        updated_at: When the last edit was applied.
    """

    study_id: str
    version: int = 0
    presenter: str | None = None
    annotations: list[Annotation] = Field(default_factory=list)
    updated_at: datetime | None = None

    def find(self, annotation_id: str) -> Annotation | None:
        """The annotation with ``annotation_id``, if present."""
        return next((a for a in self.annotations if a.id == annotation_id), None)


class AnnotationDraft(BaseModel):
    """An annotation as a client proposes it (the server fills in author, colour, version)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=ANNOTATION_ID_PATTERN)
    kind: AnnotationKind
    points: list[Point3] = Field(min_length=1, max_length=2)
    text: str = Field("", max_length=MAX_TEXT)
    value: float | None = Field(None, allow_inf_nan=False)
    label: int | None = Field(None, ge=0, le=65535)


class AddAnnotation(BaseModel):
    """Add an annotation."""

    model_config = ConfigDict(extra="forbid")

    op: Literal["annotation.add"]
    annotation: AnnotationDraft


class UpdateAnnotation(BaseModel):
    """Change the text or the points of an annotation."""

    model_config = ConfigDict(extra="forbid")

    op: Literal["annotation.update"]
    id: str = Field(pattern=ANNOTATION_ID_PATTERN)
    text: str | None = Field(None, max_length=MAX_TEXT)
    points: list[Point3] | None = Field(None, min_length=1, max_length=2)


class DeleteAnnotation(BaseModel):
    """Remove an annotation."""

    model_config = ConfigDict(extra="forbid")

    op: Literal["annotation.delete"]
    id: str = Field(pattern=ANNOTATION_ID_PATTERN)


class SetPresenter(BaseModel):
    """Become the presenter (``present`` true) or stop presenting."""

    model_config = ConfigDict(extra="forbid")

    op: Literal["presenter.set"]
    present: bool


Edit = Annotated[
    AddAnnotation | UpdateAnnotation | DeleteAnnotation | SetPresenter,
    Field(discriminator="op"),
]


class EditRejectedError(ValueError):
    """An edit that cannot be applied to the document as it is (the message says why)."""


class EditForbiddenError(EditRejectedError):
    """An edit of another user's annotation by someone who is neither its author nor an admin."""


def apply_edit(
    document: RoomDocument, edit: Edit, *, author: str, color: str, may_edit_others: bool = False
) -> tuple[RoomDocument, dict[str, object]]:
    """Apply one edit, returning the next document (version + 1) and what changed.

    Args:
        document: The current document (not modified).
        edit: The edit, validated.
        author: The user making it.
        color: The user's room colour.
        may_edit_others: True for an admin: may change or delete others' annotations.

    Returns:
        The new document and the change as sent to every participant.

    Raises:
        EditRejectedError: If the edit does not fit the document (duplicate or unknown id,
            wrong number of points, too many annotations).
        EditForbiddenError: If it changes another user's annotation without
            ``may_edit_others``.
    """
    version = document.version + 1
    annotations = list(document.annotations)
    presenter = document.presenter
    if isinstance(edit, AddAnnotation):
        added = _new_annotation(document, edit.annotation, author, color, version)
        annotations.append(added)
        change: dict[str, object] = {"op": edit.op, "annotation": added.model_dump(mode="json")}
    elif isinstance(edit, UpdateAnnotation):
        index, current = _owned(annotations, edit.id, author, may_edit_others)
        points = edit.points if edit.points is not None else current.points
        text = edit.text if edit.text is not None else current.text
        updated = _finish(current.model_copy(update={"points": points, "text": text}), version)
        annotations[index] = updated
        change = {"op": edit.op, "annotation": updated.model_dump(mode="json")}
    elif isinstance(edit, DeleteAnnotation):
        index, _ = _owned(annotations, edit.id, author, may_edit_others)
        del annotations[index]
        change = {"op": edit.op, "id": edit.id}
    else:
        presenter = author if edit.present else (None if presenter == author else presenter)
        change = {"op": edit.op, "presenter": presenter}
    updated_doc = document.model_copy(
        update={
            "version": version,
            "annotations": annotations,
            "presenter": presenter,
            "updated_at": datetime.now(UTC),
        }
    )
    return updated_doc, change


def _new_annotation(
    document: RoomDocument, draft: AnnotationDraft, author: str, color: str, version: int
) -> Annotation:
    if document.find(draft.id) is not None:
        raise EditRejectedError(f"annotation {draft.id} already exists")
    if len(document.annotations) >= MAX_ANNOTATIONS:
        raise EditRejectedError(f"the room already holds {MAX_ANNOTATIONS} annotations")
    annotation = Annotation(**draft.model_dump(), author=author, color=color)
    return _finish(annotation, version)


def _existing(annotations: list[Annotation], annotation_id: str) -> tuple[int, Annotation]:
    for index, annotation in enumerate(annotations):
        if annotation.id == annotation_id:
            return index, annotation
    raise EditRejectedError(f"no annotation {annotation_id} in this room")


def _owned(
    annotations: list[Annotation], annotation_id: str, user: str, may_edit_others: bool
) -> tuple[int, Annotation]:
    index, annotation = _existing(annotations, annotation_id)
    if annotation.author != user and not may_edit_others:
        raise EditForbiddenError(
            f"annotation {annotation_id} belongs to {annotation.author}: only its author or an "
            "admin may change or delete it"
        )
    return index, annotation


def _finish(annotation: Annotation, version: int) -> Annotation:
    """Check the point count and recompute what the server measures itself."""
    needed = POINTS_PER_KIND[annotation.kind]
    if len(annotation.points) != needed:
        raise EditRejectedError(
            f"a {annotation.kind.value} annotation needs {needed} point(s), "
            f"got {len(annotation.points)}"
        )
    value = annotation.value
    if annotation.kind == AnnotationKind.DISTANCE:
        value = round(math.dist(annotation.points[0], annotation.points[1]), 3)
    elif annotation.kind in (AnnotationKind.COMMENT, AnnotationKind.LANDMARK):
        value = None
    return annotation.model_copy(update={"value": value, "version": version})


def replay_change(
    document: RoomDocument, change: dict[str, Any], *, version: int, at: datetime
) -> RoomDocument:
    """Re-apply a stored change (as ``apply_edit`` returned it) to rebuild the next document.

    Replaying the changes of a room from its snapshot gives back, exactly, the document the
    edits produced: the change already holds their result (the whole annotation, the
    presenter), so nothing is re-validated or re-measured.

    Args:
        document: The document at ``version - 1``.
        change: The stored change.
        version: The version the change produced.
        at: When it was applied.

    Raises:
        ValueError: If the change does not follow ``document`` (a gap in the log, or an
            unknown operation).
    """
    if version != document.version + 1:
        raise ValueError(f"room log gap: version {version} after {document.version}")
    annotations = list(document.annotations)
    presenter = document.presenter
    op = change.get("op")
    if op == "annotation.add":
        annotations.append(Annotation.model_validate(change["annotation"]))
    elif op == "annotation.update":
        updated = Annotation.model_validate(change["annotation"])
        annotations = [updated if a.id == updated.id else a for a in annotations]
    elif op == "annotation.delete":
        annotations = [a for a in annotations if a.id != change["id"]]
    elif op == "presenter.set":
        presenter = change["presenter"]
    else:
        raise ValueError(f"unknown room change {op!r}")
    return document.model_copy(
        update={
            "version": version,
            "annotations": annotations,
            "presenter": presenter,
            "updated_at": at,
        }
    )
