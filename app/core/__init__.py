"""The ML core: windows, detectors, RLAD, feedback, query strategies, thresholds, metrics.

Plain numpy / scipy / scikit-learn / torch. Nothing here may import FastAPI, SQLAlchemy,
Celery or any other ``app.*`` package: the core is usable from a notebook with no server.
"""
