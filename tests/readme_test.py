"""The README's API tour runs as written, with tiny settings on the PTB-XL subset."""

import pathlib
import re

import keras
import numpy as np
import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
TOUR_BACKEND = "jax"


def _tour_code():
    text = README.read_text(encoding="utf-8")
    block = text.split("<!-- api-tour:begin -->", 1)[1].split("<!-- api-tour:end -->")[
        0
    ]
    return re.search(r"```python\n(.*?)```", block, flags=re.S).group(1)


def _substitute(code, old, new):
    # Every substitution must apply: a README edit that breaks one fails here
    # instead of silently testing something else.
    assert old in code, f"README API tour no longer contains {old!r}"
    return code.replace(old, new)


@pytest.mark.skipif(
    keras.backend.backend() != TOUR_BACKEND,
    reason=f"the README tour runs in the {TOUR_BACKEND} pass only",
)
def test_readme_api_tour_runs(ptbxl_dir, tmp_path, monkeypatch, capsys):
    code = _tour_code()
    code = _substitute(code, '"path/to/ptb-xl"', repr(str(ptbxl_dir)))
    code = _substitute(
        code,
        'SIZE, PRETRAIN_EPOCHS = "paper", 100',
        'SIZE, PRETRAIN_EPOCHS = "tiny", 1',
    )
    # The subset has no fold 10: test on fold 9, select epochs on fold 8.
    code = _substitute(code, "range(1, 9), [9], [10]", "range(1, 8), [8], [9]")
    code = _substitute(
        code,
        "    preprocessor=preprocessor,\n",
        "    preprocessor=preprocessor, epochs=1, verbose=0,\n",
    )
    code = _substitute(
        code,
        "simclr.fit(views, epochs=PRETRAIN_EPOCHS)",
        "simclr.fit(views, epochs=PRETRAIN_EPOCHS, verbose=0)",
    )
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, str(README), "exec"), namespace)
    printed = capsys.readouterr().out
    auc = float(re.search(r"test macro AUC: ([0-9.]+)", printed).group(1))
    assert 0.0 <= auc <= 1.0
    predictions = namespace["predictions"]
    classes = list(namespace["train"].classes)
    assert list(predictions.columns) == ["record_id", *classes]
    assert len(predictions) == len(
        list((ptbxl_dir / "records500" / "00000").glob("*.hea"))
    )
    probabilities = predictions[classes].to_numpy()
    assert np.all((probabilities >= 0) & (probabilities <= 1))
    assert (tmp_path / "classifier.keras").exists()
