"""Character corpora: the vocabulary against a plain dict, contiguous splits against slicing the
text, the builders' errors, and the real KJV / fortunes texts against the Debian programs."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from archlab.data._registry import DATASETS, check_dataset_options, dataset_options
from archlab.data.cache import DatasetNotFoundError, user_cache_dir
from archlab.data.idx import CorruptDataError
from archlab.data.text import (FORTUNES_DIR, KJV_FILE, UNK_DISPLAY, CharVocab, TextCorpus,
                               corpus_from_text, fortune_files, fortunes, kjv, text_file)

HAS_BIBLE = shutil.which("bible") is not None
needs_bible = pytest.mark.skipif(not HAS_BIBLE, reason="the `bible` program is not installed "
                                 "(apt-get install bible-kjv)")


def reference_ids(chars: str, text: str) -> list[int]:
    """Independent encoding: a dict from the sorted characters to 1..n, 0 for the rest."""
    table = {c: i + 1 for i, c in enumerate(sorted(set(chars)))}
    return [table.get(c, 0) for c in text]


def bible(*args: str) -> bytes:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    return subprocess.run(["bible", *args], capture_output=True, check=True, env=env,
                          cwd="/").stdout


# --- vocabulary ------------------------------------------------------------------------------

def test_vocab_ids_match_a_plain_dict_and_round_trip():
    train = "The quick brown fox, naïve café\n🦊 jumps!"
    vocab = CharVocab.from_text(train)
    assert len(vocab) == len(set(train)) + 1 and vocab.chars == "".join(sorted(set(train)))
    assert vocab.encode(train).tolist() == reference_ids(train, train)
    assert vocab.encode(vocab.chars).tolist() == list(range(1, len(vocab)))  # sorted order
    assert vocab.encode(train).dtype == torch.int64
    assert vocab.decode(vocab.encode(train)) == train
    assert vocab.decode(vocab.encode(train).tolist()) == train
    assert vocab.encode("").tolist() == [] and vocab.decode([]) == ""


def test_unknown_characters_map_to_zero_and_are_counted():
    vocab = CharVocab.from_text("hello world")
    text = "hello, wörld! 🦊 hello"
    ids = vocab.encode(text)
    assert ids.tolist() == reference_ids("hello world", text)
    unknown = [c for c in text if c not in "hello world"]
    assert vocab.unknown_count(text) == len(unknown) == int((ids == 0).sum()) == 4
    assert vocab.unknown_chars(text) == sorted(set(unknown)) == ["!", ",", "ö", "🦊"]
    assert vocab.decode(ids) == "".join(c if c in "hello world" else UNK_DISPLAY for c in text)


def test_strict_encode_lists_exactly_the_unknown_characters():
    vocab = CharVocab.from_text("abc ")
    with pytest.raises(ValueError) as err:
        vocab.encode("a zébra zèbre", strict=True)
    message = str(err.value)
    assert "'e', 'r', 'z', 'è', 'é'." in message  # repr'd, de-duplicated, sorted
    assert "5 character(s)" in message and "training text" in message
    assert "'a'" not in message and "'b'" not in message
    assert vocab.encode("a cab", strict=True).tolist() == reference_ids("abc ", "a cab")


def test_decode_rejects_ids_outside_the_vocabulary_and_2d_input():
    vocab = CharVocab.from_text("ab")
    with pytest.raises(ValueError, match=r"\[3\] out of range.*0\.\.2"):
        vocab.decode([1, 3])
    with pytest.raises(ValueError, match="out of range"):
        vocab.decode(torch.tensor([-1]))
    with pytest.raises(ValueError, match="1-D"):
        vocab.decode(torch.zeros(2, 2, dtype=torch.long))


def test_vocab_dict_survives_a_weights_only_checkpoint():
    vocab = CharVocab.from_text("Ünïcode and\nnewlines\t🦊")
    buf = io.BytesIO()
    torch.save({"vocab": vocab.to_dict()}, buf)
    buf.seek(0)
    loaded = CharVocab.from_dict(torch.load(buf, weights_only=True)["vocab"])
    assert loaded == vocab and loaded.chars == vocab.chars
    assert loaded.encode("and 🦊").tolist() == vocab.encode("and 🦊").tolist()


@pytest.mark.parametrize("bad", [{"chars": "ba"}, {"chars": "aab"}, {"chars": ["a"]}, {},
                                 {"chars": "ab", "extra": 1}, "ab"])
def test_vocab_from_dict_rejects_malformed_data(bad):
    with pytest.raises((ValueError, TypeError)):
        CharVocab.from_dict(bad)


# --- splits ----------------------------------------------------------------------------------

TEXT = ("In the beginning was the text, and the text was split by position.\n" * 8
        + "the text has a Z and a Q.\n")  # Z and Q: only in the test part


def test_splits_are_contiguous_and_vocab_comes_from_train_only():
    corpus = corpus_from_text(TEXT, block_size=8, val_fraction=0.2, test_fraction=0.1,
                              source="inline")
    n = len(TEXT)
    n_test, n_val = int(n * 0.1), int(n * 0.2)
    n_train = n - n_val - n_test
    assert corpus.split_tokens() == {"train": n_train, "val": n_val, "test": n_test}
    train_text = TEXT[:n_train]
    assert corpus.vocab.chars == "".join(sorted(set(train_text)))
    # Each split is the slice of the text at its position, encoded with the train vocabulary.
    for tokens, piece in ((corpus.train, TEXT[:n_train]),
                          (corpus.val, TEXT[n_train:n_train + n_val]),
                          (corpus.test, TEXT[n_train + n_val:])):
        assert tokens.tolist() == reference_ids(train_text, piece)
    whole = torch.cat([corpus.train, corpus.val, corpus.test])
    assert corpus.vocab.decode(whole) == "".join(c if c in train_text else UNK_DISPLAY
                                                 for c in TEXT)
    # Z and Q only occur in the test part: they are <unk> there and counted.
    assert "Z" not in corpus.vocab.chars and "Q" not in corpus.vocab.chars
    assert corpus.extra["unknown"] == {"train": 0, "val": 0, "test": 2}
    assert corpus.extra["unknown_chars"]["test"] == "QZ"
    assert corpus.extra["characters"] == {"train": n_train, "val": n_val, "test": n_test}
    assert corpus.extra["sha256"] == hashlib.sha256(TEXT.encode()).hexdigest()
    assert int((corpus.test == 0).sum()) == 2


def test_no_val_split_and_what_the_corpus_tells_a_model_and_a_checkpoint():
    corpus = corpus_from_text(TEXT, block_size=16, source="inline")
    assert corpus.val is None and corpus.split_tokens()["val"] == 0
    assert len(corpus.train) + len(corpus.test) == len(TEXT)
    assert corpus.model_kwargs() == {"vocab_size": len(corpus.vocab), "block_size": 16}
    assert corpus.num_classes == len(corpus.vocab)
    buf = io.BytesIO()
    torch.save(corpus.describe(), buf)
    buf.seek(0)
    described = torch.load(buf, weights_only=True)
    assert described["kind"] == "text" and described["block_size"] == 16
    assert CharVocab.from_dict(described["vocab"]) == corpus.vocab
    assert described["split_tokens"] == corpus.split_tokens()


@pytest.mark.parametrize("val, test, match", [
    (0.0, 0.0, "test_fraction=0.0 must be in"), (0.0, 1.0, "test_fraction=1.0 must be in"),
    (-0.1, 0.1, "val_fraction=-0.1"), (0.5, 0.5, "leaves no training text"),
    (0.95, 0.1, "leaves no training text")])
def test_bad_fractions(val, test, match):
    with pytest.raises(ValueError, match=match):
        corpus_from_text(TEXT, block_size=4, val_fraction=val, test_fraction=test)


def test_splits_too_short_for_a_block_name_the_sizes():
    # 600 characters: test 60, val 30 -> val is not longer than block_size + 1 = 33.
    with pytest.raises(ValueError, match=r"train 510 / val 30 / test 60.*block_size \+ 1 = 33"):
        corpus_from_text("x" * 600, block_size=32, val_fraction=0.05, test_fraction=0.1)
    with pytest.raises(ValueError, match="2 × block_size = 600"):  # train 540 < 2T
        corpus_from_text("x" * 600, block_size=300, test_fraction=0.1)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="block_size must be a positive int"):
            corpus_from_text(TEXT, block_size=bad)


def test_corpus_checks_its_tensors():
    vocab = CharVocab.from_text("ab")
    ok = torch.tensor([1, 2, 0])
    with pytest.raises(ValueError, match="train must be a 1-D int64"):
        TextCorpus(ok.int(), None, ok, vocab, 2)
    with pytest.raises(ValueError, match="test has ids outside 0..2"):
        TextCorpus(ok, None, torch.tensor([3]), vocab, 2)


# --- the `text` builder and the options ------------------------------------------------------

def test_text_file_builder(tmp_path):
    (tmp_path / "notes.txt").write_text(TEXT, encoding="utf-8")
    corpus = text_file(path=str(tmp_path / "notes.txt"), block_size=8, val_fraction=0.1)
    assert corpus.source == str((tmp_path / "notes.txt").resolve())
    assert corpus.vocab.decode(corpus.train) == TEXT[:len(corpus.train)]
    relative = DATASETS.get("text")(root=tmp_path, download=False, path="notes.txt", block_size=8)
    assert torch.equal(relative.test, corpus_from_text(TEXT, block_size=8).test)


def test_text_file_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="needs data.options.path"):
        text_file()
    missing = tmp_path / "nope.txt"
    with pytest.raises(DatasetNotFoundError, match=str(missing)):
        text_file(path=str(missing))
    with pytest.raises(IsADirectoryError, match=f"{tmp_path} is a directory"):
        text_file(path=str(tmp_path))
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.txt is empty"):
        text_file(path=str(tmp_path / "empty.txt"))
    (tmp_path / "latin1.txt").write_bytes("café au lait".encode("latin-1") + b"x" * 100)
    with pytest.raises(CorruptDataError, match=r"latin1.txt: not valid UTF-8 at byte offset 3"):
        text_file(path=str(tmp_path / "latin1.txt"))


def test_val_fraction_is_not_a_data_option():
    assert dataset_options("text") == {"path", "block_size", "test_fraction"}
    assert dataset_options("kjv") == dataset_options("fortunes") == {"block_size", "test_fraction"}
    with pytest.raises(ValueError, match=r"no option\(s\) \['val_fraction'\]"):
        check_dataset_options("kjv", {"val_fraction": 0.1})
    for name in ("kjv", "fortunes", "text"):
        meta = DATASETS.entry(name).meta
        assert meta["kind"] == "text" and meta["description"] and not meta["downloadable"]
        assert not meta["synthetic"]


# --- kjv -------------------------------------------------------------------------------------

def test_kjv_without_bible_or_a_copy_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no `bible` on PATH
    with pytest.raises(DatasetNotFoundError, match="apt-get install bible-kjv") as err:
        kjv()
    assert str(user_cache_dir("kjv") / KJV_FILE) in str(err.value)


def test_kjv_uses_a_copy_in_archlab_data_verbatim(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # proves bible is not run
    (tmp_path / "kjv").mkdir()
    (tmp_path / "kjv" / KJV_FILE).write_text(TEXT, encoding="utf-8")
    monkeypatch.setenv("ARCHLAB_DATA", str(tmp_path))
    corpus = kjv(block_size=8)
    assert corpus.source == str(tmp_path / "kjv" / KJV_FILE)
    assert corpus.vocab.decode(corpus.train) == TEXT[:len(corpus.train)]
    assert corpus.extra["is_reference_text"] is False
    # A copy with a checksum file that does not match is refused, not silently used.
    (tmp_path / "kjv" / (KJV_FILE + ".sha256")).write_text("0" * 64 + "  kjv.txt\n")
    with pytest.raises(CorruptDataError, match="does not match|records"):
        kjv(block_size=8)


@needs_bible
def test_kjv_is_the_verbatim_output_of_bible_and_cached_with_its_checksum():
    reference = bible("Gen1:1-Rev22:21")
    corpus = kjv()
    cached = user_cache_dir("kjv") / KJV_FILE
    assert corpus.source == str(cached) and cached.read_bytes() == reference
    digest = hashlib.sha256(reference).hexdigest()
    assert (cached.parent / (KJV_FILE + ".sha256")).read_text().split()[0] == digest
    assert corpus.extra["sha256"] == digest
    n = sum(corpus.split_tokens().values())
    assert n == len(reference.decode()) and 4_200_000 < n < 4_400_000
    text = corpus.vocab.decode(corpus.train) + corpus.vocab.decode(corpus.test)
    assert text == reference.decode()  # KJV's test part has no character unseen in train
    opening = bible("Gen1:1-1:3").decode()
    assert text.startswith(opening)
    first_verse = next(line for line in opening.splitlines() if line.strip().startswith("1 "))
    assert first_verse == "  1 In the beginning God created the heaven and the earth."
    assert text[:200].splitlines()[3] == first_verse  # blank, "Genesis 1", blank, verse 1


@needs_bible
def test_kjv_damaged_cache_is_detected_and_extracted_again():
    kjv()
    cached = user_cache_dir("kjv") / KJV_FILE
    good = cached.read_bytes()
    damaged = bytearray(good)
    damaged[1000] ^= 0x20  # one letter's case
    cached.write_bytes(bytes(damaged))
    with pytest.warns(UserWarning, match="does not match its recorded SHA-256"):
        corpus = kjv()
    assert cached.read_bytes() == good
    assert corpus.extra["sha256"] == hashlib.sha256(good).hexdigest()


# --- fortunes --------------------------------------------------------------------------------

def test_fortune_files_are_the_extensionless_files_in_name_order(tmp_path):
    for name, body in (("zen", "Z fortune\n%\n"), ("art", "A fortune\n%\n"),
                       ("art.dat", "\x00\x01"), ("notes.txt", "not a fortune")):
        (tmp_path / name).write_text(body)
    (tmp_path / "art.u8").symlink_to("art")
    (tmp_path / "off").mkdir()
    (tmp_path / "off" / "rude").write_text("offensive\n%\n")
    assert [p.name for p in fortune_files(tmp_path)] == ["art", "zen"]
    corpus = fortunes(root=tmp_path, block_size=2, test_fraction=0.3)
    whole = torch.cat([corpus.train, corpus.test])
    assert corpus.vocab.decode(whole).replace(UNK_DISPLAY, "?")[:12] == "A fortune\n%\n"
    assert corpus.extra["files"] == ["art", "zen"] and corpus.source == str(tmp_path)


def test_fortunes_missing_says_how_to_get_them(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="apt-get install fortunes"):
        fortunes(root=tmp_path)


@pytest.mark.skipif(not fortune_files(FORTUNES_DIR), reason=f"no fortune files in {FORTUNES_DIR} "
                    "(apt-get install fortunes)")
def test_fortunes_is_the_debian_files_concatenated():
    names = sorted(p.name for p in FORTUNES_DIR.iterdir()
                   if p.is_file() and "." not in p.name)
    reference = b"".join((FORTUNES_DIR / n).read_bytes() for n in names).decode("utf-8")
    corpus = fortunes()
    assert corpus.extra["files"] == names and corpus.source == str(FORTUNES_DIR)
    n_train = len(corpus.train)
    assert corpus.vocab.chars == "".join(sorted(set(reference[:n_train])))
    assert corpus.train.tolist() == reference_ids(reference[:n_train], reference[:n_train])
    assert corpus.test.tolist() == reference_ids(reference[:n_train], reference[n_train:])
    assert len(reference) - n_train == int(len(reference) * 0.1)
