"""Character-level text corpora for language modelling: vocabulary, contiguous splits, sources.

A text builder returns a :class:`TextCorpus`: the train / val / test parts of one text as 1-D
int64 token tensors, cut by position so that no passage leaks between splits. Test is the last
``test_fraction`` of the characters, validation the ``val_fraction`` just before it, train
everything before. The :class:`CharVocab` is built from the training part alone; a character
that first appears later becomes ``<unk>`` (id 0) and is counted in ``corpus.extra``::

    corpus = DATASETS.get("kjv")(block_size=256, val_fraction=0.05)
    corpus.model_kwargs()                 # {"vocab_size": ..., "block_size": 256}
    corpus.vocab.decode(corpus.train[:80])

Registered sources: ``kjv`` (the King James Bible printed by Debian's ``bible-kjv``),
``fortunes`` (Debian's ``fortunes`` files) and ``text`` (any UTF-8 file, ``options.path``).
The split fractions are builder arguments; ``val_fraction`` comes from ``data.val_fraction``,
not from ``data.options``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from archlab.data._registry import as_path, register_dataset
from archlab.data.cache import DatasetNotFoundError, search_dirs, user_cache_dir
from archlab.data.idx import CorruptDataError

UNK_ID = 0
UNK_TOKEN = "<unk>"
UNK_DISPLAY = "\ufffd"  # what decode() prints for <unk>: visible, and not a character of the text


def _codepoints(text: str) -> np.ndarray:
    """Unicode code points of ``text`` as uint32 (UTF-32 is one code unit per character)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


class CharVocab:
    """Characters <-> token ids. Id 0 is ``<unk>``; the known characters get 1..n in sorted order.

    ``CharVocab.from_text(train_text)`` builds it; ``to_dict()`` / ``from_dict()`` carry it in a
    checkpoint as plain data, so sampling needs no dataset.
    """

    def __init__(self, chars: str) -> None:
        if not isinstance(chars, str):
            raise TypeError(f"CharVocab takes the characters as one str, got "
                            f"{type(chars).__name__}")
        if list(chars) != sorted(set(chars)):
            raise ValueError("CharVocab characters must be sorted and unique (ids follow their "
                             f"order); got {chars[:40]!r}{'...' if len(chars) > 40 else ''}")
        self.chars = chars
        # Sorted code points: encoding is one binary search per character (np.searchsorted)
        # instead of a Python dict look-up per character of a 4 M-character text.
        self._codepoints = _codepoints(chars)
        self._table = [UNK_DISPLAY, *chars]

    @classmethod
    def from_text(cls, text: str) -> "CharVocab":
        return cls("".join(sorted(set(text))))

    def __len__(self) -> int:
        return len(self.chars) + 1  # + <unk>

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CharVocab) and other.chars == self.chars

    def __repr__(self) -> str:
        return f"CharVocab({len(self.chars)} characters + {UNK_TOKEN})"

    def _lookup(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64, known bool) per character of ``text``."""
        points = _codepoints(text)
        pos = np.searchsorted(self._codepoints, points)
        known = pos < len(self._codepoints)
        known[known] = self._codepoints[pos[known]] == points[known]
        return np.where(known, pos + 1, UNK_ID).astype(np.int64), known

    def encode(self, text: str, strict: bool = False) -> torch.Tensor:
        """Token ids (int64, 1-D) of ``text``. Unknown characters become ``<unk>`` (0), or with
        ``strict=True`` raise ValueError listing them (for prompts typed by a person)."""
        ids, known = self._lookup(text)
        if strict and not known.all():
            unknown = self.unknown_chars(text)
            raise ValueError(f"{len(unknown)} character(s) not in the vocabulary: "
                             f"{', '.join(map(repr, unknown))}. The vocabulary holds the "
                             f"{len(self.chars)} distinct characters of the training text; "
                             "use only those (or encode with strict=False to map the others "
                             f"to {UNK_TOKEN})")
        return torch.from_numpy(ids)

    def unknown_chars(self, text: str) -> list[str]:
        """The distinct characters of ``text`` outside the vocabulary, sorted."""
        _, known = self._lookup(text)
        return [chr(p) for p in np.unique(_codepoints(text)[~known])]

    def unknown_count(self, text: str) -> int:
        """How many characters of ``text`` (with repeats) would encode to ``<unk>``."""
        return int((~self._lookup(text)[1]).sum())

    def decode(self, ids: torch.Tensor | Sequence[int]) -> str:
        """The text of a 1-D sequence of ids; ``<unk>`` shows as U+FFFD."""
        if isinstance(ids, torch.Tensor):
            if ids.ndim != 1:
                raise ValueError(f"decode takes a 1-D sequence of ids, got shape "
                                 f"{tuple(ids.shape)}; decode one row at a time")
            ids = ids.tolist()
        bad = [i for i in ids if not (isinstance(i, int) and 0 <= i < len(self))]
        if bad:
            raise ValueError(f"token id(s) {bad[:5]} out of range: this vocabulary has ids "
                             f"0..{len(self) - 1}")
        return "".join(map(self._table.__getitem__, ids))

    def to_dict(self) -> dict:
        """Plain data (a str) that ``torch.load(weights_only=True)`` can read back."""
        return {"chars": self.chars}

    @classmethod
    def from_dict(cls, d: dict) -> "CharVocab":
        if not isinstance(d, dict) or set(d) != {"chars"} or not isinstance(d["chars"], str):
            keys = sorted(d) if isinstance(d, dict) else "-"
            raise ValueError("a CharVocab dict is {'chars': <the characters as one str>}, got "
                             f"{type(d).__name__} with keys {keys}")
        return cls(d["chars"])


def _check_tokens(name: str, t: torch.Tensor, vocab_size: int) -> None:
    if not isinstance(t, torch.Tensor) or t.dtype != torch.int64 or t.ndim != 1:
        what = f"{getattr(t, 'dtype', type(t).__name__)} {tuple(getattr(t, 'shape', ()))}"
        raise ValueError(f"TextCorpus.{name} must be a 1-D int64 tensor of token ids, got {what}")
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= vocab_size):
        raise ValueError(f"TextCorpus.{name} has ids outside 0..{vocab_size - 1} (vocab size "
                         f"{vocab_size})")


@dataclass
class TextCorpus:
    """One text cut into contiguous token splits, with the vocabulary of its training part."""

    train: torch.Tensor  # int64 (N_train,)
    val: torch.Tensor | None  # int64 (N_val,); None when val_fraction is 0
    test: torch.Tensor  # int64 (N_test,)
    vocab: CharVocab
    block_size: int  # context length: tokens a model sees per position
    source: str = ""  # where the text came from, recorded in the run's meta.json
    extra: dict = field(default_factory=dict)  # plain data: characters, <unk> counts, sha256

    def __post_init__(self) -> None:
        for name in ("train", "val", "test"):
            if name == "val" and self.val is None:
                continue
            _check_tokens(name, getattr(self, name), len(self.vocab))

    @property
    def num_classes(self) -> int:
        """Next-token classes: the vocabulary size, ``<unk>`` included."""
        return len(self.vocab)

    def split_tokens(self) -> dict[str, int]:
        return {"train": len(self.train), "val": 0 if self.val is None else len(self.val),
                "test": len(self.test)}

    def model_kwargs(self) -> dict[str, int]:
        """The language model's constructor arguments that the data fixes."""
        return {"vocab_size": len(self.vocab), "block_size": self.block_size}

    def describe(self) -> dict:
        """Plain data for a checkpoint: enough to encode prompts and decode samples."""
        return {"kind": "text", "vocab": self.vocab.to_dict(), "block_size": self.block_size,
                "input_size": [self.block_size],
                "split_tokens": self.split_tokens(), "source": self.source}


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction={test_fraction} must be in (0, 1): the test split is "
                         "the last test_fraction of the text")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction} must be in [0, 1)")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(f"val_fraction + test_fraction = {val_fraction} + {test_fraction} "
                         f"= {val_fraction + test_fraction:g} leaves no training text; it must "
                         "be below 1")


def corpus_from_text(text: str, *, block_size: int, val_fraction: float = 0.0,
                     test_fraction: float = 0.1, source: str = "",
                     extra: dict | None = None) -> TextCorpus:
    """Split ``text`` by position (train | val | test), build the vocabulary from train, encode.

    Split sizes are ``floor(len * fraction)`` characters for test and val; train gets the rest.
    """
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive int (tokens of context), got "
                         f"{block_size!r}")
    _check_fractions(val_fraction, test_fraction)
    n = len(text)
    n_test, n_val = int(n * test_fraction), int(n * val_fraction)
    n_train = n - n_val - n_test
    # Every split must be longer than one block of inputs plus targets (block_size + 1
    # tokens); train needs 2 × block_size so that a block fits at any random offset in
    # [0, block_size) (see archlab.data.text_loader).
    sizes = {"train": n_train, **({"val": n_val} if val_fraction > 0 else {}), "test": n_test}
    short = [k for k, m in sizes.items() if m <= block_size + 1]
    if short or n_train < 2 * block_size:
        split = " / ".join(f"{k} {m:,}" for k, m in sizes.items())
        raise ValueError(f"text of {n:,} characters ({source or 'given text'}) splits into "
                         f"{split} characters with val_fraction={val_fraction}, "
                         f"test_fraction={test_fraction}; every split must be longer than "
                         f"block_size + 1 = {block_size + 1} and train at least 2 × block_size "
                         f"= {2 * block_size}. Use a longer text, a smaller block_size or other "
                         "fractions")
    parts = {"train": text[:n_train], "val": text[n_train:n_train + n_val],
             "test": text[n_train + n_val:]}
    vocab = CharVocab.from_text(parts["train"])
    tokens = {k: vocab.encode(parts[k]) for k in sizes}
    info = {"characters": dict(sizes),
            "unknown": {k: int((tokens[k] == UNK_ID).sum()) for k in sizes},
            "unknown_chars": {k: "".join(vocab.unknown_chars(parts[k])) for k in sizes},
            "sha256": hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest(),
            **(extra or {})}
    return TextCorpus(train=tokens["train"], val=tokens.get("val"), test=tokens["test"],
                      vocab=vocab, block_size=block_size, source=source, extra=info)


def decode_utf8(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorruptDataError(f"{path}: not valid UTF-8 at byte offset {e.start} "
                               f"({e.reason}: {data[e.start:e.end]!r}); convert it first, e.g. "
                               f"`iconv -f LATIN1 -t UTF-8`") from None


def read_text_file(path: Path) -> str:
    """The whole file as UTF-8 (strict); the error names the file and what is wrong."""
    if not path.exists():
        raise DatasetNotFoundError(f"text file {path} does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; give the path of one UTF-8 text file")
    data = path.read_bytes()
    if not data:
        raise ValueError(f"text file {path} is empty: there is nothing to model")
    return decode_utf8(data, path)


# ---- kjv: the King James Bible printed by Debian's bible-kjv -----------------------------------

KJV_RANGE = "Gen1:1-Rev22:21"  # the whole Bible, Genesis 1:1 to Revelation 22:21
KJV_FILE = "kjv.txt"
# sha256 of `bible Gen1:1-Rev22:21` from bible-kjv 4.38 (Debian 12), pretty-printed at its
# default 79 columns: 4,298,239 characters. The published reference number was measured on
# exactly this text; extra["is_reference_text"] says whether a loaded copy is it.
KJV_REFERENCE_SHA256 = "82fa5f3788c6a9a010fb128a0f0bf588984b5888a82058520620eded59b033ea"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _checksum_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _write_atomic(path: Path, data: bytes) -> None:
    """Readers see the old file or the whole new one, never a part (several ranks may write)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name of our own (not mkstemp, whose 0600 mode would ignore the umask).
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _recorded_sha256(path: Path) -> str | None:
    """The digest in ``path.sha256`` (``sha256sum`` format), or None when there is none."""
    sidecar = _checksum_path(path)
    if not sidecar.is_file():
        return None
    return (sidecar.read_text(encoding="ascii", errors="replace").split() or [""])[0]


def _run_bible(program: str) -> bytes:
    # COLUMNS would change the line breaks (bible wraps at $COLUMNS - 1); without it the text
    # is the default 79-column one. cwd=/ because bible looks for its data file in the
    # current directory before /usr/lib.
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    done = subprocess.run([program, KJV_RANGE], stdin=subprocess.DEVNULL, capture_output=True,
                          env=env, cwd="/", timeout=300)
    if done.returncode != 0 or not done.stdout:
        raise RuntimeError(f"`{program} {KJV_RANGE}` exited with status {done.returncode} and "
                           f"{len(done.stdout)} bytes of output: "
                           f"{done.stderr.decode(errors='replace').strip() or '(no stderr)'}")
    return done.stdout


def extract_kjv(path: Path, program: str = "bible") -> bytes:
    """Print the Bible with ``program`` into ``path`` (plus ``path.sha256``); return the bytes."""
    data = _run_bible(program)
    digest = _sha256(data)
    # The checksum goes first: a crash between the two writes leaves a text that fails its
    # check (and is extracted again), never an unchecked one.
    _write_atomic(_checksum_path(path), f"{digest}  {path.name}\n".encode("ascii"))
    _write_atomic(path, data)
    return data


def _kjv_not_found(searched: Sequence[Path]) -> DatasetNotFoundError:
    where = "\n".join(f"  {d / KJV_FILE}" for d in searched)
    return DatasetNotFoundError(
        f"dataset 'kjv' not found: no {KJV_FILE} in\n{where}\nand the `bible` program (Debian "
        "package bible-kjv) is not on PATH.\nTo get it:\n"
        "  - apt-get install bible-kjv   (then it is extracted and cached on first use)\n"
        f"  - or save the output of `bible {KJV_RANGE}` as {KJV_FILE} in $ARCHLAB_DATA/kjv/ "
        "or in a directory passed as root")


def kjv_text(root: Path | None = None) -> tuple[str, Path]:
    """The KJV text and the file it was read from.

    Looks for ``kjv.txt`` in ``root`` (only, when given) or ``$ARCHLAB_DATA/kjv/`` and then the
    user cache; otherwise extracts it with ``bible`` into ``root`` or the user cache. A copy
    with a ``kjv.txt.sha256`` next to it is verified; a damaged copy where archlab extracts is
    extracted again (once, with a warning), elsewhere it is an error. A ``kjv.txt`` without a
    checksum file was put there by hand and is used as it is.
    """
    target = root if root is not None else user_cache_dir("kjv")
    searched = search_dirs("kjv", root)
    for directory in searched:
        path = directory / KJV_FILE
        if not path.is_file():
            continue
        data = path.read_bytes()
        recorded = _recorded_sha256(path)
        if recorded is None or recorded == _sha256(data):
            return decode_utf8(data, path), path
        if directory != target:
            raise CorruptDataError(f"{path}: its SHA-256 is {_sha256(data)} but "
                                   f"{_checksum_path(path)} records {recorded}; replace or "
                                   "delete the damaged copy")
        warnings.warn(f"{path} does not match its recorded SHA-256 ({recorded}); extracting it "
                      "again with `bible`", stacklevel=2)
        break
    program = shutil.which("bible")
    if program is None:
        raise _kjv_not_found(searched)
    path = target / KJV_FILE
    written = extract_kjv(path, program)
    data = path.read_bytes()
    if _sha256(data) != _sha256(written):
        raise CorruptDataError(f"{path}: the text read back does not match the SHA-256 of what "
                               "was just written; is the disk full or failing?")
    return decode_utf8(data, path), path


def _kjv_location() -> str | None:
    for directory in search_dirs("kjv"):
        if (directory / KJV_FILE).is_file():
            return str(directory / KJV_FILE)
    program = shutil.which("bible")
    return f"extracted from {program} on first use" if program else None


@register_dataset("kjv", description="King James Bible as printed by Debian's bible-kjv "
                  "(4.3 M characters), character level", downloadable=False, synthetic=False,
                  kind="text", locate=_kjv_location)
def kjv(root: Path | None = None, download: bool = True, val_fraction: float = 0.0,
        block_size: int = 256, test_fraction: float = 0.1) -> TextCorpus:
    """The King James Bible, verbatim as ``bible Gen1:1-Rev22:21`` prints it (verse numbers,
    chapter headings and 79-column line breaks included), one token per character.

    There is no official download: the text comes from the ``bible`` program (``apt-get
    install bible-kjv``) or a ``kjv.txt`` you provide, so ``download`` is ignored.
    """
    text, path = kjv_text(as_path(root))
    corpus = corpus_from_text(text, block_size=block_size, val_fraction=val_fraction,
                              test_fraction=test_fraction, source=str(path))
    corpus.extra["is_reference_text"] = corpus.extra["sha256"] == KJV_REFERENCE_SHA256
    return corpus


# ---- fortunes: Debian's fortune cookie files -------------------------------------------------

FORTUNES_DIR = Path("/usr/share/games/fortunes")


def fortune_files(directory: Path) -> list[Path]:
    """The plain-text fortune files of ``directory``, sorted by name: the files without an
    extension (``.dat`` are strfile indexes, ``.u8`` links to the same text); subdirectories
    such as the offensive ``off/`` are not read."""
    if not directory.is_dir():
        return []
    return sorted((p for p in directory.iterdir() if p.is_file() and not p.suffix),
                  key=lambda p: p.name)


def _fortunes_dir(root: Path | None) -> tuple[Path | None, list[Path]]:
    searched = search_dirs("fortunes", root, [FORTUNES_DIR])
    for directory in searched:
        if fortune_files(directory):
            return directory, searched
    return None, searched


def _fortunes_location() -> str | None:
    directory, _ = _fortunes_dir(None)
    return None if directory is None else str(directory)


@register_dataset("fortunes", description="Debian's fortune cookie files concatenated "
                  "(about 2.6 M characters), character level", downloadable=False,
                  synthetic=False, kind="text", locate=_fortunes_location)
def fortunes(root: Path | None = None, download: bool = True, val_fraction: float = 0.0,
             block_size: int = 256, test_fraction: float = 0.1) -> TextCorpus:
    """The fortune files in ``/usr/share/games/fortunes`` (Debian's ``fortunes`` package),
    verbatim, concatenated in sorted file-name order. No download: ``apt-get install fortunes``.

    Other packages (``fortunes-min``, ``fortunes-mario``, ...) put files in the same directory,
    so the text depends on what is installed: ``extra["files"]`` and ``extra["sha256"]`` say
    which text a run saw; compare those before comparing numbers across machines.
    """
    directory, searched = _fortunes_dir(as_path(root))
    if directory is None:
        where = "\n".join(f"  {d}" for d in searched)
        raise DatasetNotFoundError(f"dataset 'fortunes' not found: no fortune files (files "
                                   f"without an extension) in\n{where}\nTo get it: apt-get "
                                   "install fortunes (or copy its files to $ARCHLAB_DATA/"
                                   "fortunes/, or pass root=DIR)")
    files = fortune_files(directory)
    text = "".join(decode_utf8(p.read_bytes(), p) for p in files)
    return corpus_from_text(text, block_size=block_size, val_fraction=val_fraction,
                            test_fraction=test_fraction, source=str(directory),
                            extra={"files": [p.name for p in files]})


# ---- text: any UTF-8 file ----------------------------------------------------------------------

@register_dataset("text", description="any UTF-8 text file (options.path), character level",
                  downloadable=False, synthetic=False, kind="text",
                  locate=lambda: "the file in data.options.path")
def text_file(root: Path | None = None, download: bool = True, path: str | None = None,
              val_fraction: float = 0.0, block_size: int = 256,
              test_fraction: float = 0.1) -> TextCorpus:
    """A UTF-8 file as a character-level corpus; a relative ``path`` is taken under ``root``
    when one is given. ``download`` is ignored."""
    if path is None:
        raise ValueError("dataset 'text' needs data.options.path: the UTF-8 file to model")
    file = Path(path).expanduser()
    if not file.is_absolute() and root is not None:
        file = Path(root).expanduser() / file
    return corpus_from_text(read_text_file(file), block_size=block_size,
                            val_fraction=val_fraction, test_fraction=test_fraction,
                            source=str(file.resolve()))
