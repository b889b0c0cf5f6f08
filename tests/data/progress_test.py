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
