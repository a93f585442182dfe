"""The conformance kit catches the breaks a plugin author makes, and its message shows the difference."""

import re

import pytest
import torch
from pydantic import BaseModel
from torch.utils.data import Dataset

from flowcore.builtins.toy2d import PointsCsv, PointTokenizer, Toy2d
from flowcore.errors import DataError
from flowcore.hookspecs import hookimpl
from flowcore.modality import Tokens
from flowcore.registry import Registry
from flowcore.spec import DatasetSpec, ModalitySpec
from flowcore.testing import (
    check_hook_module_is_light,
    check_modality,
    check_options_reject_typos,
    difference,
    form_difference,
)


class Points(Dataset):
    """Items ``{"toy2d": point}`` from a fixed tensor (of whatever dtype and shape a test gives)."""

    def __init__(self, points: torch.Tensor):
        self.points = points

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, i: int) -> dict:
        return {"toy2d": self.points[i]}


def dataset(points: torch.Tensor) -> DatasetSpec:
    return DatasetSpec("points", ("toy2d",), lambda split: Points(points))


class Plain(Toy2d):
    """toy2d without its own ``validate`` beyond finiteness: the kit alone must catch bad items."""

    def validate(self, sample, where):
        return super(Toy2d, self).validate(sample, where)


def named(modality):
    modality.name = "toy2d"
    return modality


def kit(modality, tmp_path, **kwargs):
    with pytest.raises(AssertionError) as caught:
        check_modality(named(modality), tmp_path, **kwargs)
    return str(caught.value).splitlines()[0]


POINTS = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))


def test_toy2d_passes(tmp_path):
    report = check_modality(named(Plain()), tmp_path, datasets=[dataset(POINTS)])
    assert {"dataset points", "layout agrees with encode", "codec round trip"} <= set(report.passed)


def test_a_float64_dataset_is_caught_without_a_validate(tmp_path):
    message = kit(Plain(), tmp_path, datasets=[dataset(POINTS.double())])
    assert message == "toy2d: dataset 'points' item 0: dtype float64 where generation gives float32"


def test_a_dataset_of_the_wrong_shape_is_caught_without_a_validate(tmp_path):
    message = kit(Plain(), tmp_path, datasets=[dataset(torch.randn(8, 3))])
    assert message == "toy2d: dataset 'points' item 0: shape (3,) where generation gives (2,)"


class TwoTokenLayout(PointTokenizer):
    def layout(self, batch_size, size=None):
        return Tokens(torch.zeros(batch_size, 2, 2), torch.zeros(batch_size, 2, 1),
                      torch.ones(batch_size, 2, dtype=torch.bool))


def test_a_layout_that_disagrees_with_encode_is_caught(tmp_path):
    modality = Plain()
    modality._tokenizer = TwoTokenLayout()
    message = kit(modality, tmp_path, samples=list(POINTS))
    assert message.startswith("toy2d: layout gives values (8, 2, 2), encode of samples gives (8, 1, 2) "
                              "(2 vs 1 tokens per sample)")


class LossyTxt(PointsCsv):
    """Reads and writes .csv exactly, and .txt to one decimal: the second extension is broken."""

    extensions = (".csv", ".txt")

    def write(self, sample, path):
        if self.suffix(path) == ".txt":
            path.write_text(f"x,y\n{float(sample[0]):.1f},{float(sample[1]):.1f}\n")
        else:
            super().write(sample, path)


def test_every_codec_extension_is_round_tripped_and_the_error_located(tmp_path):
    modality = Plain()
    modality.codec = LossyTxt()
    message = kit(modality, tmp_path, samples=list(POINTS))
    found = re.fullmatch(r"toy2d: codec round trip \(\.txt\) changed sample 0: max abs difference (\S+) at index "
                         r"\((\d),\): (\S+) vs (\S+) \(atol 1e-05\)", message)
    assert found, message
    index = int(found[2])
    assert float(found[4]) == pytest.approx(float(POINTS[0, index]), abs=1e-5)
    assert float(found[3]) == round(float(POINTS[0, index]), 1)
    assert float(found[1]) == pytest.approx(abs(float(found[3]) - float(found[4])), rel=1e-3)


def test_differences_name_shape_dtype_key_and_index():
    a = {"wave": torch.zeros(2, 3), "rate": 16000}
    assert difference(a, {"wave": torch.zeros(2, 4), "rate": 16000}, 1e-5) == "['wave']: shape (2, 3) vs (2, 4)"
    b = {"wave": torch.zeros(2, 3), "rate": 16000}
    b["wave"][1, 2] = 0.5
    assert difference(a, b, 1e-5) == "['wave']: max abs difference 0.5 at index (1, 2): 0 vs 0.5 (atol 1e-05)"
    assert difference(a, {"wave": torch.zeros(2, 3)}, 1e-5) == "keys ['rate', 'wave'] vs ['wave']"
    assert difference([1, 2], [1, 3], 0) == "[1]: 2 vs 3"
    assert difference(torch.tensor([1, 2, 3]), torch.tensor([1, 5, 7]), 0) == (
        "2 of 3 entries differ, the first at index (1,): 2 vs 5")
    nan = torch.tensor([float("nan"), 1.0])
    assert difference(nan, nan.clone(), 0) is None
    assert form_difference(torch.zeros(3, dtype=torch.float16), torch.zeros(3), True) == (
        "dtype float16 where generation gives float32")
    assert form_difference(torch.zeros(5), torch.zeros(3), False) is None  # variable size: only dims


def test_a_hook_module_that_imports_torch_is_caught():
    check_hook_module_is_light("flowcore.builtins.plugin")
    with pytest.raises(AssertionError, match=r"importing the hook module 'flowcore.builtins.toy2d' imports "
                                             r"\[.*'torch'.*\]"):
        check_hook_module_is_light("flowcore.builtins.toy2d")


class Loose(BaseModel):
    """An options model that ignores unknown keys: a typo in a config would pass unnoticed."""

    width: int = 1


class Hook:
    def __init__(self, options):
        self.options = options

    @hookimpl
    def flowcore_modalities(self):
        return [ModalitySpec("loose", lambda width=1: named(Plain()), options=self.options)]


@pytest.mark.parametrize("options, expected", [
    (Loose, "modality 'loose': an unknown option 'no_such_option' was accepted; Loose must refuse unknown keys"),
    (None, "modality 'loose': an unknown option 'no_such_option' raised TypeError"),
])
def test_options_that_accept_a_typo_are_caught(options, expected):
    plugin = Hook(options)
    registry = Registry(entry_points=False)
    assert registry.register(plugin, name="loose").ok
    with pytest.raises(AssertionError) as caught:
        check_options_reject_typos(registry, "loose")
    assert str(caught.value).startswith(expected)


def test_builtin_options_refuse_typos(registry):
    check_options_reject_typos(registry, "toy2d", ["moons"])


def test_a_codec_error_that_is_not_a_data_error_is_reported(tmp_path):
    class Crashing(PointsCsv):
        def read_all(self, path):
            if path.stat().st_size < 8:
                raise IndexError("list index out of range")
            return super().read_all(path)

    modality = Plain()
    modality.codec = Crashing()
    message = kit(modality, tmp_path, samples=list(POINTS))
    assert "raised IndexError: list index out of range; a damaged file must raise flowcore.errors.DataError" in message
    assert DataError.__name__ in message
