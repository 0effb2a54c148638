"""Embeds one sentence per line with the frozen text encoder.

    python -m wat_jax.embed_text --encoder=minilm --input=sentences.txt --output=out.npy

(`python -m wat_jax.tools.embed_text` is the same command; the contract names the first.)

Writes float32 [N, D], row i the vector of line i, atomically. Bad input (an
empty line, bytes that are not UTF-8, a model folder without weights or with
weights that disagree with its config) prints one `error: ...` line on stderr,
exits 2 and writes nothing.
"""

import os
import tempfile

from absl import app, flags

from wat_jax.errors import exits_on_input_error, fail


def read_sentences(path: str) -> list[str]:
    """One sentence per line; an empty line or non-UTF-8 bytes is an InputError."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise fail(path, e.strerror or str(e)) from e
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":  # the final newline ends the last line
        lines.pop()
    if not lines:
        raise fail(path, "no sentences (the file is empty)")
    sentences = []
    for number, raw in enumerate(lines, start=1):
        try:
            text = raw.decode("utf-8").removesuffix("\r")
        except UnicodeDecodeError as e:
            raise fail(
                f"{path}:{number}",
                f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1})",
            ) from e
        if not text.strip():
            raise fail(f"{path}:{number}", "empty line (one sentence per line, none blank)")
        sentences.append(text)
    return sentences


def check_output(path: str) -> None:
    """The output can be written: checked before any embedding, which may take hours."""
    if os.path.isdir(path):
        raise fail(path, "is a directory; --output must name a .npy file")
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".write-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise fail(path, f"cannot write the output there ({e.strerror or e})") from e


@exits_on_input_error
def main(argv) -> None:
    del argv
    from wat_jax.reporting.run_log import console_logs

    console_logs()
    FLAGS = flags.FLAGS
    sentences = read_sentences(FLAGS.input)
    check_output(FLAGS.output)
    # Imported here so --help and bad input files answer without starting JAX.
    from wat_jax import fileio
    from wat_jax.text import encoder

    vectors = encoder.embed_texts(
        sentences,
        encoder=FLAGS.encoder,
        pooling=FLAGS.pooling,
        normalize=FLAGS.normalize,
        max_length=FLAGS.max_length,
        batch_size=FLAGS.batch_size,
        cache_dir=FLAGS.cache_dir,
        dtype=FLAGS.dtype,
    )
    try:
        fileio.write_npy(FLAGS.output, vectors)
    except OSError as e:  # e.g. the disk filled up while embedding
        raise fail(FLAGS.output, f"cannot write the output ({e.strerror or e})") from e
    print(f"wrote {FLAGS.output}: {vectors.shape[0]} x {vectors.shape[1]} float32")


def define_flags() -> None:
    flags.DEFINE_string(
        "encoder", "minilm", "`minilm`, a local Hugging Face model folder, or hf:ORG/NAME."
    )
    flags.DEFINE_string("input", None, "Text file, one sentence per line (UTF-8).")
    flags.DEFINE_string("output", None, "Output .npy, float32 [N, D].")
    flags.DEFINE_enum("pooling", "mean", ["mean", "cls"], "Masked mean of tokens, or [CLS].")
    flags.DEFINE_bool("normalize", True, "L2-normalise the vectors (--nonormalize to keep raw).")
    flags.DEFINE_integer(
        "max_length", None, "Tokens kept per sentence (default: the model's max_seq_length)."
    )
    flags.DEFINE_integer("batch_size", 64, "Sentences per forward pass.")
    flags.DEFINE_string(
        "cache_dir",
        None,
        "Embedding cache; unset: $WAT_JAX_CACHE or ~/.cache/wat_jax/text_embeddings; empty: no cache.",
    )
    flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16", "float16"], "Compute dtype.")
    flags.mark_flags_as_required(["input", "output"])


def run() -> None:
    """The command line: defines the flags and runs main (also `python -m wat_jax.embed_text`)."""
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
