"""Reads a text classification split from a CSV file with a header and columns `text,label`.

Quoting as Python's `csv` module (RFC 4180: fields in double quotes may hold commas and newlines);
other columns are ignored. The file must be UTF-8 and parse as CSV; every label an integer in
[0, num_classes); every text non-empty; at least one row (`arrays.Split`). Each violation is a
one-line `DatasetError` naming the file and the row (row 1 = the first line after the header).
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
import re

import numpy as np

from robust_jax.data.arrays import DatasetError
from robust_jax.data.text import RawText

__all__ = ['COLUMNS', 'file_sha256', 'read_csv_split']

COLUMNS = ('text', 'label')


def file_sha256(path: str) -> str:
  with open(path, 'rb') as f:
    return hashlib.sha256(f.read()).hexdigest()


def read_csv_split(path: str, num_classes: int) -> RawText:
  """The texts and int32 labels of the CSV file at `path`."""
  if not os.path.exists(path):
    raise DatasetError(f'CSV file {path!r} not found; it must have a header with columns '
                       f'{",".join(COLUMNS)}')
  with open(path, 'rb') as f:
    raw = f.read()
  try:
    content = raw.decode('utf-8-sig')  # a byte order mark is not part of the first column
  except UnicodeDecodeError as e:
    line = raw.count(b'\n', 0, e.start) + 1
    raise DatasetError(f'{path}: byte {raw[e.start:e.start + 1]!r} at offset {e.start} (line '
                       f'{line}) is not UTF-8; the file must be UTF-8 text') from None
  reader = csv.DictReader(io.StringIO(content, newline=''))
  try:
    header, rows = reader.fieldnames, list(reader)
  except csv.Error as e:  # e.g. a quote never closed makes one field of the rest of the file
    raise DatasetError(f'{path}: not readable as CSV from line {reader.line_num + 1} on ({e}); a '
                       'field that opens a double quote must close it') from None
  missing = [c for c in COLUMNS if c not in (header or ())]
  if missing:
    raise DatasetError(f'{path}: header {header}: missing column {missing[0]!r}; the file needs '
                       f'columns {",".join(COLUMNS)}')
  texts, labels = [], []
  for row_number, row in enumerate(rows, start=1):
    text, label = row['text'], row['label']
    if text is None or not text.strip():
      raise DatasetError(f'{path} row {row_number}: empty text; give every row a text or remove '
                         'the row')
    if label is None or not re.fullmatch(r'\s*[+-]?[0-9]+\s*', label):  # int() reads '0_3' as 3
      raise DatasetError(f'{path} row {row_number}: label={label!r}: must be an integer in '
                         f'[0, {num_classes})')
    value = int(label)
    if not 0 <= value < num_classes:
      raise DatasetError(f'{path} row {row_number}: label={value}: must be an integer in '
                         f'[0, {num_classes})')
    texts.append(text)
    labels.append(value)
  return RawText(texts, np.asarray(labels, np.int32), origin=f'CSV file {path!r}')
