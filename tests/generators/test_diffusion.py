"""The differentiable img2img loop: a tiny random-weight Stable Diffusion folder, and zoo:toyshop-sd where a trained model helps."""

from __future__ import annotations

import shutil

import pytest
import torch

from venomkit.encoders.preprocess import resize_images
from venomkit.generators.diffusion import DiffusionImg2Img, LatentInjection, img2img_timesteps, run_step_index
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


@pytest.fixture(scope="module")
def toyshop():
    """zoo:toyshop-sd (trained, 64 px working size)."""
    return DiffusionImg2Img.from_pretrained("zoo:toyshop-sd")


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


# ----------------------------------------------------------------------- hooks and stages
def test_matches_diffusers_pipeline_batched_with_and_without_guidance(toyshop):
    """The same components in diffusers' pipeline, one generator per image: measured max difference 0.0."""
    from diffusers import DDIMScheduler, StableDiffusionImg2ImgPipeline

    m = toyshop
    pipe = StableDiffusionImg2ImgPipeline(
        vae=m.vae, unet=m.unet, text_encoder=m.text_encoder, tokenizer=m.tokenizer,
        scheduler=DDIMScheduler.from_config(m.scheduler.config), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for guidance in (1.0, 3.0):
        with torch.no_grad():
            ours = m(x, CAPTIONS[:2], strength=0.5, num_steps=20, seed=[3, 4], guidance_scale=guidance)
            # Latents as the image skip the pipeline's posterior sampling: both start from the same z_0.
            theirs = pipe(
                CAPTIONS[:2],
                image=m.encode_images(x),
                strength=0.5,
                num_inference_steps=20,
                guidance_scale=guidance,
                generator=[torch.Generator().manual_seed(s) for s in (3, 4)],
                output_type="pt",
            ).images
        assert (ours - theirs).abs().max() <= 1e-6, guidance  # measured: 0.0 (bit-identical) on CPU float32


def test_the_stages_compose_to_run(toyshop, images):
    m, x = toyshop, torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        whole = m.run(x, CAPTIONS[:2], strength=0.5, num_steps=10, seed=[1, 2])
        schedule = m.get_timesteps(10, 0.5)
        cond = m.encode_prompt(CAPTIONS[:2], 2)
        latents, init = m.prepare_latents(x, schedule, seed=[1, 2])
        final = m.denoise(latents, schedule, cond)
        staged = m.decode_latents(final)
    assert schedule.timesteps.tolist() == [401, 301, 201, 101, 1] and schedule.start == 5
    assert torch.equal(whole.images, staged) and torch.equal(whole.init_latents, init) and torch.equal(whole.latents, final)


def test_no_text_is_the_real_encoded_empty_prompt(toyshop):
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        none = toyshop(x, None, strength=0.5, num_steps=10)
        empty = toyshop(x, ["", ""], strength=0.5, num_steps=10)
        zeros = toyshop(x, prompt_embeds=torch.zeros_like(toyshop.encode_prompts(["", ""])), strength=0.5, num_steps=10)
    assert torch.equal(none, empty)
    assert (zeros - none).abs().max() > 1e-3  # the AUV-Fusion port's all-zero "empty prompt" is another condition


def _mlp_delta_grads(model, x, lin, z, **kwargs):
    """Gradients of delta and of the Linear that made it, and how often the UNet's conv_in and first resnet ran.

    Pre-hooks count the calls: a checkpointed recomputation stops as soon as it has what the
    backward pass needs, so a forward (post-)hook would not see it.
    """
    lin.zero_grad()
    calls = {"conv_in": 0, "resnet": 0}
    hooks = [
        model.unet.conv_in.register_forward_pre_hook(lambda *_: calls.__setitem__("conv_in", calls["conv_in"] + 1)),
        model.unet.down_blocks[0].resnets[0].register_forward_pre_hook(lambda *_: calls.__setitem__("resnet", calls["resnet"] + 1)),
    ]
    delta = lin(z).view(model.latent_shape(*x.shape[:1], *x.shape[2:]))
    delta.retain_grad()
    out = model(x, CAPTIONS, strength=0.5, num_steps=10, delta=delta, inject_step=1, **kwargs)
    out.square().mean().backward()
    for hook in hooks:
        hook.remove()
    return [delta.grad.clone(), lin.weight.grad.clone(), lin.bias.grad.clone()], calls


def test_gradients_reach_an_mlp_through_the_loop_equal_with_checkpointing(folder, model, images):
    """An nn.Linear maps a vector to delta (AUV-Fusion's MLP): its weights get the same gradient with or without checkpointing."""
    torch.manual_seed(0)
    shape = model.latent_shape(3, 32, 32)
    lin = torch.nn.Linear(6, shape[1] * shape[2] * shape[3])
    with torch.no_grad():
        lin.weight.mul_(0.1)
    z = torch.randn(3, 6)
    plain, calls = _mlp_delta_grads(model, images, lin, z)
    assert calls == {"conv_in": 5, "resnet": 5}  # 5 steps run
    steps, calls = _mlp_delta_grads(model, images, lin, z, checkpoint_steps=True)
    # Each step after the injection is recomputed in the backward pass (step 0 needs no gradient).
    assert calls == {"conv_in": 9, "resnet": 9}
    blocks_model = DiffusionImg2Img.from_pretrained(folder)
    blocks_model.enable_gradient_checkpointing(vae=True)
    blocks, calls = _mlp_delta_grads(blocks_model, images, lin, z)
    assert calls == {"conv_in": 5, "resnet": 9}  # each UNet block recomputed (in eval mode too)
    both, _ = _mlp_delta_grads(blocks_model, images, lin, z, checkpoint_steps=True)
    for grad in plain:
        assert grad.norm() > 0
    for other in (steps, blocks, both):
        for a, b in zip(plain, other):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)


def test_zero_injection_is_plain_img2img_exactly(toyshop):
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    shape = toyshop.latent_shape(2, 64, 64)
    delta = torch.randn(shape, generator=torch.Generator().manual_seed(3)).requires_grad_(True)
    plain = toyshop(x, CAPTIONS[:2], strength=0.5, num_steps=20)
    no_eta = toyshop(x, CAPTIONS[:2], strength=0.5, num_steps=20, delta=delta, eta=0.0, inject_step=3, checkpoint_steps=True)
    no_delta = toyshop(x, CAPTIONS[:2], strength=0.5, num_steps=20, delta=torch.zeros(shape), inject_step=0)
    assert torch.equal(plain, no_eta) and torch.equal(plain, no_delta)
    no_eta.sum().backward()  # still in the graph, with a zero gradient
    assert delta.grad is not None and delta.grad.abs().max() == 0


def test_callback_sees_every_step_and_can_change_the_latents(toyshop):
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    calls = []

    def record(k, t, z):
        calls.append((k, int(t), tuple(z.shape), z.dtype))
        return z

    shift = torch.full(toyshop.latent_shape(1, 64, 64), 0.3)

    def push(k, t, z):
        return z + shift if k == 2 else z

    with torch.no_grad():
        plain = toyshop(x, CAPTIONS[:2], strength=0.5, num_steps=10, callback=record)
        pushed = toyshop(x, CAPTIONS[:2], strength=0.5, num_steps=10, callback=[push, record])
        injected = toyshop(x, CAPTIONS[:2], strength=0.5, num_steps=10, delta=shift, inject_step=2)
        as_callback = toyshop(x, CAPTIONS[:2], strength=0.5, num_steps=10, callback=LatentInjection(shift, 1.0, 2))
    expected = [(k, t, (2, 4, 8, 8), torch.float32) for k, t in enumerate([401, 301, 201, 101, 1, 0])]
    assert calls == expected * 2  # before each UNet call, then once on the final clean latent
    assert (pushed - plain).abs().mean() > 1e-3
    assert torch.equal(pushed, injected) and torch.equal(pushed, as_callback)
    with pytest.raises(ValueError, match="callback"):
        toyshop(x, CAPTIONS[:2], strength=0.5, num_steps=10, callback=lambda k, t, z: None)
    with pytest.raises(ValueError, match="callback"):
        toyshop(x, CAPTIONS[:2], strength=0.5, num_steps=10, callback=[record, "not callable"])


def test_injection_step_of_the_full_schedule(toyshop):
    # "20 DDIM steps, injection at step 10" (the AUV-Fusion port) is the first step run at strength 0.5.
    assert run_step_index(20, 0.5, 10) == 0
    assert run_step_index(20, 0.5, 15) == 5
    assert run_step_index(20, 0.5, 20) == 10  # the final clean latent
    assert run_step_index(20, 1.0, 10) == 10
    schedule = toyshop.get_timesteps(20, 0.5)
    assert schedule.run_index(13) == 3 and len(schedule) == 10
    with pytest.raises(ValueError, match="step 10 of the 20-step schedule is not run at strength 0.3.*14..19.*strength >= 0.5"):
        run_step_index(20, 0.3, 10)
    with pytest.raises(ValueError, match="schedule_step"):
        run_step_index(20, 0.5, 21)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    delta = torch.randn(toyshop.latent_shape(1, 64, 64), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        a = toyshop(x, strength=0.5, num_steps=20, delta=delta, inject_step=run_step_index(20, 0.5, 13))
        b = toyshop(x, strength=0.5, num_steps=20, callback=LatentInjection(delta, 1.0, schedule.run_index(13)))
        c = toyshop(x, strength=0.5, num_steps=20, delta=delta, inject_step=4)
    assert torch.equal(a, b) and not torch.equal(a, c)


# --------------------------------------------------------------------------- native photos
def test_native_photos_come_back_at_their_own_size(toyshop):
    gen = torch.Generator().manual_seed(7)
    tall, wide = torch.rand(3, 150, 100, generator=gen), torch.rand(3, 64, 96, generator=gen)
    tall.requires_grad_(True)
    assert toyshop.working_size == 64
    assert toyshop.working_size_for(150, 100) == (96, 64) and toyshop.working_size_for(64, 96) == (64, 96)
    assert toyshop.working_size_for(1750, 1166, 512) == (768, 512)  # SD 1.5's working size
    deltas = [torch.zeros(toyshop.latent_shape(1, 96, 64)[1:], requires_grad=True), torch.zeros((4, 8, 12), requires_grad=True)]
    out = toyshop.run_native([tall, wide], ["a tall photo", "a wide photo"], strength=0.5, num_steps=10, delta=deltas, seed=[1, 2])
    assert [tuple(im.shape) for im in out.images] == [(3, 150, 100), (3, 64, 96)]
    assert all(im.dtype == torch.float32 and im.min() >= 0 and im.max() <= 1 for im in out.images)
    assert [p.indices for p in out.passes] == [[0], [1]]
    sum(im.mean() for im in out.images).backward()
    assert all(d.grad is not None and d.grad.norm() > 0 for d in deltas)
    assert tall.grad is not None and tall.grad.norm() > 0

    with torch.no_grad():
        # A photo at its working size gets the pass's output itself.
        plain = toyshop(wide[None], "a wide photo", strength=0.5, num_steps=10, seed=2)
        assert torch.equal(out.images[1], plain[0])
        # Another: its native pixels plus the upsampled change the pass made at 96 x 64.
        clean = resize_images(tall.detach()[None], (96, 64), "bicubic")
        adv = toyshop(clean, "a tall photo", strength=0.5, num_steps=10, seed=1)
        change = torch.nn.functional.interpolate(adv - clean, size=(150, 100), mode="bicubic", antialias=True)
        assert torch.allclose(out.images[0], (tall.detach() + change[0]).clamp(0, 1), atol=1e-6)


def test_native_photos_sharing_a_working_size_run_as_one_batch(toyshop):
    gen = torch.Generator().manual_seed(8)
    photos = [torch.rand(3, 150, 100, generator=gen), torch.rand(3, 96, 64, generator=gen), torch.rand(3, 64, 64, generator=gen)]
    with torch.no_grad():
        out = toyshop.run_native(photos, strength=0.3, num_steps=10, seed=[0, 1, 2])
        alone = toyshop.run_native(photos[2:], strength=0.3, num_steps=10, seed=2)
        batch = toyshop.run_native(torch.stack([photos[2]] * 2), strength=0.3, num_steps=10, seed=2)
    assert [p.indices for p in out.passes] == [[0, 1], [2]]
    assert torch.equal(out.images[2], alone.images[0])
    assert isinstance(batch.images, torch.Tensor) and batch.images.shape == (2, 3, 64, 64)
    with pytest.raises(ValueError, match="different working sizes"):
        toyshop.run_native(photos, delta=torch.zeros(1, 4, 8, 8))
    with pytest.raises(ValueError, match=r"delta\[1\] must have shape \(4, 12, 8\)"):
        toyshop.run_native(photos, delta=[torch.zeros(4, 12, 8), torch.zeros(4, 8, 8), torch.zeros(4, 8, 8)])
    with pytest.raises(ValueError, match="working_size must be a positive multiple of 8"):
        toyshop.run_native(photos, working_size=60)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        toyshop.run_native([photos[0] * 3])


def test_uninjected_reference_keeps_only_the_injections_change(toyshop):
    gen = torch.Generator().manual_seed(9)
    photos = [torch.rand(3, 150, 100, generator=gen), torch.rand(3, 64, 64, generator=gen)]
    zeros = [torch.zeros(toyshop.latent_shape(1, 96, 64)[1:]), torch.zeros(toyshop.latent_shape(1, 64, 64)[1:])]
    kw = {"strength": 0.5, "num_steps": 10, "seed": [3, 4], "inject_step": 1}
    with torch.no_grad():
        # No injection: every photo comes back exactly, at its own size (the pass's own error cancels).
        same = toyshop.run_native(photos, delta=zeros, reference="uninjected", **kw)
        assert all(torch.equal(a, b) for a, b in zip(same.images, photos))
        assert not torch.equal(toyshop.run_native(photos, delta=zeros, **kw).images[1], photos[1])
    # With one: the photo plus (injected pass - plain pass), differentiable in delta only through the first.
    deltas = [torch.randn(d.shape, generator=gen).requires_grad_(True) for d in zeros]
    out = toyshop.run_native(photos, delta=deltas, reference="uninjected", **kw)
    with torch.no_grad():
        injected = toyshop.run(photos[1][None], delta=deltas[1][None], strength=0.5, num_steps=10, seed=4, inject_step=1)
        plain = toyshop.run(photos[1][None], strength=0.5, num_steps=10, seed=4)
    assert torch.allclose(out.images[1], (photos[1] + injected.images[0] - plain.images[0]).clamp(0, 1), atol=1e-6)
    sum(im.mean() for im in out.images).backward()
    assert all(d.grad is not None and d.grad.norm() > 0 for d in deltas)
    with pytest.raises(ValueError, match="reference must be 'photo' or 'uninjected'"):
        toyshop.run_native(photos, reference="clean")


def test_uninjected_reference_reuses_a_given_plain_pass(toyshop):
    """The plain pass of one call (``passes[j].plain``) given to the next as ``plain`` gives the
    same photos as recomputing it; a plain pass of other photos, or without reference
    uninjected, is refused."""
    gen = torch.Generator().manual_seed(11)
    photos = [torch.rand(3, 150, 100, generator=gen), torch.rand(3, 64, 64, generator=gen)]
    deltas = [torch.randn(toyshop.latent_shape(1, 96, 64)[1:], generator=gen), torch.randn(toyshop.latent_shape(1, 64, 64)[1:], generator=gen)]
    kw = {"strength": 0.5, "num_steps": 10, "seed": [3, 4], "inject_step": 1, "reference": "uninjected"}
    with torch.no_grad():
        first = toyshop.run_native(photos, delta=deltas, **kw)
        plain = [p.plain for p in first.passes]
        assert len(plain) == 2 and all(p is not None and not p.requires_grad for p in plain)
        again = [d * 0.5 for d in deltas]
        reused = toyshop.run_native(photos, delta=again, plain=plain, **kw)
        recomputed = toyshop.run_native(photos, delta=again, **kw)
    assert all(torch.equal(a, b) for a, b in zip(reused.images, recomputed.images))
    with pytest.raises(ValueError, match="plain: expected one tensor per pass"):
        toyshop.run_native(photos, delta=deltas, plain=plain[::-1], **kw)
    with pytest.raises(ValueError, match="only used with reference='uninjected'"):
        toyshop.run_native(photos, delta=deltas, plain=plain, **{**kw, "reference": "photo"})


# ------------------------------------------------------------------------------- precision
def test_half_precision_keeps_float32_latents_and_images(toyshop):
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        reference = toyshop.run(x, CAPTIONS[0], strength=0.5, num_steps=10)
    for dtype, tolerance in ((torch.bfloat16, 0.1), (torch.float16, 0.01)):  # measured: 0.05 and 0.002
        half = DiffusionImg2Img.from_pretrained("zoo:toyshop-sd", dtype=dtype)
        assert half.dtype == dtype and half.latent_dtype == torch.float32
        delta = torch.zeros(half.latent_shape(1, 64, 64), requires_grad=True)
        out = half.run(x, CAPTIONS[0], strength=0.5, num_steps=10, delta=delta)
        assert out.images.dtype == out.latents.dtype == out.init_latents.dtype == torch.float32
        assert (out.images - reference.images).abs().max() < tolerance
        out.images.mean().backward()
        assert delta.grad.dtype == torch.float32 and delta.grad.norm() > 0
    with pytest.raises(ValueError, match="dtype must be one of"):
        DiffusionImg2Img.from_pretrained("zoo:toyshop-sd", dtype=torch.int8)


def test_inputs_are_checked_once_by_name(toyshop):
    x = torch.rand(2, 3, 64, 64)
    cases = [
        (dict(texts=["a", "b"], prompt_embeds=torch.zeros(2, 77, 64)), "either texts or prompt_embeds"),
        (dict(prompt_embeds=torch.zeros(2, 77, 32)), r"prompt_embeds must have shape \(2, L, 64\)"),
        (dict(seed=[1, 2, 3]), "seed: 3 seeds for a batch of 2"),
        (dict(noise=torch.zeros(2, 4, 4, 4)), "noise"),
        (dict(num_steps=2.5), "num_steps"),
        (dict(guidance_scale=3.0, negative_texts=["x"]), "negative_texts"),
        (dict(texts=["a", 3]), "texts must be strings"),
        (dict(inject_step=11, num_steps=20, strength=0.5), r"inject_step must be in \[0, 10\]"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            toyshop.run(x, **kwargs)
