"""Users' own models: a Hugging Face folder or repo id, or a TorchScript / ``torch.save`` file with a sidecar.

``load(path_or_id, sidecar=None)`` returns a :class:`VideoClassifier` (the registry then puts it in eval mode
with frozen parameters and caches it).

* A folder with a ``config.json`` or a hub id ``owner/name``: ``AutoModelForVideoClassification`` plus
  ``AutoVideoProcessor`` when the checkpoint has one (frames, size, mean/std); labels from ``id2label``.
* A file: TorchScript (``torch.jit.save``) or a whole module saved with ``torch.save(model, path)``. The
  module maps the normalised clip to logits; the sidecar says how to feed it. The sidecar is a dict (the
  CLI passes its flags this way) or a JSON file, by default ``<file>.json`` beside the model file::

      {"frames": 16, "crop": 112, "mean": [0.43, 0.39, 0.37], "std": [0.23, 0.22, 0.22],
       "layout": "BCTHW", "labels": "labels.txt",          # or a list of names, or a .json list
       "resize_side": 128, "input_key": null, "gradcam_layer": "layer4", "sampling_rate": 2}

  Label files are relative to the sidecar. Loading a ``torch.save`` module runs the pickle code inside it
  (that is what this format is), and its class must be importable; prefer TorchScript to share a model.
"""
from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import torch

from attribution.common import freeze
from attribution.errors import ModelError
from model_zoo.classifier import TokenGrid, VideoClassifier

REQUIRED = ("frames", "crop", "mean", "std", "layout", "labels")
OPTIONAL = ("resize_side", "input_key", "gradcam_layer", "sampling_rate", "areas", "name", "token_grid")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def load(path_or_id, sidecar: dict | str | Path | None = None) -> VideoClassifier:
    """A user's model as a :class:`VideoClassifier` in eval mode with frozen parameters (on the CPU).

    Raises ModelError with what to fix.
    """
    return freeze(_load(path_or_id, sidecar))


def _load(path_or_id, sidecar) -> VideoClassifier:
    s = str(path_or_id)
    p = Path(s).expanduser()
    if p.is_dir():
        if not (p / "config.json").exists():
            raise ModelError(f"{s} is a folder without a config.json, so not a Hugging Face model folder "
                             "(save one with model.save_pretrained(folder)).")
        from model_zoo import hf_models
        return hf_models.from_pretrained(str(p))
    if p.is_file():
        return load_file(p, sidecar)
    if _REPO_ID.match(s) and not s.endswith((".pt", ".pth", ".ts", ".jit", ".json")):
        from model_zoo import hf_models
        return hf_models.from_pretrained(s)
    from model_zoo import list_models
    raise ModelError(f"Unknown model {s!r}: not a registry name ({', '.join(list_models())}), an existing "
                     "file or folder, or a Hugging Face repo id (owner/name).")


def load_file(path, sidecar: dict | str | Path | None = None) -> VideoClassifier:
    """A TorchScript or ``torch.save`` module file plus its sidecar (dict, JSON path, or ``<file>.json``)."""
    path = Path(path)
    spec, base = _read_sidecar(path, sidecar)
    module = _load_module(path).eval()  # before the check below: BatchNorm must not update its statistics
    labels = _labels(spec["labels"], base)
    model = VideoClassifier(
        module, name=str(spec.get("name") or path.name), labels=labels, num_frames=spec["frames"],
        crop_size=spec["crop"], mean=spec["mean"], std=spec["std"], layout=spec["layout"],
        input_key=spec.get("input_key"), gradcam_layer=spec.get("gradcam_layer"),
        resize_side=spec.get("resize_side"), sampling_rate=spec.get("sampling_rate"), areas=spec.get("areas"),
        token_grid=TokenGrid(**spec["token_grid"]) if spec.get("token_grid") else None,
        info={"family": "user", "weights": str(path), "licence": "user-supplied", "trained_on": "user-supplied"})
    if model.gradcam_layer:
        if model.gradcam_layer not in dict(module.named_modules()):  # get_submodule fails on TorchScript
            raise ModelError(f"The sidecar's gradcam_layer {model.gradcam_layer!r} is not a module of {path.name}.")
    _check_output(model, path)
    return model


def _read_sidecar(path: Path, sidecar) -> tuple[dict, Path]:
    base = path.parent
    if sidecar is None:
        for cand in (path.with_name(path.name + ".json"), path.with_suffix(".json")):
            if cand.is_file() and cand != path:
                sidecar = cand
                break
        else:
            raise ModelError(f"{path.name} needs a sidecar describing its input: write {path.name}.json beside it "
                             f"with {', '.join(REQUIRED)} (see model_zoo/user_models.py).")
    if isinstance(sidecar, (str, Path)):
        sc = Path(sidecar)
        try:
            spec = json.loads(sc.read_text())
        except (OSError, ValueError) as e:
            raise ModelError(f"Cannot read the sidecar {sc}: {e}") from e
        base = sc.parent
    else:
        spec = dict(sidecar)
    if not isinstance(spec, dict):
        raise ModelError("The sidecar must be a JSON object (a dict of settings).")
    spec = {k: v for k, v in spec.items() if v is not None}
    unknown = sorted(set(spec) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise ModelError(f"Unknown sidecar key(s) {unknown}; allowed: {', '.join(REQUIRED + OPTIONAL)}.")
    missing = [k for k in REQUIRED if k not in spec]
    if missing:
        raise ModelError(f"The sidecar lacks {', '.join(missing)} (needed: {', '.join(REQUIRED)}).")
    try:
        spec["frames"], spec["crop"] = int(spec["frames"]), int(spec["crop"])
        for k in ("mean", "std"):
            v = [float(x) for x in (spec[k] if isinstance(spec[k], (list, tuple)) else [spec[k]])]
            spec[k] = v * 3 if len(v) == 1 else v
        for k in ("resize_side", "sampling_rate"):
            if k in spec:
                spec[k] = int(spec[k])
    except (TypeError, ValueError) as e:
        raise ModelError(f"Bad sidecar value ({e}): frames, crop, resize_side and sampling_rate are integers, "
                         "mean and std numbers or lists of 3 numbers.") from e
    if spec["frames"] < 1 or spec["crop"] < 8:
        raise ModelError("The sidecar's frames must be >= 1 and crop >= 8 pixels.")
    if len(spec["mean"]) != 3 or len(spec["std"]) != 3 or min(spec["std"]) <= 0:
        raise ModelError("The sidecar's mean and std need 3 values (RGB), std > 0, on the [0,1] scale.")
    if spec["layout"] not in ("BCTHW", "BTCHW"):
        raise ModelError(f"The sidecar's layout must be 'BCTHW' or 'BTCHW', not {spec['layout']!r}.")
    return spec, base


def _labels(value, base: Path) -> list[str]:
    if isinstance(value, (list, tuple)):
        labels = [str(x) for x in value]
    elif isinstance(value, str):
        f = Path(value).expanduser()
        f = f if f.is_absolute() else base / f
        try:
            text = f.read_text()
        except OSError as e:
            raise ModelError(f"Cannot read the labels file {f}: {e.strerror or e}") from e
        if f.suffix.lower() == ".json":
            try:
                data = json.loads(text)
            except ValueError as e:
                raise ModelError(f"The labels file {f} is not valid JSON: {e}") from e
            if isinstance(data, dict):  # {"0": "name", ...} or {"name": 0, ...}
                pairs = [(int(k), v) for k, v in data.items()] if all(str(k).isdigit() for k in data) \
                    else [(int(v), k) for k, v in data.items()]
                data = [v for _, v in sorted(pairs)]
            labels = [str(x) for x in data]
        else:
            labels = [line.strip() for line in text.splitlines() if line.strip()]
    else:
        raise ModelError("The sidecar's labels must be a list of names or the path of a .json / .txt file.")
    if not labels:
        raise ModelError("The sidecar gives no labels.")
    return labels


def _load_module(path: Path) -> torch.nn.Module:
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError):
        pass  # not a TorchScript archive: try torch.save
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)  # state dicts load safely
        except pickle.UnpicklingError:
            obj = torch.load(path, map_location="cpu", weights_only=False)  # a whole pickled module
    except (ModuleNotFoundError, AttributeError) as e:
        raise ModelError(f"{path.name} is a torch.save module whose class cannot be imported here ({e}); "
                         "export it with torch.jit.script(model).save(path) instead.") from e
    except Exception as e:  # noqa: BLE001 - any unreadable file gets one sentence, not a traceback
        raise ModelError(f"{path.name} is neither a TorchScript nor a torch.save file ({type(e).__name__}).") from e
    if isinstance(obj, torch.nn.Module):
        return obj
    if isinstance(obj, dict):
        raise ModelError(f"{path.name} holds a state dict (weights only); save the whole module with "
                         "torch.save(model, path) or export TorchScript with torch.jit.script(model).save(path).")
    raise ModelError(f"{path.name} holds a {type(obj).__name__}, not a torch.nn.Module.")


def _check_output(model: VideoClassifier, path: Path) -> None:
    """One forward on a grey clip, so a wrong sidecar fails here with a sentence, not later in the engine."""
    x = torch.full((1, 3, model.num_frames, model.crop_size, model.crop_size), 0.5)
    try:
        with torch.no_grad():
            y = model(x)
    except Exception as e:  # noqa: BLE001 - the user's module may raise anything on a wrong input shape
        raise ModelError(f"{path.name} fails on a clip of {model.num_frames} frames of {model.crop_size}x"
                         f"{model.crop_size} in layout {model.layout} ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''}); check the sidecar.") from e
    if not torch.is_tensor(y) or y.ndim != 2 or y.shape[1] != len(model.labels):
        shape = tuple(y.shape) if torch.is_tensor(y) else type(y).__name__
        raise ModelError(f"{path.name} returns {shape} for one clip, but the sidecar gives {len(model.labels)} "
                         "labels: it must return logits (1, number of labels).")
