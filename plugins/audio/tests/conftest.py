import math

import pytest
import torch

SAMPLE_RATE = 16000


def tone(seconds: float, freqs=(261.63, 329.63, 392.0), rate: int = SAMPLE_RATE, amplitude: float = 0.8,
         decay: float = 1.5) -> torch.Tensor:
    """A decaying chord with three harmonics per note: [T] float32 peaking below ``amplitude``."""
    t = torch.arange(round(seconds * rate), dtype=torch.float64) / rate
    wave = sum(math.pow(0.5, k) * torch.sin(2 * math.pi * f * (k + 1) * t) for f in freqs for k in range(3))
    wave = wave * torch.exp(-decay * t) * (1 - torch.exp(-t * 200))  # 5 ms attack: no click
    return (amplitude * wave / wave.abs().max()).float()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: Griffin-Lim's small FFTs gain nothing from two, and on a shared
    2-core machine two threads that wait on each other ran them 20 times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(name="tone")
def tone_fixture():
    """:func:`tone`: a decaying chord of given seconds."""
    return tone


@pytest.fixture(scope="module")
def audio_cache(tmp_path_factory):
    """Generated sets and the classifier go to one temporary cache per test session (shared by the
    audio test modules that use it)."""
    path = tmp_path_factory.getbasetemp() / "audio_cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FLOWCORE_CACHE", str(path))
        yield path


@pytest.fixture
def needs():
    """``needs(dataset)`` skips the test when a tool the dataset is made with is missing."""
    from flowcore_audio import data

    def skip_unless_available(dataset: str) -> None:
        reason = data.tool_missing(dataset)
        if reason is not None:
            pytest.skip(reason)

    return skip_unless_available


@pytest.fixture
def registry():
    from flowcore.registry import Registry

    return Registry()
