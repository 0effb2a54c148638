"""The run report: one self-contained page (every picture inlined and decodable, nothing
fetched from anywhere), with each section a reader looks for, on both smoke runs; a
run half done gets a page with notes; bad input is one error line. The page in a real
browser: tests/test_browser.py."""

import base64
import html
import html.parser
import io
import json
import os
import stat

import pytest
from PIL import Image

from tests import cli
from wat_jax.reporting import report


class Page(html.parser.HTMLParser):
    """What the report's HTML holds: every src/href, image sources, section ids, text."""

    def __init__(self, text: str):
        super().__init__()
        self.urls, self.images, self.sections, self.scripts, self.words = [], [], [], 0, []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.urls += [attrs[k] for k in ("src", "href") if attrs.get(k)]
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if tag == "section":
            self.sections.append(attrs.get("id"))
        if tag in ("script", "iframe", "object", "embed"):
            self.scripts += 1

    def handle_data(self, data):
        self.words.append(data)

    @property
    def text(self) -> str:
        return " ".join(self.words)


@pytest.fixture(scope="module")
def reports(babel_smoke, densegait_smoke, tmp_path_factory):
    """report.html of copies of both smoke runs, written by the command line."""
    out = {}
    for name, trained in (("babel", babel_smoke), ("densegait", densegait_smoke)):
        workdir = cli.copy_run(trained.workdir, tmp_path_factory.mktemp(name) / "run")
        proc = cli.run(["wat_jax.tools.report", f"--workdir={workdir}", "--examples=2"], check=True)
        path = os.path.join(workdir, "report.html")
        assert proc.stdout.startswith(f"wrote {path}")
        with open(path, encoding="utf-8") as f:
            out[name] = (str(workdir), f.read())
    return out


@pytest.mark.parametrize("name", ["babel", "densegait"])
def test_report_is_one_self_contained_file(reports, name):
    workdir, text = reports[name]
    page = Page(text)
    assert page.scripts == 0
    assert page.urls and all(u.startswith(("#", "data:image/")) for u in page.urls), [
        u[:60] for u in page.urls if not u.startswith(("#", "data:image/"))
    ]
    # pictures: the training curves, every picture eval drew, two animated examples
    eval_pictures = [f for f in os.listdir(os.path.join(workdir, "eval")) if f.endswith("g")]
    assert len(page.images) >= 1 + len(eval_pictures) + 2
    for src in page.images:
        kind, _, data = src.partition(";base64,")
        image = Image.open(io.BytesIO(base64.b64decode(data, validate=True)))
        image.load()
        assert image.width > 0 and image.height > 0
        assert kind == f"data:image/{image.format.lower()}"
    assert sum(s.startswith("data:image/gif") for s in page.images) >= 3  # eval's and two


@pytest.mark.parametrize("name", ["babel", "densegait"])
def test_report_has_every_section(reports, name):
    workdir, text = reports[name]
    page = Page(text)
    assert page.sections == [
        "config",
        "data",
        "curves",
        "eval",
        "pictures",
        "timeline",
        "examples",
        "descriptions",
    ]
    with open(os.path.join(workdir, "eval", "step_12.json")) as f:
        results = json.load(f)
    headline = ("top1", "top5", "mAP") if name == "babel" else ("ndcg@10", "mAP", "R@1")
    for key in headline:  # the model's number and random's, as the table prints them
        assert f"<td>{html.escape(key)}</td>" in text
        assert f"{results[key]:.4f}" in text and f"{results['random'][key]:.4f}" in text
    # counts print as whole numbers
    count = "num_windows" if name == "babel" else "num_gallery"
    assert f'<td class="num">{results[count]:,}</td>' in text
    assert "truth:" in page.text and "model (top 3):" in page.text
    with open(os.path.join(workdir, "descriptions.jsonl")) as f:
        first = json.loads(f.readline())
    assert html.escape(first["text"]) in text
    with open(os.path.join(workdir, "data", "report.json")) as f:
        built = json.load(f)
    key, value = next((k, v) for k, v in built.items() if isinstance(v, (str, int)))
    assert f'<td>{key}</td><td class="num">{html.escape(str(value))}</td>' in text
    if name == "babel":
        assert "timeline f1@0.5" not in text  # the timeline block is its own table
        assert "<h3>timeline</h3>" in text and "a val sequence, step 12" in page.text
    else:
        assert "<h3>gait_to_text</h3>" in text
        assert f"per_attribute ({len(results['per_attribute'])})" in page.text


def test_a_run_half_done_gets_a_page_with_notes(babel_smoke, tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    with open(os.path.join(babel_smoke.workdir, "config.json")) as f:
        (workdir / "config.json").write_text(f.read())
    path = report.write_report(str(workdir), examples=0)
    with open(path, encoding="utf-8") as f:
        text = Page(f.read()).text
    assert "no data/report.json: run --mode=prepare first" in text
    assert "no metrics.jsonl: run --mode=train first" in text
    assert "no evaluation yet: run --mode=eval" in text
    assert "examples skipped" in text


def test_report_file_is_readable_as_the_umask_allows(babel_smoke, tmp_path):
    workdir = cli.copy_run(babel_smoke.workdir, tmp_path / "run")
    old = os.umask(0o022)
    try:
        path = report.write_report(str(workdir), examples=0)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert [f for f in os.listdir(workdir) if f.startswith(".tmp-") or "partial" in f] == []


@pytest.mark.parametrize(
    "args,words",
    [
        (["--workdir=/no/such/run"], "error: /no/such/run: no such folder; give a run's workdir"),
        ([], "error: --workdir: required"),
        (["--workdir={tmp}"], "no config.json here; give a run's workdir"),
        (["--workdir={run}", "--examples=-1"], "error: --examples: must be 0 or more"),
        (["--workdir={run}", "--step=7"], "error: --step: no eval/step_7.json in"),
        (["--workdir={run}", "--out=/no/such/dir/r.html"], "/no/such/dir is not a folder"),
        (["--workdir={run}", "extra"], "unexpected arguments ['extra']"),
    ],
)
def test_bad_input_is_one_error_line(babel_smoke, tmp_path, args, words):
    args = [
        a.replace("{tmp}", str(tmp_path)).replace("{run}", str(babel_smoke.workdir)) for a in args
    ]
    page = os.path.join(babel_smoke.workdir, "report.html")  # the eval stage's, kept as it was
    before = os.stat(page).st_mtime_ns
    proc = cli.run(["wat_jax.tools.report", *args], timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert words in cli.last_line(proc)
    assert os.stat(page).st_mtime_ns == before


def test_pick_examples_shows_different_labels_first():
    import numpy as np

    labels = np.zeros((6, 3), np.float32)
    labels[[0, 1, 2], 0] = 1
    labels[3, 1] = 1
    labels[4, 2] = 1
    assert report.pick_examples(labels, 3, 0.5) == [0, 3, 4]
    assert report.pick_examples(labels, 5, 0.5) == [0, 1, 3, 4, 5]
    assert report.pick_examples(labels[:2], 4, 0.5) == [0, 1]


def test_every_kind_of_class_text_is_beside_its_random():
    """A random block beside several kinds (the timeline's grounding: centroid, name,
    random) fills the random column of each kind; before, only the kinds' own (absent)
    entries were looked up and the column stayed empty."""
    block = {
        "f1@0.5": 0.9,
        "grounding": {
            "centroid": {"R@1@0.5": 0.7, "mIoU": 0.5},
            "name": {"R@1@0.5": 0.6, "mIoU": 0.4},
            "random": {"R@1@0.5": 0.1, "mIoU": 0.05},
        },
        "random": {"f1@0.5": 0.2},
    }
    rows, _ = report.metric_rows(block, block["random"])
    assert rows == [
        ["f1@0.5", 0.9, 0.2],
        ["grounding centroid R@1@0.5", 0.7, 0.1],
        ["grounding centroid mIoU", 0.5, 0.05],
        ["grounding name R@1@0.5", 0.6, 0.1],
        ["grounding name mIoU", 0.4, 0.05],
    ]


def test_config_of_an_older_run_reads_with_the_values_it_trained_with(tmp_path):
    """A config.json written before data.rot6d existed trained with column-major 6-D
    rotations; the report and the search page draw its skeletons with those."""
    from experiments import babel60
    from wat_jax import run_config

    tree = run_config.to_json(babel60.get_config("demo"))
    del tree["data"]["rot6d"]
    (tmp_path / "config.json").write_text(json.dumps(tree))
    assert report.lookup(report.config_tree(str(tmp_path)), "data.rot6d") == "columns"
