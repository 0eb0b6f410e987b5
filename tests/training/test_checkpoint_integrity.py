"""A damaged checkpoint never restores silently: checksums recorded at save, verified at restore;
training falls back to the newest intact checkpoint, evaluation refuses; results.json is never
written from unusable weights; a failed save leaves no unfinished folder."""
import errno
import json
import os
import re
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest


from robust_jax.training import checkpoint_integrity, checkpointing, loop as train, runs
from robust_jax.training import workdir as workdir_lib
from robust_jax.training import workdir_lock
from tests import helpers
from tests.helpers import REPO_ROOT


def _step_folder(workdir, step):
  return os.path.join(workdir, 'checkpoints', str(step))


def _largest_file(folder):
  paths = [os.path.join(root, name) for root, _, names in os.walk(folder) for name in names]
  return max(paths, key=os.path.getsize)


def _overwrite_largest(folder):
  """Random bytes over 4 KiB in the middle of the largest file (array data): no orbax error."""
  path = _largest_file(folder)
  with open(path, 'r+b') as f:
    f.seek(os.path.getsize(path) // 2)
    f.write(np.random.default_rng(0).bytes(4096))
  return f'sha256 mismatch in {os.path.relpath(path, folder)}'


def _truncate(relative=None):
  def damage(folder):
    path = os.path.join(folder, relative) if relative else _largest_file(folder)
    size = os.path.getsize(path)
    with open(path, 'r+b') as f:
      f.truncate(size // 2)
    return f'{os.path.relpath(path, folder)} has {size // 2} bytes, {size} were written'
  return damage


def _delete(relative=None):
  def damage(folder):
    path = os.path.join(folder, relative) if relative else _largest_file(folder)
    os.remove(path)
    return f'{os.path.relpath(path, folder)} is missing'
  return damage


def _empty(folder):
  """An empty step folder: its checksum file is missing (in a workdir from before run ids, only
  orbax's error could tell)."""
  shutil.rmtree(folder)
  os.mkdir(folder)
  return 'its robust_jax_sha256.json is missing'


DAMAGES = {
    'overwritten bytes': _overwrite_largest,
    'truncated data file': _truncate(),
    'deleted data file': _delete(),
    'deleted manifest': _delete('default/manifest.ocdbt'),
    'truncated manifest': _truncate('default/manifest.ocdbt'),
    'deleted metadata': _delete('default/_METADATA'),
    'truncated metadata': _truncate('default/_METADATA'),
    'empty step folder': _empty,
}


def test_checksums_cover_every_file_orbax_does_not_rewrite_after_saving(finished_run):
  folder = _step_folder(finished_run[1], 8)
  with open(os.path.join(folder, checkpoint_integrity.CHECKSUM_FILE)) as f:
    recorded = json.load(f)['files']
  on_disk = {os.path.relpath(os.path.join(root, name), folder)
             for root, _, names in os.walk(folder) for name in names}
  assert set(recorded) == on_disk - {checkpoint_integrity.CHECKSUM_FILE, '_CHECKPOINT_METADATA',
                                     'commit_success.txt'}
  assert any(name.startswith('default/ocdbt.process_0/d/') for name in recorded)


@pytest.mark.parametrize('damage', DAMAGES.values(), ids=DAMAGES.keys())
def test_loading_a_damaged_checkpoint_is_refused_in_one_line(run_copy, damage):
  """`python -m robust_jax.evaluate --checkpoint=W/checkpoints/8` (and --workdir=W, whose newest
  is step 8) refuse it, never falling back to step 5."""
  _, path = run_copy
  what = damage(_step_folder(path, 8))
  directory = os.path.join(path, 'checkpoints')
  for step in (8, None):
    with pytest.raises(checkpointing.CheckpointError) as error:
      runs.load_run(path, step=step)
    message = str(error.value)
    assert message.startswith(f'checkpoint at step 8 in {directory} is damaged ({what}')
    assert message.endswith('; pick another step (the others: 5)') and '\n' not in message
  assert checkpointing.saved_steps(directory) == [5, 8]  # refusing moves nothing


def test_non_finite_weights_are_refused_even_with_matching_checksums(run_copy, eight_devices):
  config, path = run_copy
  directory = os.path.join(path, 'checkpoints')
  state = _restore(config, directory, 8, eight_devices[0])
  state = state.replace(params=jax.tree.map(lambda p: p.at[..., 0].set(np.nan), state.params))
  shutil.rmtree(os.path.join(directory, '8'))
  _save(directory, 8, state)
  with pytest.raises(checkpointing.CheckpointError,
                     match=r'is damaged \(non-finite values in params/'):
    runs.load_run(path, step=8)


def test_resuming_skips_a_damaged_checkpoint_moves_it_aside_and_keeps_the_results(
    run_copy, eight_devices, capsys):
  config, path = run_copy
  with open(os.path.join(path, 'results.json')) as f:
    results = json.load(f)
  what = _overwrite_largest(_step_folder(path, 8))
  train.train_and_evaluate(config, path, devices=eight_devices[:1])
  moved_to = os.path.join(path, 'checkpoints.damaged', '8')
  assert (f'checkpoint at step 8 is damaged ({what}), moved to {moved_to}; resuming from step 5'
          in capsys.readouterr().out)
  assert os.path.isdir(moved_to)
  # Steps 6..8 were trained again, identically, and saved anew (orbax would skip a step it holds).
  with open(os.path.join(path, 'results.json')) as f:
    assert helpers.without_timings(json.load(f)) == helpers.without_timings(results)
  assert checkpointing.saved_steps(os.path.join(path, 'checkpoints')) == [5, 8]
  runs.load_run(path, step=8)


def test_no_intact_checkpoint_is_a_one_line_error_that_writes_nothing(run_copy, eight_devices):
  config, path = run_copy
  with open(os.path.join(path, 'results.json')) as f:
    results = f.read()
  eight = _overwrite_largest(_step_folder(path, 8))
  five = _delete('default/manifest.ocdbt')(_step_folder(path, 5))
  directory = os.path.join(path, 'checkpoints')
  with pytest.raises(checkpointing.CheckpointError) as error:
    train.train_and_evaluate(config, path, devices=eight_devices[:1])
  assert str(error.value) == (
      f'no intact checkpoint in {directory}: step 8: {eight}; step 5: {five}; to train from '
      f'scratch, move the folder away (mv {directory} {directory}.old) and rerun')
  assert checkpointing.saved_steps(directory) == [5, 8]
  with open(os.path.join(path, 'results.json')) as f:
    assert f.read() == results


def test_results_json_is_not_written_from_unusable_weights(run_copy, eight_devices):
  """Finite but huge weights (as overwritten bytes in a checkpoint from before checksums give):
  the test loss is not finite, and the good results.json stays."""
  config, path = run_copy
  with open(os.path.join(path, 'results.json')) as f:
    results = f.read()
  directory = os.path.join(path, 'checkpoints')
  state = _restore(config, directory, 8, eight_devices[0])
  state = state.replace(params=jax.tree.map(lambda p: p * 3e38, state.params))
  shutil.rmtree(os.path.join(directory, '8'))
  _save(directory, 8, state)
  with pytest.raises(train.NonFiniteLossError) as error:
    train.train_and_evaluate(config, path, devices=eight_devices[:1])
  assert 'at step 8, so results.json is not written' in str(error.value)
  with open(os.path.join(path, 'results.json')) as f:
    assert f.read() == results


def test_evaluation_needs_no_lock_while_a_training_holds_the_workdir(run_copy):
  _, path = run_copy
  with workdir_lock.hold(path):
    runs.load_run(path)


def test_a_checkpoint_from_before_checksums_still_restores(run_copy, capsys):
  """A workdir from before run ids (no run.json): restored with a notice."""
  _, path = run_copy
  os.remove(os.path.join(path, workdir_lib.RUN_FILE))
  os.remove(os.path.join(_step_folder(path, 8), checkpoint_integrity.CHECKSUM_FILE))
  runs.load_run(path, step=8)
  assert ('checkpoint at step 8 has no checksums (written before robust_jax recorded them): not '
          'verified') in capsys.readouterr().out


def test_a_missing_checksum_file_is_damage_once_the_workdir_has_a_run_id(run_copy):
  """One flipped bit in the data, the checksum file deleted: refused, not restored silently."""
  _, path = run_copy
  folder = _step_folder(path, 8)
  os.remove(os.path.join(folder, checkpoint_integrity.CHECKSUM_FILE))
  with open(_largest_file(folder), 'r+b') as f:
    f.seek(100)
    byte = f.read(1)
    f.seek(100)
    f.write(bytes([byte[0] ^ 1]))
  with pytest.raises(checkpointing.CheckpointError,
                     match=r'is damaged \(its robust_jax_sha256.json is missing\)'):
    runs.load_run(path, step=8)


@pytest.mark.parametrize('how', ['copy', 'symlink', 'rename'])
def test_a_copied_or_renamed_step_folder_is_refused(run_copy, how):
  """`cp -r checkpoints/5 checkpoints/8` (or a symlink, or 8 renamed to 99) used to be evaluated as
  step 8 with step 5's weights."""
  _, path = run_copy
  directory = os.path.join(path, 'checkpoints')
  if how == 'rename':
    os.rename(_step_folder(path, 8), _step_folder(path, 99))
    step, holds = 99, 8
  else:
    shutil.rmtree(_step_folder(path, 8))
    (shutil.copytree if how == 'copy' else os.symlink)(_step_folder(path, 5), _step_folder(path, 8))
    step, holds = 8, 5
  with pytest.raises(checkpointing.CheckpointError) as error:
    runs.load_run(path, step=step)
  assert str(error.value) == (
      f'checkpoint at step {step} in {directory} is damaged (it holds the state of step {holds}, '
      f'not {step}: a step folder copied or renamed); pick another step (the others: 5)')


def test_a_restored_step_other_than_the_folders_is_refused_without_checksums(run_copy):
  """A copied step folder of a workdir from before checksums: the restored `state.step` tells."""
  _, path = run_copy
  os.remove(os.path.join(path, workdir_lib.RUN_FILE))
  shutil.rmtree(_step_folder(path, 8))
  shutil.copytree(_step_folder(path, 5), _step_folder(path, 8))
  os.remove(os.path.join(_step_folder(path, 8), checkpoint_integrity.CHECKSUM_FILE))
  with pytest.raises(checkpointing.CheckpointError, match=r'it holds the state of step 5, not 8'):
    runs.load_run(path, step=8)


def test_a_step_folder_of_another_run_is_refused(run_copy):
  """Another run's checkpoint (same shapes) dropped in: its run id is not the workdir's."""
  _, path = run_copy
  run_file = os.path.join(path, workdir_lib.RUN_FILE)
  with open(run_file) as f:
    run = json.load(f)
  recorded, run['run_id'] = run['run_id'], 'another'
  with open(run_file, 'w') as f:
    json.dump(run, f)
  with pytest.raises(checkpointing.CheckpointError) as error:
    runs.load_run(path, step=8)
  assert (f"is damaged (it belongs to another run: its run id is {recorded}, this workdir's is "
          'another)') in str(error.value)


@pytest.mark.parametrize('files', ['empty', 'one missing'])
def test_a_checksum_file_that_does_not_list_every_file_is_damage(run_copy, files):
  """`{"files": {}}` over damaged bytes used to end in a tensorstore traceback."""
  _, path = run_copy
  folder = _step_folder(path, 8)
  checksum_file = os.path.join(folder, checkpoint_integrity.CHECKSUM_FILE)
  with open(checksum_file) as f:
    record = json.load(f)
  largest = os.path.relpath(_largest_file(folder), folder)
  record['files'] = {} if files == 'empty' else {
      name: entry for name, entry in record['files'].items() if name != largest}
  with open(checksum_file, 'w') as f:
    json.dump(record, f)
  _overwrite_largest(folder)
  what = ('its robust_jax_sha256.json records no files' if files == 'empty' else
          f'{largest} is not recorded in its robust_jax_sha256.json')
  with pytest.raises(checkpointing.CheckpointError, match=re.escape(f'is damaged ({what})')):
    runs.load_run(path, step=8)


def test_a_checkpoint_of_other_shapes_is_refused_naming_the_array(run_copy):
  """config.json's widths edited by hand (as another model's step folder dropped in): orbax's
  'Requested shape ... not compatible' used to be a traceback."""
  _, path = run_copy
  with open(os.path.join(path, 'config.json')) as f:
    stored = json.load(f)
  stored['model']['widths'] = [4, 16]
  with open(os.path.join(path, 'config.json'), 'w') as f:
    json.dump(stored, f)
  with pytest.raises(checkpointing.CheckpointError) as error:
    runs.load_run(path, step=8)
  assert str(error.value).startswith(
      f'checkpoint at step 8 in {path}/checkpoints belongs to another model or config: '
      'params/Conv_1/bias has shape (8,) in it, (16,) in this config; ')


def test_a_file_named_checkpoints_fails_before_training(tiny_npz, tmp_path):
  """It used to train every step, then hang 5 minutes on orbax's failed saves."""
  path = tmp_path / 'w'
  path.mkdir()
  (path / 'checkpoints').write_text('x')
  config = helpers.tiny_config(tiny_npz, num_steps=6)
  for attempt in (lambda: train.train_and_evaluate(config, str(path), devices=jax.devices()[:1]),
                  lambda: runs.load_run(str(path))):
    with pytest.raises(NotADirectoryError) as error:
      attempt()
    assert error.value.filename == str(path / 'checkpoints')
  assert sorted(os.listdir(path)) == ['checkpoints']


def test_unfinished_folders_are_never_restored_and_removed_when_training_starts(tmp_path):
  directory = str(tmp_path / 'checkpoints')
  unfinished = os.path.join(directory, '9.orbax-checkpoint-tmp')
  os.makedirs(os.path.join(unfinished, 'default'))
  assert checkpointing.saved_steps(directory) == []
  checkpointing.Checkpointer(directory, read_only=True).close()  # evaluation touches nothing
  assert os.path.isdir(unfinished)
  checkpointing.Checkpointer(directory).close()
  assert os.listdir(directory) == []


def test_a_save_that_fails_is_one_line_and_leaves_no_unfinished_folder(tmp_path, monkeypatch):
  directory = str(tmp_path / 'checkpoints')

  def full_disk(path):
    raise OSError(errno.ENOSPC, 'No space left on device', path)

  monkeypatch.setattr(checkpoint_integrity, '_sha256', full_disk)
  checkpointer = checkpointing.Checkpointer(directory)
  checkpointer.save(1, {'w': np.ones(3, np.float32)})
  with pytest.raises(checkpointing.CheckpointError) as error:
    checkpointer.close()
  assert str(error.value).startswith(
      f'could not write the checkpoint at step 1 in {directory}: No space left on device: '
      f'{directory}/1.orbax-checkpoint-tmp/')
  assert '\n' not in str(error.value)
  assert os.listdir(directory) == []


def test_a_disk_without_room_for_the_state_is_refused_before_writing(tmp_path, monkeypatch):
  directory = str(tmp_path / 'checkpoints')
  checkpointer = checkpointing.Checkpointer(directory)
  state = {'w': np.ones((1000, 1000), np.float32)}
  usage = shutil.disk_usage(directory)
  monkeypatch.setattr(checkpointing.shutil, 'disk_usage',
                      lambda path: usage._replace(free=4_500_000))
  with pytest.raises(checkpointing.CheckpointError) as error:
    checkpointer.save(3, state)
  assert str(error.value) == (
      f'not enough free space for the checkpoint at step 3 in {directory}: it needs about 5.0 MB, '
      '4.5 MB are free; free some space (or use another --workdir) and rerun the same command to '
      'resume from the newest checkpoint')
  assert os.listdir(directory) == []
  monkeypatch.setattr(checkpointing.shutil, 'disk_usage',
                      lambda path: usage._replace(free=5_100_000))
  checkpointer.save(3, state)
  checkpointer.close()
  assert checkpointing.saved_steps(directory) == [3]


def test_a_full_disk_during_a_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
  """A real full disk: a 96 KiB tmpfs holds one 40 KB checkpoint, not two (needs root). The
  free-space check is turned off, as when another program fills the disk during the save."""
  directory = str(tmp_path / 'disk')
  os.makedirs(directory)
  if subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=96k', 'tmpfs', directory],
                    capture_output=True, check=False).returncode:
    pytest.skip('needs permission to mount a tmpfs')
  monkeypatch.setattr(checkpointing, '_require_free_space', lambda *args: None)
  try:
    checkpointer = checkpointing.Checkpointer(directory, max_to_keep=5)
    state = {'w': np.random.default_rng(0).normal(size=(100, 100)).astype(np.float32)}
    checkpointer.save(1, state)
    with pytest.raises(checkpointing.CheckpointError) as error:
      checkpointer.save(2, state)
      checkpointer.close()
    assert str(error.value) == (
        f'could not write the checkpoint at step 2 in {directory}: No space left on device; the '
        'unfinished checkpoint was removed; free some space (or fix the folder) and rerun the '
        'same command to resume from the newest checkpoint')
    assert sorted(os.listdir(directory)) == ['1']
    restored = checkpointing.Checkpointer(directory, read_only=True).restore(state, 1)
    np.testing.assert_array_equal(restored['w'], state['w'])
  finally:
    subprocess.run(['umount', directory], check=True)


def _restore(config, directory, step, device):
  template = jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype,
                                     sharding=jax.sharding.SingleDeviceSharding(device)),
      workdir_lib.train_state_shapes(config))
  return checkpointing.Checkpointer(directory, read_only=True).restore(template, step)


def _save(directory, step, state):
  """Saves `state` as step `step` of the workdir holding `directory`, with its run id."""
  checkpointer = checkpointing.Checkpointer(
      directory, run_id=workdir_lib.run_id(os.path.dirname(directory)))
  checkpointer.save(step, state)
  checkpointer.close()



def test_training_on_a_full_disk_ends_in_one_line_without_tracebacks(tiny_npz, tmp_path):
  """`python -m robust_jax.main` with its workdir on a 150 KiB tmpfs: one line, exit 1, no traceback
  (before the free-space check, orbax and tensorstore printed 50 tracebacks; needs root)."""
  disk = tmp_path / 'disk'
  disk.mkdir()
  if subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=150k', 'tmpfs', str(disk)],
                    capture_output=True, check=False).returncode:
    pytest.skip('needs permission to mount a tmpfs')
  config_file = tmp_path / 'config.py'
  config_file.write_text('from tests import helpers\n\n\ndef get_config(arg=None):\n'
                         f'  return helpers.tiny_config({tiny_npz!r}, num_steps=6)\n')
  root = REPO_ROOT
  try:
    run = subprocess.run([sys.executable, '-m', 'robust_jax.main', f'--config={config_file}',
                          f'--workdir={disk / "w"}'], capture_output=True, text=True, timeout=300,
                         cwd=root, env={**os.environ, 'PYTHONPATH': root})
  finally:
    subprocess.run(['umount', str(disk)], check=True)
  assert run.returncode == 1 and 'Traceback' not in run.stderr, run.stderr[-2000:]
  assert run.stderr.strip().splitlines()[-1].startswith(
      'error: not enough free space for the checkpoint at step 5 in ')
