"""The exported motion tower equals the live model, runs with jax + numpy only,
and rejects wrong shapes; the CLI errors in one line."""

import importlib.util
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from tests import cli
from wat_jax import checkpointing, evaluate, fileio, parallel, tasks, train
from wat_jax.tools import export

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _toy_config():
    spec = importlib.util.spec_from_file_location(
        "toy_cfg", os.path.join(ROOT, "experiments", "toy.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config("smoke")
    config.num_devices = 1
    return config


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A toy checkpoint (initialised params; export needs no training), exported."""
    workdir = str(tmp_path_factory.mktemp("toy_export"))
    config = _toy_config()
    fileio.write_json(os.path.join(workdir, "config.json"), json.loads(config.to_json()))
    mesh = parallel.make_mesh(1)
    example = (
        tasks.get_task("toy")
        .train_batcher(config, workdir, parallel.process_rows(config.batch_size, mesh))
        .batch(0)
    )
    model = train.create_model(config, example["text"].shape[-1], example["labels"].shape[-1])
    tx = train.make_optimizer(config.optim, config.total_steps)
    state = jax.jit(lambda: train.create_train_state(model, tx, config.seed, example))()
    ckpt = checkpointing.Checkpointer(workdir, 1, 3)
    meta = train.run_meta(config, workdir, tasks.get_task("toy"), train.ModelDims.of_batch(example))
    ckpt.save(5, parallel.replicate(state, mesh), dict(meta, position=0, step=5))
    ckpt.close()
    path = export.export_motion_tower(config, workdir)
    return workdir, config, path


def _random_batch(batch, window, seed):
    rng = np.random.default_rng(seed)
    motion = rng.standard_normal((batch, *window)).astype(np.float32)  # [B, T, J, F]
    lengths = rng.integers(1, window[0] + 1, batch)
    mask = np.arange(window[0])[None] < lengths[:, None]  # [B, T]
    return motion, mask


def test_export_round_trip_equals_the_live_model_at_two_batch_sizes(exported):
    workdir, config, path = exported
    assert path == os.path.join(workdir, "export", "motion_tower.bin")
    embed = export.load_motion_tower(path)
    window = tasks.get_task(config.task).windows(config, workdir, "val").motion.shape[1:]
    assert embed.window == window and embed.embed_dim == config.text.dim
    towers, step = evaluate.restore_towers(config, workdir)
    assert step == 5
    for batch in (3, 7):
        motion, mask = _random_batch(batch, window, seed=batch)
        got = embed(motion, mask)
        assert got.shape == (batch, config.text.dim)
        # The live model as evaluation runs it: restored from the checkpoint, jitted.
        np.testing.assert_allclose(got, towers.motion(motion, mask), atol=1e-5, rtol=0)
    assert np.abs(got[0] - got[1]).max() > 1e-3  # distinct inputs, distinct outputs


def test_artefact_has_a_symbolic_batch_and_describes_itself(exported):
    _, config, path = exported
    with open(path, "rb") as f:
        exp = jax.export.deserialize(bytearray(f.read()))
    motion_aval, mask_aval = exp.in_avals[-2:]
    assert str(motion_aval.shape[0]) == "b" and str(mask_aval.shape[0]) == "b"
    assert set(exp.platforms) == set(export.PLATFORMS)
    with open(os.path.splitext(path)[0] + ".json") as f:
        info = json.load(f)
    assert info["step"] == 5 and info["embed_dim"] == config.text.dim
    with np.load(export.params_path(path)) as z:
        names = list(z["names"])
    assert names and all("text_proj" not in n for n in names)
    assert any("motion_encoder" in n for n in names)


def test_loader_needs_only_jax_and_numpy(exported, tmp_path):
    workdir, config, path = exported
    window = tasks.get_task(config.task).windows(config, workdir, "val").motion.shape[1:]
    motion, mask = _random_batch(4, window, seed=0)
    np.save(tmp_path / "motion.npy", motion)
    np.save(tmp_path / "mask.npy", mask)
    expected = export.load_motion_tower(path)(motion, mask)
    script = (
        "import sys, numpy as np\n"
        "from wat_jax.tools.export import load_motion_tower\n"
        f"f = load_motion_tower({path!r})\n"
        f"out = f(np.load({str(tmp_path / 'motion.npy')!r}),\n"
        f"        np.load({str(tmp_path / 'mask.npy')!r}))\n"
        f"np.save({str(tmp_path / 'out.npy')!r}, out)\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('flax', 'optax', 'orbax')\n"
        "         or m.startswith('wat_jax.')\n"
        "         and m not in ('wat_jax.tools', 'wat_jax.tools.export', 'wat_jax.errors')]\n"
        "assert not heavy, heavy\n"
    )
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-6)


def test_loader_rejects_the_wrong_window_shape(exported):
    _, _, path = exported
    embed = export.load_motion_tower(path)
    t, j, f = embed.window
    with pytest.raises(ValueError, match="expects motion"):
        embed(np.zeros((2, t, j + 1, f), np.float32), np.ones((2, t), bool))
    with pytest.raises(ValueError, match="expects motion"):
        embed(np.zeros((t, j, f), np.float32), np.ones((t,), bool))


def test_cli_without_checkpoint_is_one_line(tmp_path):
    fileio.write_json(str(tmp_path / "config.json"), json.loads(_toy_config().to_json()))
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, "-m", "wat_jax.tools.export", f"--workdir={tmp_path}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "no checkpoint" in errors[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "export").exists()


def test_an_unwritable_output_is_refused_before_the_export(exported, tmp_path, monkeypatch):
    # A read-only destination (simulated: tests run as root, which chmod does not stop)
    # is one line before any checkpoint is read, not an EROFS traceback after the work.
    import errno
    import tempfile

    from wat_jax import artifact
    from wat_jax.errors import InputError

    workdir, config, _ = exported
    share = tmp_path / "share"
    share.mkdir()
    real_mkstemp = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir and os.path.realpath(dir).startswith(str(share)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), dir)
        return real_mkstemp(*args, dir=dir, **kwargs)

    def restore(*args, **kwargs):
        raise AssertionError("the checkpoint was read before the output was checked")

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(artifact, "restore", restore)
    out = share / "export" / "tower.bin"
    with pytest.raises(InputError) as error:
        export.export_motion_tower(config, workdir, output=str(out))
    assert str(error.value) == (
        f"{out}: could not write it: the file system is read-only; nothing was written; "
        "give --output=PATH in a writable folder"
    )
    assert os.listdir(share) == []


def test_a_failed_export_leaves_no_mismatched_files(exported, tmp_path):
    # params.npz replaced, then the .bin fails: a .bin of another export beside these
    # params would load and compute garbage, so the export's files are removed.
    import errno

    from wat_jax.errors import DiskError

    workdir, config, path = exported
    out = tmp_path / "tower.bin"
    for name in (out, tmp_path / "tower.params.npz", tmp_path / "tower.json"):
        name.write_bytes(b"an older export")

    class FullDisk:
        def serialize(self):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(DiskError) as error:
        export.save(FullDisk(), [np.zeros(3, np.float32)], ["['x']"], str(out))
    assert str(error.value).startswith(f"{out}: could not write it: the disk is full")
    assert "the export's files (tower.params.npz, tower.bin, tower.json) were removed" in str(
        error.value
    )
    assert os.listdir(tmp_path) == []


def test_cli_reads_the_run_from_a_checkpoint_folder(exported, tmp_path):
    workdir, _, _ = exported
    out = tmp_path / "tower.bin"
    checkpoint = os.path.join(workdir, "checkpoints", "5")
    proc = cli.run(["wat_jax.tools.export", f"--workdir={checkpoint}", f"--output={out}"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.load(open(tmp_path / "tower.json"))["step"] == 5


def _export_folder(workdir, out) -> subprocess.CompletedProcess:
    """`python -m wat_jax.tools.export --format=folder` of `workdir` into `out`."""
    args = [f"--workdir={workdir}", "--format=folder", f"--output={out}"]
    return cli.run(["wat_jax.tools.export", *args])


def test_cli_folder_format_writes_what_load_reads(exported, tmp_path):
    """--format=folder: config.json, model.safetensors and README.md, the same model as
    the checkpoint (issue 26, item 6)."""
    import wat_jax

    workdir, config, _ = exported
    out = tmp_path / "model"
    proc = _export_folder(workdir, out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(f"{out}: config.json, model.safetensors, README.md (")
    assert sorted(os.listdir(out)) == ["README.md", "config.json", "model.safetensors"]
    saved, checkpoint = wat_jax.load(str(out)), wat_jax.load(workdir)
    assert saved.step == checkpoint.step == 5 and saved.classes == checkpoint.classes
    motion, mask = _random_batch(3, (checkpoint.dims.frames, checkpoint.dims.joints,
                                     checkpoint.dims.features), seed=4)  # fmt: skip
    np.testing.assert_array_equal(
        saved.embed_motion(motion, mask), checkpoint.embed_motion(motion, mask)
    )
    # A folder that is a run's workdir is refused before anything is read or written.
    proc = _export_folder(workdir, workdir)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith(
        f"error: {workdir}: holds other files"
    )
