"""The AC-GAN paper's own classifier: truncated fakes feed the critic's class head
(`aux_fake_truncation`), and the head is exported as classifier.onnx, checked against torch."""

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from models.artifact import CHECKPOINT_FILE, CLASSIFIER_FILE, Manifest
from models.images import to_unit_nchw
from models.networks import CriticClassifier, Discriminator, group_stddev
from tests.training.test_methods import TINY, fixed_batch, train
from training import TrainConfig
from training.export import export_classifier_onnx
from training.losses import GanLoss


def onnx_probs(model_dir, images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model_dir / CLASSIFIER_FILE))
    (probs,) = session.run(["probs"], {"image": images})
    return probs


def trained_critic(model_dir) -> Discriminator:
    checkpoint = torch.load(model_dir / CHECKPOINT_FILE)
    critic = Discriminator(**checkpoint["critic_kwargs"]).eval()
    critic.load_state_dict(checkpoint["critic"])
    return critic


@pytest.mark.parametrize("method", ["wacgan-gp", "acgan"])
def test_truncated_fakes_option_trains_and_exports(tmp_path, method):
    run = train(tmp_path, method=method, aux_fake_truncation=0.5)
    losses = run.result.final_losses
    assert np.isfinite(losses["d_aux_truncated"]) and losses["d_aux_truncated"] > 0
    manifest = Manifest.load(run.out)
    assert manifest.config["aux_fake_truncation"] == 0.5
    assert manifest.classifier is not None and (run.out / CLASSIFIER_FILE).is_file()
    images = np.random.default_rng(0).uniform(-1, 1, (4, 1, 16, 16)).astype(np.float32)
    probs = onnx_probs(run.out, images)
    assert probs.shape == (4, 3) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)


def test_without_the_option_no_truncated_fakes_are_drawn(tmp_path):
    run = train(tmp_path, method="wacgan-gp", steps=2)
    assert "d_aux_truncated" not in run.result.final_losses
    assert TrainConfig(**TINY).aux_fake_truncation is None


def test_truncated_fakes_replace_acgans_fake_term_and_add_to_wacgans():
    critic, real, labels, fake, fake_labels = fixed_batch()
    truncated, truncated_labels = torch.rand_like(fake) * 2 - 1, labels.roll(1)
    _, logits_real = critic(real)
    _, logits_fake = critic(fake)
    _, logits_truncated = critic(truncated)
    ce_real = F.cross_entropy(logits_real, labels)
    ce_truncated = F.cross_entropy(logits_truncated, truncated_labels)
    for adversarial, aux_on_fakes in (("wasserstein", False), ("bce", True)):
        loss = GanLoss(adversarial, 0.0, 0.5, (), aux_on_fakes=aux_on_fakes)
        plain, _ = loss.critic(critic, real, labels, fake, fake_labels)
        fed, stats = loss.critic(
            critic, real, labels, fake, fake_labels, aux_fakes=(truncated, truncated_labels)
        )
        ce_fake = F.cross_entropy(logits_fake, fake_labels) if aux_on_fakes else 0.0
        expected = plain.item() + 0.5 * (ce_truncated - ce_fake).item()
        assert fed.item() == pytest.approx(expected, rel=1e-5)
        assert stats["d_aux_truncated"].item() == pytest.approx(ce_truncated.item(), rel=1e-5)
        assert stats["d_aux"].item() == pytest.approx((ce_real + ce_truncated).item(), rel=1e-5)


def test_truncated_fakes_come_from_clamped_latents(tmp_path):
    from tests.training.test_levers import ada_trainer

    trainer = ada_trainer(tmp_path, method="wacgan-gp", adv_loss=None, aux_fake_truncation=1e-6)
    images, labels = trainer._truncated_fakes(12, 1.0)
    # |z| <= 1e-6: every latent is ~0, so one image per class
    for label in labels.unique():
        rows = images[labels == label]
        assert (rows - rows[0]).abs().max() < 1e-4
    plain = ada_trainer(tmp_path / "plain", method="wacgan-gp", adv_loss=None)
    assert plain._truncated_fakes(12, 1.0) is None


def test_class_head_learns_from_unaugmented_images_when_asked():
    critic, real, labels, fake, fake_labels = fixed_batch()
    truncated, truncated_labels = torch.rand_like(fake) * 2 - 1, labels.roll(1)
    with torch.no_grad():
        expected = F.cross_entropy(critic(real)[1], labels) + F.cross_entropy(
            critic(truncated)[1], truncated_labels
        )
    ops = ("translation", "cutout")
    for aux_augment in (False, True):
        loss = GanLoss("wasserstein", 0.0, 0.5, ops, aux_augment=aux_augment)
        torch.manual_seed(1)
        _, stats = loss.critic(
            critic, real, labels, fake, fake_labels, aux_fakes=(truncated, truncated_labels)
        )
        # as given, the images' cross-entropy; DiffAugmented (cutout erases half), another one
        if aux_augment:
            assert abs(stats["d_aux"].item() - expected.item()) > 1e-3
        else:
            assert stats["d_aux"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_unaugmented_class_head_option_trains_and_exports(tmp_path):
    run = train(tmp_path, method="wacgan-gp", aux_fake_truncation=0.5, aux_diffaugment=False)
    assert np.isfinite(run.result.final_losses["d_aux"])
    assert Manifest.load(run.out).config["aux_diffaugment"] is False
    assert (run.out / CLASSIFIER_FILE).is_file()


@pytest.mark.parametrize(
    "options, message",
    [
        ({"method": "cgan", "aux_fake_truncation": 0.5}, "cgan has none"),
        ({"aux_fake_truncation": 0.5}, "cgan has none"),
        ({"method": "wacgan-gp", "aux_weight": 0.0, "aux_fake_truncation": 0.5}, "aux_weight > 0"),
        ({"method": "wacgan-gp", "aux_twin": True, "aux_fake_truncation": 0.5}, "pick one"),
        ({"aux_fake_truncation": 0.0}, "greater than 0"),
        ({"aux_diffaugment": False}, "needs a class head"),
        ({"method": "wacgan-gp", "aux_diffaugment": False, "diffaugment": ""}, "DiffAugment"),
    ],
)
def test_inconsistent_truncated_fake_options_are_refused(options, message):
    with pytest.raises(ValidationError, match=message):
        TrainConfig(**options)


def test_classifier_onnx_matches_the_torch_head(tiny_model):
    """The session's tiny (wacgan-gp) model: classifier.onnx is its critic's class head."""
    manifest = Manifest.load(tiny_model.model_dir)
    assert manifest.classifier is not None and manifest.classifier.source == "critic"
    assert [s.name for s in manifest.classifier.outputs] == ["probs"]
    head = CriticClassifier(trained_critic(tiny_model.model_dir), manifest.classifier.group_std)
    images = to_unit_nchw(tiny_model.x[..., None])  # (N, 1, 16, 16) in [-1, 1]
    with torch.no_grad():
        expected = head(torch.from_numpy(images)).numpy()
    probs = onnx_probs(tiny_model.model_dir, images)
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    # each image on its own: the same probabilities alone as in a batch
    np.testing.assert_allclose(onnx_probs(tiny_model.model_dir, images[:1]), probs[:1], atol=1e-6)
    accuracy = float(np.mean(probs.argmax(axis=1) == tiny_model.y))
    # 0.83 when written; chance is 1/3
    assert accuracy > 0.6, f"the class head must have learnt the shapes ({accuracy:.2f})"


def test_classifier_onnx_on_single_images_agrees_with_the_head_as_trained(tiny_model):
    """The head as trained sees batches of `batch_size` with their true minibatch stddev;
    classifier.onnx sees one image at a time. Its constant must stand in for the batches:
    closer to them than what a batch of one gives (stddev ~0), with the same top classes."""
    critic = trained_critic(tiny_model.model_dir)
    batch_size = Manifest.load(tiny_model.model_dir).config["batch_size"]
    order = torch.randperm(len(tiny_model.y), generator=torch.Generator().manual_seed(1))
    images = torch.from_numpy(to_unit_nchw(tiny_model.x[..., None]))[order]  # (N, 1, 16, 16)
    with torch.no_grad():
        as_trained = torch.cat(
            [
                torch.softmax(critic(images[i : i + batch_size])[1], dim=1)
                for i in range(0, len(images), batch_size)
            ]
        ).numpy()
        batch_of_one = CriticClassifier(critic, group_std=1e-4)(images).numpy()
    single = np.concatenate(
        [onnx_probs(tiny_model.model_dir, image[None]) for image in images.numpy()]
    )
    assert (single.argmax(axis=1) == as_trained.argmax(axis=1)).all()
    error = np.abs(single - as_trained).mean()
    # 0.0002 against 0.0012 when written; a constant of 0 or twice the right one fails
    assert error < np.abs(batch_of_one - as_trained).mean() / 3


def test_the_constant_stands_in_for_the_minibatch_channel():
    critic, real, *_ = fixed_batch()
    batch = real[:4]  # one minibatch-stddev group
    with torch.no_grad():
        spread = float(group_stddev(critic.features(batch), 4)[0])
        torch.testing.assert_close(critic.trunk(batch, group_std=spread), critic.trunk(batch))
        assert critic.real_group_std(real[:4], batch_size=4) == pytest.approx(spread)


def test_spectrally_normalised_critic_exports_and_keeps_training(tmp_path):
    torch.manual_seed(0)
    critic = Discriminator(num_classes=3, image_size=16, channels=1, width=8, spectral_norm=True)
    x = torch.rand(8, 1, 16, 16) * 2 - 1
    critic(x)  # one power iteration, so u and v are not at their initial values
    export_classifier_onnx(critic, tmp_path / CLASSIFIER_FILE, group_std=0.1)
    with torch.no_grad():
        expected = CriticClassifier(critic.eval(), 0.1)(x).numpy()
    np.testing.assert_allclose(onnx_probs(tmp_path, x.numpy()), expected, atol=1e-5)
    critic.train()(x)[0].sum().backward()  # the exported critic is untouched


def test_critics_without_a_class_head_export_no_classifier(tmp_path):
    run = train(tmp_path, method="cgan", steps=2)
    assert Manifest.load(run.out).classifier is None
    assert not (run.out / CLASSIFIER_FILE).exists()


def test_manifests_from_before_the_classifier_still_load(tiny_model):
    data = Manifest.load(tiny_model.model_dir).model_dump(mode="json")
    del data["classifier"]
    assert Manifest.model_validate(data).classifier is None
