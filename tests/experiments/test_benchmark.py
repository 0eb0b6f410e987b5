"""The benchmark times both steps and reports the paired ratio (tests/test_step_reference.py checks
that the hand-written steps compute what the library computes), and with --torch the PyTorch twin's
(tests/test_torch_reference.py checks that the twin computes what the library computes)."""
import json

import numpy as np
import pytest
from absl import flags

from experiments import benchmark
from robust_jax.config.files import load_config_file


def _tiny(spec):
  config = load_config_file(spec)
  config.model.update(widths=(4, 8), hidden_size=16)
  config.train.batch_size = 16
  return config


def test_benchmark_reports_both_steps(eight_devices):
  del eight_devices
  result = benchmark.benchmark(_tiny('configs/erm.py:fashion_mnist'), rounds=2, steps=1)
  general, hand = result['robust_jax_round_s'], result['hand_written_round_s']
  assert len(general) == len(hand) == 2 and min(general + hand) > 0
  assert result['robust_jax_step_s'] == pytest.approx(np.median(general))
  assert result['ratio_time_general_over_hand'] == pytest.approx(
      np.median(np.array(general) / np.array(hand)))  # paired per round, not median / median


def test_pytorch_column_overrides_no_augment_and_configs_without_a_twin(tmp_path, monkeypatch,
                                                                        capsys):
  pytest.importorskip('torch')

  def no_augmentation_expected(dataset_config):
    raise AssertionError(f'augment_fn_for({dataset_config.name}) called under --no_augment')

  monkeypatch.setattr(benchmark.data, 'augment_fn_for', no_augmentation_expected)
  out = tmp_path / 'bench.json'
  flags.FLAGS(['benchmark', '--configs=configs/fashion_mnist_cnn.py,configs/class_similarity.py',
               '--set=model.widths=(4, 8),model.hidden_size=16,train.batch_size=16,'
               'dataset.augmentation=crop_flip', '--no_augment', '--torch', '--rounds=2',
               '--steps=1', f'--json_out={out}'])
  try:
    benchmark.main([])
  finally:
    flags.FLAGS.unparse_flags()
  with_twin, without = json.loads(out.read_text())
  assert with_twin['overrides'][1] == 'model.hidden_size=16' and with_twin['global_batch'] == 16
  assert with_twin['augment'] is False and with_twin['pytorch']['augmentation'] == 'none'
  general, torch_times = with_twin['robust_jax_round_s'], with_twin['pytorch_round_s']
  assert len(torch_times) == 2 and min(torch_times) > 0
  assert with_twin['pytorch_step_s'] == pytest.approx(np.median(torch_times))
  assert with_twin['ratio_time_general_over_pytorch'] == pytest.approx(
      np.median(np.array(general) / np.array(torch_times)))  # paired per round
  assert with_twin['pytorch']['threads'] == benchmark.xla_cpu_threads()
  assert with_twin['pytorch']['method'] == 'erm' and not with_twin['pytorch']['compile']
  assert 'pytorch_step_s' not in without
  assert without['pytorch_skipped'].startswith(
      "config.targets.name='class_similarity': no PyTorch twin")
  table = capsys.readouterr().out
  assert '÷ PyTorch |' in table and '| class_similarity |' in table and '| — | — |' in table


def test_text_configs_report_texts_per_second(capsys):
  flags.FLAGS(['benchmark', '--configs=configs/text.py:imdb_textcnn_erm',
               '--set=model.embedding_size=8,model.num_filters=4,train.batch_size=8,'
               'dataset.max_length=16,dataset.vocab_size=50', '--rounds=1', '--steps=1'])
  try:
    benchmark.main([])
  finally:
    flags.FLAGS.unparse_flags()
  table = capsys.readouterr().out
  assert '| config | robust_jax ms/step | texts/s |' in table and '| text_imdb_textcnn_erm |' in table


@pytest.mark.long
def test_replica_mode_reports_every_batching_and_count(tmp_path, capsys):
  """--replicas times R replicas sequential, unrolled and vmapped (ERM here; by default ERM and
  PGD-10 AT)."""
  default_configs = [load_config_file(spec) for spec in benchmark._REPLICA_CONFIGS]
  assert [c.adversary.name for c in default_configs] == ['none', 'pgd']
  assert default_configs[1].adversary.num_steps == 10
  out = tmp_path / 'replicas.json'
  flags.FLAGS(['benchmark', '--replicas=1,2', '--configs=configs/fashion_mnist_cnn.py',
               '--set=model.widths=(4, 8),model.hidden_size=16,train.batch_size=8', '--rounds=2',
               '--steps=1', f'--json_out={out}'])
  try:
    benchmark.main([])
  finally:
    flags.FLAGS.unparse_flags()
  (result,) = json.loads(out.read_text())
  assert result['device'] == 'cpu x1' and result['batch_per_replica'] == 8
  rows = {(row['batching'], row['replicas']): row for row in result['rows']}
  assert list(rows) == [('sequential', 1), ('sequential', 2), ('unroll', 1), ('unroll', 2),
                        ('vmap', 1), ('vmap', 2)]
  for (batching, count), row in rows.items():
    assert len(row['round_s']) == 2 and min(row['round_s']) > 0 and row['compile_s'] > 0
    assert row['step_s'] == pytest.approx(np.median(row['round_s']))
    assert row['replica_s'] == pytest.approx(row['step_s'] / count)
    assert row['ratio_replica_time_to_first'] == pytest.approx(np.median(  # paired per round
        np.array(row['round_s']) / count / np.array(rows[batching, 1]['round_s'])))
  table = capsys.readouterr().out
  assert '| config | batching | R | ms/step | ms/replica | per replica ÷ R=1 | compile s |' in (
      table)
  assert '| fashion_mnist_cnn | unroll | 1 |' in table and '| fashion_mnist_cnn | vmap | 2 |' in (
      table)
