"""The audio datasets: valid items, disjoint splits, the same audio from the same seed, clear errors."""

import numpy as np
import pytest
import torch

from flowcore.errors import ConfigError, DataError
from flowcore_audio import data
from flowcore_audio.metrics import key_agreement

SPLITS = ("train", "val", "test")
#: small chorale sets keep the test quick (parsing MusicXML is the slow part)
CHORALES = {"count": 4, "excerpts": 2}


pytestmark = pytest.mark.usefixtures("audio_cache")


def build(registry, name: str, split: str = "train", **options):
    return registry.dataset(name).build(split, **options)


def check_items(ds, seconds: float, classes: int, count: int = 8) -> None:
    """Items are {"audio": float32 [T] in [-1, 1], "label": int} of the stated length and classes,
    and the audio modality takes them as they are."""
    from flowcore.registry import Registry

    audio_modality = Registry().modality("audio")
    assert len(ds) > 0 and len(ds.classes) == classes
    for i in np.linspace(0, len(ds) - 1, count).astype(int):
        item = ds[int(i)]
        assert torch.equal(audio_modality.validate(item["audio"], f"item {i}"), item["audio"])
        assert set(item) == {"audio", "label"}
        audio, label = item["audio"], item["label"]
        assert isinstance(audio, torch.Tensor) and audio.dtype == torch.float32
        assert audio.shape == (int(round(seconds * 16000)),)
        assert audio.abs().max() <= 1.0 and audio.abs().max() > 0.01
        assert type(label) is int and 0 <= label < classes


def test_spoken_digits_items_are_one_second_clips_labelled_with_their_digit(registry, needs):
    needs("spoken_digits")
    ds = build(registry, "spoken_digits")
    check_items(ds, 1.0, 10)
    assert np.bincount(ds.labels, minlength=10).min() == np.bincount(ds.labels).max()  # balanced
    assert ds.classes[7] == "seven"


def test_spoken_digits_val_and_test_hear_voices_training_never_heard(registry, needs):
    needs("spoken_digits")
    voices = {s: set(build(registry, "spoken_digits", s).info["voice"].tolist()) for s in SPLITS}
    assert not voices["train"] & voices["test"] and not voices["train"] & voices["val"]
    assert not voices["val"] & voices["test"]
    assert len(voices["train"] | voices["val"] | voices["test"]) == len(data.VOICES)
    assert {s: len(v) for s, v in voices.items()} == {"train": 49, "val": 7, "test": 14}
    assert data.voice_split(1) != data.voice_split(0)


def test_spoken_digits_are_the_same_audio_from_the_same_seed(registry, tmp_path, monkeypatch, needs):
    needs("spoken_digits")
    full = build(registry, "spoken_digits", "test")
    monkeypatch.setenv("FLOWCORE_CACHE", str(tmp_path))  # made again, not read back
    one_take = build(registry, "spoken_digits", "test", takes=1)
    # takes draw their accent, speed and pitch in turn from (seed, voice): take 0 is the same either way
    first = full.info["take"] == 0
    assert np.array_equal(one_take.pcm, full.pcm[first])
    assert np.array_equal(one_take.info["speed"], full.info["speed"][first])


def test_notes_are_labelled_by_pitch_instrument_or_velocity(registry, needs):
    needs("notes")
    ds = build(registry, "notes")
    check_items(ds, 1.0, 25)
    assert np.array_equal(ds.info["midi"], ds.info["pitch"] + 48)
    assert ds.classes[12] == "C4"
    by_instrument = build(registry, "notes", label="instrument")
    assert by_instrument.classes[0] == "acoustic grand piano" and len(by_instrument.classes) == 6
    assert np.array_equal(by_instrument.labels, ds.info["instrument"])
    assert np.array_equal(build(registry, "notes", label="velocity").labels, ds.info["velocity"])


def test_notes_splits_cut_the_items_into_disjoint_parts(registry, needs):
    needs("notes")
    keys = {s: {tuple(r) for r in np.stack([d.info["instrument"], d.info["midi"], d.info["velocity"]], 1)}
            for s in SPLITS for d in [build(registry, "notes", s)]}
    assert sum(len(k) for k in keys.values()) == 6 * 25 * 3
    assert not keys["train"] & keys["test"] and not keys["train"] & keys["val"]


def test_notes_render_the_same_audio_twice_and_chords_are_louder_than_their_root(registry, tmp_path, monkeypatch,
                                                                                 needs):
    needs("notes")
    small = {"programs": [0], "low": 60, "high": 62, "velocities": [90], "chords": True, "label": "chord"}
    monkeypatch.setenv("FLOWCORE_CACHE", str(tmp_path / "a"))
    first = [build(registry, "notes", s, **small) for s in SPLITS]
    monkeypatch.setenv("FLOWCORE_CACHE", str(tmp_path / "b"))
    again = [build(registry, "notes", s, **small) for s in SPLITS]
    for a, b in zip(first, again):
        assert np.array_equal(a.pcm, b.pcm)
    pcm = np.concatenate([d.pcm for d in first]).astype(np.float64)
    chord = np.concatenate([d.info["chord"] for d in first])
    assert set(chord.tolist()) == {0, 1, 2}
    assert np.abs(pcm[chord == 1]).max() > np.abs(pcm[chord == 0]).max()


def test_chorales_are_excerpts_labelled_with_one_of_24_keys_split_by_chorale(registry, needs):
    needs("chorales")
    parts = {s: build(registry, "chorales", s, **CHORALES) for s in SPLITS}
    check_items(parts["train"], 4.0, 24, count=4)
    assert parts["train"].classes[0] == "C major" and parts["train"].classes[21] == "A minor"
    chorales = {s: set(d.info["chorale"].tolist()) for s, d in parts.items()}
    assert [len(c) for c in chorales.values()] == [2, 1, 1]
    assert not chorales["train"] & (chorales["val"] | chorales["test"])
    by_instrument = build(registry, "chorales", label="instrument", **CHORALES)
    assert by_instrument.classes == ("church organ", "choir aahs", "string ensemble", "acoustic grand piano")
    assert np.array_equal(by_instrument.labels, parts["train"].info["instrument"])


def test_folk_songs_are_melody_excerpts_whose_key_label_matches_their_notes_split_by_song(registry, needs):
    needs("folk_songs")
    options = {"count": 4, "excerpts": 2, "duration": 2.0}
    parts = {s: build(registry, "folk_songs", s, **options) for s in SPLITS}
    check_items(parts["train"], 2.0, 24, count=4)
    songs = {s: set(d.info["song"].tolist()) for s, d in parts.items()}
    assert [len(c) for c in songs.values()] == [2, 1, 1]
    assert not songs["train"] & (songs["val"] | songs["test"])
    # the key label is the Krumhansl-Kessler key of the excerpt's written notes; the rendered
    # sound's chroma agrees with it for most excerpts
    clips = [d[i] for d in parts.values() for i in range(len(d))]
    heard = key_agreement([c["audio"] for c in clips], [c["label"] for c in clips])
    assert heard >= 0.5
    assert len(data.folk_tunes()) > 8000


def test_sonic_pi_clips_are_real_recordings_labelled_by_category_split_by_file(registry, needs):
    needs("sonic_pi")
    parts = {s: build(registry, "sonic_pi", s) for s in SPLITS}
    check_items(parts["train"], 1.0, len(data.SONIC_PI_CLASSES))
    files = {s: set(d.info["recording"].tolist()) for s, d in parts.items()}
    assert not files["train"] & files["test"] and not files["train"] & files["val"]
    assert len(files["train"] | files["val"] | files["test"]) == len(data.sonic_pi_files())
    names = data.sonic_pi_files()
    d = parts["train"]
    for i in range(0, len(d), 50):
        assert names[d.info["recording"][i]].name.startswith(data.SONIC_PI_CLASSES[d.labels[i]])


def test_a_missing_debian_tool_is_a_data_error_naming_its_package(monkeypatch):
    monkeypatch.setattr(data.shutil, "which", lambda tool: None)
    with pytest.raises(DataError, match="apt-get install espeak-ng"):
        data.spoken_digits(takes=5)
    with pytest.raises(DataError, match="fluidsynth"):
        data.render_midi(data.midi_file([]))
    assert "espeak-ng" in data.tool_missing.__wrapped__("spoken_digits")


def test_a_missing_soundfont_or_sample_folder_says_what_to_install(tmp_path):
    with pytest.raises(DataError, match="not found"):
        data.find_soundfont(str(tmp_path / "none.sf2"))
    with pytest.raises(DataError, match="apt-get install sonic-pi-samples"):
        data.sonic_pi(root=str(tmp_path))


def test_dataset_options_are_checked_before_anything_is_made(registry):
    with pytest.raises(ConfigError, match="low"):
        build(registry, "notes", low=80, high=60)
    with pytest.raises(ConfigError, match="label"):
        build(registry, "chorales", label="tempo")
    with pytest.raises(ConfigError, match="takes"):
        build(registry, "spoken_digits", takes=0)


def test_midi_files_hold_note_events_in_time_order():
    midi = data.midi_file([(0.5, bytes([0x90, 60, 100])), (1.0, bytes([0x80, 60, 0])), (0.0, bytes([0xC0, 73]))])
    assert midi[:4] == b"MThd" and midi[14:18] == b"MTrk"
    track = midi[22:]
    # tempo, then the program change at 0, the note-on 500 ticks later (vlq 0x83 0x74), the note-off 500 after
    assert track.index(bytes([0xC0, 73])) < track.index(bytes([0x83, 0x74, 0x90, 60, 100]))
    assert track.endswith(bytes([0x83, 0x74, 0x80, 60, 0, 0x00, 0xFF, 0x2F, 0x00]))


def test_spoken_digits_pass_the_conformance_kit_as_the_audio_modality_s_real_samples(registry, tmp_path, needs):
    needs("spoken_digits")
    from flowcore.testing import check_modality

    # audio is variable-length (sizes in seconds): items need the dtype and dims of generated clips, not their length
    report = check_modality(registry.modality("audio"), tmp_path, datasets=["spoken_digits"], sizes=[0.5, 1.0])
    assert {"dataset spoken_digits", "autoencoder shapes", "codec round trip", "metrics"} <= set(report.passed)
