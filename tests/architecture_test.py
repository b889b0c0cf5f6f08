"""The layering of keras_ecg (docs/architecture.md), checked on the source.

Every `import` of every module under keras_ecg/, those inside functions
included, is read with `ast`, and each import of another part of keras_ecg
must go down the table below: a component imports only components of a
lower level, plus the few exceptions listed with their reason.
"""

import ast
import pathlib

import pytest

pytestmark = pytest.mark.backend_agnostic

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "keras_ecg"

# Each top-level module or package of keras_ecg -> (component, level). A
# component may import the components of a LOWER level only.
COMPONENTS = {
    # Helpers every layer may use (no keras_ecg imports of their own).
    "version": ("base", 0),
    "utils": ("base", 0),
    "quiet": ("base", 0),
    # The CLI flags' choices, shared by the parser and the jobs' settings.
    "choices": ("base", 0),
    # Records, formats, splits, tf.data pipelines.
    "data": ("data", 1),
    # Data parallelism: process settings, collectives, sharding, SyncBN.
    "distribute": ("distribute", 1),
    # Building blocks of models.
    "layers": ("layers", 2),
    "losses": ("losses", 2),
    # Per-record predictions from sliding windows (any model with `predict`).
    "inference": ("inference", 2),
    # Drawing ECGs and curves (matplotlib on first use).
    "plot": ("plot", 2),
    # Encoders, pretraining methods, ECGClassifier, ECGPreprocessor.
    "models": ("models", 3),
    # What uses models: saving/loading presets, converting reference
    # checkpoints, explaining predictions, downstream evaluation, and the
    # training helpers of the commands.
    "presets": ("presets", 4),
    "convert": ("convert", 4),
    "explain": ("explain", 4),
    "evaluation": ("evaluation", 4),
    "callbacks": ("callbacks", 4),
    "training_logs": ("training_logs", 4),
    # Built on evaluation (and training_logs).
    "tuning": ("tuning", 5),
    "online_probe": ("online_probe", 5),
    # The run manifest; asks `callbacks` whether a failed run is resumable.
    "run_folder": ("run_folder", 5),
    # The commands' jobs: `keras_ecg/jobs/`, `workflows.py` (its backward-
    # compatible re-exports) and `run_watch.py`.
    "jobs": ("jobs", 6),
    "workflows": ("jobs", 6),
    "run_watch": ("jobs", 6),
    # Helpers of the test suite (multi-process workers, test cases); not jobs.
    "testing": ("testing", 6),
    # The command line: imported by nothing in keras_ecg.
    "cli": ("cli", 7),
}

# (importing component, imported module or package) allowed against the
# levels, with the reason.
EXCEPTIONS = {
    # Every encoder and model mixes in `PresetMixin` (`from_preset`,
    # `save_to_preset`); the mixin imports the preset loader and saver, which
    # import models, only inside those methods.
    ("models", "keras_ecg.presets.preset_mixin"),
}

# `import keras_ecg` / `from keras_ecg import <not a submodule>`: the package
# itself, which imports layers, losses, models and presets for
# `keras.saving.load_model`. Only the jobs and the CLI may lean on it.
FACADE = ("facade", 5)


def _module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_submodule(name):
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _imports(path):
    """`(line, imported module)` of every keras_ecg import in `path`."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            for alias in node.names:
                # `from keras_ecg import distribute` imports a submodule.
                candidate = f"{base}.{alias.name}"
                yield node.lineno, candidate if _is_submodule(candidate) else base


def _component(module):
    parts = module.split(".")
    if parts[0] != "keras_ecg":
        return None
    if len(parts) == 1:
        return FACADE
    return COMPONENTS.get(parts[1])


def _modules():
    return sorted(PACKAGE.rglob("*.py"))


def test_every_part_of_the_package_has_a_place_in_the_layers():
    unplaced = sorted(
        {
            _module_name(p).split(".")[1]
            for p in _modules()
            if p.parent != PACKAGE or p.name != "__init__.py"
        }
        - set(COMPONENTS)
    )
    assert not unplaced, (
        f"keras_ecg.{unplaced[0]} has no place in COMPONENTS: add it (and to "
        "docs/architecture.md)"
    )


def test_imports_go_down_the_layers():
    violations = []
    for path in _modules():
        importer = _module_name(path)
        component, level = _component(importer) or (None, None)
        if component is None:
            continue  # reported by the test above
        for line, imported in _imports(path):
            target = _component(imported)
            if target is None or target[0] == component:
                continue
            if target[1] < level:
                continue
            if any(
                component == c and (imported == m or imported.startswith(m + "."))
                for c, m in EXCEPTIONS
            ):
                continue
            where = path.relative_to(PACKAGE.parent)
            violations.append(
                f"{where}:{line}: {component} (level {level}) imports {imported} "
                f"({target[0]}, level {target[1]})"
            )
    assert not violations, "\n".join(violations)


def test_models_and_evaluation_do_not_import_each_other():
    # Stated on its own: the cycle that keras_ecg.inference removed.
    for path in _modules():
        importer = _module_name(path)
        for line, imported in _imports(path):
            if importer.startswith("keras_ecg.models"):
                assert not imported.startswith("keras_ecg.evaluation"), (path, line)
