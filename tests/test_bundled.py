"""The bundled trained models: they load offline and draw the requested digits."""

import dataclasses

import pytest
import torch

pytest.importorskip("sklearn")
from taylorseer import TaylorSeerConfig  # noqa: E402
from taylorseer.api import maybe_applied  # noqa: E402
from taylorseer.bench.metrics import frechet_distance, psnr  # noqa: E402
from taylorseer.models.bundled import BUNDLED_MODELS, load_bundled  # noqa: E402
from taylorseer.models.classifier import load_classifier  # noqa: E402
from taylorseer.models.digits import load_digits  # noqa: E402
from taylorseer.models.weights import bundled_path, load_safetensors  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def classifier():
    return load_classifier(bundled_path("digit-classifier") / "model.safetensors")


@pytest.mark.parametrize("name", ["dit-digits", "flux-digits"])
def test_full_compute_samples_are_the_requested_digits(name, classifier):
    generator = load_bundled(name)
    labels = torch.arange(10).repeat(2)  # two of each class
    images = generator.sample(generator.noise(len(labels), seed=100), labels, steps=50)
    assert images.shape == (20, 1, 16, 16) and images.min() >= -1 and images.max() <= 1
    with torch.no_grad():
        accuracy = (classifier(images).argmax(1) == labels).float().mean().item()
    assert accuracy >= 0.9


def test_default_cache_stays_close_to_full_compute_on_dit_digits():
    generator = load_bundled("dit-digits")
    labels = torch.arange(10)
    noise = generator.noise(10, seed=5)
    full = generator.sample(noise, labels, steps=50)
    default = TaylorSeerConfig()
    with maybe_applied(generator.transformer, default, 50):
        cached = generator.sample(noise, labels, steps=50)
    same_schedule_reuse = dataclasses.replace(default, order=0)
    assert same_schedule_reuse.planned_full_steps(50) == default.planned_full_steps(50)
    with maybe_applied(generator.transformer, same_schedule_reuse, 50):
        reuse = generator.sample(noise, labels, steps=50)
    assert psnr(cached, full) > 25.0
    assert psnr(cached, full) > psnr(reuse, full)  # forecasting beats plain reuse at the same schedule


@pytest.mark.parametrize("name", ["dit-digits", "flux-digits"])
def test_the_correction_brings_a_trained_model_nearer_full_compute(name):
    generator = load_bundled(name)
    labels = torch.arange(20) % 10
    noise = generator.noise(20, seed=11)
    full = generator.sample(noise, labels, steps=50)
    scores = {}
    for correction in (None, False):
        with maybe_applied(generator.transformer, TaylorSeerConfig(correction=correction), 50) as handle:
            scores[correction] = psnr(generator.sample(noise, labels, steps=50), full)
            assert handle.stats["corrected"] == (correction is None)
    assert scores[None] > scores[False] + 0.5


def test_classifier_is_accurate_and_fid_proxy_separates_real_from_noise(classifier):
    images, labels = load_digits("held_out")
    with torch.no_grad():
        assert (classifier(images).argmax(1) == labels).float().mean() >= 0.95
        real = classifier.features(images)
        half = len(images) // 2
        same = frechet_distance(real[:half], real[half:])
        noise = frechet_distance(real, classifier.features(torch.rand_like(images) * 2 - 1))
    assert same < noise / 10


def test_corrupted_or_mismatched_weights_name_the_file(tmp_path, classifier):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="broken.safetensors"):
        load_safetensors(broken)
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        load_safetensors(tmp_path / "missing.safetensors")
    from safetensors.torch import save_file

    state = {k: v.clone() for k, v in classifier.state_dict().items()}
    state["head.weight"] = torch.zeros(3, 3)
    save_file(state, str(tmp_path / "shapes.safetensors"))
    with pytest.raises(ValueError, match=r"shapes.safetensors: head.weight has shape \(3, 3\)"):
        load_safetensors(tmp_path / "shapes.safetensors", classifier.state_dict())
    with pytest.raises(FileNotFoundError, match="no bundled model 'sd-digits'"):
        bundled_path("sd-digits")


def test_every_bundled_model_has_the_family_of_its_architecture():
    from taylorseer.bench.subjects import FAMILIES
    from taylorseer.models.dit import DiT

    assert set(FAMILIES) == set(BUNDLED_MODELS)
    for name, family in FAMILIES.items():
        assert family == ("dit" if isinstance(load_bundled(name).transformer, DiT) else "flux"), name
