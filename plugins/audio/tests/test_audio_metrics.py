"""Audio metrics: paired distances, pitch and key against a condition, the spoken-digit classifier."""

import numpy as np
import pytest
import torch

from flowcore.errors import DataError
from flowcore.modality import Metric
from flowcore_audio import data
from flowcore_audio import metrics as M

#: what the classifier must reach on voices it never heard (0.975 with the default recipe and seed 0)
CLASSIFIER_ACCURACY = 0.9


pytestmark = pytest.mark.usefixtures("audio_cache")


def noisy(waves, level: float, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [w + level * torch.randn(w.shape, generator=g) for w in waves]


def melody(pitches, step: float = 0.25, chord=(), program: int = 0, seconds: float = 3.0) -> torch.Tensor:
    """Notes one after another (then an optional chord) rendered by fluidsynth: [T]."""
    slot = [data.program_event(0.0, program)]
    for i, p in enumerate(pitches):
        slot += data.note_events(i * step, (i + 0.95) * step, [p], 90)
    if chord:
        slot += data.note_events(len(pitches) * step, seconds - 0.1, list(chord), 90)
    return torch.from_numpy(data.render_slots([slot], seconds)[0])


def test_lsd_and_mel_l1_are_zero_on_identical_clips_and_grow_with_noise(tone):
    clips = [tone(0.5), tone(0.3, freqs=(440.0,)), tone(1.0, freqs=(110.0, 220.0))]
    for metric in (M.lsd, M.mel_l1):
        assert metric(clips, clips) == 0.0
        scores = [metric(clips, noisy(clips, level)) for level in (1e-3, 1e-2, 1e-1)]
        assert 0 < scores[0] < scores[1] < scores[2], (metric.__name__, scores)


def test_paired_metrics_cut_pairs_to_the_shorter_clip_and_refuse_unpaired_sets(tone):
    a = tone(0.5)
    assert M.lsd([a], [torch.cat([a, torch.zeros(100)])]) == 0.0
    assert M.mel_l1(torch.stack([a, a]), torch.stack([a, a])) == 0.0
    with pytest.raises(DataError, match="pairs"):
        M.lsd([a, a], [a])
    with pytest.raises(DataError, match="no waveforms"):
        M.mel_l1([], [])


def test_the_modality_metrics_follow_the_metric_contract(tone):
    found = M.audio_metrics()
    assert set(found) == {"lsd", "mel_l1", "chroma_similarity"}
    clips = [tone(0.5), tone(0.5, freqs=(370.0, 466.2, 554.4))]
    for m in found.values():
        assert isinstance(m, Metric)
        same, diff = m(clips, clips), m(clips, noisy(clips, 0.3))
        assert (same < diff) if m.lower_is_better else (same > diff), m.name


def test_pyin_finds_the_pitch_of_rendered_notes_and_counts_a_wrong_pitch_as_a_miss(needs):
    needs("notes")
    pitches = [48, 60, 69, 76]
    clips = data.render_slots([[data.program_event(0.0, program), *data.note_events(0.0, 0.6, [p], 90)]
                               for p, program in zip(pitches, (0, 24, 73, 56))], 1.0)
    found = np.array([M.estimate_pitch(c) for c in clips])
    assert np.abs(found - pitches).max() * 100 <= 50, found
    assert M.pitch_accuracy(list(torch.from_numpy(clips)), pitches) == 1.0
    wrong = [pitches[0] + 1, pitches[1], pitches[2] + 12, pitches[3] - 0.75]
    assert M.pitch_accuracy(torch.from_numpy(clips), wrong) == 0.25
    assert M.pitch_accuracy([torch.zeros(16000)], [60]) == 0.0  # silence has no pitch: a miss


def test_key_detection_finds_c_major_and_a_minor_in_rendered_scales(needs):
    needs("notes")
    c_major = melody([60, 62, 64, 65, 67, 69, 71, 72], chord=(48, 60, 64, 67))
    a_minor = melody([57, 59, 60, 62, 64, 65, 68, 69], chord=(45, 57, 60, 64))
    assert data.KEYS[M.estimate_key(c_major)] == "C major"
    assert data.KEYS[M.estimate_key(a_minor)] == "A minor"
    assert M.key_agreement([c_major, a_minor], [0, 21]) == 1.0
    assert M.key_agreement([c_major, a_minor], [7, 0]) == 0.0
    # MIREX credit: a fifth 0.5, relative 0.3 (C major -> A minor), parallel 0.2
    assert M.key_score([c_major, c_major, c_major], [7, 21, 12]) == pytest.approx((0.5 + 0.3 + 0.2) / 3)


def test_key_detection_agrees_with_the_score_on_rendered_chorale_excerpts(needs):
    needs("chorales")
    clips, keys = [], []
    for split in ("train", "val", "test"):
        ds = data.chorales(split, count=4, excerpts=2)
        clips += [ds[i]["audio"] for i in range(len(ds))]
        keys += ds.labels.tolist()
    assert M.key_agreement(clips, keys) >= 0.75


def test_key_profiles_are_krumhansl_kessler_rotated_to_each_tonic():
    assert M.estimate_key_profile(M.MAJOR_PROFILE) == 0
    assert M.estimate_key_profile(np.roll(M.MINOR_PROFILE, 9)) == 21
    assert M.estimate_key_profile(np.roll(M.MAJOR_PROFILE, 7)) == 7
    assert [M.key_relation_score(f, 0) for f in (0, 7, 5, 21, 12, 1)] == [1.0, 0.5, 0.5, 0.3, 0.2, 0.0]
    with pytest.raises(DataError, match="12 values"):
        M.estimate_key_profile(np.ones(7))


def test_chroma_similarity_is_one_for_the_same_chord_and_low_for_a_distant_one(tone):
    c = tone(1.0, freqs=(261.63, 329.63, 392.0))
    f_sharp = tone(1.0, freqs=(369.99, 466.16, 554.37))
    assert M.chroma_similarity([c], [c]) == pytest.approx(1.0)
    assert M.chroma_similarity([c], [f_sharp]) < 0.6


def test_the_digit_classifier_recognises_voices_it_never_heard(needs):
    needs("spoken_digits")
    from flowcore_audio.classifier import load_classifier

    clf = load_classifier()
    assert clf.test_accuracy >= CLASSIFIER_ACCURACY, clf.test_accuracy
    assert clf.path.exists() and load_classifier() is clf
    test = data.spoken_digits("test")
    waves = [test[i]["audio"] for i in range(len(test))]
    assert M.digit_accuracy(clf, waves, test.labels) == pytest.approx(clf.test_accuracy)
    # FAD-style: the held-out voices sit closer to themselves than to the same clips under noise
    half = len(waves) // 2
    same = M.classifier_fd(clf, waves[:half], waves[half:])
    assert same < M.classifier_fd(clf, waves[:half], noisy(waves[half:], 0.3))
    assert "classifier_fd" in M.audio_metrics(classifier=clf)
