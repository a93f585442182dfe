"""diffusers SD3 / Flux transformers convert to FlowTransformers with the same outputs (fp32, 1e-4)."""

import pytest
import torch

from flowcore.errors import ConfigError
from flowcore.modality import Tokens
from flowcore.nn import FlowTransformerConfig
from flowcore.nn.convert import from_diffusers, sd3_image_tokens, sd3_unpatchify, text_tokens

diffusers = pytest.importorskip("diffusers")


def randomize(model, seed):
    """diffusers zero-inits nothing we could hide behind, but make every weight matter anyway."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.2 * torch.randn_like(p))
    return model.eval()


def sd3_model(qk_norm=None, seed=0):
    return randomize(diffusers.SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=4, num_layers=2, attention_head_dim=8, num_attention_heads=2,
        joint_attention_dim=12, caption_projection_dim=16, pooled_projection_dim=6, out_channels=4,
        pos_embed_max_size=12, qk_norm=qk_norm), seed)


def flux_model(guidance=False, seed=0):
    return randomize(diffusers.FluxTransformer2DModel(
        patch_size=1, in_channels=8, num_layers=2, num_single_layers=2, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=12, pooled_projection_dim=6, guidance_embeds=guidance,
        axes_dims_rope=(4, 6, 6)), seed)


def sd3_inputs(height, width, b=2):
    g = torch.Generator().manual_seed(5)
    return (torch.randn(b, 4, height, width, generator=g), torch.randn(b, 7, 12, generator=g),
            torch.randn(b, 6, generator=g), torch.rand(b, generator=g))


@pytest.mark.parametrize("qk_norm", [None, "rms_norm"])
@pytest.mark.parametrize("size", [(8, 8), (6, 10)])  # the trained size, and a non-square crop of the table
def test_sd3_conversion_gives_the_same_velocity(qk_norm, size):
    theirs = sd3_model(qk_norm)
    ours = from_diffusers(theirs)
    x, txt, pooled, t = sd3_inputs(*size)
    with torch.no_grad():
        expected = theirs(hidden_states=x, encoder_hidden_states=txt, pooled_projections=pooled,
                          timestep=1000 * t).sample
        v = ours({"image": sd3_image_tokens(x, 2), "text": text_tokens(txt)}, {"image": t, "text": t}, cond=pooled)
    assert set(v) == {"image"}
    torch.testing.assert_close(sd3_unpatchify(v["image"], 2, *size), expected, atol=1e-4, rtol=1e-4)
    # the converted config survives the YAML form a training run saves next to the weights
    assert FlowTransformerConfig.from_dict(ours.config.to_dict()) == ours.config


def flux_inputs(b=2, h=3, w=4):
    g = torch.Generator().manual_seed(6)
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ids = torch.stack([torch.zeros_like(rows), rows, cols], -1).reshape(-1, 3).float()
    return (torch.randn(b, h * w, 8, generator=g), ids, torch.randn(b, 5, 12, generator=g),
            torch.randn(b, 6, generator=g), torch.rand(b, generator=g))


@pytest.mark.parametrize("guidance", [False, True])
def test_flux_conversion_gives_the_same_velocity(guidance):
    theirs = flux_model(guidance)
    ours = from_diffusers(theirs)
    x, ids, txt, pooled, t = flux_inputs()
    g = torch.tensor([3.5, 1.0]) if guidance else None
    with torch.no_grad():
        expected = theirs(hidden_states=x, encoder_hidden_states=txt, pooled_projections=pooled, timestep=t,
                          img_ids=ids, txt_ids=torch.zeros(5, 3), guidance=g).sample
        image = Tokens(x, ids.expand(2, -1, -1), torch.ones(2, 12, dtype=torch.bool))
        v = ours({"image": image, "text": text_tokens(txt, 3)}, {"image": t, "text": t}, cond=pooled, guidance=g)
    torch.testing.assert_close(v["image"], expected, atol=1e-4, rtol=1e-4)


def test_conversion_reads_a_saved_directory_and_a_pipeline_layout(tmp_path):
    theirs = flux_model(seed=1)
    theirs.save_pretrained(tmp_path / "pipe" / "transformer")
    from_dir = from_diffusers(tmp_path / "pipe")
    from_memory = from_diffusers(theirs)
    for (k, a), (_, b) in zip(from_dir.state_dict().items(), from_memory.state_dict().items()):
        assert torch.equal(a, b), k


def test_unsupported_models_and_mismatched_weights_raise_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="UNet2DModel"):
        from_diffusers(diffusers.UNet2DModel(sample_size=8, block_out_channels=(8, 8), norm_num_groups=4,
                                             down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2))
    theirs = sd3_model()
    theirs.save_pretrained(tmp_path / "sd3")
    (tmp_path / "sd3" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ConfigError, match="missing weights"):
        from_diffusers(tmp_path / "sd3")
