"""A trained run read back from config.json and one checkpoint: `wat_jax.load`.

    import wat_jax
    run = wat_jax.load("runs/babel60")            # the newest checkpoint that restores
    run.classify(motion, mask)                     # per window: [(class, score), ...]
    run.save("my_model")                           # config.json, model.safetensors, README.md
    wat_jax.load("my_model")                       # the same model, the same scores

Nothing here imports the training code, the prepared data or the text bank:
each checkpoint's metadata carries the model's dimensions and the class texts'
prototype vectors (see train.run_meta), so a folder holding only config.json
and checkpoints/<step>/ is a complete model. Evaluation, search, export and the
pictures restore through `restore` too, so there is one way to read a run.
"""

import dataclasses
import numbers
import os
import re

import jax
import numpy as np
from absl import logging

from wat_jax import checkpointing, metrics, run_config
from wat_jax.errors import fail
from wat_jax.state import ModelDims, abstract_params, create_model, motion_tower_size
from wat_jax.towers import Towers


@dataclasses.dataclass
class Restored:
    """A checkpoint's model, params and metadata."""

    model: object
    params: dict
    meta: dict
    step: int
    dims: ModelDims


def locate(path: str) -> tuple[str, str, int | None]:
    """A workdir, its checkpoints/ or one checkpoints/<step>/ (`PATH[:STEP]` as for
    config.resume_from) -> (its config.json, the checkpoints root, the step or None).

    config.json is the one beside the checkpoints/ folder.
    """
    root, step = checkpointing.parse_source(path, "wat_jax.load")
    return os.path.join(os.path.dirname(root), "config.json"), root, step


def resolve(path: str, step: int | None = None, key: str = "--workdir") -> tuple[str, int | None]:
    """What `wat_jax.load` accepts -> (the run's workdir, the checkpoint step or None).

    PATH is a workdir, its checkpoints/ or one checkpoints/<step>/, with an optional
    `:STEP` (checkpointing.parse_source); the workdir is the folder of checkpoints/,
    where config.json and the prepared data are. A folder that is none of these comes
    back as it is, so its own error ("no config here; train ...") is said. A step in
    the path and a different `step` (the CLI's --step) are refused.
    """
    folder, named = path, None
    match = re.fullmatch(r"(.*):(\d+)", path)
    if match and not os.path.exists(path):
        folder, named = match.group(1), int(match.group(2))
    if os.path.isdir(folder) and not os.path.exists(os.path.join(folder, "config.json")):
        steps = os.path.isdir(os.path.join(folder, "state")) or any(
            name.isdigit() for name in os.listdir(folder)
        )
        if steps:  # a checkpoints/ folder or one step of it
            root, named = checkpointing.parse_source(path, key)
            if os.path.basename(root) != "checkpoints":
                raise fail(
                    key,
                    f"{root}: a run's checkpoints sit in WORKDIR/checkpoints/, beside its "
                    "config.json and data/; give that workdir",
                )
            folder = os.path.dirname(root)
    if named is not None and step is not None and step >= 0 and step != named:
        raise fail(key, f"{path} names step {named}, but the step asked for is {step}")
    return folder, named if named is not None else step


def restore(config, ckpt_root: str, step: int | None = None, mesh=None) -> Restored:
    """The model of `config` with the params of checkpoint `step` under `ckpt_root`.

    Args:
      config: the run's config (its model block builds the model).
      ckpt_root: the checkpoints/ folder.
      step: a saved step; None picks the newest one that restores (a damaged
        one is skipped with a warning).
      mesh: replicate the params on this mesh; None keeps them on the host.
    """
    ckpt = checkpointing.Checkpointer(ckpt_root, read_only=True, root=True)
    config_path = os.path.join(os.path.dirname(os.path.abspath(ckpt_root)), "config.json")
    try:
        if not ckpt.all_steps():
            raise fail(ckpt_root, "no checkpoint here; run --mode=train first")

        def read(s):
            meta = ckpt.read_meta(s)
            if "dims" not in meta:
                raise fail(
                    ckpt.step_dir(s),
                    "checkpoint has no model dimensions in its metadata (written before "
                    "wat_jax 0.3); train it again",
                )
            dims = ModelDims.from_json(meta["dims"])
            check_meta(config, meta, dims, ckpt.step_dir(s), config_path)
            model = create_model(config, dims.text_dim, dims.num_classes)
            params = ckpt.restore_params(s, abstract_params(model, dims, mesh), meta)
            return Restored(model, params, meta, s, dims)

        found, restored = ckpt.restore_newest(read, step)
        if found is None:
            raise fail(ckpt_root, f"no checkpoint restores (tried {ckpt.all_steps()})")
        logging.info(
            "restored step %d: motion tower %s parameters, windows %s",
            found,
            f"{motion_tower_size(restored.params):,}",
            [restored.dims.frames, restored.dims.joints, restored.dims.features],
        )
        return restored
    finally:
        ckpt.close()


def check_meta(config, meta: dict, dims: ModelDims, step_dir: str, config_path: str) -> None:
    """Refuses a checkpoint whose metadata (task, window shape, classes) is not what the
    config beside it describes, e.g. a BABEL run's checkpoints beside a DenseGait
    config.json: the params would restore (same sizes) and classify would name the wrong
    classes. One line naming both."""
    from wat_jax import tasks

    fix = "put the config.json of the run that wrote these checkpoints beside checkpoints/"
    # A consistency check of two records, not a branch on the task.
    stored, described = meta.get("task"), config.task
    if stored not in (None, described):
        raise fail(
            step_dir,
            f"checkpoint of a {stored} run, but {config_path} is a {described} run's config; {fix}",
        )
    layout = tasks.get_task(config.task).layout(config)
    if layout is None:
        return
    have = [dims.frames, dims.joints, dims.features]
    want = [layout["frames"], layout["joints"], layout["features"]]
    keys = list(meta.get("texts", {}).get("keys", []))
    if have != want or dims.num_classes != len(layout["classes"]):
        raise fail(
            step_dir,
            f"checkpoint of a model for {have} windows and {dims.num_classes} classes, but "
            f"{config_path} ({config.task}) describes {want} windows and "
            f"{len(layout['classes'])} classes; {fix}",
        )
    classes = list(layout["classes"])
    if keys and keys != classes:
        at = next((i for i, (a, b) in enumerate(zip(keys, classes)) if a != b), len(classes))
        ours = repr(keys[at]) if at < len(keys) else "nothing"
        theirs = repr(classes[at]) if at < len(classes) else "nothing"
        raise fail(
            step_dir,
            f"checkpoint ranks {len(keys)} classes and {config_path} ({config.task}) names "
            f"{len(classes)}, first differing in column {at}: {ours} in the checkpoint, "
            f"{theirs} in the config; {fix}",
        )


def _file_windows(
    config, path: str, dims: ModelDims, workdir: str | None
) -> tuple[np.ndarray, np.ndarray]:
    """A raw motion file the run's task reads (an AMASS .npz, a DenseGait (T, 18, 3) .npy)
    -> windows [N, T, J, F], mask [N, T]: the same preparation as the loaders' val windows.
    `workdir`: the folder of the run's config.json (a synthetic run's raw files are there)."""
    from wat_jax import tasks

    if not os.path.isfile(path):
        raise fail(path, "no such file")
    task = tasks.get_task(config.task)
    windows = task.motion_file(config, path, dims, workdir)
    if windows is not None:
        return windows
    raise fail(
        path,
        f"a {config.task} run reads motion arrays [B, T, J, F] or {task.motion_file_kind()}",
    )


class Run:
    """A trained model: both towers, the class texts and the config, on the default device."""

    def __init__(
        self,
        config,
        restored: Restored,
        directory: str,
        batch_size: int = 64,
        workdir: str | None = None,
    ):
        self.config, self.directory, self.workdir = config, directory, workdir
        self.model, self.params, self.step = restored.model, restored.params, restored.step
        self.dims, self.meta = restored.dims, restored.meta
        texts = restored.meta.get("texts", {})
        self.classes: list[str] = list(texts.get("keys", []))
        self.phrases: list[str] = list(texts.get("phrases", []))
        self.prototype: str = texts.get("prototype", "")
        self.prototype_vectors = np.asarray(texts.get("vectors", []), np.float32)  # [C, D]
        self.towers = Towers(restored.model, restored.params, batch_size=batch_size)
        self._class_vectors = None

    def __repr__(self) -> str:
        return (
            f"Run({self.directory!r}, task={self.config.task!r}, step={self.step}, "
            f"classes={len(self.classes)}, window={[self.dims.frames, self.dims.joints, self.dims.features]})"
        )

    def _check_motion(self, motion, mask) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(motion, (str, os.PathLike)):
            if mask is not None:
                raise fail("mask", "give no mask with a file: the file's windows bring their own")
            return _file_windows(self.config, os.fspath(motion), self.dims, self.workdir)
        motion = np.asarray(motion, np.float32)
        want = (self.dims.joints, self.dims.features)
        if motion.ndim != 4 or motion.shape[2:] != want or motion.shape[1] > self.dims.frames:
            raise fail(
                "motion",
                f"must be [B, T<={self.dims.frames}, {want[0]}, {want[1]}], got {list(motion.shape)}",
            )
        if not np.isfinite(motion).all():
            raise fail("motion", "contains NaN or inf")
        b, t = motion.shape[:2]
        mask = np.ones((b, t), bool) if mask is None else np.asarray(mask, bool)
        if mask.shape != (b, t):
            raise fail("mask", f"must be [B, T] = {[b, t]}, got {list(mask.shape)}")
        if t < self.dims.frames:  # pad at the end, as the loaders do
            pad = self.dims.frames - t
            motion = np.pad(motion, ((0, 0), (0, pad), (0, 0), (0, 0)))
            mask = np.pad(mask, ((0, 0), (0, pad)))
        return motion, mask

    def embed_motion(self, motion, mask=None) -> np.ndarray:
        """[B, T, J, F] float32 (or an AMASS .npz / DenseGait .npy path) -> [B, E] unit rows."""
        motion, mask = self._check_motion(motion, mask)
        if not len(motion):
            return np.zeros((0, self.dims.text_dim), np.float32)
        return metrics.unit_rows(self.towers.motion(motion, mask).astype(np.float32))

    def project_text(self, text_vectors: np.ndarray) -> np.ndarray:
        """Frozen text-encoder vectors [N, D] -> the joint space [N, E], unit rows."""
        return metrics.unit_rows(self.towers.text(text_vectors))

    def embed_text(self, texts: list[str]) -> np.ndarray:
        """Sentences -> [N, E] unit rows: the run's frozen text encoder, then its projection."""
        if isinstance(texts, str):
            texts = [texts]
        if not texts or any(not isinstance(t, str) or not t.strip() for t in texts):
            raise fail("texts", "give a list of non-empty sentences")
        from wat_jax import tasks
        from wat_jax.text import bank

        if not tasks.get_task(self.config.task).has_text_encoder:
            raise fail(
                "texts",
                f"the {self.config.task} task has no text encoder (its text vectors are random)",
            )
        return self.project_text(bank.encode(list(texts), self.config))

    @property
    def class_vectors(self) -> np.ndarray:
        """[C, E] unit rows: the class (or attribute) texts classification ranks."""
        if self._class_vectors is None:
            if not len(self.prototype_vectors):
                raise fail(self.directory, "checkpoint metadata has no class texts")
            self._class_vectors = self.project_text(self.prototype_vectors)
        return self._class_vectors

    def class_scores(self, motion, mask=None) -> np.ndarray:
        """[B, C] cosine of each window to each class text, as the eval stage ranks them."""
        return self.embed_motion(motion, mask) @ self.class_vectors.T

    def classify(self, motion, mask=None, top_k: int = 5) -> list[list[tuple[str, float]]]:
        """Per window, the top_k (class, score) pairs, best first (ties: lower column first);
        fewer when there are fewer classes. top_k below 1 is refused, as the CLIs do."""
        if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1:
            raise fail("top_k", f"must be a whole number, at least 1, got {top_k!r}")
        scores = self.class_scores(motion, mask)
        k = min(int(top_k), scores.shape[1])
        order = np.lexsort((np.broadcast_to(np.arange(scores.shape[1]), scores.shape), -scores))
        return [
            [(self.classes[c], float(row[c])) for c in ids[:k]] for row, ids in zip(scores, order)
        ]

    def save(self, directory: str) -> str:
        """Writes this run as a folder anyone can pick up (wat_jax/model_folder.py):
        config.json, model.safetensors and a README.md model card. `wat_jax.load(DIR)`
        reads it back with the same scores. Returns `directory`."""
        from wat_jax import model_card, model_folder

        total = int(sum(np.size(x) for x in jax.tree.leaves(self.params)))
        facts = model_card.facts(self, total, motion_tower_size(self.params))
        meta = {
            "format_version": model_folder.FORMAT_VERSION,
            "task": self.meta.get("task", self.config.task),
            "step": int(self.step),
            "dims": self.dims.to_json(),
            "texts": {"keys": self.classes, "phrases": self.phrases, "prototype": self.prototype},
            "card": {k: facts[k] for k in ("prompts", "eval")},
        }
        model_folder.save(self, directory, model_card.card(facts), meta)
        logging.info("saved step %d of %s to %s", self.step, self.directory, directory)
        return directory


def _restore_folder(config, directory: str) -> Restored:
    """A saved folder (model_folder.py) -> Restored: the model its header's dimensions
    describe, checked against its config.json as a checkpoint is."""
    from wat_jax import model_folder

    meta = model_folder.read_meta(directory)
    dims = ModelDims.from_json(meta["dims"])
    weights = os.path.join(directory, model_folder.WEIGHTS)
    check_meta(config, meta, dims, weights, run_config.config_path(directory))
    model = create_model(config, dims.text_dim, dims.num_classes)
    params, vectors = model_folder.read_params(directory, abstract_params(model, dims))
    meta["texts"]["vectors"] = vectors
    return Restored(model, params, meta, int(meta["step"]), dims)


def load(path: str, step: int | None = None) -> Run:
    """Reads a trained run: a workdir, one checkpoints/<step>/ folder beside a config.json,
    or a folder `Run.save` wrote.

    Args:
      path: the folder.
      step: the checkpoint step (an int, or a string of digits such as "12"); None for
        the newest one that restores (or the step of the folder given).

    Returns:
      A Run: embed_motion, embed_text, classes, classify (see the class).
    """
    step = _step(step)
    from wat_jax import model_folder

    if model_folder.is_folder(path):
        config = run_config.load(path)
        restored = _restore_folder(config, path)
        if step is not None and step != restored.step:
            raise fail(path, f"holds the model of step {restored.step}, not {step}")
        return Run(config, restored, os.path.abspath(path), workdir=os.path.abspath(path))
    config_path, ckpt_root, folder_step = locate(path)
    if step is not None and folder_step is not None and step != folder_step:
        raise fail(path, f"is the checkpoint of step {folder_step}, not {step}")
    config = run_config.load(os.path.dirname(config_path))
    restored = restore(config, ckpt_root, folder_step if step is None else step)
    workdir = os.path.dirname(os.path.abspath(config_path))
    return Run(config, restored, os.path.abspath(path), workdir=workdir)


def _step(step) -> int | None:
    """load's `step` as an int: 12 and "12" are the same step; anything else is refused
    (a string step used to miss every int step: "no checkpoint at step 12; have [6, 12]")."""
    if step is None:
        return None
    if isinstance(step, str) and re.fullmatch(r"\s*[0-9]+\s*", step):
        return int(step)
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
        raise fail("step", f"must be a checkpoint step (a whole number, 0 or more), got {step!r}")
    return int(step)
