"""Everything the app says: the page's prose and CSS, and the plain-language summary of a result."""
from __future__ import annotations

from attribution.errors import ExplorerError
from attribution.methods import short_name
from model_zoo import get_entry
from ui.config import MARGIN, PAPER_CURVE_STEPS

UNSEEN = 0.05   # below this probability on the whole clip, a target is one the model does not see there

INTRO = """
# Video Attribution Explorer
**Why did the video classifier say that?** Upload a short clip (mp4, webm, mov, avi or mkv; or record one with
your webcam, or click an example), press **Explain**, and see
*where* and *when* the model looked. The app searches for the smallest part of the video that still convinces the
model (the *STEP* method of Li et al., IEEE TCSVT 2021), then checks the answer against a random guess.
"""

WAITING = """
**Results appear here.** Upload a clip or click an example, then press **Explain**.
With the built-in toy model this takes well under a minute on a CPU.
"""

CAPTION_VIDEO = ("**The video.** *Left:* the clip as the model sees it. *Middle:* the heat-map: bright = the model "
                 "needs this to recognise the class. *Right:* only the important part kept. The orange bar shows how "
                 "much each moment matters.")
CAPTION_TEMPORAL = ("**Which moments matter.** The importance of every frame (the mean of its heat-map). In the toy "
                    "clips the blue band marks where the real evidence is.")
CAPTION_CURVES = ("**Is the explanation faithful?** Remove the highlighted parts first (*deletion*: the probability "
                  "should fall fast, so a low area is good) or restore them first into a blurred clip (*insertion*: "
                  "it should rise fast, so a high area is good). The dashed grey line is a random map: the score to "
                  "beat.")

COMPARE_HELP = """
Run several attribution methods on the same clip and target, or one method on the model's top classes (*why this
class, and why that one?*). The picture shows each map on a few frames (bright = important); the table gives each
map's deletion AUC (lower is better), insertion AUC (higher is better) and time. *Random* is the reference every
method should beat. **Sanity check** randomises a copy of the model layer by layer and recomputes each ticked
method's map: a map that stays the same is not explaining the model.
"""

ABOUT = """
### What this does
A video classifier looks at a few frames of a clip and outputs a class (for example *"moving right"* for the toy
model, or one of 400 Kinetics actions such as *"playing guitar"*). An **attribution** says which pixels of which
frames the answer depends on. **STEP** (Li, Wang, Li, Huang, Sato, *Spatio-Temporal Perturbations for Video
Attribution*, IEEE TCSVT 2021) finds it by optimisation: it blurs as much of the clip as possible, in space *and*
time, while keeping the model's answer, and prefers a few whole space-time blobs over scattered pixels.
**3D-EP** and **2D-EP** are the paper's ablations; gradient, Integrated Gradients, SmoothGrad, Grad-CAM,
occlusion and random maps are the usual comparison methods.

### Presets
*interactive* (default) reaches the paper's quality in about 100 model passes: 29 iterations of 3 masks, started
from where the model's decision changes as the clip is blurred; *fast* optimises the same objective from the
same start with 100-200 iterations and stops early once the mask settles;
*paper* is the authors' 1200-iteration schedule (minutes on a CPU for large models).

### The toy model
`toy` is a small 3-D CNN shipped with the app, trained on generated clips where one square moves steadily in one
direction during a few frames while look-alike squares jitter. Because we know where and when the evidence is, the
toy clips show whether an explanation finds it.

### Which frames a model sees
Each model is shown the frames it was trained on: Kinetics models take their recipe's window (for example
X3D-XS: 4 frames, one every 12, i.e. 1.6 s from the middle of the clip), Something-Something models and the toy
take frames spread over the whole clip. The trim (start / end) chooses the part of the upload this rule is
applied to, and the summary says which seconds the model saw.

### Hardware
{hardware}

### Privacy and limits
Uploads and results are deleted from the server after about an hour. Clips up to {mb} MB and {minutes:g} minutes.

### Credits
Example clip *bunny.mp4*: Big Buck Bunny, © Blender Foundation, CC BY 3.0 (see `examples/CREDITS.md`).
"""

CSS = """
.vae-caption { font-size: 0.9em; line-height: 1.4; color: var(--body-text-color-subdued); margin-bottom: -6px; }
#vae-summary { font-size: 0.95em; }
#vae-explain-btn, #vae-compare-btn { min-height: 48px; font-size: 1.05em; }
#vae-predict-btn { align-self: flex-end; margin-bottom: 10px; }
footer { display: none !important; }
"""


def model_markdown(model_name: str) -> str:
    try:
        e = get_entry(model_name)
    except ExplorerError as err:
        return str(err)
    where = ("Ships with the app: works offline." if e.offline else
             "Its weights are downloaded the first time it is used (this needs a network connection).")
    return f"<small>{e.description.rstrip('.')}. {where}</small>"


def pct(p: float) -> str:
    return f"{100 * p:.0f} %" if p >= 0.01 else f"{100 * p:.1f} %"


def time_of(exp, frame: int) -> str:
    times = exp.source.get("times")
    return f" (t = {times[frame]:.2f} s)" if times and frame < len(times) else ""


def seen(exp) -> str:
    """Which seconds of the upload the model saw, and by which sampling rule."""
    src = exp.source
    if not src.get("seen"):
        return ""
    a, b = src["seen"]
    rule = f" ({src['sampling']})" if src.get("sampling") else ""
    return (f"- **What the model saw:** {len(exp.temporal)} frames from **{a:.2f} s to {b:.2f} s** of the "
            f"{src.get('duration', 0):.1f} s upload{rule}.")


def summary_markdown(exp) -> str:
    """What the explanation says, in plain words."""
    top_label, top_p = exp.topk[0]
    lines = [f"### The model sees **{top_label}** ({pct(top_p)})"]
    which = ("its top-1 class" if exp.label == top_label else
             f"the class you chose, **{exp.label}** ({pct(exp.probability)})")
    if exp.contrast_label:
        which += f" *rather than* **{exp.contrast_label}**"
    how = short_name(exp.method)
    if exp.preset:
        how += f" ({exp.preset} preset, {exp.iterations} iterations)"
    if exp.source.get("cache") == "hit":
        lines.append(f"Explained {which} with {how}: the same request was computed before, shown from the result "
                     "cache.")
    else:
        lines.append(f"Explained {which} with {how} in {exp.timings['total']:.1f} s.")
    when = seen(exp)
    if when:
        lines.append(when)
    if exp.probability < UNSEEN:
        lines.append(f"- **A class the model hardly sees here** ({pct(exp.probability)} on the whole clip): the map "
                     "shows what would push the model towards it, not evidence that it sees it.")
    peak = exp.peak_frame
    lines.append(f"- **Where and when:** the bright regions are what the model relies on; the most important "
                 f"moment is frame {peak + 1} of {len(exp.temporal)}{time_of(exp, peak)}.")
    if exp.event:
        a, b = exp.event
        where = "inside" if a <= peak < b else "outside"
        lines.append(f"- **Known evidence:** in this toy clip the telling motion happens in frames {a + 1} to {b}; "
                     f"the peak is {where} that window.")
    c = exp.curves
    if c is not None:
        steps = getattr(c, "steps", None)
        which = ("" if not steps else f" ({steps} steps, the paper's)" if steps == PAPER_CURVE_STEPS else
                 f" ({steps} steps; the paper's {PAPER_CURVE_STEPS} are in the advanced settings)")
        text = (f"- **Faithfulness{which}:** deletion AUC **{c.auc_deletion:.3f}** (lower is better), insertion AUC "
                f"**{c.auc_insertion:.3f}** (higher is better)")
        if c.auc_random_deletion is not None:
            wins = (int(c.auc_deletion < c.auc_random_deletion - MARGIN)
                    + int(c.auc_insertion > c.auc_random_insertion + MARGIN))
            verdict = {2: "this map beats random on both", 1: "this map beats random on one of the two",
                       0: "this map does no better than random here"}[wins]
            text += (f", against {c.auc_random_deletion:.3f} and {c.auc_random_insertion:.3f} for a random map: "
                     f"{verdict}")
        lines.append(text + ".")
    return "\n".join(lines)


def comparison_note(comparison) -> str:
    """The line above a comparison's picture and table."""
    first = comparison.first
    if comparison.by == "target":
        what = (f"Where **{short_name(first.method)}** sees each of the model's top {len(comparison.explanations)} "
                "classes. Each row of the picture is one class")
    else:
        what = (f"Explaining **{first.label}** on {len(comparison.explanations)} method(s). Each row of the picture "
                "is one method")
    return (f"{what} (bright = important); the table says how faithful each map is (curves of "
            f"{first.curves.steps} steps).\n{seen(first)}")


def sanity_rows(report) -> list[dict]:
    """One row a method: how alike its map stays once every layer of the model is random, and what that says."""
    rows = []
    for method, v in report.verdicts().items():
        rows.append({"method": short_name(method), "rank correlation": round(v["spearman"], 3),
                     "SSIM": round(v["ssim"], 3),
                     "verdict": "survives: not about the model" if v["survives"] else "changes with the model"})
    return rows


def sanity_note(report) -> str:
    survivors = [short_name(m) for m, v in report.verdicts().items() if v["survives"]]
    verdict = (f"**{', '.join(survivors)}** kept {'its' if len(survivors) == 1 else 'their'} map with a random "
               "model: such a map explains the clip, not the model." if survivors else
               "Every map changed once the model was random: each depends on what the model learnt.")
    return (f"**Sanity check** of '{report.label}': the model's layers were randomised one after the other, from "
            f"the output down ({len(report.layers)} stages, on a copy of the model), and each map computed again. "
            f"The plot shows how alike it stays to the original (1 = the same). {verdict}")
