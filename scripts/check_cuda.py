"""Prove the CUDA path of the detection core: every torch detector fitted, refined and scored on a GPU.

Usage::

    python scripts/check_cuda.py --out cuda.json                    # on a GPU machine (about 3 minutes on an H200)
    python scripts/check_cuda.py --device cpu --points small --out /tmp/dry.json   # dry run without a GPU
    python scripts/check_cuda.py --detectors lstm_ae rlad --out cuda.json

Detectors: the registry's torch detectors (ae, vae, lstm_ae, lstm_vae, usad, transformer, rlad) and the
ensemble with ``lstm_ae`` added to its members, on the synthetic series of ``scripts/speed_core.py`` (a noisy
sine with a 20-point spike every 5,000 points). Each is fitted on the first ``--fit-points`` points and refined
with ground-truth labels on about 2 % of them (``speed_core.label_ranges``: whole windows, half holding a spike).
Reconstruction detectors keep their defaults; RLAD runs a smaller round than its default 10 x 300 steps (4 x 250,
gate over 2 folds: the gate trains 3 agents a round) so the whole check stays within minutes.

Per detector, on ``--device`` (default cuda):

- fit; every parameter of its torch modules must be on that device; score the fit points: finite;
- feedback with the labels; score again: finite;
- ``to_bytes``; a subprocess with ``CUDA_VISIBLE_DEVICES=""`` loads it (``registry.load_detector``) and scores the
  fit points on the CPU: max |CPU - GPU| / (score range) must stay within 1e-3 (RLAD: its margins too, the agent's
  Q-values, which serve nothing while its gate keeps the forest serving);
- fit and feedback again with the same seed: reported, not checked (cuDNN need not be deterministic);
- the same fit + feedback on the CPU (torch threads: every core); PR-AUC on the held-out points of the
  ``--score-points`` series (after the fit part) on both devices, and seconds to fit, to learn and to score it;
- that CPU-trained model loaded onto ``--device`` as a GPU worker refining it loads it
  (``load_detector(data, device=...)``): parameters there, scores within 1e-3 of the CPU's, feedback stays there.

Prints a markdown table, writes the JSON to ``--out`` (rewritten after each stage, so a run cut short still leaves
what it did) and exits 1 when a hard check fails. ``--points small`` shrinks the series and the training budgets
for a dry run on a laptop CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core.detectors.registry import load_detector, make_detector  # noqa: E402
from app.core.metrics import pr_auc  # noqa: E402
from scripts.speed_core import label_ranges, synthetic_series  # noqa: E402

DETECTORS = ("ae", "vae", "lstm_ae", "lstm_vae", "usad", "transformer", "rlad", "ensemble")
ENSEMBLE_MEMBERS = ("diff", "rollingz", "level", "iforest", "lstm_ae")
PRESETS = {"full": (20_000, 1_000_000), "small": (3_000, 20_000)}  # (fit points, scored points)
LOAD_TOLERANCE = 1e-3  # max |CPU - GPU| of the reloaded model, as a share of the GPU scores' range
LABEL_BUDGET = 0.02


def detector_params(name: str, small: bool) -> dict[str, Any]:
    """Hyperparameters of ``name`` for this check (module docstring); ``small`` for a dry run."""
    torch_small = {"epochs": 2, "feedback_epochs": 2, "max_train_windows": 256} if small else {}
    if name == "rlad":
        return {"episodes": 2 if small else 4, "steps_per_episode": 60 if small else 250, "gate_folds": 2}
    if name == "ensemble":
        return {"members": ENSEMBLE_MEMBERS, "member_params": {"lstm_ae": torch_small}}
    return dict(torch_small)


def torch_modules(det: Any) -> list[Any]:
    """The fitted torch modules of a detector: a reconstruction module, RLAD's two networks, an ensemble's members'."""
    found = []
    if hasattr(det, "module_"):
        found.append(det.module_)
    if hasattr(det, "agent_"):
        found += [det.agent_.q_network, det.agent_.target_network]
    for member in getattr(det, "members_", []):
        found += torch_modules(member)
    return found


def param_devices(det: Any) -> list[str]:
    """Sorted device types of every parameter and buffer of the detector's torch modules."""
    types = set()
    for module in torch_modules(det):
        types |= {p.device.type for p in module.parameters()} | {b.device.type for b in module.buffers()}
    return sorted(types)


def rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / (max(b) - min(b)) (the range of the reference ``b``; 1 if it is flat)."""
    span = float(np.ptp(b)) or 1.0
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))) / span


def timed(fn: Any, *args: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def train(name: str, params: dict[str, Any], device: str, x: np.ndarray, ranges: list[Any]) -> dict[str, Any]:
    """Fit and refine one detector on ``device``: the detector, its scores of ``x`` after each step, seconds."""
    det, fit_s = timed(make_detector(name, seed=0, device=device, **params).fit, x)
    fit_scores = det.score(x)
    devices = param_devices(det)
    _, feedback_s = timed(det.feedback, x, ranges)
    return {
        "det": det,
        "fit_s": fit_s,
        "feedback_s": feedback_s,
        "fit_scores": fit_scores,
        "feedback_scores": det.score(x),
        "margins": det.margins(x) if det.provides_margins else None,
        "param_devices": devices,
        "param_devices_after_feedback": param_devices(det),
    }


def held_out(det: Any, x_big: np.ndarray, y_big: np.ndarray, fit_points: int) -> dict[str, Any]:
    """Score the long series: seconds, finiteness, PR-AUC on the points after the fit part."""
    scores, score_s = timed(det.score, x_big)
    finite = bool(np.isfinite(scores).all())
    return {
        "score_s": score_s,
        "score_finite": finite,
        "pr_auc": pr_auc(scores[fit_points:], y_big[fit_points:]) if finite else None,
    }


def refine_elsewhere(ref: dict[str, Any], device: str, x: np.ndarray, ranges: list[Any]) -> dict[str, Any]:
    """A version trained on the CPU, refined by a worker on ``device`` (``load_detector(data, device=...)``, as the
    versions service loads it): its parameters must move there, score as on the CPU, and stay there while learning."""
    import torch

    det = load_detector(ref["det"].to_bytes(), device=device)
    want = torch.device(device).type
    loaded_on = param_devices(det)
    diff = rel_diff(det.score(x), ref["feedback_scores"])
    det.feedback(x, ranges)
    after = param_devices(det)
    finite = bool(np.isfinite(det.score(x)).all())
    ok = loaded_on in ([want], []) and after == loaded_on and finite and diff <= LOAD_TOLERANCE
    return {"ok": ok, "param_devices": loaded_on, "after_feedback": after, "rel_diff": diff, "finite": finite}


def load_check(folder: Path) -> None:
    """Child process (``CUDA_VISIBLE_DEVICES=""``): load every ``*.model`` in ``folder`` and score ``x.npy`` on CPU."""
    import torch

    x = np.load(folder / "x.npy")
    results: dict[str, Any] = {"cuda_visible": torch.cuda.is_available()}
    for path in sorted(folder.glob("*.model")):
        try:
            det = load_detector(path.read_bytes())
            np.save(folder / f"{path.stem}.cpu.npy", det.score(x))
            if det.provides_margins:
                np.save(folder / f"{path.stem}.cpu_margins.npy", det.margins(x))
            results[path.stem] = {"param_devices": param_devices(det), "stored_device": det.device}
        except Exception:  # reported per detector by the parent
            results[path.stem] = {"error": traceback.format_exc(limit=3)}
    (folder / "load.json").write_text(json.dumps(results))


def run_load_check(folder: Path, rows: dict[str, dict[str, Any]], gpu: dict[str, dict[str, Any]]) -> None:
    """Run :func:`load_check` in a CPU-only subprocess and record, per detector, how its scores compare."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--load-check", str(folder)], env=env, capture_output=True, text=True, check=False
    )
    print(f"CPU-only load subprocess: rc {proc.returncode}, {time.perf_counter() - t0:.1f} s", flush=True)
    report = json.loads((folder / "load.json").read_text()) if (folder / "load.json").exists() else {}
    for name, row in rows.items():
        got = report.get(name) or {"error": f"subprocess rc {proc.returncode}: {proc.stderr[-2000:]}"}
        row["cpu_load"] = dict(got, gpu_visible_in_subprocess=report.get("cuda_visible"))
        if "error" in got:
            row["failures"].append(f"CPU-only load failed: {got['error'].strip().splitlines()[-1]}")
            continue
        diffs = {"scores": rel_diff(np.load(folder / f"{name}.cpu.npy"), gpu[name]["feedback_scores"])}
        if gpu[name]["margins"] is not None:
            diffs["margins"] = rel_diff(np.load(folder / f"{name}.cpu_margins.npy"), gpu[name]["margins"])
        row["cpu_load"]["rel_diff"] = diffs
        worst = max(diffs.values())
        if not worst <= LOAD_TOLERANCE:
            row["failures"].append(f"CPU-loaded model differs by {worst:.2e} of the score range (> {LOAD_TOLERANCE})")
        if got["param_devices"] != ["cpu"]:
            row["failures"].append(f"CPU-loaded model has parameters on {got['param_devices']}")


def table(rows: dict[str, dict[str, Any]], device: str, score_points: int) -> str:
    def f(v: Any, fmt: str = ".2f") -> str:
        return "—" if v is None else format(v, fmt)

    def rep(r: dict[str, Any]) -> str:
        d = r.get("repeat")
        if not d:
            return "—"
        if d["identical"]:
            return "identical"
        return f"fit {d['fit_rel_diff']:.1e}, fb {d['feedback_rel_diff']:.1e}"

    def moved(r: dict[str, Any]) -> str:
        m = r.get("cpu_version_on_device")
        return "—" if not m else f"{'yes' if m['ok'] else 'NO'}, {m['rel_diff']:.1e}"

    lines = [
        f"| detector | params on {device} | scores finite | CPU-only reload: max Δ / range | same seed twice "
        f"| PR-AUC {device} / cpu | fit s {device} / cpu | feedback s {device} / cpu "
        f"| score {score_points:,} pts s {device} / cpu | CPU version refined on {device}: Δ / range | hard checks |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        g, c = r.get("on_device", {}), r.get("on_cpu", {})
        load = r.get("cpu_load", {}).get("rel_diff")
        load_s = "—" if load is None else ", ".join(f"{k} {v:.1e}" for k, v in load.items())
        lines.append(
            f"| {name} | {'yes' if r.get('params_on_device') else 'NO'} | {'yes' if r.get('finite') else 'NO'} "
            f"| {load_s} | {rep(r)} | {f(g.get('pr_auc'), '.3f')} / {f(c.get('pr_auc'), '.3f')} "
            f"| {f(g.get('fit_s'), '.1f')} / {f(c.get('fit_s'), '.1f')} "
            f"| {f(g.get('feedback_s'), '.1f')} / {f(c.get('feedback_s'), '.1f')} "
            f"| {f(g.get('score_s'), '.1f')} / {f(c.get('score_s'), '.1f')} | {moved(r)} "
            f"| {'pass' if not r['failures'] else 'FAIL: ' + '; '.join(r['failures'])} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="the device under test (cpu: a dry run of the script)")
    parser.add_argument("--points", choices=sorted(PRESETS), default="full", help="full: 20,000 fit / 1,000,000 scored")
    parser.add_argument("--fit-points", type=int, help="override the preset's fit points")
    parser.add_argument("--score-points", type=int, help="override the preset's scored points")
    parser.add_argument("--detectors", nargs="+", default=list(DETECTORS), choices=DETECTORS)
    parser.add_argument("--no-cpu", action="store_true", help="skip the CPU reference runs (timings, PR-AUC)")
    parser.add_argument("--out", type=Path, help="JSON results")
    parser.add_argument("--load-check", type=Path, help=argparse.SUPPRESS)  # the CPU-only child process
    args = parser.parse_args()
    if args.load_check:
        load_check(args.load_check)
        return 0

    import torch

    fit_points = args.fit_points or PRESETS[args.points][0]
    score_points = max(args.score_points or PRESETS[args.points][1], fit_points + 1)
    small = args.points == "small"
    torch.set_num_threads(os.cpu_count() or 1)
    x_big, y_big = synthetic_series(score_points)
    x, y = x_big[:fit_points], y_big[:fit_points]
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": args.device,
        "fit_points": fit_points,
        "score_points": score_points,
        "label_budget": LABEL_BUDGET,
    }
    print(json.dumps(info), flush=True)
    if args.device.startswith("cuda"):  # context, cuBLAS and cuDNN start-up out of the first detector's timings
        lstm = torch.nn.LSTM(1, 8, batch_first=True).to(args.device)
        lstm(torch.zeros(4, 10, 1, device=args.device))[0].sum().backward()
        torch.cuda.synchronize()

    rows: dict[str, dict[str, Any]] = {}
    gpu: dict[str, dict[str, Any]] = {}
    out: dict[str, Any] = {"info": info, "rows": rows}

    def save() -> None:
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(out, indent=1, default=str))

    folder = Path(tempfile.mkdtemp(prefix="check_cuda_"))
    np.save(folder / "x.npy", x)
    for name in args.detectors:
        params = detector_params(name, small)
        row: dict[str, Any] = {"params": params, "failures": []}
        rows[name] = row
        window = make_detector(name, **params).window
        ranges = label_ranges(y, LABEL_BUDGET, window)
        row["labels"] = {"ranges": len(ranges), "points": int(sum(r.end - r.start for r in ranges))}
        try:
            first = train(name, params, args.device, x, ranges)
            gpu[name] = first
            want = torch.device(args.device).type
            row["param_devices"] = first["param_devices"]
            row["params_on_device"] = first["param_devices"] == [want] == first["param_devices_after_feedback"]
            if not row["params_on_device"]:
                row["failures"].append(f"parameters on {first['param_devices']}, not only on {want}")
            row["finite"] = bool(np.isfinite(first["fit_scores"]).all() and np.isfinite(first["feedback_scores"]).all())
            if not row["finite"]:
                row["failures"].append("non-finite scores after fit or feedback")
            row["on_device"] = {"fit_s": first["fit_s"], "feedback_s": first["feedback_s"]}
            row["on_device"].update(held_out(first["det"], x_big, y_big, fit_points))
            if not row["on_device"]["score_finite"]:
                row["failures"].append(f"non-finite scores on the {score_points:,}-point series")
            if hasattr(first["det"], "last_round_"):
                row["rlad_round"] = {k: v for k, v in first["det"].last_round_.items() if not k.startswith("episode")}
            (folder / f"{name}.model").write_bytes(first["det"].to_bytes())
            again = train(name, params, args.device, x, ranges)
            diffs = [rel_diff(again[k], first[k]) for k in ("fit_scores", "feedback_scores")]
            if first["margins"] is not None:
                diffs.append(rel_diff(again["margins"], first["margins"]))
            row["repeat"] = {
                "identical": all(np.array_equal(again[k], first[k]) for k in ("fit_scores", "feedback_scores")),
                "fit_rel_diff": diffs[0],
                "feedback_rel_diff": max(diffs[1:]),
            }
        except Exception:
            row["failures"].append("error: " + traceback.format_exc(limit=4).strip().splitlines()[-1])
            row["traceback"] = traceback.format_exc()
            print(row["traceback"], flush=True)
        print(
            f"{name} on {args.device}: {json.dumps({k: v for k, v in row.items() if k != 'params'}, default=str)}",
            flush=True,
        )
        save()

    run_load_check(folder, {n: rows[n] for n in gpu}, gpu)
    save()

    if not args.no_cpu:  # with --device cpu too, so a dry run walks every step
        for name in args.detectors:
            params = rows[name]["params"]
            window = make_detector(name, **params).window
            try:
                ranges = label_ranges(y, LABEL_BUDGET, window)
                ref = train(name, params, "cpu", x, ranges)
                rows[name]["on_cpu"] = {"fit_s": ref["fit_s"], "feedback_s": ref["feedback_s"]}
                rows[name]["on_cpu"].update(held_out(ref["det"], x_big, y_big, fit_points))
                rows[name]["cpu_version_on_device"] = moved = refine_elsewhere(ref, args.device, x, ranges)
                if not moved["ok"]:
                    rows[name]["failures"].append(f"a CPU-trained version loaded onto {args.device}: {moved}")
            except Exception:
                rows[name]["on_cpu"] = {"error": traceback.format_exc(limit=4)}
            print(f"{name} on cpu: {json.dumps(rows[name]['on_cpu'], default=str)}", flush=True)
            save()

    failures = {n: r["failures"] for n, r in rows.items() if r["failures"]}
    out["hard_failures"] = failures
    save()
    print()
    print(table(rows, args.device, score_points))
    verdict = "FAIL" if failures else "PASS"
    print(f"\n{verdict}: {len(rows) - len(failures)} of {len(rows)} detectors pass the hard checks")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
