"""Sanity check of attribution maps for video: model-parameter randomisation.

Adebayo, Gilmer, Muelly, Goodfellow, Hardt, Kim, "Sanity Checks for Saliency Maps", NeurIPS 2018, §3.1
("cascading randomization"): re-initialise the model's layers one after the other from the top (the logits) down
and compute the map again at each stage. A map that explains the model changes as its parameters are destroyed;
a map that stays the same after the whole network is random (an edge detector, a frame difference) is not about
the model. The similarity to the original map is measured as the paper does (§3, "Metrics"): Spearman rank
correlation and SSIM.

* Stage 0 is the model as given; stage k has the top k *layers* re-initialised (cumulative). A layer is a
  group of parameterised modules (:func:`layer_groups`): the network's top-level blocks, split further while
  there are fewer than 5, never more than 12 (configurable with ``stages``).
* Re-initialisation: each module's own ``reset_parameters()`` (PyTorch's default initialisation; BatchNorm's
  also resets its running statistics), else N(0, 0.02²) for its parameters; seeded, so the same seed gives the
  same random network.
* Everything runs on a deep copy of the model: the model passed in (perhaps the app's cached one) is never
  changed. Every stage explains the same class: the given target, else the original model's top-1.

    python -m attribution sanity examples/toy_moving_up.mp4 --model toy --methods step gradient grad-cam random
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from attribution.common import should_cancel
from attribution.errors import InputError

MIN_STAGES = 5          # split the top-level blocks until there are at least this many layers ...
MAX_STAGES = 12         # ... but never more than this many (a long block list is cut into contiguous chunks)
TRUNK = 2 / 3           # a block holding more than this share of the parameters is split too (a transformer's encoder)
INIT_STD = 0.02         # parameters of a module without reset_parameters() are drawn from N(0, INIT_STD²)
SURVIVES = 0.5          # rank correlation with the original at full randomisation from which a map is flagged
SSIM_WINDOW = 11        # SSIM: 11x11 Gaussian window of σ 1.5, C1 = (0.01 L)², C2 = (0.03 L)², L = 1
SSIM_SIGMA = 1.5        # (Wang, Bovik, Sheikh, Simoncelli, "Image Quality Assessment", IEEE TIP 2004, §III-B)


# ------------------------------------------------------------------------------------------- similarity
def _ranks(a: np.ndarray) -> np.ndarray:
    """1-based ranks of a flat array, ties sharing their average rank."""
    a = np.asarray(a, dtype=np.float64).ravel()
    order = np.argsort(a, kind="mergesort")
    s = a[order]
    edge = np.r_[True, s[1:] != s[:-1], True]
    start = np.flatnonzero(edge)
    group = np.cumsum(edge[:-1]) - 1
    ranks = np.empty(len(a))
    ranks[order] = ((start[:-1] + start[1:] - 1) / 2 + 1)[group]
    return ranks


def spearman(a, b) -> float:
    """Spearman rank correlation of two maps over all their values (ties: average ranks).

    A constant map has no order: 1.0 when both maps are the same constant, else 0.0.
    """
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"maps of different sizes: {a.shape} and {b.shape}")
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 1.0 if np.array_equal(a, b) else 0.0
    ra, rb = _ranks(a), _ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    return float(np.clip((ra @ rb) / math.sqrt((ra @ ra) * (rb @ rb)), -1.0, 1.0))


def ssim(a, b, data_range: float = 1.0) -> float:
    """Mean structural similarity of two maps (T,H,W) (or (H,W)): per frame, Gaussian-weighted local statistics
    over the positions where the window fits, averaged over positions and frames (Wang et al. 2004, §III-B)."""
    x = torch.as_tensor(np.asarray(a, dtype=np.float64))
    y = torch.as_tensor(np.asarray(b, dtype=np.float64))
    if x.shape != y.shape:
        raise ValueError(f"maps of different sizes: {tuple(x.shape)} and {tuple(y.shape)}")
    if x.dim() == 2:
        x, y = x[None], y[None]
    size = min(SSIM_WINDOW, x.shape[-1], x.shape[-2])
    g = torch.exp(-((torch.arange(size, dtype=torch.float64) - (size - 1) / 2) ** 2) / (2 * SSIM_SIGMA ** 2))
    g = g / g.sum()
    z = torch.stack([x, y, x * x, y * y, x * y])                        # (5,T,H,W)
    z = z.unfold(3, size, 1).matmul(g).unfold(2, size, 1).matmul(g)     # the window is separable: rows, columns
    mx, my, xx, yy, xy = z.chunk(5)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    vx, vy, cxy = xx - mx ** 2, yy - my ** 2, xy - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return float(s.mean())


# ---------------------------------------------------------------------------------------------- layers
@dataclasses.dataclass
class Layer:
    """One stage of the cascade: what it re-initialises."""
    name: str                     # as shown (relative to the wrapped network)
    modules: list                 # qualified module names inside the model
    parameters: int               # how many parameter values
    own: bool = False             # only the direct parameters of ``modules[0]`` (not its children)


def _count(module: torch.nn.Module, recurse: bool = True) -> int:
    return sum(p.numel() for p in module.parameters(recurse=recurse))


def _children(model, name: str) -> list[tuple[str, torch.nn.Module]]:
    mod = model.get_submodule(name)
    return [(f"{name}.{n}" if name else n, c) for n, c in mod.named_children() if _count(c) > 0]


def _split(model, name: str) -> list[Layer]:
    """The parts of module ``name`` that hold parameters, descending through wrappers of a single part: its own
    parameters (used first, e.g. an embedding: the bottom) and each child with parameters, in registration
    order (bottom to top)."""
    while True:
        mod = model.get_submodule(name)
        kids = _children(model, name)
        own = _count(mod, recurse=False)
        if len(kids) == 1 and not own:
            name = kids[0][0]
            continue
        parts = [Layer(name, [name], own, own=True)] if own and kids else []
        return parts + [Layer(n, [n], _count(c)) for n, c in kids]


def _chunks(parts: list[Layer], n: int) -> list[Layer]:
    """``parts`` in at most ``n`` contiguous groups of equal size (the last may be shorter), named by their
    first and last part."""
    out = []
    size = math.ceil(len(parts) / n)
    for start in range(0, len(parts), size):
        ps = parts[start:start + size]
        name = ps[0].name if len(ps) == 1 else f"{ps[0].name}-{ps[-1].name.rsplit('.', 1)[-1]}"
        out.append(Layer(name, [m for p in ps for m in p.modules], sum(p.parameters for p in ps)))
    return out


def _display(model, name: str) -> str:
    """A module's name relative to the network a :class:`model_zoo.VideoClassifier` wraps (``features.5``)."""
    inner = "module." if isinstance(getattr(model, "module", None), torch.nn.Module) else ""
    return name[len(inner):] if inner and name.startswith(inner) else name


def layer_groups(model: torch.nn.Module, stages: int | Sequence | None = None) -> list[Layer]:
    """The cascade's layers, top (logits) first.

    ``stages``: None: the top-level blocks, the largest split into its parts while there are fewer than
    :data:`MIN_STAGES` or one holds more than :data:`TRUNK` of the parameters, at most :data:`MAX_STAGES`
    (the parts of a long list cut into contiguous chunks); an int n: the same aiming at exactly n (fewer when
    the network has fewer parts); a list of module names (or lists of names), top first, each item one layer
    (names relative to the wrapped network, as shown, or qualified).
    """
    if stages is not None and not isinstance(stages, (int, np.integer)):
        return [_named_layer(model, item) for item in stages]
    lo, hi = (MIN_STAGES, MAX_STAGES) if stages is None else (int(stages), int(stages))
    if hi < 1:
        raise InputError(f"stages must be at least 1, not {hi}.")
    if _count(model) == 0:
        raise InputError("The model has no parameters to randomise, so there is nothing to check.")
    layers = _split(model, "")
    if not layers:   # a single module holding parameters itself
        layers = [Layer("", [""], _count(model))]
    total = sum(layer.parameters for layer in layers)
    split = True
    while split and len(layers) < hi:
        split = False
        for i in sorted(range(len(layers)), key=lambda j: -layers[j].parameters):
            layer = layers[i]
            if len(layers) >= lo and layer.parameters <= TRUNK * total:
                break                      # enough layers, and none holds most of the network
            parts = [] if layer.own or len(layer.modules) != 1 else _split(model, layer.modules[0])
            if len(parts) >= 2:
                room = hi - (len(layers) - 1)
                layers[i:i + 1] = _chunks(parts, room) if len(parts) > room else parts
                split = True
                break
    if len(layers) > hi:
        layers = _chunks(layers, hi)
    for layer in layers:
        layer.name = _display(model, layer.name) or type(model).__name__
    return layers[::-1]


def _named_layer(model, item) -> Layer:
    names = [item] if isinstance(item, str) else list(item)
    known = dict(model.named_modules())
    qualified = []
    for n in names:
        inner = f"module.{n}"
        q = n if n in known else inner if inner in known else None
        if q is None:
            raise InputError(f"No module {n!r} in the model; its top-level layers are "
                             f"{', '.join(layer.name for layer in layer_groups(model))}.")
        qualified.append(q)
    return Layer(", ".join(names), qualified, sum(_count(known[q]) for q in qualified))


def randomise(model: torch.nn.Module, layer: Layer, seed: int) -> None:
    """Re-initialise ``layer`` of ``model`` in place: ``reset_parameters()`` of every module that has one, N(0,
    0.02²) for the parameters of the others; the same ``seed`` gives the same values."""
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        for q in layer.modules:
            root = model.get_submodule(q)
            for mod in ([root] if layer.own else list(root.modules())):
                reset = getattr(mod, "reset_parameters", None)
                if callable(reset) and not layer.own:
                    reset()
                else:
                    for p in mod.parameters(recurse=False):
                        p.normal_(0.0, INIT_STD)


# ---------------------------------------------------------------------------------------------- report
@dataclasses.dataclass
class SanityReport:
    """Similarity of each method's map to its original as the layers are randomised (stage 0: none)."""
    model_name: str
    target: int
    label: str
    seed: int
    methods: list
    layers: list                  # [Layer] in the order randomised (top first); stage k = layers[:k] random
    rows: list                    # one dict per method x stage (see table())
    settings: dict                # what every map was computed with: preset, perturbation settings, per method
    seconds: float = 0.0
    clips: int = 1                # > 1: the rows are means over that many clips (combine())
    maps: dict | None = None      # method -> (stages+1, T, H, W) float16 maps (one clip only)
    source: dict = dataclasses.field(default_factory=dict)

    @property
    def stage_names(self) -> list[str]:
        return ["original"] + [layer.name for layer in self.layers]

    def table(self) -> list[dict]:
        """One row per method and stage: method, stage, layer (the one randomised last, "original" at stage 0),
        spearman and ssim with the original map, probability (p(target) of the model at that stage), top1."""
        return [dict(r) for r in self.rows]

    def verdicts(self) -> dict:
        """Per method: the similarity once every layer is random, and whether the map survived it (rank
        correlation >= :data:`SURVIVES`: the map does not depend on the model's parameters)."""
        out = {}
        last = len(self.layers)
        for m in self.methods:
            r = self._cell(m, last)
            out[m] = {"spearman": r["spearman"], "ssim": r["ssim"], "survives": bool(r["spearman"] >= SURVIVES)}
        return out

    def format_table(self) -> str:
        """The table as text: a row per method, a column per stage; Spearman, then SSIM, then p(target)."""
        names = self.stage_names
        width = [max(8, len(n) + 1) for n in names]
        clips = f", mean of {self.clips} clips" if self.clips > 1 else ""
        target = f"target '{self.label}'" if self.target >= 0 else f"target: {self.label}"
        title = f"({self.model_name}, {target}, seed {self.seed}{clips}; stage k: randomised down to)"
        lines = []
        for metric, what in (("spearman", "Spearman rank correlation with the original map"),
                             ("ssim", "SSIM with the original map")):
            lines += [f"{what} {title}" if metric == "spearman" else what,
                      f"{'method':20s}" + "".join(f"{n:>{w}s}" for n, w in zip(names, width))]
            for m in self.methods:
                vals = [self._cell(m, k)[metric] for k in range(len(names))]
                lines.append(f"{m:20s}" + "".join(f"{v:>{w}.3f}" for v, w in zip(vals, width)))
        p = [self._cell(self.methods[0], k)["probability"] for k in range(len(names))]
        lines.append(f"{'p(target)':20s}" + "".join(f"{v:>{w}.3f}" for v, w in zip(p, width)))
        flagged = [m for m, v in self.verdicts().items() if v["survives"]]
        lines.append(f"Maps still correlated >= {SURVIVES} with the original once every layer is random "
                     f"(not explaining the model): {', '.join(flagged) or 'none'}")
        return "\n".join(lines)

    def _cell(self, method: str, stage: int) -> dict:
        return next(r for r in self.rows if r["method"] == method and r["stage"] == stage)

    def to_dict(self) -> dict:
        return {"model": self.model_name, "target": self.target, "label": self.label, "seed": self.seed,
                "clips": self.clips, "methods": self.methods,
                "layers": [dataclasses.asdict(layer) for layer in self.layers], "stages": self.stage_names,
                "settings": self.settings, "rows": self.table(), "verdicts": self.verdicts(),
                "survives_threshold": SURVIVES, "seconds": round(self.seconds, 2), "source": self.source}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, default=str)

    def figure(self):
        import matplotlib
        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
        names = self.stage_names
        fig, axes = plt.subplots(1, 2, figsize=(max(11.0, 3.0 + 1.2 * len(names)), 4.8), sharex=True)
        final = self.verdicts()
        markers = "osD^vPX*<>ph"
        for ax, metric, title in ((axes[0], "spearman", "Spearman rank correlation"), (axes[1], "ssim", "SSIM")):
            for i, m in enumerate(self.methods):
                ys = [self._cell(m, k)[metric] for k in range(len(names))]
                ax.plot(range(len(names)), ys, marker=markers[i % len(markers)], ms=5, lw=1.6,
                        ls="-" if i % 2 == 0 else "--",
                        label=f"{m} ({final[m]['spearman']:.2f}{', survives' if final[m]['survives'] else ''})")
            if metric == "spearman":
                ax.axhline(SURVIVES, color="grey", lw=0.8, ls=":")
            ax.set_xticks(range(len(names)))
            ax.set_xticklabels(names, rotation=40, ha="right", fontsize=8)
            ax.set_ylim(-0.45 if metric == "spearman" else -0.05, 1.05)
            ax.set_ylabel(f"{title} with the original map")
            ax.set_xlabel("randomised from the top down to")
            ax.grid(alpha=0.3)
        axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                       title="method (rank corr. at the end)", title_fontsize=8)
        clips = f", mean of {self.clips} clips" if self.clips > 1 else f", target '{self.label}'"
        fig.suptitle(f"Model-parameter randomisation (cascading, top layer first): {self.model_name}{clips}",
                     fontsize=11)
        fig.tight_layout()
        return fig

    def plot(self, path) -> Path:
        """One line per method of the similarity to the original map against the stage (both metrics)."""
        import matplotlib.pyplot as plt
        fig = self.figure()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path

    def save(self, directory) -> Path:
        """Write sanity.json, sanity.png, sanity.txt (the table) and, when the maps are kept, sanity_maps.npz."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / "sanity.json").write_text(self.to_json())
        (d / "sanity.txt").write_text(self.format_table() + "\n")
        self.plot(d / "sanity.png")
        if self.maps:
            np.savez_compressed(d / "sanity_maps.npz", **self.maps)
        return d


def combine(reports: Sequence[SanityReport]) -> SanityReport:
    """The mean of several reports with the same methods and layers (e.g. one per clip), without the maps."""
    first = reports[0]
    rows = []
    for r in first.rows:
        same = [rep._cell(r["method"], r["stage"]) for rep in reports]
        row = dict(r, top1=None, clips=len(reports), spearman_per_clip=[x["spearman"] for x in same])
        for k in ("spearman", "ssim", "probability"):
            vals = np.array([x[k] for x in same], dtype=np.float64)
            row[k] = round(float(vals.mean()), 4)
            row[f"{k}_sd"] = round(float(vals.std()), 4)
        rows.append(row)
    return dataclasses.replace(first, rows=rows, clips=len(reports), maps=None, target=-1,
                               label="each clip's predicted class",
                               seconds=sum(r.seconds for r in reports), source={})


# ------------------------------------------------------------------------------------------- the check
def _perturbation_methods() -> tuple:
    try:
        from attribution.methods import perturbation_methods
        return tuple(perturbation_methods())
    except ImportError:
        from attribution import step
        return tuple(step.METHODS)


def sanity_check(model, clip, methods: Sequence[str], *, target=None, seed: int = 0, stages=None,
                 preset: str = "fast", method_settings: dict | None = None, keep_maps: bool = True,
                 progress: Callable | None = None, cancel=None, **settings) -> SanityReport:
    """Cascading model-parameter randomisation (Adebayo et al. 2018, §3.1) of ``methods`` on one clip.

    Args:
        model: a :class:`model_zoo.VideoClassifier`; only a deep copy is randomised.
        clip: anything ``explain`` takes (a path is read once, with the model's frame sampling).
        methods: names from :func:`attribution.available_methods`.
        target: the class every stage explains; default the original model's top-1.
        seed: of every map and of the re-initialisation.
        stages: the cascade's layers (:func:`layer_groups`).
        preset: the perturbation methods' schedule; ``settings`` (``iterations``, ``areas``, ...) apply to the
            perturbation methods, ``method_settings[name]`` to one method.
        keep_maps: keep every map (float16) in the report.
        progress: ``progress(done, total, info)`` after each map; cancel: ``threading.Event`` or callable,
            checked between maps and passed on (raises ``Cancelled``).
    """
    from attribution import explain
    from attribution.cache import load_input
    from attribution.errors import InputError
    if isinstance(methods, str):
        methods = [methods]
    methods = list(dict.fromkeys(methods))
    if not methods:
        raise InputError("Name at least one method to check.")
    if isinstance(target, (list, tuple)):
        raise InputError("The sanity check explains one class; give one target.")
    t0 = time.perf_counter()
    clip = load_input(model, clip)
    work = copy.deepcopy(model)
    work.eval()
    layers = layer_groups(work, stages)
    perturbation = set(_perturbation_methods())
    per = {m: dict(settings if m in perturbation else {}, **(method_settings or {}).get(m, {})) for m in methods}
    total = len(methods) * (len(layers) + 1)
    originals: dict = {}
    maps: dict = {m: [] for m in methods}
    rows = []
    tgt = target
    label = None
    for k in range(len(layers) + 1):
        if k:
            randomise(work, layers[k - 1], seed=int(seed) * 1009 + k)
        for m in methods:
            if should_cancel(cancel):
                from attribution import Cancelled
                raise Cancelled("The sanity check was cancelled.")
            exp = explain(work, clip, target=tgt, method=m, preset=preset, seed=seed, cancel=cancel, **per[m])
            if tgt is None:
                tgt, label = exp.target, exp.label
            label = label or exp.label
            sal = exp.saliency.astype(np.float32)
            if k == 0:
                originals[m] = sal
            rows.append({"method": m, "stage": k, "layer": "original" if k == 0 else layers[k - 1].name,
                         "spearman": round(spearman(originals[m], sal), 4), "ssim": round(ssim(originals[m], sal), 4),
                         "probability": round(float(exp.probability), 4), "top1": exp.topk[0][0]})
            if keep_maps:
                maps[m].append(sal.astype(np.float16))
            if progress is not None:
                progress(len(rows), total, {"stage": k, "layer": rows[-1]["layer"], "method": m})
    source = {k: v for k, v in exp.source.items() if k in ("path", "indices", "times", "fps")}
    return SanityReport(
        model_name=getattr(model, "name", type(model).__name__), target=int(tgt), label=str(label), seed=int(seed),
        methods=methods, layers=layers, rows=rows,
        settings={"preset": preset, "perturbation": dict(settings), "per_method": per},
        seconds=time.perf_counter() - t0, maps={m: np.stack(v) for m, v in maps.items()} if keep_maps else None,
        source=source)


# ----------------------------------------------------------------------------------------------- command
def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``python -m attribution sanity CLIP ...``."""
    from attribution.common import positive_int
    from attribution.methods.perturbation import areas_argument
    from attribution.step import PRESETS
    p.add_argument("clip", help="video file")
    p.add_argument("--model", default="toy", help="registry name, HF folder/repo id or TorchScript file "
                                                   "(default: toy, offline)")
    p.add_argument("--methods", nargs="+", default=None, help="methods to check (default: every method)")
    p.add_argument("--target", default=None, help="class index or label name (default: the model's top-1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preset", default="fast", choices=list(PRESETS))
    p.add_argument("--iterations", type=positive_int, default=None, help="perturbation methods: iterations")
    p.add_argument("--areas", type=areas_argument, default=None,
                   help="perturbation methods: mask areas, e.g. 0.02,0.05")
    p.add_argument("--stages", type=positive_int, default=None,
                   help=f"how many layers to randomise one after the other (default: the top-level blocks, "
                        f"{MIN_STAGES} to {MAX_STAGES})")
    p.add_argument("--layers", nargs="+", default=None, help="the layers to randomise, top first (module names)")
    p.add_argument("--device", default=None, help="cpu, cuda (default: the GPU when there is one)")
    p.add_argument("--start", type=float, default=None, help="start of the part to explain, seconds")
    p.add_argument("--end", type=float, default=None, help="end of the part to explain, seconds")
    p.add_argument("--out", default=None, help="folder for sanity.json, sanity.png, sanity.txt, sanity_maps.npz")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def run_cli(args) -> int:
    """Run the check the arguments describe, print the table, write the files; 0 on success (errors raise
    ``ExplorerError``, which the caller turns into exit code 2)."""
    from attribution import available_methods
    from attribution.common import check_output_folder, writing_to
    from attribution.video import load_clip
    from model_zoo import load_model
    if args.out is not None:
        check_output_folder(args.out)
    model = load_model(args.model, device=args.device)
    video = load_clip(args.clip, model, start=args.start, end=args.end)
    methods = args.methods or available_methods()
    overrides = {k: v for k, v in dict(iterations=args.iterations, areas=args.areas).items() if v is not None}

    def progress(done, total, info):
        if not args.quiet:
            print(f"[{done}/{total}] stage {info['stage']} ({info['layer']}): {info['method']}", file=sys.stderr,
                  flush=True)
    report = sanity_check(model, video, methods, target=args.target, seed=args.seed,
                          stages=args.layers or args.stages, preset=args.preset, progress=progress, **overrides)
    report.source["path"] = args.clip
    print(report.format_table())
    if args.out is not None:
        with writing_to(args.out):
            print(f"wrote {report.save(args.out)}", file=sys.stderr)
    return 0
