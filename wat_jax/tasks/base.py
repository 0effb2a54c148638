"""The interface every experiment's task keeps: what only the task knows, in one object.

The library never asks which task it runs (no `config.task ==` outside
wat_jax/tasks/); it asks the run's Task (tasks.get_task(config.task)):

  stages      prepare, describe, embed (raw data -> DIR/data/, descriptions, the
              text bank: by default over data_module() and text_keys()) and
              train_batcher (the train split as batches)
  a run read  windows(split), bank(), key_phrases(keys), prototypes() (the class
  back        texts a checkpoint records), layout() (the prepared shape the config
              asks for), motion_file() (a raw file as windows, for wat_jax.load)
  evaluation  eval_inputs() reads, evaluate.py embeds, score() is pure,
              evaluate.py writes eval/step_<N>.json and draws what picture_texts(),
              picture_columns(), timeline_texts(), timeline_queries() and charts() say
  facts       has_text_encoder (False: text vectors are generated), has_timeline
"""

import dataclasses

import numpy as np

from absl import logging

from wat_jax.data import prepared
from wat_jax.errors import fail
from wat_jax.text import bank as text_bank


@dataclasses.dataclass
class EvalInputs:
    """What one evaluation reads, before anything is embedded.

    Attributes:
      motion: [N, T, J, F] the val windows (memory-mapped is fine).
      mask: [N, T] their real frames.
      labels: [N, C] labels (bool multi-hot classes, or float attribute values).
      classes: the C label names.
      texts: name -> frozen text vectors [K, D]; evaluate.py projects each into the
        joint space and hands score() the same names.
      extra: whatever else the task's score needs (relevance, held-out classes).
      index: the windows' index.jsonl rows (source, start_s, ...), for the pictures.
    """

    motion: np.ndarray
    mask: np.ndarray
    labels: np.ndarray
    classes: list[str]
    texts: dict[str, np.ndarray]
    extra: dict = dataclasses.field(default_factory=dict)
    index: list[dict] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Bars:
    """A bar chart evaluation draws: eval/<name>_step_<N>.png."""

    values: dict  # name -> bar length
    name: str
    title: str
    label: str  # the value axis
    baseline: dict | None = None
    note: str = ""  # printed under the bars: what a bar counts


@dataclasses.dataclass(frozen=True)
class Confusion:
    """A confusion matrix evaluation draws: eval/<name>_step_<N>.png."""

    matrix: np.ndarray
    classes: list[str]
    name: str
    title: str


class Task:
    """One experiment's knowledge. Subclasses set `name` and implement the stages."""

    name = ""
    has_text_encoder = True  # False: text vectors are generated (the toy task)
    has_timeline = False  # True: evaluation adds the action timeline over whole sequences
    picture_caption = "by class"  # how the embedding picture is coloured
    key_texts = "class names"  # the texts a key has with describe.backend=names

    # ---- stages: over the task's data module and text keys, unless a task differs ------

    def data_module(self):
        """The data/ module whose prepare(config.data, workdir, seed) writes DIR/data/
        and returns the report its report_table(report) prints."""
        raise NotImplementedError

    def text_keys(self, config, workdir: str) -> list:
        """The keys (text.describe.DescribeKey) that describe and embed write texts for."""
        raise NotImplementedError

    def prepare(self, config, workdir: str) -> None:
        """Raw data -> DIR/data/<split>/ (wat_jax/data/prepared.py format)."""
        import jax

        data = self.data_module()
        report = data.prepare(config.data, workdir, config.seed)
        if jax.process_index() == 0:  # the short table; the full report is data/report.json
            print(data.report_table(report))

    def describe(self, config, workdir: str) -> None:
        """Keys -> DIR/descriptions.jsonl."""
        if config.describe.backend == "names":
            logging.info("describe.backend=names: %s are the only texts", self.key_texts)
            return
        from wat_jax.text import describe

        describe.describe(self.text_keys(config, workdir), config.describe, workdir)

    def embed(self, config, workdir: str) -> None:
        """Texts -> DIR/text_bank.npz (wat_jax/text/bank.py)."""
        text_bank.build(self.text_keys(config, workdir), config, workdir)

    def train_batcher(self, config, workdir: str, rows):
        """A data.pipeline.Batcher over the train split; `rows` is this process's slice."""
        raise NotImplementedError

    # ---- a run read back ----------------------------------------------------------------

    def prototypes(self, config, workdir: str) -> dict:
        """The class texts classification ranks, for checkpoint metadata:
        {"keys", "phrases", "prototype", "vectors" [C, D]}."""
        raise NotImplementedError

    def windows(self, config, workdir: str, split: str) -> prepared.PreparedSplit:
        """The windows of `split` (prepared files by default): a search's gallery, a picture's
        example."""
        if split not in prepared.SPLITS:
            raise fail("--split", f"must be one of {prepared.SPLITS}, got {split!r}")
        return prepared.read_split(workdir, split)

    def bank(self, config, workdir: str):
        """The run's text bank."""
        return text_bank.load(workdir)

    def key_phrases(self, config, keys: list[str]) -> list[str]:
        """Readable text for each bank key (the key itself by default: a class name)."""
        return list(keys)

    def layout(self, config) -> dict | None:
        """{"frames", "joints", "features", "classes", "why"} of the prepared files the
        config asks for, or None for a task without prepared files."""
        return None

    def motion_file_kind(self) -> str:
        """The raw motion file wat_jax.load reads for this task, in words."""
        return "no motion files"

    def motion_file(self, config, path: str, dims, workdir: str | None = None):
        """A raw motion file -> (windows [N, T, J, F], mask [N, T]), as the loaders'
        val windows; None when `path` is not a file this task reads. `workdir`: the run's
        folder, when known (a synthetic run keeps its generated raw files there)."""
        return None

    # ---- evaluation ---------------------------------------------------------------------

    def eval_inputs(self, config, workdir: str) -> EvalInputs:
        """Reads what evaluation scores (see EvalInputs)."""
        raise NotImplementedError

    def score(self, config, inputs: EvalInputs, motion_emb, text_emb: dict) -> dict:
        """The eval JSON's metrics, a pure function of the inputs and their embeddings
        (motion_emb [N, E]; text_emb: the inputs' texts projected, by the same names)."""
        raise NotImplementedError

    def picture_texts(self, config) -> str | None:
        """The EvalInputs.texts entry drawn as prototypes in the embedding picture; None:
        evaluation draws no embedding picture or example GIF."""
        return None

    def timeline_texts(self, config) -> str | None:
        """The EvalInputs.texts entry whose rows the timeline ranks (with has_timeline)."""
        return None

    def timeline_queries(self, config) -> tuple[str, ...]:
        """The EvalInputs.texts entries the timeline asks as text-to-interval queries, one
        per class (its grounding and "not found" metrics); (): the timeline_texts one."""
        return ()

    def picture_columns(self, class_names: list[str]) -> list[int]:
        """The label columns whose classes colour the embedding picture."""
        return list(range(len(class_names)))

    def charts(self, config, inputs: EvalInputs, motion_emb, text_emb: dict, results, step):
        """The bar charts and confusion matrices evaluation draws (Bars, Confusion)."""
        return []
