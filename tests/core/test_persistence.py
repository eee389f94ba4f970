"""Stored models without pickle (app/core/persist.py): round trips, the header, refusals that run nothing."""

from __future__ import annotations

import hashlib
import json
import pathlib
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from app.core import persist
from app.core.detectors.registry import load_detector, make_detector
from app.core.windows import LabeledRange, Scaler


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The test machine's cores are shared; torch's thread pool only adds spin-wait there."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def series(n: int = 600, seed: int = 0) -> np.ndarray:
    """Two noisy sines ``(n, 2)`` float32 with a level shift at 400..410."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    x = np.stack([np.sin(t / 8), np.cos(t / 13)], axis=1) + 0.05 * rng.standard_normal((n, 2))
    x[400:410] += 2.5
    return x.astype(np.float32)


RANGES = [LabeledRange(400, 410, 1), LabeledRange(100, 140, 0), LabeledRange(250, 251, 0), LabeledRange(405, 406, 1)]


@pytest.fixture(scope="module")
def forest() -> tuple[object, np.ndarray]:
    x = series()
    return make_detector("iforest", window=20, n_estimators=20, seed=3).fit(x), x


def split(data: bytes) -> tuple[dict, bytes]:
    """``(header, payload)`` of an envelope, read by hand (what a tamperer would do)."""
    assert data.startswith(persist.MAGIC)
    end = data.index(b"\n", len(persist.MAGIC))
    return json.loads(data[len(persist.MAGIC) : end]), data[end + 1 :]


def join(header: dict, payload: bytes, fix_checksum: bool = True) -> bytes:
    if fix_checksum:
        header = {**header, "payload_sha256": hashlib.sha256(payload).hexdigest()}
    return persist.MAGIC + json.dumps(header).encode() + b"\n" + payload


# -- round trips: identical scores -----------------------------------------------------------------


def test_iforest_round_trip_and_header(forest) -> None:
    det, x = forest
    data = det.to_bytes()
    assert b"\x80\x05" not in data[:64] and data.startswith(b"ANOMALOOP-MODEL\n")
    again = load_detector(data)
    np.testing.assert_array_equal(again.score(x), det.score(x))
    np.testing.assert_array_equal(again.window_scores(x[:300]), det.window_scores(x[:300]))
    assert type(again) is type(det) and again.get_params() == det.get_params()
    header = persist.read_header(data)
    assert header["format"] == persist.FORMAT_VERSION == 1
    assert header["name"] == "iforest" and header["params"] == det.get_params()
    scaler = header["state"]["scaler_"]
    assert scaler["class"] == "Scaler" and scaler["fields"]["kind"] == "standard"
    assert scaler["fields"]["offset_"] == {"__t": "ndarray", "blob": 0, "dtype": "<f4", "shape": [2], "scalar": False}
    forest_fields = header["state"]["forest_"]["fields"]
    assert forest_fields["n_estimators"] == 20 and len(forest_fields["estimators_"]) == 20
    assert sum(b["size"] for b in header["blobs"]) == len(split(data)[1])


def test_rlad_round_trip_before_and_after_training() -> None:
    x = series()
    truth = np.zeros(len(x), dtype=int)
    truth[400:410] = 1
    det = make_detector("rlad", window=20, episodes=1, steps_per_episode=80, batch_size=16, device="cpu", seed=1).fit(x)
    np.testing.assert_array_equal(load_detector(det.to_bytes()).score(x), det.score(x))  # iForest fallback
    det.feedback(x, [LabeledRange(i, i + 1, int(truth[i])) for i in (50, 120, 300, 403, 405, 407, 500)])
    assert det.trained_
    data = det.to_bytes()
    header = persist.read_header(data)
    assert header["state"]["iforest_"]["__t"] == "detector" and header["state"]["iforest_"]["name"] == "iforest"
    copy = load_detector(data)
    np.testing.assert_array_equal(copy.score(x), det.score(x))
    np.testing.assert_array_equal(copy.margins(x), det.margins(x))
    assert np.isfinite(det.last_round_["episode_losses"]).all()  # the agent did learn: not the initial weights
    assert repr(copy.last_round_) == repr(det.last_round_) and copy.rounds_ == det.rounds_


@pytest.mark.parametrize("name", ["rlad", "lstm_ae"])
def test_a_model_stored_by_a_gpu_worker_loads_and_learns_without_a_gpu(name: str, monkeypatch) -> None:
    """A GPU worker stores ``device='cuda'`` in the params; a CPU-only web process must load and score it (RLAD
    refused to: its agent was rebuilt with the strict device check). Only a fit refuses a missing GPU."""
    x = series()
    small = {"episodes": 1, "steps_per_episode": 80, "batch_size": 16} if name == "rlad" else {"epochs": 1}
    det = make_detector(name, window=20, seed=1, device="cpu", **small).fit(x)
    det.feedback(x, RANGES)
    det.device = "cuda"  # as fitted with ANOMALOOP_DEVICE=cuda (the tensors are stored on the CPU either way)
    data = det.to_bytes()
    det.device = "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    copy = load_detector(data)
    assert copy.device == "cuda"
    np.testing.assert_array_equal(copy.score(x), det.score(x))
    copy.feedback(x, RANGES)  # a CPU worker refining it needs no GPU either
    assert np.isfinite(copy.score(x)).all()
    with pytest.raises(ValueError, match="no CUDA GPU"):
        make_detector(name, window=20, device="cuda", **small).fit(x)


def test_a_worker_loads_a_version_onto_its_own_device() -> None:
    """``load_detector(data, device=...)``: a worker refining a version runs it on its own device, whatever the one
    that trained it used — the ensemble's members included (the versions service passes the worker's device)."""
    x = series()
    det = make_detector(
        "ensemble",
        window=20,
        seed=0,
        device="cpu",
        members=("diff", "lstm_ae"),
        member_params={"lstm_ae": {"epochs": 1}},
    ).fit(x)
    det.device = "cuda"  # as trained on a GPU worker
    det.members_[1].device = "cuda"
    data = det.to_bytes()
    kept = load_detector(data)
    assert kept.device == "cuda" and kept.members_[1].device == "cuda"  # no device given: the stored one
    moved = load_detector(data, device="cpu")
    assert moved.device == "cpu" and [m.device for m in moved.members_] == ["cpu", "cpu"]
    assert {p.device.type for p in moved.members_[1].module_.parameters()} == {"cpu"}
    np.testing.assert_array_equal(moved.score(x), kept.score(x))


def test_reconstruction_round_trip_with_feedback_state() -> None:
    x = series()
    det = make_detector("ae", window=20, epochs=1, max_train_windows=64, feedback_epochs=1, seed=0, device="cpu").fit(x)
    det.feedback(x, RANGES)
    again = load_detector(det.to_bytes())
    np.testing.assert_array_equal(again.score(x), det.score(x))
    assert again.last_feedback_ == det.last_feedback_  # a frozen dataclass, rebuilt from its fields
    assert again.feedback_rounds_ == 1 and again.train_loss_ == det.train_loss_


def test_ensemble_round_trip_through_nested_member_envelopes() -> None:
    x = series()
    det = make_detector("ensemble", window=20, seed=0, device="cpu").fit(x)
    det.feedback(x, RANGES)
    data = det.to_bytes()
    members = persist.loads(data)["state"]["member_bytes_"]
    assert all(m.startswith(persist.MAGIC) for m in members)  # members are envelopes too, never pickles
    again = load_detector(data)
    np.testing.assert_array_equal(again.score(x), det.score(x))
    np.testing.assert_array_equal(again.weights_, det.weights_)


def test_an_ensemble_stored_before_the_weighted_prior_keeps_its_equal_prior() -> None:
    x = series()
    det = make_detector("ensemble", window=20, seed=0, device="cpu", prior_weights={}).fit(x)  # equal weights
    payload = persist.loads(det.to_bytes())
    del payload["params"]["prior_weights"], payload["state"]["prior_"]  # what a version stored before had
    old = load_detector(persist.dumps("ensemble", payload["params"], payload["state"]))
    m = len(det.member_names_)
    np.testing.assert_array_equal(old.prior_, np.full(m, 1 / m))
    np.testing.assert_array_equal(old.score(x), det.score(x))
    old.feedback(x, [r for r in RANGES if r.value == 0])  # one class only: nothing to learn, the prior it had stays
    np.testing.assert_array_equal(old.weights_, np.full(m, 1 / m))


def test_every_storable_value_comes_back_with_its_type() -> None:
    nodes = np.zeros(3, dtype=[("a", "<i8"), ("b", "<f8"), ("c", "u1")])
    nodes["a"] = [1, -1, 7]
    state = {
        "nan": float("nan"),
        "inf": float("-inf"),
        "tuple": (1, "a", None, (2.5,)),
        "ints": {1: "one", (2, 3): [4]},
        "tagged": {"__t": "not a tag"},
        "bytes": b"\x80\x05 raw",
        "structured": nodes,
        "i64": np.int64(-7),
        "f32": np.float32(0.1),
        "bool": np.bool_(True),
        "empty": np.empty((0, 3), np.float32),
        "tensor": torch.arange(6, dtype=torch.bfloat16).reshape(2, 3),
        "scaler": Scaler("minmax").fit(np.eye(3)),
        "nested": [{"deep": [np.arange(3)]}],
    }
    back = persist.loads(persist.dumps("iforest", {"window": 5, "members": ("a", "b")}, state))
    assert back["name"] == "iforest" and back["params"] == {"window": 5, "members": ("a", "b")}
    got = back["state"]
    assert np.isnan(got["nan"]) and got["inf"] == float("-inf")
    assert got["tuple"] == (1, "a", None, (2.5,)) and got["ints"] == {1: "one", (2, 3): [4]}
    assert got["tagged"] == {"__t": "not a tag"} and got["bytes"] == b"\x80\x05 raw"
    assert got["structured"].dtype == nodes.dtype and np.array_equal(got["structured"], nodes)
    for key in ("i64", "f32", "bool"):
        assert type(got[key]) is type(state[key]) and got[key] == state[key]
    assert got["empty"].shape == (0, 3) and got["empty"].dtype == np.float32
    assert got["tensor"].dtype == torch.bfloat16 and torch.equal(got["tensor"], state["tensor"])
    assert isinstance(got["scaler"], Scaler) and got["scaler"].kind == "minmax"
    np.testing.assert_array_equal(got["scaler"].scale_, state["scaler"].scale_)
    assert np.array_equal(got["nested"][0]["deep"][0], np.arange(3))


def test_values_that_need_pickle_are_refused_when_saving(forest) -> None:
    det, _ = forest
    with pytest.raises(TypeError, match="Generator"):
        persist.dumps("iforest", {}, {"rng_": np.random.default_rng(0)})
    with pytest.raises(TypeError, match="Python objects"):
        persist.dumps("iforest", {}, {"a_": np.array([object()])})
    with pytest.raises(TypeError, match="parameters must be JSON"):
        persist.dumps("iforest", {"window": np.arange(3)}, {})
    odd = make_detector("iforest", window=20).fit(series()[:200])
    odd.callback_ = print  # a callable in the state: a pickle would store a reference to code
    with pytest.raises(TypeError, match="callback_"):
        odd.to_bytes()


def test_iforest_persistence_never_imports_torch(tmp_path: pathlib.Path) -> None:
    code = (
        "import sys, numpy as np\n"
        "from app.core.detectors.registry import load_detector, make_detector\n"
        "x = np.sin(np.arange(300) / 7.0)[:, None]\n"
        "d = make_detector('iforest', window=10, n_estimators=5).fit(x)\n"
        "assert (load_detector(d.to_bytes()).score(x) == d.score(x)).all()\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=pathlib.Path(__file__).parents[2], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


# -- the old pickle format -------------------------------------------------------------------------


class _Touch:
    """A pickle that, when loaded, creates a file: what a hostile database row could hold."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path

    def __reduce__(self):  # noqa: ANN204
        return (pathlib.Path.touch, (self.path,))


def test_a_crafted_pickle_is_refused_without_running_it(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "pwned"
    hostile = pickle.dumps({"name": "iforest", "params": {}, "state": {"x_": _Touch(target)}})
    with pytest.raises(ValueError, match="old pickle format.*could run code.*retrain"):
        load_detector(hostile)
    with pytest.raises(persist.LegacyModelError):
        persist.loads(hostile)
    assert not target.exists()
    # even the operator's explicit conversion only resolves the classes old versions held
    with pytest.raises(persist.ModelFormatError, match="pathlib"):
        persist.convert_legacy(hostile)
    assert not target.exists()
    with pytest.raises(ValueError, match="not a stored anomaloop model"):
        load_detector(b"PK\x03\x04 a zip, or anything else")


def test_an_old_pickled_version_converts_only_when_asked(forest) -> None:
    det, x = forest
    old = pickle.dumps({"name": det.name, "params": det.get_params(), "state": det._get_state()})  # format 0
    assert persist.is_legacy(old)
    with pytest.raises(persist.LegacyModelError):
        load_detector(old)
    new = persist.convert_legacy(old)
    assert persist.read_header(new)["name"] == "iforest"
    np.testing.assert_array_equal(load_detector(new).score(x), det.score(x))


def _old_format(det) -> bytes:
    """What ``to_bytes`` wrote before the envelope (format 0), members of an ensemble included."""
    state = det._get_state()
    if "member_bytes_" in state:
        state["member_bytes_"] = [_old_format(m) for m in det.members_]
    return pickle.dumps({"name": det.name, "params": det.get_params(), "state": state})


@pytest.mark.parametrize("name", ["rlad", "ensemble"])
def test_old_versions_with_nested_detectors_convert(name: str) -> None:
    x = series()
    det = make_detector(name, window=20, seed=2, device="cpu").fit(x)  # rlad: untrained, its nested forest scores
    old = _old_format(det)
    new = persist.convert_legacy(old)
    if name == "ensemble":  # nested old-format members were converted too
        assert all(b.startswith(persist.MAGIC) for b in persist.loads(new)["state"]["member_bytes_"])
    else:  # the pickled IForestDetector object became a nested envelope
        assert persist.read_header(new)["state"]["iforest_"]["__t"] == "detector"
    np.testing.assert_array_equal(load_detector(new).score(x), det.score(x))


# -- tampering fails cleanly -----------------------------------------------------------------------


def test_a_tampered_envelope_fails_with_a_clear_error(forest) -> None:
    det, _ = forest
    data = det.to_bytes()
    header, payload = split(data)

    def bad(changed: dict, body: bytes = payload, fix_checksum: bool = True) -> str:
        with pytest.raises(ValueError) as err:
            load_detector(join(changed, body, fix_checksum))
        assert isinstance(err.value, persist.ModelFormatError)
        return str(err.value)

    assert "format version 2" in bad({**header, "format": 2})
    assert "unknown detector" in bad({**header, "name": "os.system"})
    assert "checksum" in bad(header, payload[:-10], fix_checksum=False)
    assert "checksum" in bad(header, payload[:100] + b"X" + payload[101:], fix_checksum=False)
    with pytest.raises(persist.ModelFormatError, match="not valid JSON"):
        load_detector(persist.MAGIC + b'{"format": 1, "name": \n' + payload)
    with pytest.raises(persist.ModelFormatError, match="no end"):
        load_detector(persist.MAGIC + b'{"format": 1')

    state = json.loads(json.dumps(header["state"]))
    state["scaler_"]["class"] = "subprocess.Popen"
    assert "not an allowed value class" in bad({**header, "state": state})
    state = json.loads(json.dumps(header["state"]))
    state["scaler_"]["fields"]["offset_"]["shape"] = [3]
    assert "its header says" in bad({**header, "state": state})
    state = json.loads(json.dumps(header["state"]))
    state["scaler_"]["fields"]["offset_"]["blob"] = 10**6
    assert "refers to blob" in bad({**header, "state": state})
    state = json.loads(json.dumps(header["state"]))
    state["scaler_"]["fields"]["offset_"]["__t"] = "pickle"
    assert "unknown value tag" in bad({**header, "state": state})
    state = json.loads(json.dumps(header["state"]))
    state["scaler_"]["fields"]["extra"] = 1
    assert "fields" in bad({**header, "state": state})


def test_tree_nodes_that_leave_the_tree_are_refused_before_sklearn_walks_them(forest) -> None:
    """An attacker who recomputes the checksum can still not point a node outside its tree."""
    det, _ = forest
    header, payload = split(det.to_bytes())
    nodes_ref = header["state"]["forest_"]["fields"]["estimators_"][0]["fields"]["tree_"]["state"]["nodes"]
    blobs, at = [], 0
    for entry in header["blobs"]:
        blobs.append(payload[at : at + entry["size"]])
        at += entry["size"]
    import io

    nodes = np.load(io.BytesIO(blobs[nodes_ref["blob"]]), allow_pickle=False)
    nodes["left_child"][0] = 10**9  # the root's child far past the end of the node array
    buf = io.BytesIO()
    np.save(buf, nodes, allow_pickle=False)
    blobs[nodes_ref["blob"]] = buf.getvalue()
    header["blobs"][nodes_ref["blob"]]["size"] = len(buf.getvalue())
    with pytest.raises(persist.ModelFormatError, match="outside the tree"):
        load_detector(join(header, b"".join(blobs)))
