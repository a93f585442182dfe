"""Mel patch tokens: exact round trips with masks, layouts that agree with encode."""

import pytest
import torch

from flowcore.errors import DataError
from flowcore_audio.autoencoder import MelAutoencoder
from flowcore_audio.mel import SILENCE, LogMel
from flowcore_audio.tokenizer import MelTokenizer, latent_frames


def encode_waves(waves, patch=(8, 8)):
    lengths = torch.tensor([len(w) for w in waves])
    batch = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        batch[i, : len(w)] = w
    return MelAutoencoder(LogMel(), patch[0]).encode({"wave": batch, "lengths": lengths})


def test_latent_frames_round_up_to_whole_tokens():
    assert latent_frames(16000, 160, 8) == 104  # 101 STFT frames
    assert latent_frames(8000, 160, 8) == 56  # 51
    assert latent_frames(1119, 160, 8) == 8  # 7
    assert latent_frames(torch.tensor([16000, 1120]), 160, 4).tolist() == [104, 8]


def test_round_trip_is_exact_with_masks_for_two_lengths(tone):
    latent = encode_waves([tone(1.0), tone(0.5)])
    assert latent["mel"].shape == (2, 1, 64, 104) and latent["frames"].tolist() == [104, 56]
    assert (latent["mel"][1, ..., 56:] == SILENCE).all()
    tok = MelTokenizer()
    tokens = tok.encode(latent)
    assert tokens.values.shape == (2, 13 * 8, 64) and tokens.positions.shape == (2, 104, 2)
    assert tokens.mask.sum(1).tolist() == [104, 7 * 8]
    assert not tokens.mask[1, 56:].any()  # time-major: the padding comes last
    back = tok.decode(tokens)
    assert torch.equal(back["mel"], latent["mel"]) and torch.equal(back["frames"], latent["frames"])


def test_decode_fills_padding_with_silence_whatever_its_values():
    tok = MelTokenizer(patch=(4, 16))
    latent = {"mel": torch.rand(2, 1, 64, 12) * 2 - 1, "frames": torch.tensor([12, 4])}
    latent["mel"][1, ..., 4:] = SILENCE
    tokens = tok.encode(latent)
    noisy = tokens.with_values(torch.where(tokens.mask[..., None], tokens.values, torch.randn_like(tokens.values)))
    assert torch.equal(tok.decode(noisy)["mel"], latent["mel"])


def test_channels_hold_a_patch_of_bins_by_frames():
    tok = MelTokenizer(n_mels=4, patch=(3, 2), sample_rate=100, hop=1)
    mel = torch.arange(4 * 6.0).reshape(1, 1, 4, 6)  # value = 6 bin + frame
    tokens = tok.encode({"mel": mel, "frames": torch.tensor([6])})
    assert tok.channels == 6 and tokens.values.shape == (1, 4, 6)
    assert tokens.positions[0].tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert tokens.values[0, 1].tolist() == [12, 13, 14, 18, 19, 20]  # bins 2-3, frames 0-2


@pytest.mark.parametrize("seconds", [1.0, 0.5, 0.07, 2.25])
def test_layout_agrees_with_encode(tone, seconds):
    tok = MelTokenizer()
    encoded = tok.encode(encode_waves([tone(seconds)]))
    blank = tok.layout(1, seconds)
    assert blank.values.shape == encoded.values.shape and blank.values.shape[-1] == tok.channels
    assert torch.equal(blank.positions, encoded.positions) and torch.equal(blank.mask, encoded.mask)
    assert blank.positions.shape[-1] == tok.position_axes == 2
    assert not blank.values.any()


def test_layout_takes_durations_in_turn_and_a_default():
    tok = MelTokenizer(duration=0.5)
    tokens = tok.layout(3, [1.0, 0.5])
    assert tokens.mask.sum(1).tolist() == [104, 56, 104]
    assert tok.layout(2).mask.sum(1).tolist() == [56, 56]
    assert tok.layout(1, 2).mask.sum().item() == 26 * 8
    with pytest.raises(DataError, match="positive seconds"):
        tok.layout(1, 0)
