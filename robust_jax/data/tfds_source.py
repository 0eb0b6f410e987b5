"""Loads a dataset through TensorFlow Datasets (`tfds.data_source`, random access, no TensorFlow).

Reading prepared ``array_record`` data needs only ``tensorflow-datasets``; preparing (downloading) a
dataset needs TensorFlow: ``pip install -e '.[tfds]'`` and then either set
``config.dataset.download=True`` or run ``tfds build NAME --data_dir=DIR --file_format=array_record``.
A dataset that is not prepared is a one-line `DatasetError` giving that command; with
``download=True`` the download host is first tried for `CONNECT_TIMEOUT_S` seconds, because TFDS
itself retries DNS for minutes on a host without network.
"""
from __future__ import annotations

import socket
import threading
import urllib.parse
import urllib.request

import numpy as np

from robust_jax.data.arrays import DatasetError, Split, Splits

__all__ = ['CONNECT_TIMEOUT_S', 'DOWNLOAD_URLS', 'load_tfds']

# Where TFDS 4.9 downloads each dataset from (the URLs in its builders).
DOWNLOAD_URLS = {
    'mnist': 'https://storage.googleapis.com/cvdf-datasets/mnist/',
    'fashion_mnist': 'http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/',
    'cifar10': 'https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz',
    'cifar100': 'https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz',
    'svhn_cropped': 'http://ufldl.stanford.edu/housenumbers/',
}
CONNECT_TIMEOUT_S = 3.0


def load_tfds(name: str, data_dir: str | None, download: bool) -> Splits:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  builder = tfds.builder(name, data_dir=data_dir or None, file_format='array_record')
  root = str(builder.data_dir_root)
  prepare = (f"pip install -e '.[tfds]' && tfds build {name} --data_dir={root} "
             '--file_format=array_record')
  if download and not builder.is_prepared():
    host, port = _connection_address(DOWNLOAD_URLS[name])
    if not _can_connect(host, port, CONNECT_TIMEOUT_S):
      raise DatasetError(
          f'config.dataset.download=True: cannot connect to {host}:{port}, where TFDS downloads '
          f'{name}, within {CONNECT_TIMEOUT_S:g} s (no network?); on a host with internet run '
          f'{prepare} and copy {root}/{name} to this host')
    try:
      builder.download_and_prepare()
    except ImportError as e:
      raise DatasetError(f'preparing TFDS dataset {name!r} needs TensorFlow: pip install -e '
                         f"'.[tfds]' ({e})") from e
  try:
    sources = {split: builder.as_data_source(split=split) for split in ('train', 'test')}
  except (KeyError, NotImplementedError, FileNotFoundError) as e:
    # KeyError: nothing prepared (no splits); NotImplementedError: prepared as tfrecord;
    # FileNotFoundError: record files missing.
    raise DatasetError(
        f'TFDS dataset {name!r} is not prepared as array_record in {root!r}; on a host with '
        f'internet run {prepare} (or set config.dataset.download=True)') from e
  return Splits(**{split: _read_all(source, f'TFDS {name} in {root!r}, {split} split')
                    for split, source in sources.items()})


def _connection_address(url: str) -> tuple[str, int]:
  """(host, port) that fetching `url` connects to: its own, or the proxy configured for it."""
  parts = urllib.parse.urlsplit(url)
  proxy = urllib.request.getproxies().get(parts.scheme)
  if proxy and not urllib.request.proxy_bypass(parts.hostname):
    parts = urllib.parse.urlsplit(proxy)
  return parts.hostname, parts.port or (443 if parts.scheme == 'https' else 80)


def _can_connect(host: str, port: int, timeout_s: float) -> bool:
  """Whether a TCP connection to (host, port) opens within `timeout_s`, name lookup included
  (which `socket` cannot time out, hence the thread)."""
  connected = []

  def connect():
    try:
      socket.create_connection((host, port), timeout=timeout_s).close()
      connected.append(True)
    except OSError:
      pass

  thread = threading.Thread(target=connect, daemon=True)
  thread.start()
  thread.join(timeout_s)
  return bool(connected)


def _read_all(source, origin: str) -> Split:
  """The split as TFDS stores it, nothing cast (`Split` and `load_splits` check it)."""
  records = [source[i] for i in range(len(source))]
  return Split(np.asarray([r['image'] for r in records]),
               np.asarray([r['label'] for r in records]), origin=origin)
