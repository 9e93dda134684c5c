"""MTCNN's networks: the Keras -> PyTorch conversion against a direct NumPy implementation of
the Keras layers, and the converted nets on a real face (scikit-image's astronaut)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from plugins.mtcnn.layers import PReLU, max_pool_same, max_pool_stride2, prelu_max_pool2
from plugins.mtcnn.model import ONet, PNet, RNet, load_keras_arrays, load_nets

# -- Keras layers in NumPy (NHWC), written from the Keras documentation ------------------------


def conv_valid(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    kh, kw = kernel.shape[:2]
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))
    return np.einsum("nhwcij,ijco->nhwo", windows, kernel) + bias  # windows: N,H',W',C,kh,kw


def prelu(x: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, x * alpha)


def max_pool(x: np.ndarray, k: int, s: int, padding: str) -> np.ndarray:
    n, h, w, c = x.shape
    if padding == "same":
        oh, ow = math.ceil(h / s), math.ceil(w / s)
        ph, pw = max((oh - 1) * s + k - h, 0), max((ow - 1) * s + k - w, 0)
        x = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)),
                   constant_values=-np.inf)
    else:
        oh, ow = (h - k) // s + 1, (w - k) // s + 1
    out = np.full((n, oh, ow, c), -np.inf, np.float32)
    for i in range(oh):
        for j in range(ow):
            out[:, i, j] = x[:, i * s:i * s + k, j * s:j * s + k].max(axis=(1, 2))
    return out


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def permute_flatten(x: np.ndarray) -> np.ndarray:
    return x.transpose(0, 2, 1, 3).reshape(len(x), -1)  # Permute((2, 1, 3)), Flatten()


def keras_pnet(x: np.ndarray, w: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    x = max_pool(prelu(conv_valid(x, w[0], w[1]), w[2]), 2, 2, "same")
    x = prelu(conv_valid(x, w[3], w[4]), w[5])
    x = prelu(conv_valid(x, w[6], w[7]), w[8])
    return conv_valid(x, w[9], w[10]), softmax(conv_valid(x, w[11], w[12]))


def keras_rnet(x: np.ndarray, w: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    x = max_pool(prelu(conv_valid(x, w[0], w[1]), w[2]), 3, 2, "same")
    x = max_pool(prelu(conv_valid(x, w[3], w[4]), w[5]), 3, 2, "valid")
    x = prelu(conv_valid(x, w[6], w[7]), w[8])
    x = prelu(permute_flatten(x) @ w[9] + w[10], w[11])
    return x @ w[12] + w[13], softmax(x @ w[14] + w[15])


def keras_onet(x: np.ndarray, w: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    x = max_pool(prelu(conv_valid(x, w[0], w[1]), w[2]), 3, 2, "same")
    x = max_pool(prelu(conv_valid(x, w[3], w[4]), w[5]), 3, 2, "valid")
    x = max_pool(prelu(conv_valid(x, w[6], w[7]), w[8]), 2, 2, "same")
    x = prelu(conv_valid(x, w[9], w[10]), w[11])
    x = prelu(permute_flatten(x) @ w[12] + w[13], w[14])
    return x @ w[15] + w[16], x @ w[17] + w[18], softmax(x @ w[19] + w[20])


@pytest.mark.parametrize(("name", "cls", "reference", "shape"), [
    ("pnet", PNet, keras_pnet, (2, 37, 51, 3)),  # odd sizes: the uneven 'same' padding
    ("pnet", PNet, keras_pnet, (1, 12, 12, 3)),
    ("rnet", RNet, keras_rnet, (3, 24, 24, 3)),
    ("onet", ONet, keras_onet, (3, 48, 48, 3)),
])
def test_conversion_matches_the_keras_layers(name, cls, reference, shape) -> None:
    arrays = load_keras_arrays(name)
    x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    expected = reference(x, arrays)
    with torch.no_grad():
        got = cls().load_keras(arrays)(torch.from_numpy(x).permute(0, 3, 1, 2))
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        g_nhwc = g.permute(0, 2, 3, 1) if g.ndim == 4 else g
        np.testing.assert_allclose(g_nhwc.numpy(), e, rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def astronaut() -> torch.Tensor:
    from skimage import data

    img = torch.from_numpy(data.astronaut()).permute(2, 0, 1)[None].float()
    return (img - 127.5) / 128


def crop48(image: torch.Tensor, x: int, y: int, size: int) -> torch.Tensor:
    return F.interpolate(image[:, :, y:y + size, x:x + size], size=(48, 48), mode="area")


def test_onet_knows_a_face_and_its_landmarks(astronaut: torch.Tensor) -> None:
    _, _, onet = load_nets()
    with torch.no_grad():
        _, marks, face = onet(crop48(astronaut, 180, 70, 90))  # her face
        _, _, sky = onet(torch.cat([crop48(astronaut, 0, 400, 100),  # no face
                                    crop48(astronaut, 300, 300, 100)]))
    assert face[0, 1] > 0.99
    assert (sky[:, 1] < 0.1).all()
    xs, ys = marks[0, :5], marks[0, 5:]  # left eye, right eye, nose, mouth left, mouth right
    assert xs[0] < xs[2] < xs[1] and xs[3] < xs[2] < xs[4]
    assert max(ys[0], ys[1]) < ys[2] < min(ys[3], ys[4])
    assert ((marks > 0) & (marks < 1)).all()


def test_pnet_fires_on_the_face_window(astronaut: torch.Tensor) -> None:
    pnet, _, _ = load_nets()
    scale = 0.18  # her face (about 70 px) becomes about one 12 px window
    with torch.no_grad():
        _, prob = pnet(F.interpolate(astronaut, scale_factor=scale, mode="area"))
    face = prob[0, 1]
    y, x = divmod(int(face.argmax()), face.shape[1])
    left, top, size = x * 2 / scale, y * 2 / scale, 12 / scale
    assert face.max() > 0.99
    assert 170 < left + size / 2 < 260 and 80 < top + size / 2 < 160  # the face centre
    assert (face > 0.6).float().mean() < 0.05  # and few windows elsewhere


def test_pnet_probability_and_boxes_at_hits_equal_its_two_heads(astronaut: torch.Tensor) -> None:
    pnet, _, _ = load_nets()
    with torch.no_grad():
        level = F.interpolate(astronaut, scale_factor=0.3, mode="area")
        level = torch.cat([level, level.flip(-1)]).contiguous(memory_format=torch.channels_last)
        box, prob = pnet(level)
        features = pnet.features(level)
        torch.testing.assert_close(pnet.face_probability(features), prob[:, 1], atol=1e-6,
                                   rtol=0)
        frame, ys, xs = (prob[:, 1] > 0.6).nonzero(as_tuple=True)
        assert len(frame) > 2 and set(frame.tolist()) == {0, 1}
        torch.testing.assert_close(pnet.box_at(features, frame, ys, xs),
                                   box[frame, :, ys, xs], atol=1e-5, rtol=0)


@pytest.mark.parametrize("shape", [(1, 10, 647, 1151), (2, 10, 8, 6), (1, 3, 7, 4), (1, 2, 1, 1),
                                   (300, 28, 22, 22), (5, 48, 9, 9), (3, 64, 10, 10)])
def test_strided_pooling_is_torchs_pooling(shape) -> None:
    x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
    pooled = max_pool_same(x, 2, 2)
    assert pooled.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(pooled, F.max_pool2d(x, 2, 2, ceil_mode=True))
    if min(shape[-2:]) >= 3:
        rows, cols = (shape[-2] - 3) // 2 + 1, (shape[-1] - 3) // 2 + 1
        assert torch.equal(max_pool_stride2(x, 3, rows, cols), F.max_pool2d(x, 3, 2))
        rows, cols = -(-(shape[-2] - 3) // 2) + 1, -(-(shape[-1] - 3) // 2) + 1
        assert torch.equal(max_pool_stride2(x, 3, rows, cols),
                           F.max_pool2d(x, 3, 2, ceil_mode=True))


@pytest.mark.parametrize("shape", [(1, 10, 37, 29), (3, 10, 5, 1), (2, 16, 4, 4), (4, 10, 1, 1)])
def test_channels_last_prelu_is_torchs(shape) -> None:
    layer = PReLU(shape[1])
    with torch.no_grad():
        layer.weight.copy_(torch.randn(shape[1]))  # negative slopes too
    x = torch.randn(shape)
    for memory in (torch.channels_last, torch.contiguous_format):
        y = layer(x.contiguous(memory_format=memory))
        assert torch.equal(y, F.prelu(x, layer.weight))
    assert layer(x.contiguous(memory_format=torch.channels_last)).is_contiguous(
        memory_format=torch.channels_last)


@pytest.mark.parametrize("shape", [(1, 10, 647, 1151), (2, 10, 9, 7), (1, 10, 6, 6),
                                   (3, 4, 1, 1), (1, 10, 2, 5)])
def test_compiled_prelu_and_pooling_is_torchs(shape) -> None:
    x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
    slope = torch.randn(shape[1])
    pooled = prelu_max_pool2(x, slope)
    assert pooled.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(pooled, F.max_pool2d(F.prelu(x, slope), 2, 2, ceil_mode=True))
