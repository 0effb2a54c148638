"""The action timeline's command line: one motion's timeline.json and timeline.png.

    python -m wat_jax.timeline --workdir=RUN --motion=FILE.npz [--query="a person jumps"]
        [--stride_s=0.5] [--smooth_s=0.5] [--top_k=3] [--out=DIR] [--step=N]
        [--not_found=auto|off|COSINE]
    python -m wat_jax.timeline --workdir=RUN --motion=val:3     # the run's 4th val sequence

A query is answered "not found" (no interval) when no interval's peak reaches the
threshold the run's evaluation calibrated on val (--not_found=auto, the default: the
eval JSON of the same checkpoint; without one every interval is shown and the summary
says why). (`python -m wat_jax.tools.timeline` is the same command; the contract names the
first.) What the numbers mean, and the functions that compute them, are
wat_jax/timeline.py. The run is read through `wat_jax.load` (config.json and a
checkpoint suffice; the class texts come from the checkpoint's metadata), and
--workdir takes what it takes: the workdir, its checkpoints/ or one checkpoints/<step>/.
An --out that cannot be written is refused before the model runs. Long recordings get
a compact timeline.json (per-frame rows sampled past --max_frames), a summary of the
longest segments and a binned picture (see wat_jax/timeline.py).
"""

import json
import os

import numpy as np

from wat_jax import artifact, cli, errors, fileio, metrics, run_config
from wat_jax import timeline as tl
from wat_jax.errors import exits_on_input_error, fail


def _babel_config(workdir: str):
    """The run's config; InputError unless its task has the timeline (BABEL's)."""
    from wat_jax import tasks

    config = run_config.load(workdir)
    name = config.task  # a config.json from another version may name no task we know
    if name not in tasks.TASKS or not tasks.get_task(name).has_timeline:
        raise fail(
            os.path.join(workdir, "config.json"),
            f"the timeline needs a BABEL-task run (task babel60), this is {config.task!r}",
        )
    return config


def _open_run(workdir: str, step: int | None = None):
    """The run at `workdir` (checkpoint `step`, newest when None) through wat_jax.load."""
    import wat_jax

    _babel_config(workdir)
    return wat_jax.load(workdir, step)


def _split_index(motion: str) -> tuple[str, int] | None:
    """("val", K) for --motion=val:K (or train:K), None for a file path."""
    split, sep, index = motion.partition(":")
    if not sep or split not in ("val", "train") or os.path.exists(motion):
        return None
    try:
        return split, int(index)
    except ValueError:
        raise fail("--motion", f"{motion!r}: expected {split}:K with K an integer") from None


def read_motion(config, workdir: str, motion: str):
    """The --motion argument as a Sequence: an AMASS .npz, or `val:K` / `train:K`.

    Frame labels come with it when it is one of the run's BABEL sequences.
    """
    from wat_jax.data import babel_sequences

    data = config.data
    picked = _split_index(motion)
    if picked:
        return babel_sequences.sequence_at(data, workdir, *picked)
    if not os.path.isfile(motion):
        raise fail(motion, "no such file (give an AMASS .npz, or val:K for a val sequence)")
    rot6d, trans = babel_sequences.load_features(motion, data, workdir)
    sid, labels = babel_sequences.labels_for_file(data, workdir, motion, len(rot6d))
    return babel_sequences.Sequence(sid or "", motion, rot6d, trans, labels)


def check_options(query, stride_s, smooth_s, k, window_s=None) -> None:
    """InputError for a bad CLI option (window_s: the run's window, when known)."""
    if not stride_s > 0:
        raise fail("--stride_s", f"must be positive, got {stride_s}")
    if window_s is not None and stride_s > window_s + 1e-9:
        raise fail("--stride_s", f"must be at most the window, {window_s:g} s; got {stride_s}")
    if not smooth_s >= 0:
        raise fail("--smooth_s", f"must be >= 0, got {smooth_s}")
    if k < 1:
        raise fail("--top_k", f"must be at least 1, got {k}")
    if query is not None and not query.strip():
        raise fail("--query", "empty query; give a sentence such as 'a person jumps'")


def calibrated_threshold(workdir: str, step: int) -> tuple[float | None, str]:
    """The run's "not found" threshold for checkpoint `step`, calibrated by evaluation
    (eval/step_<step>.json, timeline.not_found.threshold: wat_jax/timeline.py), and where
    it came from; (None, why not) when that evaluation has none."""
    path = os.path.join(workdir, "eval", f"step_{step}.json")
    if not os.path.isfile(path):
        return None, f"no {path}; evaluate step {step} (--mode=eval) to calibrate one"
    try:
        with open(path) as f:
            value = json.load(f)["timeline"]["not_found"]["threshold"]
    except (OSError, ValueError, KeyError, TypeError):
        value = None
    if value is None:
        return None, f"{path} has no timeline.not_found.threshold; evaluate step {step} again"
    return float(value), path


def not_found_option(option: str) -> float | str | None:
    """--not_found: "auto" (the run's calibrated threshold), "off" (None) or a cosine."""
    if option in ("auto", "off"):
        return None if option == "off" else option
    try:
        value = float(option)
    except ValueError:
        raise fail("--not_found", f"auto, off or a cosine score, got {option!r}") from None
    if not np.isfinite(value):
        raise fail("--not_found", f"must be a finite cosine score, got {option!r}")
    return value


def run_timeline(
    run,
    seq,
    query: str | None = None,
    stride_s: float = tl.STRIDE_S,
    smooth_s: float = tl.SMOOTH_S,
    k: int = tl.TOP_K,
    relative: float = tl.QUERY_RELATIVE,
    max_frames: int = tl.MAX_JSON_FRAMES,
    found_at: float | None = None,
    found_source: str = "",
) -> dict:
    """The timeline of one sequence: per-frame top-k, segments, ground truth, a query.

    The per-frame arrays (frames.*, ground_truth.labels, query.curve) hold every
    `frames.every`-th frame, so at most `max_frames` rows (0: every frame); segments and
    intervals are computed at full resolution. `found_at`: the "not found" threshold
    (cosine): the query keeps only intervals whose peak reaches it, so a query nothing
    in the sequence matches is answered with none (`query.found` false); None keeps every
    interval. `found_source` says where the threshold came from (or why there is none).

    Returns:
      The timeline.json object; "_scores" and "_curve" hold the arrays for the picture.
    """
    from wat_jax.data import babel_sequences

    fps = float(run.config.data.fps)
    window = int(run.config.data.window_frames)
    check_options(query, stride_s, smooth_s, k, window / fps)
    stride, smooth_n = tl.frames_of(stride_s, fps), tl.smooth_frames_of(smooth_s, fps)
    starts = tl.window_starts(seq.num_frames, window, stride)
    motion, mask = babel_sequences.window_batch(seq.rot6d, seq.trans, starts, window)
    emb = run.embed_motion(motion, mask)
    scores = tl.sequence_scores(emb @ run.class_vectors.T, starts, window, seq.num_frames, smooth_n)
    every = tl.frame_every(seq.num_frames, max_frames)
    rows = np.arange(0, seq.num_frames, every)  # the frames the per-frame arrays keep
    idx, val = tl.top_k(scores[rows], k)
    classes = run.classes
    out = dict(
        step=int(run.step),
        sid=seq.sid or None,
        source=seq.feat_p,
        fps=fps,
        num_frames=int(seq.num_frames),
        duration_s=round(seq.num_frames / fps, 4),
        window_frames=window,
        stride_s=float(stride_s),
        smooth_s=float(smooth_s),
        num_windows=int(len(starts)),
        classes=list(classes),
        frames=dict(
            every=int(every),
            time_s=[round(i / fps, 4) for i in rows.tolist()],
            top_k=[[classes[j] for j in row] for row in idx.tolist()],
            scores=np.round(val, 5).tolist(),
        ),
        segments=tl.segments(scores, fps, classes),
        ground_truth=None,
        query=None,
        _scores=scores,
        _curve=None,
    )
    if seq.labels is not None:
        true = [
            dict(
                start_s=round(a / fps, 4),
                end_s=round(b / fps, 4),
                start_frame=a,
                end_frame=b,
                **{"class": classes[c]},
            )
            for c, a, b in sorted(metrics.multilabel_runs(seq.labels), key=lambda r: (r[1], r[0]))
        ]
        counts = metrics.segmental_counts(np.argmax(scores, 1), seq.labels, tl.OVERLAPS)
        labelled = seq.labels.any(1)
        out["ground_truth"] = dict(
            segments=true,
            labels=[[classes[c] for c in np.flatnonzero(row)] for row in seq.labels[rows]],
            frame_acc=metrics.frame_accuracy(scores, seq.labels) if labelled.any() else None,
            **{f"f1@{o:g}": metrics.f1_score(*c) for o, c in counts.items()},
        )
    if query is not None:
        qvec = run.embed_text([query])  # [1, E]
        curve = tl.sequence_scores(emb @ qvec.T, starts, window, seq.num_frames, smooth_n)[:, 0]
        intervals = tl.query_intervals(curve, fps, relative, found_at=found_at)
        peak = int(np.argmax(curve))
        out["query"] = dict(
            text=query,
            relative_threshold=relative,
            not_found_threshold=found_at,
            not_found_source=found_source or None,
            found=bool(intervals),
            peak_s=round(peak / fps, 4),
            peak_score=float(curve[peak]),
            curve=np.round(curve[rows], 5).tolist(),
            intervals=intervals,
        )
        out["_curve"] = curve
    return out


def write_outputs(
    answer: dict, out_dir: str, title: str, max_points: int = tl.MAX_PICTURE_POINTS
) -> tuple[str, str]:
    """Writes out_dir/timeline.json (compact: no indentation) and out_dir/timeline.png;
    returns their paths.

    A recording longer than `max_points` frames is drawn from its scores averaged over
    bins of k frames (at most max_points bins; the title says the bin's length): one
    point a frame would draw a long file as a solid block.
    """
    from wat_jax.reporting import plots

    json_path = os.path.join(out_dir, "timeline.json")
    png_path = os.path.join(out_dir, "timeline.png")
    fileio.write_json(json_path, {k: v for k, v in answer.items() if not k.startswith("_")}, None)
    fps, scores, curve = answer["fps"], answer["_scores"], answer["_curve"]
    k = tl.frame_every(len(scores), max_points)
    if k > 1:
        scores, fps = tl.bin_frames(scores, k), fps / k  # the x axis stays in seconds
        curve = tl.bin_frames(curve, k) if curve is not None else None
        title = f"{title}, scores averaged over {k / answer['fps']:g} s"
    truth = answer["ground_truth"]
    plots.timeline_png(
        scores,
        answer["classes"],
        fps,
        png_path,
        title,
        true_segments=truth["segments"] if truth else None,
        query=(answer["query"]["text"], curve, answer["query"]["intervals"])
        if answer["query"]
        else None,
    )
    return json_path, png_path


def _shown_segments(segments: list[dict], limit: int) -> list[dict]:
    """The `limit` longest segments (earlier first among equals), in time order."""
    if limit <= 0 or len(segments) <= limit:
        return list(segments)
    longest = sorted(
        range(len(segments)),
        key=lambda i: (-(segments[i]["end_frame"] - segments[i]["start_frame"]), i),
    )
    return [segments[i] for i in sorted(longest[:limit])]


def format_summary(answer: dict, paths, max_segments: int = tl.MAX_SUMMARY_SEGMENTS) -> str:
    """The printed summary: at most `max_segments` segment lines (the longest), then how
    many more timeline.json holds."""
    segments = answer["segments"]
    shown = _shown_segments(segments, max_segments)
    lines = [
        f"{answer['source']}: {answer['duration_s']:.1f} s, {answer['num_windows']} windows "
        f"(stride {answer['stride_s']:g} s), step {answer['step']}, {len(segments)} segments"
        + (f" (the {len(shown)} longest below)" if len(shown) < len(segments) else "")
    ]
    lines.append(f"{'start_s':>8}  {'end_s':>8}  {'score':>7}  class")
    for s in shown:
        lines.append(f"{s['start_s']:8.2f}  {s['end_s']:8.2f}  {s['score']:7.4f}  {s['class']}")
    if len(shown) < len(segments):
        lines.append(f"... and {len(segments) - len(shown)} more segments, all in timeline.json")
    truth = answer["ground_truth"]
    if truth:
        f1 = ", ".join(f"{k} {truth[k]:.3f}" for k in truth if k.startswith("f1@"))
        acc = truth["frame_acc"]
        lines.append(
            f"ground truth (BABEL sid {answer['sid']}): {len(truth['segments'])} segments; "
            f"frame accuracy {acc if acc is None else round(acc, 3)}, {f1}"
        )
    if answer["query"]:
        q = answer["query"]
        lines.append(f"query {q['text']!r}:")
        cut = q.get("not_found_threshold")
        if not q["intervals"]:
            lines.append(
                f"  not found: its best score, {q['peak_score']:.4f} at {q['peak_s']:.2f} s, is "
                f"below the not-found threshold {cut:.4f} ({q['not_found_source']})"
            )
        elif cut is None and q.get("not_found_source"):
            lines.append(
                f"  (every interval shown: no not-found threshold, {q['not_found_source']})"
            )
        for i in q["intervals"][:10]:
            lines.append(
                f"{i['rank']:>4}  {i['start_s']:7.2f} - {i['end_s']:7.2f} s  peak "
                f"{i['peak_s']:.2f} s  score {i['score']:.4f}"
            )
        if len(q["intervals"]) > 10:
            lines.append(f"... and {len(q['intervals']) - 10} more intervals, all in timeline.json")
    lines += [f"wrote {p}" for p in paths]
    return "\n".join(lines)


@exits_on_input_error
def main(argv):
    from absl import flags

    FLAGS = flags.FLAGS
    cli.begin(argv, "wat_jax.timeline")
    if not FLAGS.workdir:
        raise fail("--workdir", "required: the trained BABEL run")
    if not FLAGS.motion:
        raise fail("--motion", "required: an AMASS .npz, or val:K for a val sequence")
    check_options(FLAGS.query, FLAGS.stride_s, FLAGS.smooth_s, FLAGS.top_k)
    found = not_found_option(FLAGS.not_found)
    if FLAGS.max_frames < 0:
        raise fail("--max_frames", f"must be 0 (every frame) or more, got {FLAGS.max_frames}")
    if not _split_index(FLAGS.motion) and not os.path.isfile(FLAGS.motion):
        raise fail(FLAGS.motion, "no such file (give an AMASS .npz, or val:K for a val sequence)")
    workdir, step = artifact.resolve(FLAGS.workdir, FLAGS.step if FLAGS.step >= 0 else None)
    stem = os.path.splitext(os.path.basename(FLAGS.motion.replace(":", "_")))[0]
    out_dir = FLAGS.out or os.path.join(workdir, "timeline", stem)
    fileio.check_writable(os.path.join(out_dir, "timeline.json"), "give --out=a writable folder")
    # The motion is read before the model is restored, so bad input fails fast.
    seq = read_motion(_babel_config(workdir), workdir, FLAGS.motion)
    with errors.keeping("nothing was written"):  # said by a Ctrl-C
        run = _open_run(workdir, step)
        found_at, found_source = found, "--not_found"
        if found == "auto":
            found_at, found_source = calibrated_threshold(workdir, run.step)
        elif found is None:
            found_source = "--not_found=off"
        answer = run_timeline(
            run,
            seq,
            FLAGS.query,
            FLAGS.stride_s,
            FLAGS.smooth_s,
            FLAGS.top_k,
            FLAGS.relative,
            FLAGS.max_frames,
            found_at,
            found_source,
        )
    title = f"{os.path.basename(seq.feat_p)} (step {run.step})"
    paths = write_outputs(answer, out_dir, title)
    print(format_summary(answer, paths))


def define_flags() -> None:
    from absl import flags

    flags.DEFINE_string(
        "workdir",
        None,
        "A trained BABEL-task run (config.json, checkpoints), or its checkpoints[/N].",
    )
    flags.DEFINE_string("motion", None, "An AMASS .npz, or val:K / train:K (the run's data).")
    flags.DEFINE_string("query", None, "A text query answered with time intervals.")
    flags.DEFINE_float("stride_s", tl.STRIDE_S, "Seconds between window starts.")
    flags.DEFINE_float("smooth_s", tl.SMOOTH_S, "Moving-average length of the per-frame scores.")
    flags.DEFINE_integer("top_k", tl.TOP_K, "Classes per frame in timeline.json.")
    flags.DEFINE_float("relative", tl.QUERY_RELATIVE, "Query threshold within the curve's range.")
    flags.DEFINE_string(
        "not_found",
        "auto",
        "A query's intervals must peak at this cosine or the answer is 'not found': auto "
        "(the threshold the run's evaluation calibrated on val, eval/step_N.json), off, or "
        "a number.",
    )
    flags.DEFINE_string("out", "", "Output folder (default WORKDIR/timeline/<motion name>).")
    flags.DEFINE_integer("step", -1, "Checkpoint step; -1: latest.")
    flags.DEFINE_integer(
        "max_frames",
        tl.MAX_JSON_FRAMES,
        "Per-frame rows in timeline.json at most; longer recordings keep every k-th frame "
        "(frames.every). 0: every frame.",
    )


def run() -> None:
    """The command line: defines the flags and runs main (also `python -m wat_jax.timeline`)."""
    from absl import app

    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
