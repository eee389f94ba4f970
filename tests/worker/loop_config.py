"""The small real series and detector settings the loop tests (in-process and Celery) share."""

# first 5,000 rows of an SMD test machine: 38 channels, real labeled anomalies in both the pool and the held-back part
LOOP_SERIES = ("smd/machine-1-2.test.csv.gz", 5000)

LOOP_CASES = {
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
