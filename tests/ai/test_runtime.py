"""ONNX Runtime inference guarded by the model card."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from igikit.ai.runtime import ModelCard, OnnxModel, card_path_for, load_card, save_model
from igikit.errors import InputError


def _card(**changes) -> ModelCard:
    card = ModelCard(name="test-unet", version="0.1", modality="MR", dimensionality=2, input_shape=(None, 1, 32, 32),
                     spacing_mm=(1.5, 1.5), intensity={"method": "window", "low": 0.0, "high": 200.0},
                     training_data="synthetic discs", intended_use="tests only")
    return dataclasses.replace(card, **changes)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    import torch

    from igikit.ai.nets import MultiHeadUNet
    from igikit.ai.personalize import export_onnx

    torch.manual_seed(0)
    net = MultiHeadUNet((4, 8, 16), heads=2).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so the export has something to fold
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    path = save_model(export_onnx(net, 32), _card(), tmp_path_factory.mktemp("model") / "test.onnx")
    return net, path


def test_onnx_matches_torch(exported) -> None:
    import torch

    net, path = exported
    model = OnnxModel(path)
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 200, (32, 32)).astype(np.float32)
    prob = model.predict(image, spacing_mm=(1.5, 1.5), modality="MRI")
    with torch.no_grad():
        ref = torch.sigmoid(net(torch.from_numpy(image / 200.0)[None, None])).numpy()[0]
    assert prob.shape == (2, 32, 32)
    np.testing.assert_allclose(prob, ref, atol=1e-4)
    batch = rng.uniform(0, 1, (3, 1, 32, 32)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(model.run(batch), net(torch.from_numpy(batch)).numpy(), atol=1e-4)


@pytest.mark.parametrize(
    ("image_shape", "spacing", "modality", "message"),
    [
        ((32, 32), (1.0, 1.0), "MR", "spacing"),
        ((32, 32), (1.5, 1.7), "MR", "axis 1"),
        ((32, 32), (1.5, 1.5), "CT", "trained on MR"),
        ((4, 32, 32), (1.5, 1.5, 1.5), "MR", "2D images"),
        ((40, 40), (1.5, 1.5), "MR", "size"),
    ],
)
def test_card_refuses_images_outside_it(exported, image_shape, spacing, modality, message) -> None:
    model = OnnxModel(exported[1])
    with pytest.raises(InputError, match=message):
        model.predict(np.zeros(image_shape, np.float32), spacing_mm=spacing, modality=modality)


def test_spacing_within_tolerance_is_accepted(exported) -> None:
    model = OnnxModel(exported[1])
    assert model.predict(np.zeros((32, 32)), spacing_mm=(1.55, 1.45), modality="MR").shape == (2, 32, 32)


def test_card_files(tmp_path, exported) -> None:
    _, path = exported
    card = load_card(card_path_for(path))
    assert card == _card() or card.to_dict() == _card().to_dict()
    yaml_path = _card(spacing_mm=(2.0, 2.0)).save(tmp_path / "m.card.yaml")
    assert load_card(yaml_path).spacing_mm == (2.0, 2.0)
    (tmp_path / "lonely.onnx").write_bytes(path.read_bytes())
    with pytest.raises(InputError, match="no model card"):
        OnnxModel(tmp_path / "lonely.onnx")
    (tmp_path / "bad.card.json").write_text('{"name": "x"}')
    with pytest.raises(InputError, match="lacks"):
        load_card(tmp_path / "bad.card.json")
    with pytest.raises(InputError, match="dimensionality"):
        _card(dimensionality=4)
    with pytest.raises(InputError, match="intensity"):
        _card(intensity={"method": "magic"})
