"""The differentiable img2img loop over a tiny random-weight Stable Diffusion folder."""

from __future__ import annotations

import shutil

import pytest
import torch

from venomkit.generators.diffusion import DiffusionImg2Img, img2img_timesteps
from venomkit.models.resolve import resolve_model
from venomkit.zoo import sd

CAPTIONS = ["a photo of a plain red ceramic mug", "a photo of a striped blue cotton t-shirt", "a photo of a green hat"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return sd.build_random(tmp_path_factory.mktemp("tiny-sd"), seed=0)


@pytest.fixture(scope="module")
def model(folder):
    torch.manual_seed(0)
    return DiffusionImg2Img.from_pretrained(folder)


@pytest.fixture()
def images():
    return torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_matches_diffusers_img2img_pipeline(folder, model, images):
    from diffusers import StableDiffusionImg2ImgPipeline

    pipe = StableDiffusionImg2ImgPipeline.from_pretrained(folder, safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        ours = model(images[:1], CAPTIONS[0], strength=0.5, num_steps=10, seed=3)
        # Passing latents skips the pipeline's posterior *sampling*, so both start from the same z_0.
        z0 = model.encode_images(images[:1])
        theirs = pipe(
            CAPTIONS[0],
            image=z0,
            strength=0.5,
            num_inference_steps=10,
            guidance_scale=1.0,
            generator=torch.Generator().manual_seed(3),
            output_type="pt",
        ).images
    assert theirs.shape == ours.shape == (1, 3, 32, 32)
    assert torch.allclose(ours, theirs, atol=1e-4)


def test_timesteps_follow_strength(model):
    ts = img2img_timesteps(model.scheduler, 20, 0.3)
    assert ts.tolist() == [251, 201, 151, 101, 51, 1]
    assert len(img2img_timesteps(model.scheduler, 20, 0.0)) == 0
    assert len(img2img_timesteps(model.scheduler, 20, 1.0)) == 20


def test_output_range_and_shape(model, images):
    with torch.no_grad():
        out = model(images, CAPTIONS, strength=0.6, num_steps=10)
    assert out.shape == images.shape
    assert out.min() >= 0 and out.max() <= 1


def test_gradients_reach_delta_and_pixels(model, images):
    x = images.clone().requires_grad_(True)
    delta = torch.zeros(model.latent_shape(3, 32, 32), requires_grad=True)
    out = model(x, CAPTIONS, strength=0.5, num_steps=10, delta=delta, inject_step=0)
    out.square().mean().backward()
    assert delta.grad is not None and delta.grad.norm() > 0
    assert x.grad is not None and x.grad.norm() > 0
    # Each image's delta only affects that image.
    assert all(delta.grad[i].norm() > 0 for i in range(3))


def test_step_checkpointing_gives_the_same_gradient(model, images):
    grads = []
    for use in (False, True):
        delta = torch.zeros(model.latent_shape(3, 32, 32), requires_grad=True)
        out = model(images, CAPTIONS, strength=0.5, num_steps=10, delta=delta, checkpoint_steps=use)
        out.mean().backward()
        grads.append(delta.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_injection_at_step_k_changes_the_output(model, images):
    shape = model.latent_shape(3, 32, 32)
    delta = torch.randn(shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        base = model(images, CAPTIONS, strength=0.5, num_steps=10)
        zero = model(images, CAPTIONS, strength=0.5, num_steps=10, delta=torch.zeros(shape), inject_step=2)
        early = model(images, CAPTIONS, strength=0.5, num_steps=10, delta=delta, inject_step=0)
        late = model(images, CAPTIONS, strength=0.5, num_steps=10, delta=delta, inject_step=4)
        scaled = model(images, CAPTIONS, strength=0.5, num_steps=10, delta=delta, eta=0.0, inject_step=4)
    assert torch.equal(zero, base)
    assert torch.equal(scaled, base)
    assert (late - base).abs().mean() > 1e-3
    assert (early - late).abs().mean() > 1e-4


def test_strength_zero_is_the_vae_round_trip(model, images):
    with torch.no_grad():
        result = model.run(images, CAPTIONS, strength=0.0, num_steps=20)
        recon = model.decode_latents(model.encode_images(images))
    assert len(result.timesteps) == 0
    assert torch.allclose(result.images, recon, atol=1e-6)
    # With no steps, delta goes straight onto the clean latent.
    delta = torch.randn(model.latent_shape(3, 32, 32))
    with torch.no_grad():
        pushed = model(images, CAPTIONS, strength=0.0, delta=delta, inject_step=0)
        expected = model.decode_latents(model.encode_images(images) + delta)
    assert torch.allclose(pushed, expected, atol=1e-6)


def test_batched_equals_per_item(model, images):
    with torch.no_grad():
        batched = model(images, CAPTIONS, strength=0.5, num_steps=10, seed=[5, 6, 7], guidance_scale=2.0)
        single = torch.cat(
            [model(images[i : i + 1], CAPTIONS[i], strength=0.5, num_steps=10, seed=5 + i, guidance_scale=2.0) for i in range(3)]
        )
    assert torch.allclose(batched, single, atol=1e-5)


def test_guidance_and_seed_matter(model, images):
    with torch.no_grad():
        plain = model(images, CAPTIONS, strength=0.8, num_steps=10, seed=0)
        guided = model(images, CAPTIONS, strength=0.8, num_steps=10, seed=0, guidance_scale=4.0)
        reseeded = model(images, CAPTIONS, strength=0.8, num_steps=10, seed=1)
        again = model(images, CAPTIONS, strength=0.8, num_steps=10, seed=0)
    assert not torch.allclose(plain, guided)
    assert not torch.allclose(plain, reseeded)
    assert torch.equal(plain, again)


def test_components_are_frozen_and_stay_in_eval(model):
    model.train()
    assert not any(p.requires_grad for p in model.parameters())
    assert not model.unet.training and not model.vae.training and not model.text_encoder.training


def test_bad_inputs_are_named(model, images):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model(images * 2, CAPTIONS)
    with pytest.raises(ValueError, match="multiples of 8"):
        model(images[:, :, :30, :30], CAPTIONS)
    with pytest.raises(ValueError, match="delta"):
        model(images, CAPTIONS, delta=torch.zeros(3, 4, 2, 2))
    with pytest.raises(ValueError, match="inject_step"):
        model(images, CAPTIONS, strength=0.3, num_steps=10, delta=torch.zeros(model.latent_shape(3, 32, 32)), inject_step=9)
    with pytest.raises(ValueError, match="texts"):
        model(images, CAPTIONS[:2])
    with pytest.raises(ValueError, match="strength"):
        model(images, CAPTIONS, strength=1.5)


def test_zoo_name_and_local_dir_load_the_same_folder(folder, monkeypatch, tmp_path):
    shutil.copytree(folder, tmp_path / "toyshop-sd")
    monkeypatch.setenv("VENOMKIT_ZOO", str(tmp_path))
    assert resolve_model("zoo:toyshop-sd") == tmp_path / "toyshop-sd"
    assert resolve_model(f"local-dir:{folder}") == folder
    model = DiffusionImg2Img.from_pretrained("zoo:toyshop-sd")
    assert model.vae_scale_factor == 8 and model.latent_channels == 4


def test_uncached_hub_id_fails_with_one_clear_sentence():
    # from_pretrained passes local_files_only=True for hub ids: no network is tried.
    with pytest.raises(FileNotFoundError, match="venomkit-missing/stable-diffusion-nothing.*local Hugging Face cache"):
        DiffusionImg2Img.from_pretrained("venomkit-missing/stable-diffusion-nothing")
    with pytest.raises(FileNotFoundError, match="neither a zoo name"):
        DiffusionImg2Img.from_pretrained("./no/such/folder/here")
