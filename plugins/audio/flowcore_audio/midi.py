"""Standard MIDI files as sound: checked here, then rendered by fluidsynth with the General MIDI soundfont.

    file.mid --check_midi (chunks, events, notes)--> bytes --fluidsynth (flowcore_audio.data.render_midi)-->
    mono float32 [T] at the codec's rate, scaled down to peak 0.99 if louder

A file is read in full before anything is rendered, so that a corrupt one is one clear
``DataError`` naming it rather than whatever fluidsynth makes of it: the header chunk
(``MThd``: format 0-2, at least one track, a non-zero division), every track chunk (``MTrk``)
within the file, and every event inside a track complete (delta times, running status, meta
and system-exclusive lengths). A file without a single note-on is refused too: it would render
as silence.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from flowcore.errors import DataError

MIDI_SUFFIXES = (".mid", ".midi")
#: data bytes of the channel messages 0x80-0xE0 (by the high nibble)
DATA_BYTES = {0x8: 2, 0x9: 2, 0xA: 2, 0xB: 2, 0xC: 1, 0xD: 1, 0xE: 2}
#: a rendered file louder than this is scaled down to it
PEAK = 0.99


class _Reader:
    """Bytes read front to back; running past the end is a DataError naming the file."""

    def __init__(self, data: bytes, where: str):
        self.data, self.pos, self.where = data, 0, where

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise DataError(f"{self.where}: truncated MIDI file ({what} runs past the end at byte {self.pos}); "
                            "re-export it")
        out = self.data[self.pos: self.pos + n]
        self.pos += n
        return out

    def byte(self, what: str) -> int:
        return self.take(1, what)[0]

    def vlq(self, what: str) -> int:
        """A variable-length quantity (7 bits a byte, at most 4 bytes)."""
        value = 0
        for _ in range(4):
            b = self.byte(what)
            value = (value << 7) | (b & 0x7F)
            if not b & 0x80:
                return value
        raise DataError(f"{self.where}: corrupt MIDI file (a {what} longer than 4 bytes at byte {self.pos})")


def check_midi(data: bytes, where: str) -> int:
    """Check a Standard MIDI File's structure; return its count of note-ons (velocity > 0).

    Raises DataError naming ``where`` for anything that is not a complete MIDI file with notes.
    """
    r = _Reader(data, where)
    if len(data) == 0:
        raise DataError(f"{where}: the file is empty")
    if data[:4] != b"MThd":
        raise DataError(f"{where}: not a Standard MIDI File (it does not start with 'MThd')")
    r.take(4, "header")
    length = int.from_bytes(r.take(4, "header length"), "big")
    header = r.take(length, "header")
    if length < 6:
        raise DataError(f"{where}: corrupt MIDI header ({length} bytes, at least 6 needed)")
    fmt, tracks, division = (int.from_bytes(header[i: i + 2], "big") for i in (0, 2, 4))
    if fmt > 2 or tracks == 0 or division == 0:
        raise DataError(f"{where}: corrupt MIDI header (format {fmt}, {tracks} tracks, division {division})")
    notes = 0
    for track in range(tracks):
        kind = r.take(4, f"track {track}'s chunk")
        size = int.from_bytes(r.take(4, f"track {track}'s length"), "big")
        body = r.take(size, f"track {track} ({size} bytes)")
        if kind != b"MTrk":
            raise DataError(f"{where}: corrupt MIDI file (chunk {kind!r} where track {track} should be)")
        notes += _track_notes(_Reader(body, f"{where} (track {track})"))
    if notes == 0:
        raise DataError(f"{where}: the MIDI file holds no notes (nothing to render)")
    return notes


def _track_notes(r: _Reader) -> int:
    """Walk one track's events; count note-ons with a velocity."""
    notes, status = 0, None
    while r.pos < len(r.data):
        r.vlq("delta time")
        first = r.byte("event")
        if first == 0xFF:  # meta event: type, length, data
            r.byte("meta type")
            r.take(r.vlq("meta length"), "meta event")
            continue
        if first in (0xF0, 0xF7):  # system exclusive: length, data
            r.take(r.vlq("sysex length"), "sysex event")
            continue
        if first & 0x80:
            status, args = first, []
        elif status is None:
            raise DataError(f"{r.where}: corrupt MIDI track (a data byte with no status before it at byte {r.pos})")
        else:
            args = [first]  # running status: the previous status byte again
        need = DATA_BYTES.get(status >> 4)
        if need is None:
            raise DataError(f"{r.where}: corrupt MIDI track (status byte 0x{status:02X} at byte {r.pos})")
        args += list(r.take(need - len(args), "event data"))
        if status >> 4 == 0x9 and args[1] > 0:
            notes += 1
    return notes


def read_midi(path: Path, sample_rate: int = 16000, soundfont: str | None = None) -> torch.Tensor:
    """A .mid/.midi file -> mono float32 [T] at ``sample_rate``, rendered by fluidsynth (reverb and
    chorus off) with the General MIDI soundfont (``soundfont``: another .sf2). A render that peaks
    above :data:`PEAK` is scaled down to it."""
    from flowcore_audio.data import render_midi

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the MIDI file ({exc})") from exc
    check_midi(data, str(path))
    wave = render_midi(data, sample_rate, soundfont)
    if len(wave) == 0 or not np.isfinite(wave).all():
        raise DataError(f"{path}: fluidsynth rendered no usable audio from this MIDI file")
    peak = float(np.abs(wave).max())
    if peak > PEAK:
        wave = wave * (PEAK / peak)
    return torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
