"""Draws one window as a skeleton GIF.

    python -m wat_jax.tools.visualize --workdir=W --split=val --index=K --output=x.gif
    python -m wat_jax.tools.visualize --motion=window.npy --output=x.gif

The drawing itself (which skeleton a window's shape means) is
wat_jax/reporting/pictures.py, which evaluation uses too.
"""

import os

import numpy as np

from wat_jax.errors import exits_on_input_error, fail
from wat_jax.reporting import pictures


@exits_on_input_error
def main(argv):
    from absl import flags

    from wat_jax import cli

    FLAGS = flags.FLAGS
    cli.begin(argv, "wat_jax.tools.visualize")
    if FLAGS.motion:
        if not os.path.exists(FLAGS.motion):
            raise fail(FLAGS.motion, "no such file")
        motion = np.load(FLAGS.motion, allow_pickle=False)
        motion = motion[0] if motion.ndim == 4 and motion.shape[0] == 1 else motion
        path = pictures.skeleton_gif(
            motion, None, FLAGS.output, os.path.basename(FLAGS.motion), FLAGS.fps
        )
    elif FLAGS.workdir:
        from wat_jax import tasks

        workdir, _, config = cli.read_run(FLAGS.workdir)  # what wat_jax.load accepts
        gallery = tasks.get_task(config.task).windows(config, workdir, FLAGS.split)
        path = pictures.window_gif(
            gallery,
            FLAGS.index,
            FLAGS.output,
            float(config.data.threshold),
            FLAGS.fps,
            rot6d=config.data.rot6d,
        )
    else:
        raise fail("wat_jax.tools.visualize", "give --workdir (with --split, --index) or --motion")
    print(path)


def run() -> None:
    """The command line (also the `wat-jax-visualize` console script)."""
    from absl import app, flags

    flags.DEFINE_string("workdir", "", "Run directory with prepared data (or the toy config).")
    flags.DEFINE_enum("split", "val", ["train", "val"], "Which split the window is in.")
    flags.DEFINE_integer("index", 0, "The window's row in the split.")
    flags.DEFINE_string("motion", "", "Or: a .npy window [T, J, F] to draw.")
    flags.DEFINE_string("output", "window.gif", "The GIF to write.")
    flags.DEFINE_float("fps", 15.0, "Playback frames per second.")
    app.run(main)


if __name__ == "__main__":
    run()
