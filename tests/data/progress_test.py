import io

import pytest

from keras_ecg.data.progress import ReadProgress


@pytest.mark.backend_agnostic
def test_progress_lines_off_a_terminal():
    stream = io.StringIO()
    progress = ReadProgress(4, "reading", log_interval=0.0, stream=stream)
    for _ in range(4):
        progress.update()
    progress.close()
    lines = stream.getvalue().splitlines()
    assert [line.split(" (")[0] for line in lines] == [
        "reading: 1/4 records",
        "reading: 2/4 records",
        "reading: 3/4 records",
        "reading: 4/4 records",
        "reading: 4/4 records",
    ]
    assert lines[1].startswith("reading: 2/4 records (50%, ")


@pytest.mark.backend_agnostic
def test_disabled_or_fast_progress_prints_nothing():
    stream = io.StringIO()
    progress = ReadProgress(3, "reading", enabled=False, stream=stream)
    progress.update(3)
    progress.close()
    quick = ReadProgress(3, "reading", log_interval=60.0, stream=stream)
    quick.update(3)
    quick.close()
    assert stream.getvalue() == ""


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.backend_agnostic
def test_progress_bar_on_a_terminal():
    stream = _Terminal()
    progress = ReadProgress(4, "downloading", interval=0.0, stream=stream, unit="files")
    progress.update(detail=", 1/2 records")
    progress.update(2)
    progress.close()
    lines = stream.getvalue().split("\r")
    assert lines[0].startswith(
        "downloading: [" + "#" * 6 + "." * 18 + "] 1/4 files (25%, "
    )
    assert lines[0].endswith(", 1/2 records")
    # The detail stays until replaced; the final line ends the terminal line.
    assert lines[1].startswith("downloading: [" + "#" * 18 + "." * 6 + "] 3/4 files")
    assert lines[1].endswith(", 1/2 records")
    assert lines[2].endswith("\n")
