"""Video Attribution Explorer: the browser demo (Gradio Blocks; also the Hugging Face Space's ``app_file``).

Why did a video classifier predict that class? Upload a clip, pick a model, and the app optimises a
spatio-temporal perturbation mask (STEP, Li et al., IEEE TCSVT 2021) that keeps only what the model needs,
then checks the explanation with deletion / insertion curves against a random map.

This file lays out the widgets, wires the events and launches the server. The callbacks are in
:mod:`ui.callbacks` (plain functions over :mod:`attribution.pipeline`), the words and CSS in :mod:`ui.text`,
the settings in :mod:`ui.config` (environment variables: README, "The Space on each kind of hardware").

``python app.py`` serves the page (the offline ``toy`` model needs no network); ``VAE_WARMUP=0`` skips
compiling the default model's mask generator in the background at start, which happens only when the default
preset compiles (``fast``, ``paper``; never on ZeroGPU).
"""
from __future__ import annotations

from ui.runtime import MODEL_LOCK, ON_ZEROGPU  # noqa: F401  (first: it imports `spaces` before CUDA)

import logging
import os
import signal
import sys
import threading
from types import SimpleNamespace

import gradio as gr

from attribution.device import device_sentence
from attribution.step import PERTURBATIONS, PRESETS, compiles
from model_zoo import load_model
from ui import config, costs, files, inputs, text
from ui.callbacks import (compare_clip, compare_cost, compare_stoppable, examples, explain_clip,  # noqa: F401
                          explain_example, explain_stoppable, on_compare_model_change, on_model_change,
                          predict_clip, sanity_clip, sanity_stoppable, warm_up)
from ui.config import (CONCURRENCY, DEFAULT_MODEL, HARDWARE, KEEP_SECONDS, MAX_QUEUE, MAX_UPLOAD_MB,
                       TOP1)

log = logging.getLogger("video-attribution-explorer")
PRESET_LABELS = {"interactive": "interactive (about 100 model passes)", "fast": "fast",
                 "paper": "paper (1200 iterations, slow)"}


def _preset_choices() -> list[tuple[str, str]]:
    """Every preset of the engine, the app's default first, cheapest to slowest."""
    order = sorted(PRESETS, key=lambda p: (p != config.DEFAULT_PRESET, PRESETS[p].get("iterations", 10 ** 6)))
    return [(PRESET_LABELS.get(p, p) + (" · default" if p == config.DEFAULT_PRESET else ""), p) for p in order]


def _explain_inputs(w) -> None:
    """The left column of the Explain tab: clip, examples, trim, model, class, method and settings."""
    w.video = gr.Video(label="1 · Your clip (upload or webcam)", sources=["upload", "webcam"], height=240,
                       webcam_options=gr.WebcamOptions(mirror=False))
    rows, labels = examples()
    if rows:
        gr.Examples(rows, inputs=[w.video, w.model], outputs=w.outputs, fn=explain_example, example_labels=labels,
                    cache_examples=True, cache_mode="lazy", examples_per_page=8,
                    label="…or try an example (computed once, then cached)")
    with gr.Row():
        w.start = gr.Number(label="Trim: start (s)", value=0, minimum=0)
        w.end = gr.Number(label="Trim: end (s, 0 = the end)", value=0, minimum=0)
    w.model.render()
    w.model_md = gr.Markdown(text.model_markdown(DEFAULT_MODEL), elem_classes=["vae-caption"])
    with gr.Row(equal_height=False):
        w.target = gr.Dropdown(inputs.target_choices(DEFAULT_MODEL), value=TOP1, allow_custom_value=True,
                               label="3 · Class to explain", scale=3,
                               info="the top prediction, or pick / type any class")
        w.predict = gr.Button("Predict top-5", scale=1, min_width=120, size="md", elem_id="vae-predict-btn")
    w.contrast = gr.Dropdown(inputs.contrast_choices(DEFAULT_MODEL), value=config.NO_CONTRAST,
                             allow_custom_value=True, label="…rather than (optional)",
                             info="why this class and not that one (perturbation methods)")
    w.method = gr.Dropdown(inputs.method_choices(), value=config.DEFAULT_METHOD, label="4 · Method",
                           info="STEP is the paper's method; the others are for comparison")
    w.preset = gr.Radio(_preset_choices(), value=config.DEFAULT_PRESET, label="Preset (perturbation methods)")
    with gr.Accordion("Advanced settings", open=False):
        w.areas = gr.Textbox(label="Mask areas (fractions of the clip to keep)", value="",
                             placeholder="model default, e.g. 0.02, 0.05, 0.1",
                             info="Shares of the mask's canvas, which has a margin around the frame: an area "
                                  "keeps about 1.4 times as much of the frame itself.")
        with gr.Row():
            w.iterations = gr.Number(label="Iterations", value=0, precision=0, minimum=0, info="0 = the preset's")
            w.key_frames = gr.Number(label="L_K key frames", value=0, precision=0, minimum=0, info="0 = automatic")
        with gr.Row():
            w.perturbation = gr.Radio(list(PERTURBATIONS), value=PERTURBATIONS[0], label="Perturbation")
            w.seed = gr.Number(label="Seed", value=0, precision=0, minimum=0)
        with gr.Row():
            with gr.Column(min_width=160):
                w.curves = gr.Checkbox(value=True, label="Measure deletion / insertion curves")
                w.paper_curves = gr.Checkbox(
                    value=False, label=f"Paper's {config.PAPER_CURVE_STEPS} curve steps",
                    info=f"default: {config.CURVE_STEPS} steps, {config.PAPER_CURVE_STEPS // config.CURVE_STEPS}x "
                         "cheaper (AUCs within about 0.01 of the paper's)")
            w.precision = gr.Radio([("automatic", "auto"), ("fp32", "fp32")], value="auto", label="Precision",
                                   info="automatic: bf16 / fp16 on a GPU (faster), fp32 on a CPU; fp32 forces it")
    with gr.Row():
        w.explain = gr.Button("Explain", variant="primary", size="lg", scale=3, elem_id="vae-explain-btn")
        w.stop = gr.Button("Stop", variant="stop", size="lg", scale=1, elem_id="vae-stop-btn")
    w.cost = gr.Markdown(costs.cost_markdown(DEFAULT_MODEL, config.DEFAULT_METHOD), elem_id="vae-cost")


def _explain_tab(models) -> SimpleNamespace:
    w = SimpleNamespace()
    # Outputs are created first (not yet shown) so that the examples, placed under the upload box, can name
    # them; they are rendered in the right-hand column below.
    w.top5 = gr.Label(num_top_classes=5, label="Top-5 predictions", render=False)
    w.summary = gr.Markdown(text.WAITING, label="Summary", render=False, elem_id="vae-summary")
    w.overlay = gr.Video(label="Input · heat-map · preserved region", height=330, autoplay=True, loop=True,
                         buttons=["download"], interactive=False, show_label=False, render=False)
    image = dict(type="filepath", format="png", height=330, interactive=False, buttons=["download", "fullscreen"],
                 show_label=False, render=False)
    w.temporal = gr.Image(label="Which moments matter", **image)
    w.curves_img = gr.Image(label="Is the explanation faithful?", **image)
    w.zip = gr.File(label="Download everything (overlay.mp4, PNGs, saliency.npz, summary.json)", interactive=False,
                    height=90, render=False)
    w.outputs = [w.top5, w.overlay, w.temporal, w.curves_img, w.zip, w.summary]
    w.model = gr.Dropdown(models, value=DEFAULT_MODEL, label="2 · Model", render=False)
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=340):
            _explain_inputs(w)
        with gr.Column(scale=3, min_width=420):
            with gr.Row(equal_height=False):
                with gr.Column(scale=2, min_width=220):
                    w.top5.render()
                with gr.Column(scale=3, min_width=260):
                    w.summary.render()
            for caption, widget in ((text.CAPTION_VIDEO, w.overlay), (text.CAPTION_TEMPORAL, w.temporal),
                                    (text.CAPTION_CURVES, w.curves_img)):
                gr.Markdown(caption, elem_classes=["vae-caption"])
                widget.render()
            w.zip.render()
    return w


def _compare_tab(models) -> SimpleNamespace:
    w = SimpleNamespace()
    method_values = [v for _, v in inputs.method_choices()]
    default = [m for m in config.DEFAULT_COMPARE if m in method_values] or method_values[:2]
    gr.Markdown(text.COMPARE_HELP)
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=340):
            w.video = gr.Video(label="Clip (the one from the Explain tab, or another)", sources=["upload", "webcam"],
                               height=220, webcam_options=gr.WebcamOptions(mirror=False))
            with gr.Row():
                w.start = gr.Number(label="Trim: start (s)", value=0, minimum=0)
                w.end = gr.Number(label="Trim: end (s, 0 = the end)", value=0, minimum=0)
            w.model = gr.Dropdown(models, value=DEFAULT_MODEL, label="Model")
            w.target = gr.Dropdown(inputs.target_choices(DEFAULT_MODEL), value=TOP1, allow_custom_value=True,
                                   label="Class to explain")
            w.methods = gr.CheckboxGroup(inputs.method_choices(), value=default, label="Methods")
            with gr.Row():
                w.by = gr.Radio([("methods, one class", "method"), ("classes (top-k), first method", "target")],
                                value="method", label="Compare", scale=3)
                w.top_k = gr.Number(label="Classes", value=3, precision=0, minimum=2, maximum=5, scale=1)
            with gr.Row():
                w.preset = gr.Radio([v for _, v in _preset_choices()], value=config.DEFAULT_PRESET, label="Preset")
                w.iterations = gr.Number(label="Iterations (0 = preset)", value=0, precision=0, minimum=0)
                w.seed = gr.Number(label="Seed", value=0, precision=0, minimum=0)
            w.paper_curves = gr.Checkbox(value=False, label=f"Paper's {config.PAPER_CURVE_STEPS} curve steps "
                                                            f"(default {config.CURVE_STEPS})")
            with gr.Row():
                w.compare = gr.Button("Compare", variant="primary", size="lg", scale=3, elem_id="vae-compare-btn")
                w.sanity = gr.Button("Sanity check", size="lg", scale=2, elem_id="vae-sanity-btn")
                w.stop = gr.Button("Stop", variant="stop", size="lg", scale=1, elem_id="vae-compare-stop-btn")
            w.cost = gr.Markdown(costs.cost_markdown(DEFAULT_MODEL, default), elem_id="vae-compare-cost")
        with gr.Column(scale=3, min_width=420):
            w.note = gr.Markdown(label="Summary")
            w.strip = gr.Image(label="Maps side by side (rows: methods; columns: frames)", type="filepath",
                               format="png", interactive=False, show_label=False, buttons=["download", "fullscreen"])
            w.table = gr.Dataframe(label="Faithfulness (deletion: lower is better; insertion: higher is better) "
                                         "and time", interactive=False, wrap=True)
            w.zip = gr.File(label="Download (picture, table, maps)", interactive=False, height=90)
    return w


def _wire(demo: gr.Blocks, ex: SimpleNamespace, cm: SimpleNamespace) -> None:
    """Every event. The ones that run a model share one concurrency group (one model cache; Grad-CAM's hooks on
    a shared model must not see another request's activations); a cached example's first click runs in its own
    group but waits for the same lock (``ui.runtime.MODEL_LOCK``) inside the model work."""
    model_group = dict(concurrency_id="model", concurrency_limit=CONCURRENCY)
    private = dict(api_visibility="private")
    ex.model.change(on_model_change, ex.model, [ex.target, ex.model_md, ex.contrast], **private)
    cm.model.change(on_compare_model_change, cm.model, cm.target, **private)
    ex.video.change(lambda v: v, ex.video, cm.video, **private)
    ex.predict.click(predict_clip, [ex.video, ex.model, ex.start, ex.end], [ex.top5, ex.target], api_name="predict",
                     **model_group)
    explain_event = ex.explain.click(
        explain_stoppable, [ex.video, ex.model, ex.target, ex.method, ex.preset, ex.start, ex.end, ex.areas,
                            ex.iterations, ex.key_frames, ex.perturbation, ex.seed, ex.curves, ex.precision,
                            ex.paper_curves, ex.contrast], ex.outputs, api_name="explain", **model_group)
    compare_event = cm.compare.click(
        compare_stoppable, [cm.video, cm.model, cm.target, cm.methods, cm.preset, cm.start, cm.end, cm.iterations,
                            cm.seed, cm.paper_curves, cm.by, cm.top_k], [cm.strip, cm.table, cm.zip, cm.note],
        api_name="compare",
        **model_group)
    sanity_event = cm.sanity.click(
        sanity_stoppable, [cm.video, cm.model, cm.target, cm.methods, cm.preset, cm.start, cm.end, cm.iterations,
                           cm.seed], [cm.strip, cm.table, cm.zip, cm.note], api_name="sanity", **model_group)
    # The expected time follows the settings (from figures already timed: nothing runs a model here).
    cost_inputs = [ex.model, ex.method, ex.preset, ex.areas, ex.iterations, ex.curves, ex.paper_curves]
    for widget in cost_inputs:
        widget.change(costs.cost_markdown, cost_inputs, ex.cost, queue=False, **private)
    cmp_cost_inputs = [cm.model, cm.methods, cm.preset, cm.iterations, cm.paper_curves]
    for widget in cmp_cost_inputs:
        widget.change(compare_cost, cmp_cost_inputs, cm.cost, queue=False, **private)
    # ... and is read again when a page opens: the figures timed in the background since the page was built
    demo.load(costs.cost_markdown, cost_inputs, ex.cost, queue=False, **private)
    demo.load(compare_cost, cmp_cost_inputs, cm.cost, queue=False, **private)
    # Stop cancels the running event; ui.runtime.stoppable turns that into the engine's cancel flag.
    ex.stop.click(None, None, None, cancels=[explain_event], **private)
    cm.stop.click(None, None, None, cancels=[compare_event, sanity_event], **private)


def build_demo() -> gr.Blocks:
    models = inputs.model_choices()
    with gr.Blocks(title="Video Attribution Explorer", delete_cache=(KEEP_SECONDS, KEEP_SECONDS)) as demo:
        gr.Markdown(text.INTRO)
        if HARDWARE["problem"]:
            gr.Markdown(f"**Note:** {HARDWARE['problem']}", elem_id="vae-hardware-problem")
        with gr.Tabs():
            with gr.Tab("Explain", id="explain"):
                ex = _explain_tab(models)
            with gr.Tab("Compare methods", id="compare"):
                cm = _compare_tab(models)
            with gr.Tab("About", id="about"):
                gr.Markdown(text.ABOUT.format(mb=MAX_UPLOAD_MB, minutes=config.MAX_SECONDS / 60,
                                              hardware=device_sentence(HARDWARE)))
        _wire(demo, ex, cm)
    demo.queue(max_size=MAX_QUEUE, default_concurrency_limit=CONCURRENCY)
    return demo


def launch_kwargs() -> dict:
    """Everything ``launch`` needs besides host and port (theme and CSS go here in Gradio 6)."""
    return dict(max_file_size=f"{MAX_UPLOAD_MB}mb", theme=gr.themes.Soft(primary_hue="orange", secondary_hue="blue"),
                css=text.CSS, footer_links=["api"])


demo = build_demo()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.info("hardware: %s", device_sentence(HARDWARE))
    # A stopped server leaves no request folders: SIGTERM (a Space restarting, `kill`) exits through atexit,
    # which sweeps this process's folders; the folders of servers killed outright go at the next start.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    files.cleanup_orphans()
    costs.TIME_IN_BACKGROUND = not ON_ZEROGPU   # the passes of the models in use are timed once, for estimates
    if costs.TIME_IN_BACKGROUND:
        costs.measure_in_background(load_model(DEFAULT_MODEL))
    if HARDWARE["problem"]:
        log.warning(HARDWARE["problem"])
    if os.environ.get("VAE_WARMUP", "1") != "0" and not ON_ZEROGPU and compiles(config.DEFAULT_PRESET):
        threading.Thread(target=warm_up, name="warm-up", daemon=True).start()
    port = os.environ.get("GRADIO_SERVER_PORT") or os.environ.get("PORT")
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                server_port=int(port) if port else None, **launch_kwargs())


if __name__ == "__main__":
    main()
