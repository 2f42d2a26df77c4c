"""Genotype: JSON round trip and validation errors users can act on."""

import json

import pytest

from nas_core.errors import NasError
from nas_core.genotype import Genotype


def test_round_trip_json_and_dict():
    genotype = Genotype(4, 32, ("sep", "conv", "sep", "conv"), (3, 5, 5, 3))
    assert Genotype.from_json(genotype.to_json()) == genotype
    assert Genotype.from_dict(genotype.to_dict()) == genotype
    assert genotype.key() == "d4-w32-scsc-3553"
    assert hash(Genotype.from_json(genotype.to_json())) == hash(genotype)


def test_reads_trace_ops_as_integers_and_a_whole_result_json(tmp_path):
    genotype = Genotype.from_dict({"depth": 3, "width": 8, "ops": [0, 1, 0], "kernels": [3, 3, 5]})
    assert genotype.ops == ("sep", "conv", "sep")
    path = tmp_path / "result.json"
    path.write_text(json.dumps({"genotype": genotype.to_dict(), "params": 123}))
    assert Genotype.load(path) == genotype


def test_helpers():
    genotype = Genotype.uniform(3, 16)
    assert genotype.ops == ("sep",) * 3 and genotype.kernels == (3,) * 3
    changed = genotype.with_layer(1, op="conv", kernel=5).with_width(12)
    assert changed == Genotype(3, 12, ("sep", "conv", "sep"), (3, 5, 3))
    assert genotype.ops == ("sep",) * 3  # frozen: the original is untouched


@pytest.mark.parametrize(("data", "message"), [
    ({"depth": 3, "width": 8, "ops": ["sep"] * 2, "kernels": [3] * 3}, r"expected 3 ops \(one per layer\), got 2"),
    ({"depth": 3, "width": 8, "ops": ["sep"] * 3, "kernels": [3] * 4}, r"expected 3 kernels \(one per layer\), got 4"),
    ({"depth": 2, "width": 8, "ops": ["sep", "max"], "kernels": [3, 3]}, "expected ops in"),
    ({"depth": 2, "width": 8, "ops": ["sep", "sep"], "kernels": [3, 7]}, "expected kernels in"),
    ({"depth": 0, "width": 8, "ops": [], "kernels": []}, "expected depth to be a positive integer"),
    ({"depth": 2, "width": -1, "ops": ["sep"] * 2, "kernels": [3] * 2}, "expected width to be a positive integer"),
    ({"depth": 2, "ops": ["sep"] * 2, "kernels": [3] * 2}, "missing width"),
    ({"depth": "x", "width": 4, "ops": ["sep"], "kernels": [3]}, "expected integer depth"),
    ([1, 2], "expected an object"),
])
def test_validation_errors_are_clear(data, message):
    with pytest.raises(NasError, match=message) as info:
        Genotype.from_dict(data, where="arch.json")
    assert str(info.value).startswith("arch.json: ")


def test_constructor_validates_too():
    with pytest.raises(NasError, match="expected 2 ops"):
        Genotype(2, 8, ("sep",), (3, 3))


def test_bad_files(tmp_path):
    with pytest.raises(NasError, match="file not found"):
        Genotype.load(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{depth: 3")
    with pytest.raises(NasError, match=r"broken.json: expected JSON"):
        Genotype.load(broken)
