"""The nearest-window distance (``knn``): a known answer, the trivial-match exclusion, fingerprints."""

from __future__ import annotations

import numpy as np

from app.core.detectors.knn import KNNDetector
from app.core.windows import flat_windows, nearest_distance, overlapping_known, window_fingerprints


def periodic(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (np.sin(np.arange(n) / 6) + 0.1 * rng.standard_normal(n)).astype(np.float32)


def test_distances_by_brute_force() -> None:
    """Scored on a series it was not fitted on, a window's score is its distance to the nearest reference window
    (k = 1) or the mean of the k nearest, in the fit data's standardised units, each window's mean taken away."""
    fit, other = periodic(300), periodic(200, seed=1) * 1.5 + 0.3
    for k, centre in ((1, True), (3, True), (1, False)):
        det = KNNDetector(window=10, k=k, max_reference=50, centre=centre, seed=0).fit(fit)
        scaled = (other[:, None] - det.scaler_.offset_) / det.scaler_.scale_
        rows = flat_windows(scaled, 10).astype(np.float64)
        if centre:
            rows = rows - rows.mean(axis=1, keepdims=True)
        dist = np.sqrt(((rows[:, None, :] - det.reference_[None, :, :].astype(np.float64)) ** 2).sum(axis=2))
        expected = np.sort(dist, axis=1)[:, :k].mean(axis=1)
        np.testing.assert_allclose(det.window_scores(other), expected, rtol=1e-4, atol=1e-4)


def test_a_shape_unseen_in_the_fit_data_scores_highest() -> None:
    x = periodic(6000)
    x[5000:5020] += np.sin(np.arange(20) * 1.3)  # a fast wobble the slow sine never shows
    det = KNNDetector(window=25, seed=0).fit(x[:3000])
    scores = det.window_scores(x)
    top = int(np.argmax(scores)) + 24  # the window's end point
    assert 5000 <= top < 5020 + 24
    assert scores.max() > 3 * np.median(scores)


def test_the_fitted_part_is_scored_like_the_rest_not_matched_with_itself() -> None:
    """Every window of the fit data is among its fingerprints; its overlapping reference windows (itself, its
    neighbours one point along) do not count, so the fitted part does not score about 0."""
    x = periodic(4000)
    det = KNNDetector(window=25, seed=0, max_reference=500).fit(x[:2000])
    scores = det.window_scores(x)
    fitted_part, later_part = scores[: 2000 - 24], scores[2000:]
    assert 0.8 < np.median(fitted_part) / np.median(later_part) < 1.25
    own = det.reference_positions_
    assert scores[own].min() > 0.2 * np.median(later_part)  # a reference window is never its own neighbour
    # without the exclusion zone the reference windows would score exactly 0: this is what it prevents
    blind = KNNDetector(window=25, seed=0, max_reference=500).fit(x[:2000])
    blind.fit_fingerprints_ = np.array([], dtype=np.uint64)
    blind.fit_positions_ = np.array([], dtype=np.int64)
    assert blind.window_scores(x)[own].max() < 0.05 * np.median(later_part)  # float32 rounding: not exactly 0


def test_fingerprints_tell_equal_windows_from_others() -> None:
    rows = np.random.default_rng(0).standard_normal((1000, 30)).astype(np.float32)
    rows[500] = rows[3]
    fp = window_fingerprints(rows, batch=64)
    assert fp[500] == fp[3] and len(np.unique(fp)) == 999
    nudged = rows.copy()
    nudged[7, 29] = np.nextafter(nudged[7, 29], np.float32(np.inf))  # one bit of one value
    assert window_fingerprints(nudged)[7] != fp[7]


def test_the_seed_draws_the_reference_sample() -> None:
    x = periodic(3000)
    scores = KNNDetector(seed=0, max_reference=200).fit(x[:2000]).window_scores(x)
    np.testing.assert_array_equal(KNNDetector(seed=0, max_reference=200).fit(x[:2000]).window_scores(x), scores)
    assert not np.array_equal(KNNDetector(seed=1, max_reference=200).fit(x[:2000]).window_scores(x), scores)


def test_overlapping_known_names_the_trivial_matches_of_known_windows_only() -> None:
    """Rows that are no known window (-1) get no mask row; a known window at 5 overlaps the reference windows at 0
    and 10 (gap < 25) but not the one at 30 (gap 25) or 60; one at 40 overlaps 30 and 60 only."""
    rows, mask = overlapping_known(np.array([-1, 5, 40]), np.array([0, 10, 30, 60]), window=25)
    np.testing.assert_array_equal(rows, [1, 2])
    np.testing.assert_array_equal(mask, [[True, True, False, False], [False, False, True, True]])
    rows, mask = overlapping_known(np.array([-1, -1]), np.array([0, 10]), window=25)
    assert rows.shape == (0,) and mask.shape == (0, 2)
    _, strided = overlapping_known(np.array([2]), np.array([0, 1, 2, 5]), window=25, stride=10)  # gaps in points
    np.testing.assert_array_equal(strided, [[True, True, True, False]])  # 20, 10, 0, 30 points apart


def test_nearest_distance_known_answers() -> None:
    """The mean distance to the k nearest reference rows, excluded pairs left out, inf where fewer than k remain."""
    rows = np.array([[0.0, 0.0], [3.0, 4.0]])
    reference = np.array([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]])
    np.testing.assert_allclose(nearest_distance(rows, reference), [1.0, 0.0])
    np.testing.assert_allclose(nearest_distance(rows, reference, k=2), [1.5, (0.0 + np.sqrt(13.0)) / 2])
    exclude = np.array([[False, True, False], [True, True, False]])
    np.testing.assert_allclose(nearest_distance(rows, reference, exclude), [2.0, np.sqrt(13.0)])
    assert nearest_distance(rows, reference, exclude, k=2)[1] == np.inf
    assert nearest_distance(rows, reference, exclude, k=2)[0] == 3.5
