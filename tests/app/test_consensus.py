"""The consensus rule and the agreement figures, on plain values (app/projects/consensus.py)."""

from __future__ import annotations

import pytest

from app.projects.consensus import (
    Piece,
    cohen_kappa,
    consensus,
    krippendorff_alpha,
    majority,
    pair_agreements,
    window_vote,
)


def whole(value: str, start: int = 0, end: int = 10) -> list[Piece]:
    return [Piece(start, end, value)]


def test_a_dragged_range_votes_anomaly_and_unsure_alone_votes_unsure():
    assert window_vote([Piece(0, 3, "normal"), Piece(3, 5, "anomaly"), Piece(5, 10, "normal")]) == "anomaly"
    assert window_vote(whole("normal")) == "normal"
    assert window_vote(whole("unsure")) == "unsure"


def test_majority_of_anomaly_and_normal_votes_and_ties_are_unsure():
    assert majority(["anomaly", "anomaly", "normal"]) == "anomaly"
    assert majority(["normal", "unsure", "unsure"]) == "normal"  # unsure votes do not count
    assert majority(["anomaly", "normal"]) == "unsure"
    assert majority(["unsure", "unsure"]) == "unsure"


def test_a_tie_is_unsure_unless_an_admin_adjudicated():
    answers = [whole("anomaly"), whole("normal")]
    tie = consensus(answers, 0, 10)
    assert (tie.value, tie.rule, tie.pieces) == ("unsure", "tie", (Piece(0, 10, "unsure"),))
    decided = consensus(answers, 0, 10, adjudicated="normal")
    assert (decided.value, decided.rule, decided.pieces) == ("normal", "adjudicated", (Piece(0, 10, "normal"),))


def test_an_anomaly_majority_keeps_the_points_most_anomaly_voters_marked():
    # three analysts mark [2, 6), [4, 8) and the whole window: points marked by at least 2 of 3 are [4, 8)... and
    # [2, 4) by two as well (the first and the whole-window answer)
    answers = [
        [Piece(0, 2, "normal"), Piece(2, 6, "anomaly"), Piece(6, 10, "normal")],
        [Piece(0, 4, "normal"), Piece(4, 8, "anomaly"), Piece(8, 10, "normal")],
        whole("anomaly"),
    ]
    result = consensus(answers, 0, 10)
    assert result.value == "anomaly" and result.rule == "majority"
    assert result.pieces == (Piece(0, 2, "normal"), Piece(2, 8, "anomaly"), Piece(8, 10, "normal"))
    assert result.votes == {"anomaly": 3, "normal": 0, "unsure": 0}


def test_one_answer_is_its_own_consensus():
    pieces = [Piece(0, 3, "normal"), Piece(3, 5, "anomaly"), Piece(5, 10, "normal")]
    result = consensus([pieces], 0, 10)
    assert result.rule == "single" and list(result.pieces) == pieces


def test_cohen_kappa_matches_the_textbook_formula():
    a = ["anomaly", "anomaly", "normal", "normal"]
    b = ["anomaly", "normal", "normal", "normal"]
    # observed 3/4; expected 1/2 * 1/4 + 1/2 * 3/4 = 1/2; kappa = (3/4 - 1/2) / (1 - 1/2) = 1/2
    assert cohen_kappa(a, b) == pytest.approx(0.5)
    assert cohen_kappa(a, a) == pytest.approx(1.0)
    assert cohen_kappa(["normal"] * 3, ["normal"] * 3) is None  # one value everywhere: undefined, not 1 or NaN
    assert cohen_kappa([], []) is None


def test_krippendorff_alpha_nominal_matches_a_hand_computation():
    # two analysts, four windows, as above: coincidence matrix o(a,a)=2, o(n,n)=4, o(a,n)=o(n,a)=1; n=8,
    # n_a=3, n_n=5; D_o = 2/8, D_e = 2*3*5/(8*7); alpha = 1 - D_o/D_e = 1 - (1/4)/(15/28) = 1 - 7/15 = 8/15
    units = [
        {"x": "anomaly", "y": "anomaly"},
        {"x": "anomaly", "y": "normal"},
        {"x": "normal", "y": "normal"},
        {"x": "normal", "y": "normal"},
        {"x": "anomaly"},  # one vote: no information, left out
    ]
    assert krippendorff_alpha(units) == pytest.approx(8 / 15)
    assert krippendorff_alpha([{"x": "normal", "y": "normal"}]) is None
    assert krippendorff_alpha([{"x": "normal"}]) is None


def test_pairs_over_the_windows_both_answered():
    units = [
        {1: "anomaly", 2: "anomaly", 3: "normal"},
        {1: "normal", 2: "normal"},
        {2: "normal", 3: "normal"},
    ]
    pairs = {(p.a, p.b): p for p in pair_agreements(units)}
    assert set(pairs) == {(1, 2), (1, 3), (2, 3)}
    assert pairs[(1, 2)].windows == 2 and pairs[(1, 2)].observed == 1.0 and pairs[(1, 2)].kappa == pytest.approx(1.0)
    assert pairs[(1, 3)].windows == 1 and pairs[(1, 3)].observed == 0.0
    assert pairs[(2, 3)].windows == 2 and pairs[(2, 3)].observed == 0.5
