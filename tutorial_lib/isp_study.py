"""Notebook 05's ablation on validation photos: which part of the unpaired objective does what.

``python -m tutorial_lib.isp_study --seeds 0 1`` trains, for every seed, one warm start and then
the unpaired stage once per variant: the paper's recipe; the paper's recipe with each of its
critics removed in turn; each of the course's additions on top of it (a tone critic, fading
critics, fixed scales); all three; and the paper's recipe over the offline *learned* features.
Every variant starts from the same warm start, sees the same batches and is scored the same way:
the EMA snapshot with the best PSNR on the validation photos (``data.PHOTO_SPLITS["isp_val"]``), and
its mean Delta E 2000; ``--budgets`` also trains the paper's recipe for other numbers of adversarial
steps, from which the profile's ``gan_steps`` is chosen. The test photos are not touched. The settings are read from the notebook's
``laptop`` profile (or ``--profile``), so the study trains exactly what the notebook trains.
The result (JSON) is what the notebook renders as its ablation table.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import time
from pathlib import Path

import torch

from . import camera, data, isp, metrics
from .errors import TutorialError, exit_status

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "05_unpaired_isp.ipynb"
HUE_JITTER = 0.5
OURS = dict(critics=isp.ALL_CRITICS, fade_margin=0.05,
            scales={"tv": 0.3, "adv texture 0": 0.3, "adv texture 1": 0.3})

VARIANTS = {
    "paper": (dict(), "fixed"),
    "paper without texture 0": (dict(critics=("texture 1", "colour")), "fixed"),
    "paper without texture 1": (dict(critics=("texture 0", "colour")), "fixed"),
    "paper without colour": (dict(critics=("texture 0", "texture 1")), "fixed"),
    "paper + tone critic (ours)": (dict(critics=isp.ALL_CRITICS), "fixed"),
    "paper + fading (ours)": (dict(fade_margin=OURS["fade_margin"]), "fixed"),
    "paper + scales 0.3 (ours)": (dict(scales=OURS["scales"]), "fixed"),
    "paper + all three (ours)": (OURS, "fixed"),
    "paper, learned features (ours)": (dict(), "learned"),
}


def notebook_profile(profile: str = "laptop", path: Path = NOTEBOOK) -> dict:
    """The settings of one profile, read from the notebook's ``PROFILES = tl.ProfileSet(...)`` cell."""
    import nbformat

    if not Path(path).is_file():
        raise TutorialError(f"The study reads its settings from {path}, which is not here: run it from a "
                            f"checkout of the repository (pip install -e .).")
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and "PROFILES = tl.ProfileSet(" in cell.source:
            for node in ast.walk(ast.parse(cell.source)):
                if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "ProfileSet":
                    for kw in node.keywords:
                        if kw.arg == profile:
                            return {k.arg: ast.literal_eval(k.value) for k in kw.value.keywords}
    raise TutorialError(f"No profile {profile!r} in the PROFILES cell of {path}.")


def features(kind: str, cfg: dict, seed: int, photos) -> isp.FrozenFeatures:
    if kind == "fixed":
        return isp.FixedFilterFeatures(seed)
    patches = isp.checkerboard_patches(photos, 0, cfg["patch"], cfg["per_image"], seed=seed + 100, block=cfg["block"])
    nets = isp.LearnedFeatures(patches, seed=seed)
    nets.build()
    return nets


def scores(nets, val: isp.PhoneSet) -> dict:
    """The network with the best validation PSNR: its PSNR, mean Delta E 2000 and index, and every PSNR."""
    outputs = [isp.render(n, val.raw) for n in nets]
    psnrs = [float(metrics.psnr(out, val.truth)) for out in outputs]
    best = max(range(len(psnrs)), key=psnrs.__getitem__)
    return {"psnr": psnrs[best], "delta_e": float(metrics.delta_e2000(outputs[best], val.truth)),
            "snapshot": best, "curve": [round(p, 3) for p in psnrs]}


def run_seed(cfg: dict, seed: int, variants: dict = VARIANTS, budgets: tuple = ()) -> dict:
    torch.manual_seed(seed)
    phone_camera = camera.random_camera(torch.Generator().manual_seed(1000 + seed))
    photos = data.load_photos("isp_train")
    phone, dslr = isp.unpaired_training_sets(photos, phone_camera, camera.DEFAULT_LOOK, patch=cfg["patch"],
                                             per_image=cfg["per_image"], block=cfg["block"], seed=seed,
                                             hue_jitter=HUE_JITTER, noise_scale=cfg["noise_scale"])
    val, _ = isp.shoot("isp_val", phone_camera, side=cfg["eval_crop"], seed=seed + 4, look=camera.DEFAULT_LOOK,
                       noise_scale=cfg["noise_scale"])
    warm = isp.EfficientISP(seed=seed)
    isp.train_paired(warm, phone.raw, phone.classic, steps=cfg["warm_steps"], batch_size=cfg["batch"], lr=5e-3, seed=seed)
    out = {"warm start": {**scores([warm], val), "seconds": 0.0},
           "classic ISP": {"psnr": float(metrics.psnr(val.classic, val.truth)),
                           "delta_e": float(metrics.delta_e2000(val.classic, val.truth))}}
    nets_by_kind = {}

    def train(name, recipe_kw, kind, steps, n_snapshots):
        if kind not in nets_by_kind:
            nets_by_kind[kind] = features(kind, cfg, seed, photos)
        torch.manual_seed(seed + 20)  # the critics' initial weights
        run = isp.UnpairedRun(warm, nets_by_kind[kind], isp.UnpairedRecipe(**recipe_kw), ema_decay=cfg["ema"],
                              n_snapshots=n_snapshots, steps=steps, probe=dslr[:2])
        t0 = time.perf_counter()
        run.train(phone, dslr, steps=steps, batch_size=cfg["batch"], g_lr=cfg["g_lr"], d_lr=cfg["d_lr"],
                  gamma=cfg["gamma"], seed=seed + 10, desc=name)
        res = {**scores(run.snapshots, val), "seconds": round(time.perf_counter() - t0, 1), "steps": steps}
        print(f"seed {seed} {name}, {steps} steps: val PSNR {res['psnr']:.2f} dB, Delta E {res['delta_e']:.2f} "
              f"(snapshot {res['snapshot']}), {res['seconds']} s", flush=True)
        return res

    for name, (recipe_kw, kind) in variants.items():
        out[name] = train(name, recipe_kw, kind, cfg["gan_steps"], cfg["snapshots"])
    if budgets:  # the paper's recipe with other adversarial budgets (snapshots every 100 steps)
        out["budget"] = {}
        for steps in budgets:
            out["budget"][str(steps)] = (out["paper"] if steps == cfg["gan_steps"] and "paper" in out else
                                         train("paper", {}, "fixed", steps, max(cfg["snapshots"], steps // 100 + 1)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tutorial_lib.isp_study", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--profile", default="laptop")
    parser.add_argument("--only", nargs="*", help="variant names (default: all)")
    parser.add_argument("--budgets", type=int, nargs="*", default=[600, 900, 1200],
                        help="adversarial step budgets to try with the paper's recipe (the profile's is one of them)")
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                        help="override profile settings, e.g. gan_steps=900 snapshots=10")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    def work():
        cfg = notebook_profile(args.profile)
        for item in args.set:
            name, _, value = item.partition("=")
            if name not in cfg:
                raise TutorialError(f"Unknown setting {name!r}; settings: {', '.join(cfg)}.")
            cfg[name] = type(cfg[name])(ast.literal_eval(value))
        variants = {k: v for k, v in VARIANTS.items() if not args.only or k in args.only}
        started = time.perf_counter()
        result = {"profile": args.profile, "settings": cfg, "variants": list(variants), "budgets": list(args.budgets),
                  "seeds": {}}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        for seed in args.seeds:
            result["seeds"][str(seed)] = run_seed(cfg, seed, variants, tuple(args.budgets))
            args.out.write_text(json.dumps(result, indent=1))  # what is done so far
        result["wall_seconds"] = round(time.perf_counter() - started, 1)
        args.out.write_text(json.dumps(result, indent=1))
    return exit_status(work)

if __name__ == "__main__":
    sys.exit(main())


RECORDED = Path(__file__).resolve().parent / "recorded" / "studies" / "05_ablation.json"


def load_recorded(path: Path | None = None) -> dict:
    """The ablation result that ships with the package (``tutorial_lib/recorded/studies/05_ablation.json``)."""
    path = Path(path or RECORDED)
    if not path.is_file():
        raise TutorialError(f"No recorded ablation at {path}; `python -m tutorial_lib.isp_study --out {path}` makes it.")
    return json.loads(path.read_text())


def table(result: dict, variants: list[str] | None = None) -> dict[str, dict]:
    """Rows for ``plots.metric_table``: validation PSNR and Delta E 2000 per seed, and the change in
    PSNR against the paper's recipe averaged over seeds (references first: classic ISP, warm start)."""
    seeds = list(result["seeds"])
    names = ["classic ISP", "warm start"] + list(variants or result["variants"])
    rows = {}
    for name in names:
        row = {}
        for s in seeds:
            r = result["seeds"][s][name]
            row[f"PSNR s{s}"] = r["psnr"]
            row[f"ΔE s{s}"] = r["delta_e"]
        row["PSNR − paper (mean)"] = sum(result["seeds"][s][name]["psnr"] - result["seeds"][s]["paper"]["psnr"]
                                         for s in seeds) / len(seeds)
        rows[name] = row
    return rows


def show(result: dict, variants: list[str] | None = None):
    """Print the table (validation photos, profile and seeds said first) and return its rows."""
    from .plots import metric_table

    seeds = ", ".join(result["seeds"])
    print(f"validation photos, `{result['profile']}` profile, seeds {seeds}; PSNR in dB, mean Delta E 2000 "
          f"(lower is better); each variant's checkpoint is chosen on validation")
    rows = table(result, variants)
    try:
        from IPython.display import display
    except ImportError:  # outside IPython: print the table
        display = print
    display(metric_table(rows, precision=2))
    return rows


def verdict(result: dict, variant: str) -> str:
    """One computed sentence: the variant's validation PSNR against the paper's recipe at each seed,
    whether it is higher (or lower) at all of them, and the training step of its chosen snapshot."""
    seeds = list(result["seeds"])
    every = "both seeds" if len(seeds) == 2 else "every seed"
    diffs = [result["seeds"][s][variant]["psnr"] - result["seeds"][s]["paper"]["psnr"] for s in seeds]
    de = [result["seeds"][s][variant]["delta_e"] - result["seeds"][s]["paper"]["delta_e"] for s in seeds]
    each = ", ".join(f"s{s} {d:+.2f} dB" for s, d in zip(seeds, diffs))
    if all(d > 0 for d in diffs):
        word = f"higher PSNR than the paper's recipe at {every}"
    elif all(d < 0 for d in diffs):
        word = f"lower PSNR than the paper's recipe at {every}"
    else:
        word = "no consistent change"
    steps, snaps = result["settings"]["gan_steps"], result["settings"]["snapshots"]
    chosen = ", ".join(f"s{s} step {round(result['seeds'][s][variant]['snapshot'] * steps / max(snaps - 1, 1))}"
                       for s in seeds)
    return f"{word} ({each}; Delta E {min(de):+.2f} to {max(de):+.2f}; chosen snapshot: {chosen}, 0 = the warm start)"


def show_budgets(result: dict):
    """Print the validation PSNR of the paper's recipe for every budget tried, per seed, and the
    budget of the recorded profile; return {budget: {seed: PSNR}}."""
    table_ = {int(b): {s: result["seeds"][s]["budget"][str(b)]["psnr"] for s in result["seeds"]}
              for b in result.get("budgets", [])}
    chosen = result["settings"]["gan_steps"]
    for b, row in table_.items():
        cells = "   ".join(f"s{s} {v:.2f} dB" for s, v in row.items())
        mark = f"   <- `{result['profile']}` (gan_steps = {b})" if b == chosen else ""
        print(f"{b:5d} steps: {cells}{mark}")
    if chosen in table_:
        seeds = list(result["seeds"])
        for b in sorted(table_):
            if b == chosen:
                continue
            better = sum(table_[chosen][s] > table_[b][s] for s in seeds)
            print(f"{chosen} steps score above {b} steps at {better} of {len(seeds)} seeds")
    return table_
