"""Shared fixtures: tiny synthetic datasets written into tmp_path (never real data in the repo)."""

from pathlib import Path

import pytest


@pytest.fixture
def write_amazon(tmp_path):
    """write_amazon(sequences, items) -> folder holding sequences.txt and items.tsv.

    Pass str for text or bytes for raw content; None leaves the file out.
    """

    def write(sequences: str | bytes | None, items: str | bytes | None, name: str = "amazon-toy") -> Path:
        folder = tmp_path / name
        folder.mkdir(exist_ok=True)
        for fname, content in (("sequences.txt", sequences), ("items.tsv", items)):
            if content is None:
                continue
            data = content if isinstance(content, bytes) else content.encode("utf-8")
            (folder / fname).write_bytes(data)
        return folder

    return write


# -- a tiny trained run, shared by the export / runtime / profile tests -----------------------------------
def make_tiny_dataset(folder: Path, n_users: int = 160, n_items: int = 120, seed: int = 0) -> Path:
    """Amazon-format toy data with learnable structure: users walk through item 'genres' in order."""
    import numpy as np
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for u in range(1, n_users + 1):
        start, length = int(rng.integers(1, n_items + 1)), int(rng.integers(4, 30))
        seq = [((start - 1 + 3 * k + int(rng.integers(0, 2))) % n_items) + 1 for k in range(length)]
        lines.append(" ".join(map(str, [u] + seq)))
    (folder / "sequences.txt").write_text("\n".join(lines) + "\n")
    rows = ["item_id:token\ttitle:token\tcategories:token_seq"]
    rows += [f"{i}\tToy item {i}\t'Genre {i % 7}'" for i in range(1, n_items + 1)]
    (folder / "items.tsv").write_text("\n".join(rows) + "\n")
    feats = rng.normal(size=(n_items + 1, 24)).astype("float32")
    feats[0] = 0
    np.save(folder / "features.npy", feats)
    return folder


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A run folder trained for 3 epochs on toy data (widths 8,16,32; 2 layers): seconds on CPU."""
    from rich.console import Console

    from fmrlrec_edge.config import TrainConfig
    from fmrlrec_edge.train import train

    base = tmp_path_factory.mktemp("tiny")
    data = make_tiny_dataset(base / "data")
    tcfg = TrainConfig(dataset=f"amazon:{data}", features_file=str(data / "features.npy"), epochs=3,
                       batch_size=32, lr=5e-3, warmup_steps=5)
    train(tcfg, base / "run", {"widths": (8, 16, 32), "n_layers": 2, "dropout": 0.1, "id_embedding": True},
          console=Console(quiet=True), quiet=True)
    return base / "run"
