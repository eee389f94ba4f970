"""Import round-trips every file of ../shared/data: counts, channels, anomalies and checksums equal the manifest."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from app.datasets import service
from app.datasets.reader import ImportError_, ImportOptions

# NAB files whose clock goes back (DST / upstream quirks): strict import must refuse them, --timestamps index works.
NON_MONOTONIC_NAB = {
    "realAWSCloudwatch__ec2_disk_write_bytes_1ef3de",
    "realAWSCloudwatch__ec2_network_in_5abac7",
    "realAdExchange__exchange-2_cpc_results",
    "realAdExchange__exchange-2_cpm_results",
    "realKnownCause__ec2_request_latency_system_failure",
    "realKnownCause__machine_temperature_system_failure",
    "realTraffic__occupancy_t4013",
    "realTraffic__speed_t4013",
}


@pytest.mark.slow
def test_every_manifest_file_round_trips(database, shared_data):
    manifest = json.loads((shared_data / "manifest.json").read_text())["files"]
    refused = set()
    for entry in manifest:
        path = shared_data / entry["path"]
        name = path.name.removesuffix(".csv.gz")
        try:
            with database.session_scope() as session:
                [item] = service.import_files(session, [path], entry["dataset"], ImportOptions())
        except ImportError_ as exc:
            assert "strictly increase" in str(exc)
            refused.add(name)
            with database.session_scope() as session:
                [item] = service.import_files(session, [path], entry["dataset"], ImportOptions(timestamps="index"))
        assert (item.n_points, item.n_channels, item.n_anomalous_points) == (
            entry["n_points"],
            entry["n_channels"],
            entry["n_anomalous_points"],
        ), entry["path"]
        with database.session_scope() as session:
            series = service.get_series(session, item.series_id)
            assert series.sha256 == entry["sha256"]
            if name not in refused and entry["first_timestamp"] is not None and series.timestamp_kind == "datetime":
                assert series.first_timestamp.startswith(entry["first_timestamp"].replace("T", " ").rstrip("Z"))
    assert refused == NON_MONOTONIC_NAB


def test_values_and_truth_equal_the_file_bit_for_bit(database, shared_data):
    path = shared_data / "smd" / "machine-1-2.test.csv.gz"
    with database.session_scope() as session:
        [item] = service.import_files(session, [path], "smd", ImportOptions(chunk_points=4096))
    frame = pd.read_csv(path)
    expected = frame.drop(columns=["timestamp", "label"]).to_numpy().astype(np.float32)
    with database.session_scope() as session:
        series = service.get_series(session, item.series_id)
        assert series.n_channels == 38 and series.split == "test" and series.timestamp_kind == "number"
        np.testing.assert_array_equal(service.read_values(session, series), expected)
        # a range that straddles chunk boundaries reads only what it asks for
        np.testing.assert_array_equal(service.read_values(session, series, 4000, 12300), expected[4000:12300])
        np.testing.assert_array_equal(service.read_truth(session, series), frame["label"].to_numpy())
        np.testing.assert_array_equal(service.read_timestamps(session, series, 5, 9), [5.0, 6.0, 7.0, 8.0])
