"""The gallery page in a real browser: headless Chromium loads every image and every audio clip."""

import math
import struct
import wave
import zlib

import pytest

from flowcore.train.gallery import Cell, Column, check_page, find_browser, score_line, write_page

needs_browser = pytest.mark.skipif(find_browser() is None, reason="no headless Chromium (Debian package "
                                                                  "chromium-headless-shell; `make setup` installs it)")


def png(path, width=28, height=28):
    """A grey-gradient PNG written by hand (zlib + struct), so the test needs no imaging library."""
    rows = b"".join(b"\0" + bytes((x * 9 + y * 3) % 256 for x in range(width)) for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))
    return path


def wav(path, seconds=0.5, rate=16000):
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(rate)
        f.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(i * 0.05))) for i in range(int(seconds * rate))))
    return path


def page(tmp_path, broken: bool = False):
    (tmp_path / "label.txt").write_text("7\n")
    rows = []
    for i in range(2):
        image, sound = png(tmp_path / f"image_{i}.png"), wav(tmp_path / f"audio_{i}.wav")
        if broken and i == 1:
            sound.write_bytes(b"RIFF\0\0\0\0WAVEjunk")
        rows.append([Cell([image]), Cell([sound, png(tmp_path / f"audio_{i}_preview.png", 60, 20)], "classified 7"),
                     Cell([tmp_path / "label.txt"])])
    return write_page(tmp_path, "test page", [Column("image"), Column("audio ← image", "class accuracy 0.9"),
                                              Column("label")], rows)


@needs_browser
def test_every_cell_loads_in_headless_chromium(tmp_path):
    shot = tmp_path / "shot.png"
    found = check_page(page(tmp_path), screenshot=shot)
    assert found == {"images": (4, 4), "audio": (2, 2)}
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 2000


@needs_browser
def test_a_broken_clip_is_counted_as_missing(tmp_path):
    assert check_page(page(tmp_path, broken=True))["audio"] == (1, 2)


def test_page_holds_text_scores_and_escapes(tmp_path):
    text = page(tmp_path).read_text()
    assert '<span class="text">7</span>' in text and "class accuracy 0.9" in text
    assert text.count("<audio") == 2 and text.count("<img") == 4
    assert score_line({"class_accuracy": 0.5, "classifier_fd": 3.21}, {"audio.class_accuracy": 0.75}, ["audio"]) == \
        "audio class accuracy 0.500 (real 0.750) · audio classifier FD 3.2"
    joint = {"image": {"class_accuracy": 1.0}, "audio": {}, "class_agreement": 0.25}
    assert score_line(joint, {}, ["image", "audio"]) == "image class accuracy 1.000 · agreement 0.250"
