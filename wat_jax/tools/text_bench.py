"""Sentences/s of the text encoder, and of sentence-transformers on PyTorch beside it.

    python -m wat_jax.tools.text_bench [--encoder=minilm] [--batch_size=64] \
        [--num_sentences=1024] [--compare=torch] [--torch_site_packages=DIR]

Prints one JSON object per line: ours, then (with --compare=torch) PyTorch's.
torch is never in the project's venv: run this from a venv that has torch,
sentence-transformers and the project's requirements, or point
--torch_site_packages at such a venv's site-packages (appended to sys.path, so
the project's own packages still win). Both run on the same sentences at the
same batch size, in alternating timed runs after a warm-up each, so load from
other processes falls on both alike; the figure is the median run.
"""

import json
import os
import statistics
import sys
import time

import numpy as np

from wat_jax.errors import exits_on_input_error

_WORDS = (
    "the person walks forward slowly then turns left and raises both arms above head "
    "while stepping sideways with a slight limp on the right leg before jumping twice "
    "crouching down picking up an object spinning around waving kicking running"
).split()


def synthetic_sentences(num: int, seed: int = 0) -> list[str]:
    """`num` motion-like sentences of 3 to 60 words (a mix like real descriptions)."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(14), 0.6, num).astype(int), 3, 60)
    return [" ".join(rng.choice(_WORDS, n)).capitalize() + "." for n in lengths]


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def benchmark_text_encoder(
    encoder: str = "minilm",
    batch_size: int = 64,
    num_sentences: int = 256,
    compare_torch: bool = False,
    repeats: int = 2,
    padded: bool = False,
) -> dict:
    """Times wat_jax's encoder (and sentence-transformers) on the same sentences.

    Args:
      encoder: `minilm`, a model folder, or hf:ORG/NAME.
      batch_size: sentences per forward pass, for both.
      num_sentences: synthetic sentences per timed run.
      compare_torch: also time sentence-transformers when torch is importable.
      repeats: timed runs each (median reported).
      padded: also time our encoder without packing (each sorted batch padded to
        a bucket, as before packing), in the same alternation.

    Returns:
      {"sentences_per_sec", "compile_s", "traces", ...}; with compare_torch also
      "torch_sentences_per_sec", "speedup_over_torch" and "max_abs_diff" between
      the two's vectors, or "torch_skipped" with the reason.
    """
    from wat_jax.text import encoder as text_encoder

    sentences = synthetic_sentences(num_sentences)
    ours = text_encoder.load_encoder(encoder)
    compile_s = _timed(lambda: ours.encode(sentences, batch_size))  # compiles every shape used
    runners = {"wat_jax": lambda: ours.encode(sentences, batch_size)}
    if padded:
        ours.encode(sentences, batch_size, packed=False)  # compiles its shapes
        runners["padded"] = lambda: ours.encode(sentences, batch_size, packed=False)
    result = {
        "encoder": encoder,
        "batch_size": batch_size,
        "num_sentences": num_sentences,
        "repeats": repeats,
        "compile_s": compile_s,
        "traces": ours.traces,
    }
    if compare_torch:
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as e:
            result["torch_skipped"] = f"torch/sentence-transformers not importable ({e})"
        else:
            st_model = SentenceTransformer(ours.folder, device="cpu")
            st_model.max_seq_length = ours.max_length
            runners["torch"] = lambda: st_model.encode(
                sentences,
                batch_size=batch_size,
                show_progress_bar=False,
                normalize_embeddings=ours.normalize,
            )
            reference = runners["torch"]()  # warm-up, and the vectors to compare
            result.update(
                torch_version=torch.__version__,
                torch_threads=torch.get_num_threads(),
                max_abs_diff=float(np.abs(runners["wat_jax"]() - reference).max()),
            )
    times = {name: [] for name in runners}
    load_before = _load()
    for i in range(repeats):
        # alternate (ABBA), so background load hits every implementation alike
        for name in list(runners) if i % 2 == 0 else list(runners)[::-1]:
            times[name].append(_timed(runners[name]))
    result["load_average"] = [load_before, _load()]
    result["run_s"] = {name: [round(t, 4) for t in ts] for name, ts in times.items()}
    result["sentences_per_sec"] = num_sentences / statistics.median(times["wat_jax"])
    if "padded" in times:
        result["padded_sentences_per_sec"] = num_sentences / statistics.median(times["padded"])
        result["speedup_over_padded"] = (
            result["sentences_per_sec"] / result["padded_sentences_per_sec"]
        )
    if "torch" in times:
        result["torch_sentences_per_sec"] = num_sentences / statistics.median(times["torch"])
        result["speedup_over_torch"] = (
            result["sentences_per_sec"] / result["torch_sentences_per_sec"]
        )
    return result


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


@exits_on_input_error
def main(argv) -> None:
    del argv
    from absl import flags

    f = flags.FLAGS
    if f.torch_site_packages:
        sys.path.append(f.torch_site_packages)
    result = benchmark_text_encoder(
        f.encoder, f.batch_size, f.num_sentences, f.compare == "torch", f.repeats, f.padded
    )
    common = {k: result[k] for k in ("encoder", "batch_size", "num_sentences", "repeats")}
    print(
        json.dumps(
            {
                "impl": "wat_jax",
                **common,
                "sentences_per_sec": result["sentences_per_sec"],
                "compile_s": result["compile_s"],
                "traces": result["traces"],
                "load_average": result["load_average"],
                "run_s": result["run_s"],
                **{
                    k: result[k]
                    for k in ("padded_sentences_per_sec", "speedup_over_padded")
                    if k in result
                },
            }
        )
    )
    if "torch_sentences_per_sec" in result:
        print(
            json.dumps(
                {
                    "impl": "sentence-transformers",
                    **common,
                    **{
                        k: result[k]
                        for k in (
                            "torch_sentences_per_sec",
                            "torch_version",
                            "torch_threads",
                            "speedup_over_torch",
                            "max_abs_diff",
                        )
                    },
                }
            )
        )
    elif "torch_skipped" in result:
        print(json.dumps({"impl": "sentence-transformers", "skipped": result["torch_skipped"]}))


def run() -> None:
    """The command line (also the `wat-jax-text-bench` console script)."""
    from absl import app, flags

    flags.DEFINE_string("encoder", "minilm", "`minilm`, a model folder, or hf:ORG/NAME.")
    flags.DEFINE_integer("batch_size", 64, "Sentences per forward pass.")
    flags.DEFINE_integer("num_sentences", 1024, "Sentences per timed run.")
    flags.DEFINE_integer("repeats", 6, "Timed runs per implementation (median reported).")
    flags.DEFINE_enum("compare", "", ["", "torch"], "Also time sentence-transformers.")
    flags.DEFINE_bool("padded", False, "Also time our encoder without packing (bucket padding).")
    flags.DEFINE_string(
        "torch_site_packages",
        "",
        "A site-packages with torch and sentence-transformers, appended to sys.path.",
    )
    app.run(main)


if __name__ == "__main__":
    run()
