"""The small real series and detector settings the loop tests (in-process and Celery) share.

The series is the first 8,000 points of KPI a8c06b47 (349 anomalous points, 102 of them in the held-back last
30 %). Measured through the services on it (3 rounds of 10): lstm_ae (hybrid) PR-AUC on the held-back part
0.287 -> 0.452 -> 0.608 -> 0.603; rlad (margin, 15 warm-up windows, then rounds of 10) 0.794 (its unsupervised
version scores with the iForest warm-up model) -> 0.774 -> 0.812 -> 0.823 (in-process, 2026-12-02). Before the
warm-up score became a state feature and every round trained a fresh agent, rlad fell to 0.776 by round 3.
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
        detector_params={"episodes": 5, "steps_per_episode": 200},
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
