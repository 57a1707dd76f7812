"""What a request will cost, before it runs: the line beside Explain / Compare, the refusal of a request the
cost model puts above the limit, the ZeroGPU window a request asks for, and whether an example fits.

Estimates come from :mod:`attribution.cost` (the model's passes timed once on this machine, in the background
when the server runs, never beside a request).
"""
from __future__ import annotations

import dataclasses
import logging
import threading

from attribution import cost
from attribution.errors import ExplorerError, InputError
from attribution.methods import perturbation_methods
from attribution.methods.perturbation import parse_areas
from model_zoo import cached_models, get_entry, load_model
from ui import config
from ui.inputs import number
from ui.runtime import MODEL_LOCK, ON_ZEROGPU

log = logging.getLogger("video-attribution-explorer")

TIME_IN_BACKGROUND = False  # set when the server runs (python app.py): never from an import (tests, tools)
# Seconds the last Explain request of each model (as the dropdown names it) spent after its model work: drawing
# the overlay video and the plots, and zipping. Part of the time a visitor waits, outside the cost model (and
# outside a ZeroGPU window), so only the expected-time line adds it.
RENDERING: dict[str, float] = {}


def record_rendering(model_name: str, seconds: float) -> None:
    RENDERING[model_name] = float(seconds)


def measure_in_background(model) -> None:
    """Time ``model``'s passes once (for the estimates) without ever running it beside a request."""
    if not TIME_IN_BACKGROUND:
        return

    def work():
        with MODEL_LOCK:
            try:
                cost.pass_costs(model)
                # the default preset's engine figures (a fraction of a second: it does not compile); other
                # presets' are timed before their first request, or estimated from the documented fallback
                cost.engine_costs(config.DEFAULT_PRESET, model.device)
            except Exception as e:  # noqa: BLE001 - no estimate is better than a crashed thread
                log.warning("could not time the passes of %s: %s", model.name, e)
    threading.Thread(target=work, name="cost-measurement", daemon=True).start()


def steps_for(curves, paper_curves=False) -> int:
    """Steps of the deletion / insertion curves a request asks for (0: none)."""
    return 0 if not curves else config.PAPER_CURVE_STEPS if paper_curves else config.CURVE_STEPS


def estimate(model, method_or_methods, preset, overrides: dict, curve_steps: int, measure: bool, repeats: int = 1):
    """The cost model's estimate of a request, or None when the model's passes are not timed yet. ``repeats``:
    the request runs that many times over (the sanity check: once per stage of its cascade)."""
    costs = cost.pass_costs(model, measure=measure)
    if costs is None:
        return None
    compare = method_or_methods if isinstance(method_or_methods, (list, tuple)) else None
    try:
        one = cost.estimate(model, compare[0] if compare else method_or_methods, preset or config.DEFAULT_PRESET,
                            iterations=overrides.get("iterations"), areas=overrides.get("areas"),
                            curves=bool(curve_steps), curve_steps=curve_steps or config.CURVE_STEPS, compare=compare,
                            costs=costs, measure=measure)
        return cost.repeated(one, repeats)
    except (ValueError, ExplorerError):  # an unknown method or setting: explain() says so in its own words
        return None


def refuse_if_too_long(model, model_key: str, method_or_methods, preset, overrides: dict, curve_steps: int,
                       repeats: int = 1):
    """Refuse, before anything runs, a request the cost model puts above the limit (one sentence).

    On ZeroGPU the passes cannot be timed outside the GPU window, so only figures already known count there."""
    with MODEL_LOCK:
        est = estimate(model, method_or_methods, preset, overrides, curve_steps, measure=not ON_ZEROGPU,
                       repeats=repeats)
    if est is None:
        return None
    name = "+".join(method_or_methods) if isinstance(method_or_methods, (list, tuple)) else method_or_methods
    message = cost.refusal(est, cost.default_limit("zerogpu" if ON_ZEROGPU else est.device_kind), model_key, name,
                           preset)
    if message:
        raise InputError(message)
    return est


def cost_markdown(model_name: str, methods, preset: str = config.DEFAULT_PRESET, areas: str = "", iterations: float = 0,
                  curves: bool = True, paper_curves: bool = False) -> str:
    """The line next to Explain / Compare: how long the request with these settings should take."""
    try:
        name = model_name or config.DEFAULT_MODEL
        loaded = name in {n for n, _, _ in cached_models()}
        if not loaded and not get_entry(name).offline:
            return "<small>The time is estimated once the model has been loaded (its first run loads it).</small>"
        model = load_model(name)
        methods = [m for m in (methods if isinstance(methods, (list, tuple)) else [methods]) if m]
        if not methods:
            return ""
        overrides = {"areas": parse_areas(areas) if len(methods) == 1 else None,
                     "iterations": number(iterations, "Iterations", integer=True, minimum=0) or None}
        est = estimate(model, methods if len(methods) > 1 else methods[0], preset, overrides,
                        steps_for(curves, paper_curves),
                        measure=False)
    except ExplorerError as e:
        return f"<small>{e}</small>"
    if est is None:
        if not ON_ZEROGPU:
            measure_in_background(model)
        return ("<small>Timing this model on this machine for an estimate…</small>" if TIME_IN_BACKGROUND else
                "<small>The time is estimated after the first run of this model.</small>")
    limit = cost.default_limit("zerogpu" if ON_ZEROGPU else est.device_kind)
    over = cost.refusal(est, limit, name, "+".join(methods), preset)
    drawn = RENDERING.get(name) if len(methods) == 1 else None
    if drawn:   # what the request waits for besides the model: as long as the last one of this model took
        est = dataclasses.replace(est, seconds=est.seconds + drawn,
                                  breakdown={**est.breakdown, "rendering (the last request's)": drawn})
    return f"<small>**Expected time:** {est.words()}.{' ' + over if over else ''}</small>"


def window(model_name, methods, preset, overrides: dict, curve_steps: int, repeats: int = 1) -> int:
    """ZeroGPU seconds to reserve: the cost model's estimate with a margin once the model's GPU passes are
    known (timed in an earlier window), else a default by preset (the paper preset runs 1200 iterations, fast a
    few hundred); at most ``VAE_GPU_SECONDS_CAP`` so that one request does not spend a visitor's daily quota."""
    est = None
    try:
        est = estimate(load_model(model_name), methods if len(methods) > 1 else methods[0], preset, overrides,
                        curve_steps, measure=False, repeats=repeats)
    except Exception as e:  # noqa: BLE001 - no figures yet (or no GPU name outside the window): the defaults
        log.info("no estimate for the GPU window of %s (%s: %s); reserving the default", model_name,
                 type(e).__name__, e)
    if est is not None:
        want = 1.5 * est.seconds + 10
    else:
        want = repeats * sum(60 if preset == "paper" and m in perturbation_methods() else 20 for m in methods)
    return int(min(config.GPU_CAP, max(15, want)))


def example_fits(model_name: str) -> bool:
    """Whether the default request on ``model_name`` fits an example: by the cost model once the model's passes
    are timed on this machine; before that, only the toy on a CPU (real models take minutes there), and every
    model whose weights can be had on a GPU."""
    on_gpu = ON_ZEROGPU or config.HARDWARE["device"].startswith("cuda")
    try:
        if model_name in {n for n, _, _ in cached_models()}:
            est = estimate(load_model(model_name), config.DEFAULT_METHOD, config.DEFAULT_PRESET, {},
                           config.CURVE_STEPS, measure=False)
            if est is not None:
                return est.seconds <= config.EXAMPLE_SECONDS
        return model_name == config.DEFAULT_MODEL or on_gpu
    except ExplorerError:
        return False
