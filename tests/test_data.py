"""Dataset readers, their error messages, and the leave-one-out split."""

import importlib.util

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fmrlrec_edge import data
from fmrlrec_edge.data import Dataset, leave_one_out, load_dataset, truncate
from fmrlrec_edge.errors import UserError

ITEMS_TSV = (
    "item_id:token\ttitle:token\tcategories:token_seq\n"
    "1\tRed Nail Polish\t'Beauty', 'Makeup', 'Nails'\n"
    "2\tBlue Nail Polish\t'Beauty', 'Makeup', 'Nails'\n"
    "3\tShampoo\t'Beauty', 'Hair Care', 'Shampoos'\n"
    "4\tMen's Cologne\t\"Men's\", 'Fragrance'\n"
    "5\tNever Bought\t'Beauty'\n"
)
SEQUENCES_TXT = "1 1 2 3\n2 3 1 2 4\n3 4 1\n"  # user 3 has only 2 items: dropped at min 3


@pytest.fixture
def amazon(write_amazon):
    """Folder with the toy files above; override either with sequences=... / items=... (None: leave out)."""

    def write(sequences=SEQUENCES_TXT, items=ITEMS_TSV, name="amazon-toy"):
        return write_amazon(sequences, items, name)

    return write


def user_error(spec: str, *parts: str) -> str:
    """Load `spec`, expect a UserError, check the message mentions every part, return it."""
    with pytest.raises(UserError) as info:
        load_dataset(spec)
    msg = str(info.value)
    assert "\n" not in msg
    for p in parts:
        assert p in msg, f"{p!r} not in {msg!r}"
    return msg


# -----------------------------------------------------------------------------
# amazon: sequences.txt + items.tsv


def test_amazon_reader(amazon):
    ds = load_dataset(f"amazon:{amazon()}")
    assert ds.name == "amazon:toy"
    assert ds.user_ids == ["1", "2"]  # user 3 has 2 items < 3
    # integer raw ids keep their numeric order; item 5 is never bought, so it gets no id
    assert ds.item_raw_ids == ["", "1", "2", "3", "4"]
    assert ds.sequences == [[1, 2, 3], [3, 1, 2, 4]]
    assert ds.n_items == 4 and ds.n_users == 2 and ds.has_text
    assert ds.item_titles[0] == "<pad>" and ds.item_titles[1] == "Red Nail Polish"
    assert ds.item_texts[0] == ""
    assert ds.item_texts[1] == "Red Nail Polish. Categories: Beauty, Makeup, Nails."
    assert ds.item_texts[4] == "Men's Cologne. Categories: Men's, Fragrance."
    assert len(ds.item_titles) == len(ds.item_texts) == ds.n_items + 1


def test_amazon_plain_header_and_remap(amazon):
    items = "item_id\ttitle\n10\tTen\n20\t\n30\tThirty!\n"
    folder = amazon(sequences="7 30 10 20\n", items=items)
    ds = load_dataset(f"amazon:{folder}", min_interactions=1)
    assert ds.item_raw_ids == ["", "10", "20", "30"]
    assert ds.sequences == [[3, 1, 2]]
    assert ds.item_titles[2] == "20"  # empty title: show the raw id
    assert ds.item_texts[2] == "" and ds.item_texts[3] == "Thirty!"


def test_min_interactions(amazon):
    folder = amazon()
    assert load_dataset(f"amazon:{folder}", min_interactions=2).n_users == 3
    assert load_dataset(f"amazon:{folder}", min_interactions=4).user_ids == ["2"]


def test_no_users_left(amazon):
    folder = amazon(sequences="1 1\n2 2 3\n")
    msg = user_error(f"amazon:{folder}", "sequences.txt", "2 users have fewer than 3")
    assert "no users" in msg


@pytest.mark.parametrize(
    "sequences, items, parts",
    [
        ("1 1 2 3\n2 1 x 3\n", ITEMS_TSV, ["sequences.txt:2", "'x'"]),
        ("1 1 2 3\n2 1 -2 3\n", ITEMS_TSV, ["sequences.txt:2", "'-2'"]),
        ("1 1 2 3\n\n2 1 2 99\n", ITEMS_TSV, ["item 99 at", "sequences.txt:3", "has no row in items.tsv"]),
        ("1 1 2 3\n1 2 3 4\n", ITEMS_TSV, ["sequences.txt:2", "user 1"]),
        ("", ITEMS_TSV, ["sequences.txt", "empty"]),
        ("  \n\n", ITEMS_TSV, ["sequences.txt", "empty"]),
        (b"1 1 2 3\n2 1 \xff 3\n", ITEMS_TSV, ["sequences.txt:2", "not UTF-8 text"]),
        ("1 1 2 3\n", ITEMS_TSV + "6\tToo\tmany\tcolumns\n", ["items.tsv:7", "expected 3", "got 4"]),
        ("1 1 2 3\n", ITEMS_TSV.replace("categories:token_seq", "tags:token_seq"),
         ["items.tsv:1", "unknown column 'tags'", "item_id, title, categories"]),
        ("1 1 2 3\n", "item_id\tcategories\n1\t'a'\n", ["items.tsv:1", "missing column 'title'"]),
        ("1 1 2 3\n", "1\tRed\t'Beauty'\n", ["items.tsv:1", "header"]),
        ("1 1 2 3\n", ITEMS_TSV + ITEMS_TSV, ["items.tsv:7", "duplicate header line"]),
        ("1 1 2 3\n", ITEMS_TSV + "2\tAgain\t'x'\n", ["items.tsv:7", "item '2' already has a row at line 3"]),
        ("1 1 2 3\n", b"item_id\ttitle\n1\tCr\xe8me\n", ["items.tsv:2", "not UTF-8 text"]),
        ("1 1 2 3\n", "", ["items.tsv", "empty"]),
    ],
)
def test_amazon_malformed(amazon, sequences, items, parts):
    user_error(f"amazon:{amazon(sequences=sequences, items=items)}", *parts)


def test_amazon_missing_files(amazon, tmp_path):
    user_error(f"amazon:{tmp_path / 'nope'}", "folder not found", "nope", "sequences.txt")
    user_error(f"amazon:{amazon(sequences=None, name='a')}", "not found", "a/sequences.txt")
    user_error(f"amazon:{amazon(items=None, name='b')}", "not found", "b/items.tsv")


def test_unknown_spec():
    user_error("movielens", "unknown dataset", "ml-100k", "amazon:DIR", "csv:FILE")
    user_error("amazon:", "unknown dataset")


# -----------------------------------------------------------------------------
# csv / parquet


def test_csv_reader_orders_by_time(tmp_path):
    f = tmp_path / "events.csv"
    f.write_text(
        "user,item,timestamp,title,genres\n"
        "u1,B0X,30,Gamma,Drama\n"
        "u1,A9,10,Alpha,\"Comedy, Drama\"\n"
        "u2,A9,5,Alpha (dup row),\n"
        "u1,C7,20,Gamma?,\n"
        "u2,B0X,5,,\n"  # tie with the row above: file order decides
        "u2,C7,1,,\n"
        "u3,C7,1,,\n"  # only 1 interaction: dropped
    )
    ds = load_dataset(f"csv:{f}")
    assert ds.name == "csv:events" and ds.user_ids == ["u1", "u2"]
    # string ids: numbered by first appearance in the kept sequences (u1's items by time first)
    assert ds.item_raw_ids == ["", "A9", "C7", "B0X"]
    assert ds.sequences == [[1, 2, 3], [2, 1, 3]]
    assert ds.item_titles[1] == "Alpha"  # first non-empty value wins
    assert ds.item_texts[1] == "Alpha. Genres: Comedy, Drama."
    assert ds.item_texts[2] == "Gamma?"


def test_csv_without_text(tmp_path):
    f = tmp_path / "plain.csv"
    f.write_text("user_id,item_id,rating,timestamp\n1,7,5,1\n1,8,4,2\n1,9,3,3\n")
    ds = load_dataset(f"csv:{f}")
    assert not ds.has_text
    assert ds.item_titles == ["<pad>", "7", "8", "9"] and ds.item_texts == ["", "", "", ""]


def test_parquet_reader(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    f = tmp_path / "events.parquet"
    pd.DataFrame({
        "user": [1, 1, 1, 2, 2, 2],
        "item": [11, 12, 13, 13, 12, 11],
        "timestamp": pd.to_datetime(["2020-01-03", "2020-01-01", "2020-01-02"] * 2),
        "title": ["a", "b", "c", "c", "b", "a"],
    }).to_parquet(f)
    ds = load_dataset(f"csv:{f}")
    assert ds.user_ids == ["1", "2"]
    assert ds.item_raw_ids == ["", "11", "12", "13"]
    assert ds.sequences == [[2, 3, 1], [2, 1, 3]]  # by date: Jan 1, Jan 2, Jan 3
    assert ds.item_texts[1:] == ["a.", "b.", "c."]


def test_parquet_errors(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    f = tmp_path / "bad.parquet"
    pd.DataFrame({"user": [1], "item": [2], "when": [3]}).to_parquet(f)
    user_error(f"csv:{f}", "bad.parquet", "unknown column 'when'")
    pd.DataFrame({"user": [1, 1], "item": [2, 3], "timestamp": ["1", "soon"]}).to_parquet(f)
    user_error(f"csv:{f}", "bad.parquet row 2", "'soon' is not a number")
    f.write_bytes(b"PAR1 not really")
    user_error(f"csv:{f}", "bad.parquet", "not a readable parquet file")


@pytest.mark.parametrize(
    "content, parts",
    [
        ("user,item,timestamp\n1,2,3\n1,3,yesterday\n", ["events.csv:3", "'yesterday' is not a number"]),
        ("user,item,timestamp\n1,2,nan\n", ["events.csv:2", "not a number"]),
        ("user,item\n1,2\n", ["events.csv:1", "missing column 'timestamp'", "user, item, timestamp"]),
        ("user,item,timestamp,price\n1,2,3,4\n", ["events.csv:1", "unknown column 'price'"]),
        ("user,item,timestamp\n1,2,3\n1,2\n", ["events.csv:3", "expected 3 columns"]),
        ("user,item,timestamp\n1,2,3\nuser,item,timestamp\n", ["events.csv:3", "duplicate header line"]),
        ("user,item,timestamp\n,2,3\n", ["events.csv:2", "empty user id"]),
        ("user,item,timestamp\n", ["events.csv", "no rows"]),
        ("", ["events.csv", "empty"]),
        (b"user,item,timestamp,title\n1,2,3,ok\n1,3,4,caf\xe9\n", ["events.csv:3", "not UTF-8 text"]),
        ("user,item,timestamp\n1,2,3\n2,2,3\n", ["events.csv", "2 users have fewer than 3"]),
    ],
)
def test_csv_malformed(tmp_path, content, parts):
    f = tmp_path / "events.csv"
    f.write_bytes(content if isinstance(content, bytes) else content.encode())
    user_error(f"csv:{f}", *parts)


def test_csv_missing(tmp_path):
    user_error(f"csv:{tmp_path / 'gone.csv'}", "not found", "gone.csv")
    user_error(f"csv:{tmp_path / 'gone.parquet'}", "not found", "gone.parquet")


# -----------------------------------------------------------------------------
# MovieLens-100k from the recbole wheel


@pytest.fixture(scope="module")
def ml100k():
    if importlib.util.find_spec("recbole") is None:
        pytest.skip("recbole wheel not installed (pip install --no-deps recbole==1.2.1)")
    return load_dataset("ml-100k")


def test_ml100k(ml100k):
    ds = ml100k
    assert (ds.name, ds.n_users, ds.n_items) == ("ml-100k", 943, 1682)
    assert sum(map(len, ds.sequences)) == 100_000
    assert ds.item_raw_ids[1:4] == ["1", "2", "3"]  # integer ids keep numeric order: item i = movie i
    assert ds.item_titles[1] == "Toy Story (1995)"
    assert ds.item_texts[1] == "Toy Story (1995). Genres: Animation, Children's, Comedy."

    # sequences are in timestamp order (stable on ties): rebuild a few users straight from the file
    inter = data.ml100k_dir() / "ml-100k.inter"
    rows = [line.split("\t") for line in inter.read_text().splitlines()[1:]]
    for u in range(0, ds.n_users, 97):
        uid = ds.user_ids[u]
        mine = sorted(((float(r[3]), n, r[1]) for n, r in enumerate(rows) if r[0] == uid))
        assert [ds.item_raw_ids[i] for i in ds.sequences[u]] == [it for _, _, it in mine]


def test_ml100k_without_recbole(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(data.importlib.util, "find_spec", lambda name: None if name == "recbole" else real(name))
    user_error("ml-100k", "pip install --no-deps recbole==1.2.1")


# -----------------------------------------------------------------------------
# split and fingerprint


def _toy(sequences) -> Dataset:
    n = max(max(s) for s in sequences)
    return Dataset(name="toy", sequences=sequences, user_ids=[str(i) for i in range(len(sequences))],
                   item_raw_ids=[""] + [str(i) for i in range(1, n + 1)],
                   item_titles=["<pad>"] + [f"t{i}" for i in range(1, n + 1)],
                   item_texts=[""] + [f"text {i}" for i in range(1, n + 1)])


def test_leave_one_out():
    split = leave_one_out(_toy([[1, 2, 3, 4, 5], [3, 2, 1], [4, 5]]))
    assert split.train == [[1, 2, 3], [3]]  # the 2-item user cannot be split
    assert split.val == [([1, 2, 3], 4), ([3], 2)]
    assert split.test == [([1, 2, 3, 4], 5), ([3, 2], 1)]


def test_truncate():
    assert truncate([1, 2, 3, 4], 2) == [3, 4]
    assert truncate([1, 2], 5) == [1, 2]
    assert truncate([1, 2], 0) == []


def test_fingerprint():
    a, b = _toy([[1, 2, 3]]), _toy([[1, 2, 3]])
    assert a.fingerprint() == b.fingerprint() and len(a.fingerprint()) == 64
    b.item_texts[2] = "changed"
    assert a.fingerprint() != b.fingerprint()
    assert a.fingerprint() != _toy([[1, 3, 2]]).fingerprint()


# -----------------------------------------------------------------------------
# arbitrary input: loads or says why, never a traceback

_FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
_seq_text = st.lists(st.sampled_from(["1", "2", "3", "4", "5", "9", " ", "\t", "\n", "x", "-", "\r", "0", "07"]),
                     max_size=40).map("".join)


def _loads_or_user_error(spec: str) -> None:
    try:
        ds = load_dataset(spec)
    except UserError as exc:
        assert "\n" not in str(exc)
        return
    assert all(1 <= i <= ds.n_items for s in ds.sequences for i in s)
    assert len(ds.item_texts) == len(ds.item_titles) == len(ds.item_raw_ids) == ds.n_items + 1


@_FUZZ
@given(content=st.one_of(st.binary(max_size=80), _seq_text.map(str.encode)))
def test_fuzz_sequences(amazon, content):
    _loads_or_user_error(f"amazon:{amazon(sequences=content)}")


@_FUZZ
@given(body=st.one_of(st.text(max_size=80), st.lists(st.sampled_from(
    ["1", "2", "a", ",", ",", "\n", "\n", '"', "3.5", "nan", " ", "\r\n", "user", "\x00"]), max_size=40).map("".join)),
    header=st.sampled_from(["user,item,timestamp\n", "user,item,timestamp,title\n", "", "user;item\n"]))
def test_fuzz_csv(tmp_path, header, body):
    f = tmp_path / "fuzz.csv"
    f.write_bytes((header + body).encode("utf-8", errors="replace"))  # st.text may hold lone surrogates
    _loads_or_user_error(f"csv:{f}")
