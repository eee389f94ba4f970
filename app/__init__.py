"""anomaloop: human-in-the-loop time-series anomaly detection."""

__version__ = "0.1.0"
