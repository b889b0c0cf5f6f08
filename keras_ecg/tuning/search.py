"""`run_search`: one call from datasets to the best pretrained model."""

import os
import warnings

import keras
import keras_tuner as kt

from keras_ecg.models.method_factory import DEFAULT_ENCODER
from keras_ecg.tuning.hypermodels import SSLHyperModel

TUNERS = ("random", "bayesian", "hyperband")


def _objective(objective):
    if isinstance(objective, kt.Objective):
        return objective
    if objective == "probe_auc":
        return kt.Objective("probe_auc", "max")
    if objective == "loss":
        return kt.Objective("loss", "min")
    raise ValueError(
        f"Unknown objective {objective!r}; expected 'probe_auc', 'loss' or a "
        "keras_tuner.Objective."
    )


def make_tuner(
    hypermodel,
    tuner="random",
    max_trials=10,
    epochs=10,
    directory="tuning",
    project_name="search",
    objective="probe_auc",
    seed=0,
    overwrite=True,
):
    """A KerasTuner tuner for `hypermodel`.

    `Hyperband` takes `epochs` as its `max_epochs` (its trial budget follows
    from it; `max_trials` is then unused); `RandomSearch` and
    `BayesianOptimization` run `max_trials` trials.
    """
    common = dict(
        hypermodel=hypermodel,
        objective=_objective(objective),
        seed=seed,
        directory=directory,
        project_name=project_name,
        overwrite=overwrite,
    )
    if tuner == "random":
        search = kt.RandomSearch(max_trials=max_trials, **common)
    elif tuner == "bayesian":
        search = kt.BayesianOptimization(max_trials=max_trials, **common)
    elif tuner == "hyperband":
        search = kt.Hyperband(max_epochs=max(2, int(epochs)), factor=3, **common)
    else:
        raise ValueError(f"Unknown tuner {tuner!r}; expected one of {TUNERS}.")
    _configure_trial_logs(search)
    return search


def _configure_trial_logs(search):
    """Gives each trial its own training logs.

    KerasTuner copies the search's callbacks for every trial and points only
    a callback of the exact class `TensorBoard` at a per-trial folder (and
    imports `tensorboard` for it, which TensorFlow 2.21 no longer installs).
    The run-folder loggers are redirected here instead: each trial's CSV log
    goes into its trial folder and its TensorBoard events into
    `<events>/trial_<id>`, so one `tensorboard --logdir` compares trials.
    """
    from keras_ecg.training_logs import TrainingCSVLogger
    from keras_ecg.training_logs import TrainingTensorBoard

    original = search._configure_tensorboard_dir

    def configure(callbacks, trial, execution=0):
        for callback in callbacks:
            if isinstance(callback, TrainingCSVLogger):
                callback.filename = os.path.join(
                    search.get_trial_dir(trial.trial_id),
                    os.path.basename(callback.filename),
                )
            elif isinstance(callback, TrainingTensorBoard):
                callback.log_dir = os.path.join(
                    callback.log_dir, f"trial_{trial.trial_id}"
                )
        if any(type(c).__name__ == "TensorBoard" for c in callbacks):
            original(callbacks, trial, execution)

    search._configure_tensorboard_dir = configure


def run_search(
    method,
    train,
    val,
    tuner="random",
    max_trials=10,
    epochs=10,
    directory="tuning",
    project_name=None,
    objective="probe_auc",
    seed=0,
    size="small",
    batch_size=64,
    probe="logistic",
    overwrite=True,
    verbose=0,
    standardizer=None,
    encoder=None,
    callbacks=None,
):
    """Searches `method`'s hyperparameters for the best downstream probe score.

    Every trial pretrains the method for `epochs` epochs on `train`, then
    scores a probe (logistic regression or kNN on frozen, per-record averaged
    embeddings) by macro ROC AUC on `val`. The best trial's model is saved as
    `<directory>/<project_name>/best_model.keras`.

    Args:
        method: `"simclr"`, `"byol"`, `"swav"`, `"cpc"` or `"jepa"`.
        train: labelled `ECGDataset` for pretraining and the probe's fit.
        val: labelled `ECGDataset` for the probe's score.
        tuner: `"random"`, `"bayesian"` or `"hyperband"`.
        max_trials: trials of random / Bayesian search.
        epochs: pretraining epochs per trial (Hyperband: its `max_epochs`).
        directory: tuner directory.
        project_name: tuner project; defaults to `"<method>_<tuner>"`
            (`"<method>_<encoder>_<tuner>"` with a non-default encoder).
        objective: `"probe_auc"` (max), `"loss"` (min) or a
            `keras_tuner.Objective`.
        seed: seeds Keras, the tuner and the pipelines.
        size: `"tiny"`, `"small"` or `"paper"` architecture ranges.
        batch_size: pretraining batch size.
        probe: `"logistic"` or `"knn"`.
        overwrite: start afresh instead of resuming a project.
        verbose: `fit`/search verbosity.
        standardizer: optional fitted `LeadStandardizer` applied in every
            trial's input pipelines (`train` and `val` then in mV).
        encoder: `None` (the method's default encoder) or an encoder name
            the method can use, e.g. `"s4"`.
        callbacks: Keras callbacks of every trial's `fit` (copied per trial
            by KerasTuner); `TrainingLogs`' CSV logger and TensorBoard
            events are redirected per trial.

    Returns:
        A dict with `best_hyperparameters` (dict), `best_score` (the best
        objective value), `best_model_path` (the saved `.keras` model),
        `objective`, `num_trials` and `project_dir`.

    Example:

    ```python
    result = run_search("simclr", train, val, tuner="bayesian", max_trials=5,
                        epochs=3, directory="runs/tuning")
    model = keras.saving.load_model(result["best_model_path"])
    ```
    """
    if tuner not in TUNERS:
        raise ValueError(f"Unknown tuner {tuner!r}; expected one of {TUNERS}.")
    if project_name is None:
        default = encoder is None or encoder == DEFAULT_ENCODER.get(method)
        project_name = f"{method}_{tuner}" if default else f"{method}_{encoder}_{tuner}"
    keras.utils.set_random_seed(seed)
    hypermodel = SSLHyperModel(
        method,
        train,
        val,
        size=size,
        batch_size=batch_size,
        probe=probe,
        seed=seed,
        standardizer=standardizer,
        encoder=encoder,
    )
    search = make_tuner(
        hypermodel,
        tuner=tuner,
        max_trials=max_trials,
        epochs=epochs,
        directory=directory,
        project_name=project_name,
        objective=objective,
        seed=seed,
        overwrite=overwrite,
    )
    search_kwargs = {"verbose": verbose, "callbacks": list(callbacks or [])}
    if tuner != "hyperband":
        search_kwargs["epochs"] = epochs
    search.search(**search_kwargs)
    best_trial = search.oracle.get_best_trials(1)
    if not best_trial or best_trial[0].score is None:
        raise RuntimeError(
            f"Search {project_name!r} in {directory!r} finished without a "
            "successful trial; see the tuner logs."
        )
    best_trial = best_trial[0]
    with warnings.catch_warnings():
        # Only weights are checkpointed per trial: the optimizer restarts empty.
        warnings.filterwarnings("ignore", message="Skipping variable loading")
        best_model = search.get_best_models(1)[0]
    # Build the (fresh) optimizer so the saved model reloads without warnings.
    best_model.optimizer.build(best_model.trainable_variables)
    project_dir = os.path.join(directory, project_name)
    path = os.path.join(project_dir, "best_model.keras")
    best_model.save(path)
    return {
        "best_hyperparameters": dict(best_trial.hyperparameters.values),
        "best_score": float(best_trial.score),
        "best_model_path": path,
        "objective": search.oracle.objective.name,
        "num_trials": len(search.oracle.trials),
        "project_dir": project_dir,
    }
