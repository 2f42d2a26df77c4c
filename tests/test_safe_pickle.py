"""Opening a data file never runs code: crafted .bin packs and CIFAR batches whose unpickling would call
os.system are refused with exit 2 and one line naming the file, and the command never runs."""

import os
import pickle
import shlex

import numpy as np
import pytest

from eval_protocols.bins import read_bin, write_bin
from facerec.cli.eval import main as eval_main
from nas_core.cli.search import main as search_main
from nas_core.errors import NasError
from nas_core.safe_pickle import safe_loads


class _RunsShell:
    """Pickles as a call to os.system: plain pickle.load would run the command."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _malicious(marker) -> _RunsShell:
    return _RunsShell(f"touch {shlex.quote(str(marker))}")


def _plain_pickle_runs_it(payload: bytes, marker) -> bool:
    """Control: the payload really is dangerous (plain pickle would run it)."""
    pickle.loads(payload, encoding="bytes")
    ran = marker.exists()
    marker.unlink(missing_ok=True)
    return ran


def test_malicious_bin_is_refused_by_facerec_eval(tmp_path, capsys):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(([b"x", _malicious(marker)], [True]), protocol=2)
    assert _plain_pickle_runs_it(payload, marker)
    data = tmp_path / "bins"
    data.mkdir()
    (data / "lfw.bin").write_bytes(payload)
    model = tmp_path / "model.onnx"
    model.write_bytes(b"never opened: the pack is checked before the model")
    out = tmp_path / "out.json"
    code = eval_main(["--model", str(model), "--data", str(data), "--protocol", "lfw", "--device", "cpu",
                      "--output", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "lfw.bin" in err[0] and "system" in err[0]
    assert not marker.exists()
    assert not out.exists()


def test_malicious_cifar_batch_is_refused_by_nas_search(tmp_path, capsys):
    marker = tmp_path / "pwned"
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    images = np.zeros((20, 3072), dtype=np.uint8)
    good = pickle.dumps({b"data": images, b"labels": [i % 10 for i in range(20)]}, protocol=2)
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"):
        (folder / name).write_bytes(good)
    payload = pickle.dumps({b"data": images, b"labels": _malicious(marker)}, protocol=2)
    assert _plain_pickle_runs_it(payload, marker)
    (folder / "data_batch_3").write_bytes(payload)
    run = tmp_path / "run"
    code = search_main(["--dataset", "cifar10", "--data-root", str(tmp_path), "--size", "tiny", "--output", str(run)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "data_batch_3" in err[0] and "system" in err[0]
    assert not marker.exists()
    assert not run.exists()


def test_real_formats_still_load(tmp_path):
    # A pack written by Python 3 at protocol 2 (bytes via _codecs.encode) and one holding uint8 arrays.
    encoded = [bytes([255, 216, i]) for i in range(4)]
    path = tmp_path / "a.bin"
    path.write_bytes(pickle.dumps((encoded, [True, False]), protocol=2))
    assert read_bin(path)[0] == encoded
    path.write_bytes(pickle.dumps(([np.frombuffer(b, np.uint8) for b in encoded], [True, False]), protocol=5))
    got, issame = read_bin(path)
    assert got == encoded and issame.tolist() == [True, False]
    write_bin(path, encoded, [True, False])
    assert read_bin(path)[0] == encoded
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    for protocol in (2, 4, 5):
        loaded = safe_loads(pickle.dumps({"a": array, "b": (1, 2.5, "s", None)}, protocol=protocol))
        np.testing.assert_array_equal(loaded["a"], array)


@pytest.mark.parametrize("forbidden", [eval, getattr, __import__, pickle.loads])
def test_any_other_global_is_refused(forbidden):
    payload = pickle.dumps(forbidden)
    with pytest.raises(pickle.UnpicklingError, match="refused"):
        safe_loads(payload)


def test_truncated_pickle_is_a_user_error(tmp_path):
    from nas_core.safe_pickle import safe_load

    path = tmp_path / "t.bin"
    path.write_bytes(pickle.dumps(([b"x" * 100] * 2, [True]), protocol=2)[:50])
    with pytest.raises(NasError, match="t.bin: expected a pack"):
        safe_load(path, "a pack")
