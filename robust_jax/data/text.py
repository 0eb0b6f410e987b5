"""Text classification data: word tokens, a vocabulary, fixed-length token ids, and their cache.

The DropAttack notebooks tokenise with NLTK's `word_tokenize` after lowercasing and drop English
stop words and punctuation (papers.md 2.3); NLTK needs downloads, so this is a dependency-free
stand-in (PROPOSAL):

  tokens(text) = words of lowercase(text) with HTML tags (IMDB's `<br />`) read as spaces, a word
                 being a maximal run of letters and digits, inner apostrophes kept ("don't");
                 without the words of `STOP_WORDS` (NLTK's English list) if `remove_stop_words`.

Punctuation never forms a token, as the notebooks drop NLTK's punctuation tokens.

Vocabulary, from the training split only: `<pad>` = 0, `<unk>` = 1, then every word seen at least
`min_count` times, most frequent first (ties in alphabetical order), `vocab_size` entries in all at
most. Encoding: the ids of a text's first `max_length` tokens (1 for words outside the vocabulary),
then 0 up to `max_length`; its length is the number of ids before the padding, at least 1 (a text
with no word left is one `<unk>`). Ids are int32 (N, max_length), lengths int32 (N,).

Cache: tokenising is done once per data and settings. `load_cached` keeps two files in
`cache_dir`, named by a hash of the settings and of the source (the CSV files' bytes, or the TFDS
name and version): `NAME-KEY.vocab.txt` (one word per line, line i = id i) and `NAME-KEY.npz`
(ids, lengths and labels of both splits, the vocabulary file's sha256, and the settings and source
the KEY hashes). A cache .npz that is damaged, truncated or lacks an array, was built from other
settings or data than its name says, or whose vocabulary file is missing or does not match its ids
is a one-line error naming the files to delete; nothing cached is ever overwritten or deleted
(files are written under temporary names and renamed). Cached splits pass the same checks as fresh
ones (`arrays` module docstring).
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from robust_jax.data.arrays import DatasetError, Split, Splits, read_npz
from robust_jax.data.specs import DatasetSpec

__all__ = ['PAD_ID', 'RawText', 'STOP_WORDS', 'TextSplit', 'TokenizerSettings', 'UNK_ID',
           'build_vocabulary', 'default_cache_dir', 'encode', 'load_cached', 'tokenize',
           'tokenize_splits']

PAD_ID, UNK_ID = 0, 1
_SPECIAL = ('<pad>', '<unk>')
_TAG = re.compile(r'<[^>]*>')
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_CACHE_FORMAT = 2
_CACHE_KEYS = ('description', 'vocabulary_sha256',
               *(f'{split}_{array}' for split in ('train', 'test')
                 for array in ('tokens', 'lengths', 'labels')))

# NLTK's English stop words (nltk.corpus.stopwords.words('english'), 179 words).
STOP_WORDS = frozenset("""
i me my myself we our ours ourselves you you're you've you'll you'd your yours yourself yourselves
he him his himself she she's her hers herself it it's its itself they them their theirs themselves
what which who whom this that that'll these those am is are was were be been being have has had
having do does did doing a an the and but if or because as until while of at by for with about
against between into through during before after above below to from up down in out on off over
under again further then once here there when where why how all any both each few more most other
some such no nor not only own same so than too very s t can will just don don't should should've
now d ll m o re ve y ain aren aren't couldn couldn't didn didn't doesn doesn't hadn hadn't hasn
hasn't haven haven't isn isn't ma mightn mightn't mustn mustn't needn needn't shan shan't shouldn
shouldn't wasn wasn't weren weren't won won't wouldn wouldn't
""".split())


@dataclasses.dataclass(frozen=True)
class RawText:
  """One split before tokenising: `texts` (N strings) and `labels` (N,) integers as read; `origin`
  names the data (file, split) in messages (`arrays.Split`)."""

  texts: Sequence[str]
  labels: np.ndarray
  origin: str = 'split'


@dataclasses.dataclass(frozen=True)
class TextSplit(Split):
  """A tokenised split. `images` holds the token ids int32 (N, L) (the pipeline moves every
  dataset's model inputs under that name), `labels` (N,) as `Split`'s, `lengths` int32 (N,) in
  [1, L]: example n's ids are nonzero before `lengths[n]` and `PAD_ID` from there on. `checked`
  also requires the ids to lie in [0, spec.vocab_size)."""

  lengths: np.ndarray

  def _check_inputs(self) -> None:
    tokens, lengths = self.images, self.lengths
    if tokens.dtype != np.int32 or tokens.ndim != 2:
      raise DatasetError(f'{self.origin}: token ids must be int32 (N, L), got {tokens.dtype} '
                         f'{tokens.shape}')
    if lengths.dtype != np.int32 or lengths.shape != (len(tokens),):
      raise DatasetError(f'{self.origin}: lengths must be int32 ({len(tokens)},), got '
                         f'{lengths.dtype} {lengths.shape}')
    _check_range(lengths, 1, tokens.shape[1] + 1, 'length', self.origin)
    positions = np.arange(tokens.shape[1])
    if not np.array_equal(tokens != PAD_ID, positions < lengths[:, None]):
      raise DatasetError(f'{self.origin}: token ids must be nonzero before each length and 0 '
                         '(<pad>) after it')

  def checked(self, spec: DatasetSpec) -> TextSplit:
    """`Split.checked`, and every token id in [0, spec.vocab_size)."""
    _check_range(self.tokens, 0, spec.vocab_size, 'token id', self.origin)
    return super().checked(spec)

  @property
  def tokens(self) -> np.ndarray:
    return self.images


def _check_range(values: np.ndarray, low: int, high: int, what: str, origin: str) -> None:
  """A `DatasetError` naming the first of `values` outside [low, high) and its index. Tokenising
  never makes such values, so they come from a damaged cache, which the message says to delete."""
  outside = np.argwhere((values < low) | (values >= high))
  if outside.size:
    index = tuple(int(i) for i in outside[0])
    raise DatasetError(f'{origin}: {what} {values[index]} at index {",".join(map(str, index))} is '
                       f'outside [{low}, {high}); delete the cache files to tokenise again')


@dataclasses.dataclass(frozen=True)
class TokenizerSettings:
  """Everything that decides the token ids (the module docstring gives the rules)."""

  max_length: int
  vocab_size: int
  min_count: int
  remove_stop_words: bool


def tokenize(text: str, remove_stop_words: bool = False) -> list[str]:
  """The words of `text`, lowercased, punctuation and HTML tags dropped (module docstring)."""
  words = _WORD.findall(_TAG.sub(' ', text.lower()))
  return [w for w in words if w not in STOP_WORDS] if remove_stop_words else words


def build_vocabulary(token_lists: Iterable[Sequence[str]], vocab_size: int,
                     min_count: int = 1) -> tuple[str, ...]:
  """('<pad>', '<unk>', words by count descending, ties alphabetical), `vocab_size` at most, words
  seen fewer than `min_count` times left out."""
  if vocab_size < len(_SPECIAL):
    raise ValueError(f'vocab_size={vocab_size}: must be >= 2 (<pad> and <unk>)')
  counts = collections.Counter(word for tokens in token_lists for word in tokens)
  ranked = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
  return _SPECIAL + tuple(ranked[:vocab_size - len(_SPECIAL)])


def encode(token_lists: Sequence[Sequence[str]], vocabulary: Sequence[str],
           max_length: int) -> tuple[np.ndarray, np.ndarray]:
  """(ids int32 (N, max_length), lengths int32 (N,)): each text's first `max_length` words as
  vocabulary ids (`UNK_ID` if absent), padded with `PAD_ID`; an empty token list is one `<unk>`."""
  index = {word: i for i, word in enumerate(vocabulary)}
  ids = np.zeros((len(token_lists), max_length), np.int32)
  lengths = np.zeros(len(token_lists), np.int32)
  for n, tokens in enumerate(token_lists):
    row = [index.get(word, UNK_ID) for word in tokens[:max_length]] or [UNK_ID]
    ids[n, :len(row)] = row
    lengths[n] = len(row)
  return ids, lengths


def tokenize_splits(train: RawText, test: RawText,
                    settings: TokenizerSettings) -> tuple[Splits, tuple[str, ...]]:
  """(tokenised `Splits` of `TextSplit`s, the vocabulary built from `train` alone)."""
  tokenized = {name: [tokenize(t, settings.remove_stop_words) for t in raw.texts]
               for name, raw in (('train', train), ('test', test))}
  vocabulary = build_vocabulary(tokenized['train'], settings.vocab_size, settings.min_count)
  splits = {}
  for name, raw in (('train', train), ('test', test)):
    ids, lengths = encode(tokenized[name], vocabulary, settings.max_length)
    splits[name] = TextSplit(ids, np.asarray(raw.labels), lengths, origin=raw.origin)
  return Splits(**splits), vocabulary


def default_cache_dir() -> str:
  """`$XDG_CACHE_HOME/robust_jax/text`, or `~/.cache/robust_jax/text`."""
  root = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(root, 'robust_jax', 'text')


def load_cached(name: str, source_id: str, settings: TokenizerSettings, cache_dir: str,
                read_raw: Callable[[], tuple[RawText, RawText]]) -> Splits:
  """The tokenised splits of dataset `name`, from the cache when present, else tokenised from
  `read_raw()` (called only then) and cached.

  source_id: identifies the raw data (e.g. a hash of the files); with `settings` it names the cache
  files, so other data or settings never reuse, and never replace, a cache entry.
  """
  description = json.dumps(
      {'format': _CACHE_FORMAT, 'source': source_id, 'settings': dataclasses.asdict(settings)},
      sort_keys=True)
  key = hashlib.sha256(description.encode()).hexdigest()[:16]
  stem = os.path.join(cache_dir or default_cache_dir(), f'{name}-{key}')
  ids_path, vocabulary_path = stem + '.npz', stem + '.vocab.txt'
  if os.path.exists(ids_path):
    return _read_cache(ids_path, vocabulary_path, description)
  splits, vocabulary = tokenize_splits(*read_raw(), settings)
  vocabulary_bytes = ''.join(word + '\n' for word in vocabulary).encode()
  arrays = {'description': np.array(description),
            'vocabulary_sha256': np.array(hashlib.sha256(vocabulary_bytes).hexdigest())}
  for split_name, split in (('train', splits.train), ('test', splits.test)):
    arrays.update({f'{split_name}_tokens': split.tokens, f'{split_name}_lengths': split.lengths,
                   f'{split_name}_labels': split.labels})
  os.makedirs(os.path.dirname(stem), exist_ok=True)
  _write_atomically(vocabulary_path, lambda f: f.write(vocabulary_bytes))
  _write_atomically(ids_path, lambda f: np.savez(f, **arrays))  # last: marks the entry complete
  return splits


def _read_cache(ids_path: str, vocabulary_path: str, description: str) -> Splits:
  """The cached splits, checked against the vocabulary file and `description` (what the cache
  file's name hashes: format, source and settings)."""
  if not os.path.exists(vocabulary_path):
    raise DatasetError(f'text cache {ids_path}: its vocabulary file {vocabulary_path} is missing; '
                       'delete the .npz to tokenise again')
  with open(vocabulary_path, 'rb') as f:
    vocabulary_bytes = f.read()
  arrays = read_npz(ids_path, _CACHE_KEYS, f'delete it and {vocabulary_path} to tokenise again')
  if str(arrays['description']) != description:
    raise DatasetError(f'text cache {ids_path} was built from other data or settings '
                       f'({arrays["description"]}); delete it and {vocabulary_path} to tokenise '
                       'again')
  expected = str(arrays['vocabulary_sha256'])
  found = hashlib.sha256(vocabulary_bytes).hexdigest()
  vocabulary_size = vocabulary_bytes.count(b'\n')
  too_large = max(int(arrays[f'{s}_tokens'].max(initial=0)) for s in ('train', 'test'))
  if found != expected or too_large >= vocabulary_size:
    raise DatasetError(
        f'text cache mismatch: vocabulary file {vocabulary_path} ({vocabulary_size} words, '
        f'sha256 {found[:12]}) is not the one the ids in {ids_path} were built with (sha256 '
        f'{expected[:12]}); delete both files to tokenise again')
  return Splits(*(TextSplit(arrays[f'{s}_tokens'], arrays[f'{s}_labels'], arrays[f'{s}_lengths'],
                            origin=f'text cache {ids_path!r}, {s} split')
                  for s in ('train', 'test')))


def _write_atomically(path: str, write: Callable) -> None:
  handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix='.tmp-')
  try:
    with os.fdopen(handle, 'wb') as f:
      write(f)
    os.replace(temporary, path)
  except BaseException:
    os.remove(temporary)
    raise
