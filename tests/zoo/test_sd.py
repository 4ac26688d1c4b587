"""toyshop-sd's builder: tokenizer, folder layout, diffusers compatibility, the build itself."""

from __future__ import annotations

import json

import pytest
import torch

from venomkit.zoo import sd

CAPTIONS = [
    "a photo of a striped blue cotton t-shirt",
    "Meet the orange polka-dot wool sneaker from Lumen. Knitted wool shoe in orange, built for all-day comfort!",
    "Plain red ceramic mug | Kestrel.  Our customers   love this cup; 100% café-grade.",
]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return sd.build_random(tmp_path_factory.mktemp("tiny-sd"), seed=0)


def test_tokenizer_ids_match_open_clip(tmp_path):
    import open_clip

    tokenizer = sd.write_clip_tokenizer(tmp_path / "tok")
    reference = open_clip.get_tokenizer("ViT-B-32")  # the BPE file ships with open_clip
    assert len(tokenizer) == 49408 and tokenizer.model_max_length == 77
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (49406, 49407, 49407)
    for text in CAPTIONS:
        ours = tokenizer(text, padding="max_length", max_length=77, truncation=True).input_ids
        theirs = reference([text])[0].tolist()
        end = theirs.index(49407) + 1  # open_clip pads with 0, SD's tokenizer with <|endoftext|>
        assert ours[:end] == theirs[:end]
        assert set(ours[end:]) <= {49407}


def test_folder_loads_in_diffusers_pipeline(folder):
    from diffusers import StableDiffusionImg2ImgPipeline
    from transformers import CLIPTokenizer

    index = json.loads((folder / "model_index.json").read_text())
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]
    assert index["tokenizer"] == ["transformers", "CLIPTokenizer"]
    assert sorted(p.name for p in (folder / "tokenizer").iterdir()) == ["merges.txt", "tokenizer_config.json", "vocab.json"]
    pipe = StableDiffusionImg2ImgPipeline.from_pretrained(folder, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    assert isinstance(pipe.tokenizer, CLIPTokenizer)
    assert pipe.vae.config.latent_channels == 4 and len(pipe.vae.config.block_out_channels) == 4
    assert pipe.scheduler.config.beta_schedule == "scaled_linear"
    out = pipe(CAPTIONS[0], image=torch.rand(1, 3, 32, 32), strength=0.5, num_inference_steps=4, output_type="pt").images
    assert out.shape == (1, 3, 32, 32)


def test_float16_storage_loads_back_as_float32(tmp_path):
    from safetensors import safe_open

    from venomkit.generators.diffusion import DiffusionImg2Img

    components = sd.make_components(sd.TINY_ARCHITECTURE, seed=1)
    sd.save_sd_folder(components, tmp_path / "half", dtype=torch.float16)
    with safe_open(str(tmp_path / "half" / "unet" / "diffusion_pytorch_model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    assert components["unet"].dtype == torch.float32  # the caller's modules are untouched
    model = DiffusionImg2Img.from_pretrained(tmp_path / "half")
    assert model.dtype == torch.float32
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert model(x, CAPTIONS[0], strength=0.3, num_steps=10).shape == x.shape


def test_components_are_deterministic_from_seed():
    a = sd.make_components(sd.TINY_ARCHITECTURE, seed=3)
    b = sd.make_components(sd.TINY_ARCHITECTURE, seed=3)
    for name in ("vae", "unet", "text_encoder"):
        for pa, pb in zip(a[name].parameters(), b[name].parameters()):
            assert torch.equal(pa, pb)


def test_architecture_validation_names_the_field():
    with pytest.raises(ValueError, match="vae_channels"):
        sd.SDArchitecture(vae_channels=(32, 64, 64))
    with pytest.raises(ValueError, match="image_size"):
        sd.SDArchitecture(image_size=60)
    with pytest.raises(ValueError, match="text_heads"):
        sd.SDArchitecture(text_hidden=64, text_heads=5)
    with pytest.raises(ValueError, match="uncond_prob"):
        sd.SDTraining(uncond_prob=1.5)
    with pytest.raises(ValueError, match="vae_steps"):
        sd.SDTraining(vae_steps=0)


def test_training_steps_lower_the_losses():
    from venomkit.data import toyshop

    components = sd.make_components(sd.TINY_ARCHITECTURE, seed=0)
    from venomkit.zoo.images import fitted_images

    images = fitted_images(toyshop.make(n_users=5, n_items=16, image_size=32, seed=0).catalog, range(16), 32, uint8=True)
    training = sd.SDTraining(vae_steps=30, vae_batch=8, vae_lr=3e-3, unet_steps=30, unet_batch=16, autocast_bf16=False)
    vae_losses = sd.train_vae(components["vae"], images, training, seed=0)
    assert sum(vae_losses[-5:]) < sum(vae_losses[:5])
    latents = sd.encode_latents(components["vae"], images)
    captions = [["a photo of a mug", "a mug"]] * 16
    unet_losses = sd.train_unet(
        components["unet"], components["text_encoder"], components["tokenizer"], components["scheduler"],
        latents / latents.std(), captions, training, seed=0,
    )
    assert all(torch.isfinite(torch.tensor(unet_losses)))
    assert sum(unet_losses[-10:]) < sum(unet_losses[:10])


@pytest.mark.slow
def test_fast_build_writes_a_loadable_folder_and_figures(tmp_path):
    from venomkit.data import toyshop

    dataset = toyshop.make(n_users=20, n_items=60, seed=0)
    figures = sd.build(tmp_path / "toyshop-sd", dataset, fast=True, seed=0)
    for key in ("vae_recon_ssim", "img2img_ssim", "grad_norm_delta", "grad_norm_pixels", "folder_bytes"):
        assert key in figures
    assert figures["grad_norm_delta"] > 0 and figures["grad_norm_pixels"] > 0
    assert figures["pipeline_loads"] is True
    json.dumps(figures)  # goes into the manifest
    again = sd.build(tmp_path / "again", dataset, fast=True, seed=0)
    for part in ("unet", "vae", "text_encoder"):
        name = "model.safetensors" if part == "text_encoder" else "diffusion_pytorch_model.safetensors"
        assert (tmp_path / "toyshop-sd" / part / name).read_bytes() == (tmp_path / "again" / part / name).read_bytes()


def test_shipped_toyshop_sd_meets_the_quality_figures():
    """Issue 3's figures, recomputed on the shipped folder: the held-out items of the build."""
    import dataclasses

    from venomkit.data import toyshop
    from venomkit.zoo import available, resolve

    if "toyshop-sd" not in available():
        pytest.skip("toyshop-sd is not built (venomkit zoo build --only toyshop-sd)")
    training = dataclasses.replace(sd.FULL_TRAINING, extra_items=0)  # only the held-out split is used
    data = sd._prepare_data(toyshop.make(), training, seed=0, image_size=64)
    figures = sd.evaluate_folder(resolve("zoo:toyshop-sd"), data.eval_images, data.eval_captions, seed=0)
    assert figures["vae_recon_ssim"] >= 0.85
    assert figures["img2img_ssim"] >= 0.70 and figures["img2img_strength"] == 0.3 and figures["img2img_steps"] == 20
    assert figures["img2img_clip_similarity"] >= 0.90
    assert figures["grad_norm_delta"] > 0 and figures["grad_norm_pixels"] > 0
