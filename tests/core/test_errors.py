from medverse.core.errors import DicomError, SeriesSelectionError


def test_error_is_one_line_naming_file_and_problem() -> None:
    error = DicomError("pixel data\n truncated", "/data/ct/IM001.dcm")
    assert error.one_line() == "/data/ct/IM001.dcm: pixel data truncated"


def test_series_selection_error_lists_every_choice() -> None:
    error = SeriesSelectionError("/in", ["1.2.3 CT", "1.2.4 MR"])
    assert "2 series" in str(error) and "1.2.3 CT" in str(error) and "--series" in str(error)
