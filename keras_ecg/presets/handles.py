"""Preset handles: a local folder, `hf://org/name[@revision]` or
`kaggle://owner/model/framework/variation[/version]`.

Remote presets are downloaded by `huggingface_hub` and `kagglehub` (the
optional `hub` extra, imported only for such a handle) into their own caches,
so their settings apply: `HF_HOME` / `HF_HUB_CACHE`, `HF_ENDPOINT`,
`HF_HUB_OFFLINE` and `HF_TOKEN` for the Hugging Face Hub, `KAGGLEHUB_CACHE` and
the Kaggle credentials for Kaggle. A second load of the same preset is served
from the cache, also offline (a Kaggle handle then needs its version: without
one, kagglehub asks Kaggle for the latest).

Nothing here imports Keras.
"""

import importlib
import os

from keras_ecg.presets.preset_files import PRESET_FILES
from keras_ecg.presets.preset_files import README_FILE
from keras_ecg.presets.preset_files import PresetError
from keras_ecg.presets.preset_files import first_line
from keras_ecg.presets.preset_files import read_metadata

HF_SCHEME = "hf"
KAGGLE_SCHEME = "kaggle"
INSTALL_HINT = "pip install 'keras-ecg[hub]'"


class HubPackageError(ImportError):
    """A remote handle needs `huggingface_hub` or `kagglehub`, not installed."""


def get_preset_dir(handle):
    """The local folder of a preset, downloading (or reusing the cached copy
    of) a remote one, checked to hold a preset this keras-ecg can read.

    Args:
        handle: a local folder; `"hf://org/name"` (optionally
            `"hf://org/name@revision"`, a branch, tag or commit) on the
            Hugging Face Hub; or `"kaggle://owner/model/framework/variation"`
            (optionally `/version`) on Kaggle Models.

    Returns:
        The path of the folder (for a remote handle, inside the hub
        library's cache).

    Raises:
        PresetError: no such folder or remote model, the hub cannot be
            reached and nothing is cached, or the folder is not a keras-ecg
            preset of a format this version reads (one line naming the
            handle).
        HubPackageError: `huggingface_hub` / `kagglehub` is not installed.

    Example:

    ```python
    folder = keras_ecg.presets.get_preset_dir("hf://my-lab/ecg-simclr-xresnet")
    sorted(os.listdir(folder))
    # ['config.json', 'metadata.json', 'model.weights.h5', 'preprocessor.json',
    #  'task.json', 'task.weights.h5']
    ```
    """
    if not isinstance(handle, (str, os.PathLike)):
        raise TypeError(
            f"A preset handle is a folder path or an hf:// / kaggle:// handle, got "
            f"{type(handle).__name__}."
        )
    handle = os.fspath(handle)
    scheme = handle.split("://", 1)[0].lower() if "://" in handle else None
    if scheme == HF_SCHEME:
        path = _download_from_hugging_face(handle)
    elif scheme == KAGGLE_SCHEME:
        path = _download_from_kaggle(handle)
    elif scheme is not None:
        raise PresetError(
            f"preset {handle}: unknown scheme {scheme + '://'!r}; a preset is a "
            "local folder, hf://org/name or kaggle://owner/model/framework/variation."
        )
    else:
        path = os.path.abspath(os.path.expanduser(handle))
        if not os.path.isdir(path):
            what = (
                "is a file, not a folder" if os.path.exists(path) else "no such folder"
            )
            raise PresetError(
                f"preset {handle}: {what} (remote presets are hf://org/name or "
                "kaggle://owner/model/framework/variation)."
            )
    read_metadata(path, handle)
    return path


def _import_hub_package(name, handle):
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise HubPackageError(
            f"preset {handle}: loading it needs the {name} package: {INSTALL_HINT}."
        ) from error


def _download_from_hugging_face(handle):
    hub = _import_hub_package("huggingface_hub", handle)
    from huggingface_hub import errors

    from keras_ecg.version import __version__

    repo_id, _, revision = handle.split("://", 1)[1].partition("@")
    try:
        return hub.snapshot_download(
            repo_id=repo_id,
            revision=revision or None,
            # The preset's own files only, whatever else the repository holds.
            allow_patterns=list(PRESET_FILES) + [README_FILE],
            library_name="keras-ecg",
            library_version=__version__,
        )
    except errors.HFValidationError as error:
        raise PresetError(
            f"preset {handle}: not a Hugging Face repository id ({error}); expected "
            "hf://org/name or hf://org/name@revision."
        ) from error
    except errors.RevisionNotFoundError as error:
        raise PresetError(
            f"preset {handle}: the repository has no revision {revision!r}."
        ) from error
    except (errors.RepositoryNotFoundError, errors.GatedRepoError) as error:
        raise PresetError(
            f"preset {handle}: no Hugging Face model repository {repo_id!r} (or it "
            "is private or gated and no access token is set: HF_TOKEN or `hf auth "
            "login`)."
        ) from error
    except errors.LocalEntryNotFoundError as error:
        # Raised when the Hub cannot be reached (or HF_HUB_OFFLINE is set)
        # and no complete snapshot is cached.
        if hub.constants.HF_HUB_OFFLINE:
            reason = "offline mode (HF_HUB_OFFLINE) is on"
        else:
            cause = error.__cause__ or error
            reason = f"the Hugging Face Hub cannot be reached ({first_line(cause)})"
        raise PresetError(
            f"preset {handle}: {reason} and the preset is not in the local cache "
            f"({hub.constants.HF_HUB_CACHE})."
        ) from error
    except errors.HfHubHTTPError as error:
        raise PresetError(
            f"preset {handle}: the Hugging Face Hub refused the download "
            f"({first_line(error)})."
        ) from error


def _download_from_kaggle(handle):
    kagglehub = _import_hub_package("kagglehub", handle)
    import requests
    from kagglehub.exceptions import KaggleApiHTTPError

    model = handle.split("://", 1)[1].strip("/")
    if len(model.split("/")) not in (4, 5):
        raise PresetError(
            f"preset {handle}: expected kaggle://owner/model/framework/variation "
            "or kaggle://owner/model/framework/variation/version."
        )
    try:
        return kagglehub.model_download(model)
    except KaggleApiHTTPError as error:
        status = getattr(error.response, "status_code", None)
        if status == 404:
            problem = "no such Kaggle model, variation or version"
        elif status in (401, 403):
            problem = (
                "not accessible (private, or its terms not accepted on kaggle.com; "
                "credentials: KAGGLE_API_TOKEN or ~/.kaggle)"
            )
        else:
            problem = f"Kaggle answered {status} ({first_line(error)})"
        raise PresetError(f"preset {handle}: {problem}.") from error
    except requests.exceptions.ConnectionError as error:
        hint = ""
        if len(model.split("/")) == 4:
            hint = (
                "; offline, name the version (kaggle://.../<version>) to use the "
                "cached copy"
            )
        raise PresetError(
            f"preset {handle}: Kaggle cannot be reached and the preset is not in "
            f"the local cache ({kagglehub.config.get_cache_folder()}){hint}."
        ) from error
    except (ValueError, KeyError) as error:
        raise PresetError(f"preset {handle}: {first_line(error)}.") from error
