"""The medverse error hierarchy: messages name the file (when there is one) and the problem."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class MedverseError(Exception):
    """Base class for errors a user can act on; the CLI prints them as one line.

    Args:
        problem: What is wrong, in words a user understands.
        path: The file or folder the problem is in, when there is one.
    """

    def __init__(self, problem: str, path: str | Path | None = None) -> None:
        self.problem = problem
        self.path = Path(path) if path is not None else None
        super().__init__(self.one_line())

    def one_line(self) -> str:
        """Return ``"<path>: <problem>"`` (or just the problem) on a single line."""
        text = " ".join(self.problem.split())
        return f"{self.path}: {text}" if self.path is not None else text


class InputError(MedverseError):
    """The input cannot be used as given (missing, empty, wrong kind of file)."""


class DicomError(InputError):
    """A DICOM file or series is unreadable or inconsistent."""


class NotDicomError(DicomError):
    """A file is not DICOM at all (no DICM preamble or file meta), as opposed to a damaged one."""


class NiftiError(InputError):
    """A NIfTI file is unreadable or its header is invalid."""


class SeriesSelectionError(InputError):
    """A folder holds several series and the caller must pick one.

    Args:
        path: The folder that was read.
        choices: One short description per series (UID first).
    """

    def __init__(self, path: str | Path, choices: Sequence[str]) -> None:
        self.choices = list(choices)
        listing = "; ".join(self.choices)
        super().__init__(
            f"holds {len(self.choices)} series, choose one with --series UID: {listing}", path
        )


class ModelError(MedverseError):
    """A model checkpoint or bundle is missing, unsafe or inconsistent."""


class ConfigError(MedverseError):
    """A plan, setting or option is invalid."""


def error_text(error: BaseException, limit: int = 200) -> str:
    """An exception's message on one line, cut to ``limit`` characters (its type if empty).

    For wrapping a library's error into a :class:`MedverseError` problem text.
    """
    return " ".join(str(error).split())[:limit] or type(error).__name__
