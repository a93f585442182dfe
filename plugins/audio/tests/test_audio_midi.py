"""MIDI files in: structure checked (against files music21 writes), rendered by fluidsynth at the pitch written."""

import pytest

from flowcore.errors import DataError
from flowcore_audio.codec import AudioCodec
from flowcore_audio.data import midi_file, note_events, program_event
from flowcore_audio.metrics import estimate_pitch
from flowcore_audio.midi import check_midi


def one_note(pitch: int = 69, program: int = 73) -> bytes:
    return midi_file([program_event(0.0, program), *note_events(0.05, 0.85, [pitch], 100)])


def test_note_counts_agree_with_a_file_music21_writes(tmp_path):
    from music21 import chord, note, stream

    part = stream.Stream([note.Note("C4", quarterLength=1), note.Note("E4", quarterLength=0.5),
                          chord.Chord(["G3", "B3", "D4"], quarterLength=2), note.Rest(quarterLength=1),
                          note.Note("A4", quarterLength=1)])
    path = part.write("midi", fp=tmp_path / "m21.mid")
    assert check_midi(path.read_bytes(), "m21.mid") == 6
    assert check_midi(one_note(), "one.mid") == 1


def test_a_rendered_note_sounds_at_its_midi_pitch(tmp_path, needs):
    needs("notes")
    path = tmp_path / "a4.mid"
    path.write_bytes(one_note(69))
    wave = AudioCodec().read(path)  # the codec reads MIDI files through read_midi
    assert ".mid" in AudioCodec.read_only_extensions and ".midi" in AudioCodec.extensions
    assert wave.dtype.is_floating_point and wave.dim() == 1 and len(wave) >= 0.85 * 16000
    assert 0.01 < float(wave.abs().max()) <= 0.99
    assert abs(estimate_pitch(wave) - 69) * 100 <= 50


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:-7], "truncated"),
    (lambda b: b"", "empty"),
    (lambda b: b"RIFF" + b[4:], "not a Standard MIDI File"),
    (lambda b: b[:14] + b"MTrX" + b[18:], "chunk"),
    (lambda b: midi_file([program_event(0.0, 0)]), "no notes"),
])
def test_a_damaged_midi_file_is_one_error_naming_it(tmp_path, damage, message):
    path = tmp_path / "bad.mid"
    path.write_bytes(damage(one_note()))
    with pytest.raises(DataError, match=message) as err:
        AudioCodec().read(path)
    assert "bad.mid" in str(err.value)
