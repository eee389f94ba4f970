"""The small real series and detector settings the loop tests (in-process and Celery) share.

The series is the first 8,000 points of KPI a8c06b47 (349 anomalous points, 102 of them in the held-back last
30 %). Measured through the services on it (3 rounds of 10): lstm_ae (hybrid) PR-AUC on the held-back part
0.287 -> 0.522 -> 0.593 -> 0.602 (in-process, 2026-12-07; 0.452 -> 0.608 -> 0.603 with 002's feedback learning rate
1e-2, the default before that day); rlad (margin, 15 warm-up windows, then rounds of 10; the "New project" form's
training budget of 10 episodes x 300 steps) 0.794 (its unsupervised version scores with the iForest warm-up model)
-> 0.775 -> 0.825 -> 0.840 (in-process, numpy 2.4.6, torch 2.13.0+cpu, 2026-12-03; 0.794 -> 0.774 -> 0.812 ->
0.823 with 5 x 200 steps and the packages of 2026-12-02). Before the warm-up score became a state feature and every
round trained a fresh agent, rlad fell to 0.776 by round 3.

RLAD's rounds are chaotic in the last bits of the arithmetic: with 5 x 200 steps the same seed gave 0.794 -> 0.716
-> 0.822 -> 0.743 on 2026-12-03's packages, and 0.732 / 0.714 after round 1 with the learning rate scaled by
1 +/- 1e-6 (0.727 with torch's oneDNN kernels switched off), so a new numpy or torch turns which labels the agent
fits first, and with 1,000 gradient steps a round, whether round 3 ends above round 0. With 3,000 steps (below) the
seed and both perturbed runs end 0.016-0.046 above round 0 (seed 1: 0.770 -> 0.796). Round 1 (the warm-up answers
only) stays below the forest in every such run (0.74-0.79), and the in-sample adoption check serves it.

Since 2026-12-03 RLAD's trained agent must earn its place (``agent_gate``, app/core/rlad/detector.py): it serves
only when agents cross-fitted over the gathered answers rank them better than the warm-up forest beyond noise (the
agent still picks the queries). On this slice, with the packages above, the ungated agent served 0.794 -> 0.750 ->
0.813 -> 0.749 (round 3 below the forest); with the gate, asked the same windows, the forest kept serving through
round 3 (gate figures, agent vs forest on answers the agents did not learn: 0.703 vs 0.722, 0.639 vs 0.632,
0.615 vs 0.606, with 0.02 needed), so the held-back part stays at 0.794. What a loop test can promise for RLAD is
therefore "never served worse than its forest", not "round 3 beats round 0".
"""

LOOP_SERIES = ("kpi/a8c06b47-cc41-3738-9110-12df0ee4c721.csv.gz", 8000)

LOOP_CASES = {
    "ensemble": dict(
        detector="ensemble",
        round_size=10,
        budget=60,
        oracle="ground_truth",
        holdout_fraction=0.3,
    ),
    "rlad": dict(
        detector="rlad",
        window=25,
        strategy="margin",
        round_size=10,
        budget=60,
        oracle="ground_truth",
        holdout_fraction=0.3,
        detector_params={"episodes": 10, "steps_per_episode": 300},  # the starter budget (docstring)
    ),
    "lstm_ae": dict(
        detector="lstm_ae",
        window=50,
        strategy="hybrid",
        round_size=10,
        budget=60,
        oracle="ground_truth",
        holdout_fraction=0.3,
        detector_params={"epochs": 3, "max_train_windows": 1024, "feedback_epochs": 5},
    ),
}


def assert_labels_paid(case: str, versions: list[dict]) -> None:
    """What three ground-truth rounds must show on the held-back part, for both loop tests (in-process, Celery).

    ``versions``: the metrics of versions 0..3 with ``served_pr_auc`` (tests/app/loop_helpers.py)."""
    from app.core.detectors import detector_class

    start = versions[0]["pr_auc"]
    if LOOP_CASES[case]["detector"] == "rlad":
        # the gate ran on the rounds whose answers held both classes, and what served never fell below the forest
        assert any("agent_gate" in v for v in versions[1:]), versions
        for v in versions[1:]:  # the version list says which model scores
            gate = v.get("agent_gate", {})
            if "agent_figure" in gate:
                said = "scores with the forest" if gate["forest_serves"] else "agent beat its warm-up forest"
                assert said in v["adoption"]["reason"], v["adoption"]
        assert all(v["served_pr_auc"] >= start for v in versions), versions
        return
    assert versions[3]["pr_auc"] > start, versions  # round 3 beats the unsupervised start
    if detector_class(LOOP_CASES[case]["detector"]).can_hold_out_labels:
        # judged on answers it did not learn from: what serves is never worse on the held-back part than round 0
        assert all(v["served_pr_auc"] >= start for v in versions), versions
