import os
import stat
from pathlib import Path

import pytest

from medverse.io.atomic import atomic_path, write_text_atomic


def test_failed_write_leaves_old_file_and_no_temporaries(tmp_path: Path) -> None:
    target = write_text_atomic(tmp_path / "report.json", "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer crashed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_written_files_get_the_usual_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "plan.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
