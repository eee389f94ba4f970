"""Detectors: the common contract on every registered detector (but RLAD), and quality floors on real data."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from app.core.detectors.base import NotFittedError
from app.core.detectors.iforest import IForestDetector
from app.core.detectors.registry import available_detectors, detector_class, load_detector, make_detector
from app.core.runtime import Cancelled, Progress
from app.core.windows import LabeledRange

from .conftest import load_series

DETECTORS = [name for name in available_detectors() if name != "rlad"]
NON_DEEP = ("iforest", "knn", "diff", "rollingz", "level", "ensemble")
# iForest subsamples, the deep ones initialise and shuffle at random; the point scorers have no randomness, and knn
# keeps every window of a fit this short (its seed only draws a sample of longer ones: tests/core/test_knn.py)
STOCHASTIC = [name for name in DETECTORS if name not in ("diff", "rollingz", "level", "knn")]
# Small settings so a fit takes well under a second on one core.
FAST = {"epochs": 2, "max_train_windows": 128, "window": 20}


def fast_params(name: str, **extra: object) -> dict:
    params = {"window": 20} if name in NON_DEEP else dict(FAST)
    params.update(extra)
    return params


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The test machine's cores are shared; torch's thread pool only adds spin-wait there."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def synthetic(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two-channel noisy sines with one 10-point level shift at 400; labels ``(n,)``."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    x = np.stack([np.sin(t / 8), np.cos(t / 13)], axis=1) + 0.05 * rng.standard_normal((n, 2))
    y = np.zeros(n, dtype=int)
    x[400:410] += 2.5
    y[400:410] = 1
    return x.astype(np.float32), y


@pytest.mark.parametrize("name", DETECTORS)
def test_contract_shapes_roundtrip_and_seeds(name: str) -> None:
    x, _ = synthetic()
    det = make_detector(name, seed=0, **fast_params(name)).fit(x)
    scores = det.score(x)
    assert scores.shape == (len(x),)
    assert np.isfinite(scores).all()
    assert scores.dtype == np.float64
    ws = det.window_scores(x)
    assert ws.shape == (det.n_windows(len(x)),) and np.isfinite(ws).all()

    again = load_detector(det.to_bytes())
    assert type(again) is type(det) and again.get_params() == det.get_params()
    np.testing.assert_array_equal(again.score(x), scores)

    same = make_detector(name, seed=0, **fast_params(name)).fit(x)
    np.testing.assert_array_equal(same.score(x), scores)
    if name in STOCHASTIC:
        other = make_detector(name, seed=1, **fast_params(name)).fit(x)
        assert not np.array_equal(other.score(x), scores)


@pytest.mark.parametrize("name", DETECTORS)
def test_spike_scores_above_the_rest(name: str) -> None:
    """A 2.5-sigma level shift must score above the median of the clean points, first points included."""
    x, y = synthetic()
    det = make_detector(name, seed=0, **fast_params(name)).fit(x[:350])  # fit on clean data only
    scores = det.score(x)
    assert scores[y == 1].mean() > np.median(scores[y == 0])
    assert np.isfinite(scores[:5]).all()


def test_point_scores_cover_the_tail_with_a_real_window() -> None:
    """The newest points are scored by a window that ends on them, not copied from an earlier point."""
    x, _ = synthetic(n=437)  # (437 - 20) is not a multiple of the inference stride 10
    det = make_detector("ae", seed=0, **FAST).fit(x)
    x2 = x.copy()
    x2[-1] += 5.0
    s1, s2 = det.score(x), det.score(x2)
    assert s2[-1] > s1[-1] + 0.5


def test_unknown_parameter_and_unfitted_use_fail_clearly() -> None:
    with pytest.raises(TypeError, match="unknown parameters"):
        make_detector("lstm_ae", hiden=3)
    with pytest.raises(NotFittedError):
        make_detector("ae").score(np.zeros(100))
    with pytest.raises(ValueError, match="shorter than one window"):
        make_detector("ae", **FAST).fit(np.zeros(10))


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("knn", {"k": "x"}, "k must be a whole number, not 'x'"),
        ("knn", {"k": 0}, r"k must be a whole number in \[1, inf\), not 0"),
        ("knn", {"k": np.int64(0)}, r"k must be a whole number in \[1, inf\)"),
        ("iforest", {"n_estimators": 2.5}, "n_estimators must be a whole number, not 2.5"),
        ("lstm_ae", {"hidden": -1}, r"hidden must be a whole number in \[1, inf\)"),
        ("lstm_ae", {"lr": 0.0}, r"lr must be a number in \(0, inf\), not 0.0"),
        ("lstm_ae", {"mask_ratio": 1.5}, r"mask_ratio must be in \(0, 1\), not 1.5"),
        ("lstm_ae", {"window": 1}, "window must be >= 2, not 1"),
        ("lstm_ae", {"feedback_loss": "x"}, "feedback loss must be one of"),
        ("transformer", {"dropout": float("nan")}, "dropout must be a number, not nan"),
        ("rlad", {"gamma": 5}, r"gamma must be a number in \[0, 1\], not 5"),
        ("rlad", {"propagation_method": "x"}, "propagation_method must be one of 'propagation', 'spreading'"),
        ("rollingz", {"history": 0}, r"history must be a whole number in \[1, inf\), not 0"),
        ("diff", {"standardize": "yes"}, "standardize must be true or false, not 'yes'"),
        ("ensemble", {"members": "iforest"}, "members must be a list of strings, not 'iforest'"),
        ("ensemble", {"member_params": {"knn": {"k": 0}}}, "member knn: k must be a whole number"),
    ],
)
def test_a_bad_parameter_is_refused_when_the_detector_is_built(name: str, params: dict, message: str) -> None:
    """What the "New project" form shows: the parameter, what it must be and what was given, before any training."""
    with pytest.raises(ValueError, match=message):
        make_detector(name, **params)


@pytest.mark.parametrize("name", available_detectors())
def test_every_detector_accepts_its_defaults_and_starter_parameters(name: str) -> None:
    cls = detector_class(name)
    assert make_detector(name).get_params() == cls().get_params()
    make_detector(name, **cls.starter_params)
    make_detector(name, seed=np.int64(3), window=np.int64(30))  # numpy integers are whole numbers too


def test_fit_reports_progress_and_cancel_leaves_it_unfitted() -> None:
    x, _ = synthetic()
    seen: list[Progress] = []
    make_detector("ae", **FAST).fit(x, progress=seen.append)
    assert [p.step for p in seen] == [1, 2] and seen[-1].fraction == 1.0 and seen[-1].loss is not None

    def cancel(p: Progress) -> None:
        raise Cancelled

    det = make_detector("ae", **FAST)
    with pytest.raises(Cancelled):
        det.fit(x, progress=cancel)
    with pytest.raises(NotFittedError):
        det.score(x)


def test_fit_leaves_out_windows_with_known_anomalies() -> None:
    """With ``y`` the model never trains on the shift, so it reconstructs it worse than without ``y``."""
    x, y = synthetic()
    blind = make_detector("ae", seed=0, window=20, epochs=15, max_train_windows=600).fit(x)
    told = make_detector("ae", seed=0, window=20, epochs=15, max_train_windows=600).fit(x, y=y)
    assert told.score(x)[y == 1].mean() > blind.score(x)[y == 1].mean()


def test_iforest_warm_up_contract() -> None:
    """RLAD's warm-up: ``IForestDetector(...).fit(X).window_scores(X)``, one score per stride-1 window."""
    x, y = synthetic()
    ws = IForestDetector(window=25, seed=3).fit(x).window_scores(x)
    assert ws.shape == (len(x) - 24,)
    assert np.isfinite(ws).all() and ((ws > 0) & (ws <= 1)).all()
    assert IForestDetector(window=25, seed=3).fit(x[:100]).forest_.n_estimators == 100
    # The point score is the score of the window ending there.
    det = IForestDetector(window=25, seed=3, max_fit_windows=200).fit(x)
    np.testing.assert_array_equal(det.score(x)[24:], det.window_scores(x))


@pytest.mark.parametrize(
    ("channels", "max_samples", "n_fit"), [(1, "auto", 3000), (3, 64, 3000), (2, 1.0, 40), (1, "auto", 1)]
)
def test_the_flat_forest_scores_exactly_as_scikit_learn(channels: int, max_samples: Any, n_fit: int) -> None:
    """Small batches are walked by ``FlatForest``; its scores equal scikit-learn's ``-score_samples`` bit for bit
    (deep and shallow trees, several channels, a forest fitted on a single window), and the detector's answer does
    not depend on which walk a batch got."""
    from app.core.detectors.iforest import FLAT_FOREST_MAX_WINDOWS, FlatForest

    rng = np.random.default_rng(7)
    x = rng.standard_normal((n_fit + 9, channels)).astype(np.float32)
    det = IForestDetector(window=10, seed=2, max_samples=max_samples, n_estimators=30).fit(x)
    probe = rng.standard_normal((300, 10 * channels)).astype(np.float32) * 3
    np.testing.assert_array_equal(FlatForest(det.forest_).scores(probe), -det.forest_.score_samples(probe))
    long = rng.standard_normal((FLAT_FOREST_MAX_WINDOWS + 200, channels)).astype(np.float32)
    whole = det.window_scores(long)  # more windows than the flat walk takes: scikit-learn's walk
    np.testing.assert_array_equal(det.window_scores(long[:200]), whole[: 200 - 9])


# -- the transformer's inference path, mask token and stored models -----------------------------


def test_transformer_inference_path_matches_the_stock_encoder() -> None:
    """The chunked eval encoder computes what ``nn.TransformerEncoder`` computes (fast and slow paths)."""
    from app.core.detectors.reconstruction import _TransformerAE

    torch.manual_seed(0)
    module = _TransformerAE(window=12, channels=3, d_model=16, heads=4, layers=2, ff=24, dropout=0.1).eval()
    module.eval_chunk_tokens = 5 * 12  # 23 windows: four chunks of 5 and a short one of 3
    h = torch.randn(23, 12, 16)
    with torch.inference_mode():
        torch.testing.assert_close(module._encode_eval(h), module.encoder(h), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(module._encode_eval(h), module.encoder(h), rtol=1e-5, atol=1e-5)  # grad path
    module.train()  # training keeps the stock module (dropout): two passes differ
    assert not torch.equal(module(torch.randn(4, 12, 3)), module(torch.randn(4, 12, 3)))


def test_transformer_mask_token_hides_the_masked_values() -> None:
    """With a mask, the output does not depend on the masked steps' values; without one, it does."""
    from app.core.detectors.reconstruction import _TransformerAE

    torch.manual_seed(0)
    module = _TransformerAE(window=10, channels=2, d_model=16, heads=2, layers=1, ff=16, dropout=0.0).eval()
    x = torch.randn(3, 10, 2)
    mask = torch.zeros(3, 10, dtype=torch.bool)
    mask[:, [2, 7]] = True
    changed = x.clone()
    changed[:, [2, 7]] += 5.0
    with torch.no_grad():
        torch.testing.assert_close(module(x, mask), module(changed, mask))
        assert not torch.allclose(module(x), module(changed))


def test_transformer_feedback_with_mask_token_trains_only_the_feedback_token() -> None:
    """The token is unused by the fit (same scores either way) and learned by masked feedback."""
    x, _ = synthetic()
    plain = make_detector("transformer", seed=0, **FAST).fit(x)
    tokened = make_detector("transformer", seed=0, mask_token=True, feedback_epochs=1, **FAST).fit(x)
    np.testing.assert_array_equal(tokened.score(x), plain.score(x))
    assert not tokened.module_.mask_token.any()
    tokened.feedback(x, [LabeledRange(400, 410, 1), LabeledRange(100, 140, 0)])
    assert tokened.module_.mask_token.abs().sum() > 0
    np.testing.assert_array_equal(load_detector(tokened.to_bytes()).score(x), tokened.score(x))


def test_transformer_stored_without_a_mask_token_still_loads_and_scores_the_same() -> None:
    """Models stored before the mask token existed lack it in their state dict; a broken state still fails."""
    import io

    from app.core import persist

    x, _ = synthetic()
    det = make_detector("transformer", seed=0, **FAST).fit(x)

    def stored_without(*keys: str) -> bytes:
        payload = persist.loads(det.to_bytes())
        module_state = torch.load(io.BytesIO(payload["state"]["module_state_"]), weights_only=True)
        buf = io.BytesIO()
        torch.save({k: v for k, v in module_state.items() if k not in keys}, buf)
        payload["state"]["module_state_"] = buf.getvalue()
        return persist.dumps(payload["name"], payload["params"], payload["state"])

    old = load_detector(stored_without("mask_token"))
    np.testing.assert_array_equal(old.score(x), det.score(x))
    assert not old.module_.mask_token.any()
    with pytest.raises(RuntimeError, match="head.0.weight"):
        load_detector(stored_without("head.0.weight"))


# -- quality floors on real data -------------------------------------------------------------


def pr_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    return float(average_precision_score(labels, scores))


def random_pr_auc(labels: np.ndarray) -> float:
    """PR-AUC of uniformly random scores (fixed seed); about the anomaly rate."""
    return pr_auc(np.random.default_rng(0).random(len(labels)), labels)


QUALITY = {"epochs": 4, "max_train_windows": 512}
# The quality floors hold for what a project can pick (a ``summary`` on the form); the ensemble's point scorers are
# members, weak alone by design (|Δx| on this NAB slice, the rolling z-score on SMD: the sanity baselines' figures).
OFFERED = [name for name in DETECTORS if detector_class(name).summary]


@pytest.mark.slow
@pytest.mark.parametrize("name", OFFERED)
def test_beats_random_on_nab_machine_temperature(name: str, shared_data) -> None:
    x, y = load_series("nab/realKnownCause__machine_temperature_system_failure.csv.gz", limit=6000)
    assert 0 < y.mean() < 0.3  # two of the four failure windows lie in this slice
    params = {} if name in NON_DEEP else dict(QUALITY)
    scores = make_detector(name, seed=0, **params).fit(x).score(x)
    assert pr_auc(scores, y) > 1.2 * random_pr_auc(y)


@pytest.mark.slow
@pytest.mark.parametrize("name", OFFERED)
def test_beats_random_on_smd_machine(name: str, shared_data) -> None:
    train, _ = load_series("smd/machine-1-2.train.csv.gz", limit=3000)
    test, y = load_series("smd/machine-1-2.test.csv.gz", limit=6500)
    test, y = test[3500:], y[3500:]  # three labeled incidents in these 3,000 points
    params = {} if name in NON_DEEP else dict(QUALITY)
    scores = make_detector(name, seed=0, **params).fit(train).score(test)
    assert pr_auc(scores, y) > 1.5 * random_pr_auc(y)


def test_point_and_window_scores_equal_the_two_calls() -> None:
    """The one-pass path the worker uses gives exactly what score() and window_scores() give."""
    from app.core.detectors import make_detector

    rng = np.random.default_rng(3)
    x = np.cumsum(rng.normal(size=(400, 2)), axis=0).astype(np.float32)
    for name in ("lstm_ae", "iforest"):
        det = make_detector(name, window=20, seed=0, device="cpu", **({"epochs": 1} if name != "iforest" else {}))
        det.fit(x)
        points, windows = det.point_and_window_scores(x)
        np.testing.assert_array_equal(points, det.score(x))
        np.testing.assert_array_equal(windows, det.window_scores(x))
