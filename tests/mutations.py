"""Mutation check: does the test suite catch a broken engine?

    python tests/mutations.py                  # every mutation; table on stdout, JSON in benchmarks/results/
    python tests/mutations.py --only lk-dropped --only curves-swapped
    python tests/mutations.py --list           # the mutations and the tests each one runs

The repository's files (tracked, and untracked but not ignored, as they are in the working tree) are copied to
a temporary folder; the working tree itself is never written. For each mutation in ``MUTATIONS`` the script
applies a deliberate fault to the copy (text replacements, each of which must match exactly once: after a
refactor the script stops with an error instead of reporting a mutation "killed" that was never applied), runs
the tests that should notice with ``pytest -x -q`` (this interpreter), and restores the file. A mutation is
*killed* when those tests fail (or time out), *survived* when they pass. First the same tests run on the
unmutated copy: a test that fails there would "kill" every mutation, so it is left out of every mutant's run
(``--deselect``) and named in the report.

Exit status: 0 when every mutation was killed, 1 when any survived, 2 for a bad mutation or baseline.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "mutations.json"
TIMEOUT = 900      # seconds for one mutation's tests; a mutant that hangs counts as killed


@dataclasses.dataclass(frozen=True)
class Mutation:
    name: str
    what: str                          # the fault, in words
    file: str                          # relative to the repository root
    replace: tuple                     # ((old, new), ...): each old must occur exactly once in the file
    tests: tuple                       # pytest node ids or files; files that do not exist are skipped


STEP, T_STEP = "attribution/step.py", "tests/test_step.py"
MUTATIONS = [
    # ---- the games' use of the mask (the paper's preservation and deletion games, and both)
    Mutation("delete-feeds-m", "the delete and dual games perturb with m instead of 1 - m", STEP,
             (('m_game = m if game == "preserve" else 1 - m', "m_game = m"),),
             (f"{T_STEP}::test_each_game_perturbs_with_its_side_of_the_mask",)),
    Mutation("games-swap-sides", "preserve perturbs with 1 - m and delete with m", STEP,
             (('m_game = m if game == "preserve" else 1 - m', 'm_game = 1 - m if game == "preserve" else m'),),
             (f"{T_STEP}::test_each_game_perturbs_with_its_side_of_the_mask",)),
    Mutation("dual-drops-delete", "the dual game plays only the preservation game", STEP,
             (('games = ["preserve", "delete"] if cfg.game == "dual"', 'games = ["preserve"] if cfg.game == "dual"'),),
             (f"{T_STEP}::test_each_game_perturbs_with_its_side_of_the_mask",)),
    # ---- L_K, the paper's spatio-temporal regulariser
    Mutation("lk-dropped", "no L_K: step silently becomes 3d-ep", STEP,
             (('use_core = method == "step"', "use_core = False"),),
             (f"{T_STEP}::test_core_loss_enters_the_energy_only_for_step_and_only_from_its_warm_up",)),
    Mutation("lk-for-every-method", "3d-ep and 2d-ep get L_K too", STEP,
             (('use_core = method == "step"', "use_core = True"),),
             (f"{T_STEP}::test_core_loss_enters_the_energy_only_for_step_and_only_from_its_warm_up",)),
    Mutation("lk-no-warm-up", "L_K from the first iteration, ignoring core_warmup", STEP,
             (("lam_core = cfg.core_weight if it >= cfg.core_warmup else 0.0", "lam_core = cfg.core_weight"),),
             (f"{T_STEP}::test_core_loss_enters_the_energy_only_for_step_and_only_from_its_warm_up",)),
    Mutation("lk-unweighted", "L_K added without its weight λ_K", STEP,
             (("energy = energy + lam_core * core_loss(", "energy = energy + core_loss("),),
             (f"{T_STEP}::test_core_loss_enters_the_energy_only_for_step_and_only_from_its_warm_up",)),
    # ---- the area loss and its weight's schedule
    Mutation("area-weight-constant", "the area weight never grows", STEP,
             (("lam_area *= cfg.area_growth", "lam_area *= 1.0"),),
             (f"{T_STEP}::test_the_area_weight_grows_by_its_factor_every_iteration",)),
    Mutation("area-reference-reversed", "the area loss's reference vector reversed (ones first)", STEP,
             (("ref[: int((1 - area) * n)] = 0", "ref[n - int((1 - area) * n):] = 0"),),
             (f"{T_STEP}::test_area_reference_is_sorted_ascending_with_the_area_in_ones",
              f"{T_STEP}::test_area_loss_equals_the_sorted_vector_definition")),
    Mutation("area-loss-smallest", "the area loss pairs the reference's ones with the smallest mask values "
             "(what a reversed reference does to the sorted-vector loss)", STEP,
             (("vals, idx = rows.topk(k, dim=1, sorted=False)",
               "vals, idx = rows.topk(k, dim=1, sorted=False, largest=False)"),),
             (f"{T_STEP}::test_area_loss_equals_the_sorted_vector_definition",)),
    # ---- perturbation and final map
    Mutation("pyramid-reversed", "the blur pyramid's levels in reverse order (m = 1 blurs, m = 0 keeps)", STEP,
             (("sigma = max_blur * (1 - lv / (levels - 1))", "sigma = max_blur * lv / (levels - 1)"),),
             (f"{T_STEP}::test_pyramid_ends_are_the_clip_and_its_full_blur",)),
    Mutation("final-map-unnormalised", "the final map is not divided by its maximum", STEP,
             (("return s / s.max().clamp(min=1e-12)", "return s"),),
             (f"{T_STEP}::test_final_map_sums_areas_and_normalises_globally",)),
    # ---- the loop's control
    Mutation("early-stop-never", "early stop never fires", STEP,
             (("if prev is not None and done >= cfg.min_iterations and (cur - prev).abs().mean() < cfg.early_stop:",
               "if False:"),),
             (f"{T_STEP}::test_early_stop_fires_once_the_mask_settles_and_never_when_off",)),
    Mutation("early-stop-before-min", "early stop ignores min_iterations", STEP,
             (("done >= cfg.min_iterations and ", ""),),
             (f"{T_STEP}::test_early_stop_fires_once_the_mask_settles_and_never_when_off",)),
    Mutation("early-stop-when-off", "early_stop=0 still stops once the mask does not move", STEP,
             (("if cfg.early_stop > 0 and done % 10 == 0:", "if done % 10 == 0:"),
              (".abs().mean() < cfg.early_stop:", ".abs().mean() <= cfg.early_stop:")),
             (f"{T_STEP}::test_early_stop_fires_once_the_mask_settles_and_never_when_off",)),
    Mutation("cancel-only-at-start", "cancel is looked at before the first iteration only", STEP,
             (("        if should_cancel(cancel):\n            raise Cancelled(\"The explanation was cancelled.\")\n        padded",
               "        if it == 0 and should_cancel(cancel):\n            raise Cancelled(\"The explanation was cancelled.\")\n"
               "        padded"),),
             (f"{T_STEP}::test_cancel_in_the_middle_of_a_run_stops_it_at_the_next_iteration",)),
    Mutation("mask-never-optimised", "the optimiser's learning rate is 0: the mask stays all ones", STEP,
             (("opt = torch.optim.SGD([params], lr=cfg.lr", "opt = torch.optim.SGD([params], lr=0.0"),),
             ("tests/test_explain.py::test_step_finds_the_evidence_on_toy_clips",
              f"{T_STEP}::test_the_iterations_bring_the_started_masks_to_their_areas_and_keep_the_class")),
    # ---- metrics, comparison methods, adapter
    Mutation("curves-swapped", "deletion and insertion curves swapped", "attribution/metrics.py",
             (("dele, ins, ev = _curves(", "ins, dele, ev = _curves("),),
             ("tests/test_metrics.py::test_perfect_map_of_a_region_gives_the_closed_form_aucs",)),
    Mutation("curve-arrays-swapped", "the deletion and insertion arrays swapped, their AUCs left right",
             "attribution/metrics.py",
             (("curves = Curves(fractions=fractions, deletion=dele, insertion=ins,",
               "curves = Curves(fractions=fractions, deletion=ins, insertion=dele,"),),
             ("tests/test_metrics.py::test_linear_response_gives_linear_curves_with_auc_one_half",)),
    Mutation("gradcam-is-frame-difference", "Grad-CAM answers with the frame-difference map (no model)",
             "attribution/methods/baselines.py",
             (('@_method("grad-cam", "Grad-CAM"', '@_method("grad-cam-moved", "Grad-CAM"'),
              ('@_method("frame-difference", "Frame difference', '@_method("grad-cam", "Frame difference')),
             ("tests/test_baselines.py::test_gradcam_points_at_the_toy_evidence_where_the_floors_do_not",)),
    Mutation("occlusion-counts-rises", "occlusion keeps the rises of p, not the drops",
             "attribution/methods/baselines.py",
             (("return scale_max(attr[0].mean(0)), {", "return scale_max(-attr[0].mean(0)), {"),),
             ("tests/test_baselines.py::test_each_method_finds_exactly_the_known_evidence",)),
    Mutation("ig-baseline-is-the-clip", "Integrated Gradients integrates from the clip itself (all zero)",
             "attribution/methods/baselines.py", (("baselines=torch.zeros_like(clip)", "baselines=clip"),),
             ("tests/test_baselines.py::test_each_method_finds_exactly_the_known_evidence",)),
    Mutation("adapter-layout-reshaped", "BTCHW made by a reshape instead of a permutation", "model_zoo/classifier.py",
             (("x = x.permute(0, 2, 1, 3, 4)", "x = x.reshape(x.shape[0], x.shape[2], x.shape[1], *x.shape[3:])"),),
             ("tests/test_toy.py::test_adapter_normalises_and_lays_out_the_clip",)),
    Mutation("stop-waits-for-captum", "Stop is checked only before and after a comparison method, not between "
             "its model calls", "attribution/methods/baselines.py",
             (("    def forward(x):\n        check_cancel(cancel)\n", "    def forward(x):\n"),),
             ("tests/test_baselines.py::test_stop_ends_a_many_pass_method_between_its_model_calls",)),
    # ---- the app
    Mutation("estimate-times-the-engine", "an estimate asked not to measure times the engine anyway (a compile "
             "beside the request)", "attribution/cost.py",
             (("engine_costs(preset, device, measure=measure)", "engine_costs(preset, device, measure=True)"),),
             ("tests/test_cost.py::test_an_estimate_told_not_to_measure_never_times_the_engine",)),
    Mutation("sanity-never-refused", "the sanity check runs whatever its estimate", "ui/callbacks.py",
             (("    costs.refuse_if_too_long(m, job.model, names, job.preset, job.settings, 0, repeats=job.repeats)\n",
               ""),),
             ("tests/test_app.py::test_a_request_above_the_limit_is_refused_before_it_runs",)),
    Mutation("predict-own-group", "/predict leaves the model's concurrency group (runs beside /explain)", "app.py",
             (('api_name="predict",\n                     **model_group)',
               'api_name="predict",\n                     concurrency_limit=CONCURRENCY)'),),
             ("tests/test_app.py::test_simultaneous_requests_never_run_the_model_at_once",)),
    Mutation("model-work-unlocked", "the model work runs without the model lock", "ui/callbacks.py",
             (("        with MODEL_LOCK:\n            check_cancel(", "        if True:\n            check_cancel("),),
             ("tests/test_app.py::test_the_model_work_holds_the_model_lock_and_a_stopped_job_never_takes_it",)),
    Mutation("queue-unlimited", "the queue has no size limit", "app.py",
             (("demo.queue(max_size=MAX_QUEUE, default_concurrency_limit=CONCURRENCY)",
               "demo.queue(default_concurrency_limit=CONCURRENCY)"),),
             ("tests/test_app.py::test_the_request_past_the_queue_limit_gets_its_sentence",)),
    Mutation("verdict-deletion-backwards", "the verdict reads a higher deletion AUC as better", "ui/text.py",
             (("int(c.auc_deletion < c.auc_random_deletion - MARGIN)",
               "int(c.auc_deletion > c.auc_random_deletion + MARGIN)"),),
             ("tests/test_app.py::test_the_verdict_reads_each_curve_the_right_way_round",)),
    # ---- batch
    Mutation("batch-errors-done", "every error row counts as done (retryable errors never retried)",
             "attribution/batch.py",
             (('(row.get("status") == "error" and row.get("final") and not retry_errors)',
               '(row.get("status") == "error" and not retry_errors)'),),
             ("tests/test_batch.py::test_batch_killed_mid_run_resumes_every_clip_exactly_once",)),
    Mutation("batch-redoes-finished", "a rerun redoes (rewrites) the clips already done", "attribution/batch.py",
             (("return mine, [c for c in mine if ids[c] not in done]", "return mine, list(mine)"),),
             ("tests/test_batch.py::test_batch_killed_mid_run_resumes_every_clip_exactly_once",)),
    # ---- command line and timing
    Mutation("out-file-accepted", "an --out that is a file is not refused before the work", "attribution/common.py",
             (("        if folder.exists() and not folder.is_dir():\n            raise InputError(f\"--out",
               "        if False:\n            raise InputError(f\"--out"),),
             ("tests/test_explain.py::test_cli_refuses_bad_options_before_any_work",)),
    Mutation("timing-in-warmup", "the engine's timing leaves L_K out (its iterations fall inside the warm-up)",
             "attribution/cost.py", (("early_stop=0.0, core_warmup=0,", "early_stop=0.0,"),),
             ("tests/test_cost.py::test_the_engine_is_timed_with_every_part_an_iteration_pays",)),
    # ---- model zoo (the tests of the lead's wiring run too, once they exist)
    Mutation("sampling-recipe-ignored", "frames always spread uniformly, ignoring the model's sampling recipe",
             "model_zoo/sampling.py", (("if window is None or window > n:", "if True:"),),
             ("tests/test_model_zoo.py::test_frame_indices_follow_the_recipe", "tests/test_sampling.py")),
    Mutation("cache-ignores-name", "load_model returns a cached model for a different name",
             "model_zoo/__init__.py",
             (("key = (str(name_or_path), bool(pretrained), str(device))", "key = (bool(pretrained), str(device))"),),
             ("tests/test_toy.py::test_registry", "tests/test_model_cache.py")),
]


# --------------------------------------------------------------------------------------------------- copy
def repository_files(root: Path) -> list[str]:
    """Tracked files and untracked ones git does not ignore, as they are in the working tree."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                         capture_output=True, check=True).stdout.decode()
    return sorted({f for f in out.split("\0") if f and (root / f).is_file()})


def copy_repository(root: Path, dest: Path) -> int:
    files = repository_files(root)
    for f in files:
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / f, dest / f)
    return len(files)


def apply(mutation: Mutation, text: str) -> str:
    """The mutated text; raises ValueError unless every replacement's target occurs exactly once."""
    for old, new in mutation.replace:
        n = text.count(old)
        if n != 1:
            raise ValueError(f"mutation {mutation.name}: {old!r} occurs {n} times in {mutation.file} (expected once); "
                             "update the mutation to the current code")
        text = text.replace(old, new)
    return text


# ---------------------------------------------------------------------------------------------------- run
def run_tests(copy: Path, tests: list[str], timeout: float, first_failure: bool = True, deselect=()) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    env.update(PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *(["-x"] if first_failure else []),
           *tests, *(arg for t in deselect for arg in ("--deselect", t))]
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
        code, output = r.returncode, r.stdout + r.stderr
    except subprocess.TimeoutExpired as e:
        code = None
        output = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
    failed = re.findall(r"^(?:FAILED|ERROR) (.+?)(?: - .*)?$", output, re.M)
    return {"returncode": code, "seconds": round(time.perf_counter() - t0, 1), "failed": failed,
            "tail": output.strip().splitlines()[-1] if output.strip() else ""}


def existing(copy: Path, tests) -> tuple[list[str], list[str]]:
    have, missing = [], []
    for t in tests:
        (have if (copy / t.split("::")[0]).exists() else missing).append(t)
    return have, missing


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", action="append", default=[], metavar="NAME", help="run only this mutation (repeatable)")
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    ap.add_argument("--json", default=None,
                    help=f"where to write the results (default {RESULTS.relative_to(ROOT)} for a full run, none "
                         "with --only)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the run on the unmutated copy")
    ap.add_argument("--timeout", type=float, default=TIMEOUT, help="seconds per mutation's tests")
    a = ap.parse_args(argv)
    names = [m.name for m in MUTATIONS]
    unknown = sorted(set(a.only) - set(names))
    if unknown:
        ap.error(f"unknown mutation(s) {', '.join(unknown)}; known: {', '.join(names)}")
    chosen = [m for m in MUTATIONS if not a.only or m.name in a.only]
    if a.list:
        for m in chosen:
            print(f"{m.name:28s} {m.file:26s} {m.what}\n{'':28s} tests: {' '.join(m.tests)}")
        return 0

    with tempfile.TemporaryDirectory(prefix="mutations-") as tmp:
        copy = Path(tmp) / "repo"
        n = copy_repository(ROOT, copy)
        print(f"copied {n} files of {ROOT} to {copy}", flush=True)
        for m in chosen:                               # every mutation must apply before anything runs
            apply(m, (copy / m.file).read_text())
        broken: list[str] = []
        if not a.no_baseline:
            union = list(dict.fromkeys(t for m in chosen for t in existing(copy, m.tests)[0]))
            base = run_tests(copy, union, a.timeout * 2, first_failure=False)
            print(f"baseline (unmutated, {len(union)} test ids): {base['tail']} [{base['seconds']} s]", flush=True)
            if base["returncode"] is None or (base["returncode"] != 0 and not base["failed"]):
                print("the unmutated copy's tests did not run through: fix them first")
                return 2
            broken = base["failed"]
            if broken:
                print("failing without any mutation, left out of every run below:\n  " + "\n  ".join(broken))
        rows = []
        for m in chosen:
            path = copy / m.file
            original = path.read_text()
            tests, missing = existing(copy, m.tests)
            if not tests:
                raise SystemExit(f"mutation {m.name}: none of its tests exist ({', '.join(m.tests)})")
            path.write_text(apply(m, original))
            try:
                r = run_tests(copy, tests, a.timeout, deselect=broken)
            finally:
                path.write_text(original)
            status = {0: "survived", 5: "not tested"}.get(r["returncode"], "killed")   # 5: pytest ran no test
            if r["returncode"] is None:
                status = "killed (timeout)"
            rows.append({"name": m.name, "what": m.what, "file": m.file, "status": status, "tests": tests,
                         "missing_tests": missing, "killed_by": r["failed"][:3], "seconds": r["seconds"],
                         "pytest": r["tail"]})
            print(f"{status:16s} {m.name:28s} {r['seconds']:7.1f} s  {(r['failed'] or [''])[0]}", flush=True)

    killed = sum(r["status"].startswith("killed") for r in rows)
    print(f"\n| mutation | file | result | caught by |\n|---|---|---|---|")
    for r in rows:
        by = ", ".join(t.split("::")[-1] for t in r["killed_by"]) or "–"
        print(f"| {r['name']} | {r['file']} | {r['status']} | {by} |")
    alive = [r["name"] for r in rows if not r["status"].startswith("killed")]
    print(f"\n{killed} of {len(rows)} mutations killed" + (f"; not killed: {', '.join(alive)}" if alive else ""))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip())
    report = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "commit": commit.strip(),
              "working_tree_modified": dirty, "python": platform.python_version(), "killed": killed,
              "total": len(rows), "failing_without_mutation": broken, "mutations": rows}
    target = a.json or (None if a.only else str(RESULTS))
    if target:
        out = Path(target)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1) + "\n")
        print(f"results: {out}")
    return 0 if killed == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
