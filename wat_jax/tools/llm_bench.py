"""Benchmark of the local LLM: generated tokens per second on this machine.

    python -m wat_jax.tools.llm_bench [--batch_sizes=1,32] [--new_tokens=64] [--demo]

Prints one JSON object per line. Each batch size is run once to compile and then
`--repeats` times; generation never stops early (no stop tokens), so every row
yields exactly `--new_tokens` tokens. `--demo` also times what the demo's describe
stage asks for: 4 sampled descriptions for each of 20 classes, 96 tokens at most,
through `LocalBackend.complete`.
"""

import json
import time

import jax.numpy as jnp
from absl import app, flags

from wat_jax.configs import base_config
from wat_jax.errors import exits_on_input_error
from wat_jax.models import llama
from wat_jax.text.chat import ChatRequest
from wat_jax.text.local_llm import LocalBackend

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "smollm2", "describe.local_model: smollm2, a .gguf or a folder")
flags.DEFINE_list("batch_sizes", ["1", "32"], "batch sizes to time")
flags.DEFINE_integer("new_tokens", 64, "tokens generated per row")
flags.DEFINE_integer("repeats", 2, "timed runs per batch size (after one compiling run)")
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "weights and compute dtype")
flags.DEFINE_bool("demo", True, "also time the demo-sized describe workload")

_ACTIONS = [
    "walk",
    "run",
    "jump",
    "sit",
    "stand up",
    "kick",
    "throw",
    "wave",
    "bend down",
    "turn around",
    "climb stairs",
    "crouch",
    "dance",
    "punch",
    "stretch",
    "lie down",
    "hop on one leg",
    "step back",
    "side step",
    "spin",
]


def _prompt(action: str) -> tuple[dict, ...]:
    return ({"role": "user", "content": f"Describe how a person's body moves when they {action}."},)


@exits_on_input_error
def main(argv):
    del argv
    cfg = base_config().describe
    cfg.update(local_model=FLAGS.model, local_dtype=FLAGS.dtype)
    backend = LocalBackend(cfg)
    loaded = backend.loaded
    tokenizer = loaded.tokenizer
    prompts = [tokenizer.encode_chat(_prompt(a)) for a in _ACTIONS]
    dtype = jnp.float32 if FLAGS.dtype == "float32" else jnp.bfloat16
    for batch in [int(b) for b in FLAGS.batch_sizes]:
        rows = [prompts[i % len(prompts)] for i in range(batch)]

        def run(rows=rows, batch=batch):
            return llama.generate(
                loaded.params,
                loaded.config,
                rows,
                max_new_tokens=FLAGS.new_tokens,
                temperature=0.7,
                top_p=0.95,
                seeds=list(range(batch)),
                stop_ids=frozenset(),
                dtype=dtype,
            )

        started = time.time()
        run()
        compile_s = time.time() - started
        for _ in range(FLAGS.repeats):
            started = time.time()
            outputs = run()
            elapsed = time.time() - started
            tokens = sum(len(o) for o in outputs)
            print(
                json.dumps(
                    {
                        "bench": "generate",
                        "model": backend.model,
                        "dtype": FLAGS.dtype,
                        "batch": batch,
                        "new_tokens": FLAGS.new_tokens,
                        "tokens_per_s": round(tokens / elapsed, 1),
                        "seconds": round(elapsed, 2),
                        "first_run_seconds": round(compile_s, 2),
                    }
                ),
                flush=True,
            )
    if FLAGS.demo:
        requests = [
            ChatRequest(
                messages=_prompt(a), n=4, temperature=0.7, top_p=0.95, max_tokens=96, seed=i
            )
            for i, a in enumerate(_ACTIONS)
        ]
        started = time.time()
        texts = backend.complete(requests)
        elapsed = time.time() - started
        tokens = sum(len(tokenizer.encode(t)) for per in texts for t in per)
        print(
            json.dumps(
                {
                    "bench": "demo_describe",
                    "model": backend.model,
                    "dtype": FLAGS.dtype,
                    "completions": 4 * len(_ACTIONS),
                    "max_tokens": 96,
                    "batch": backend.batch_size,
                    "seconds_including_compile": round(elapsed, 1),
                    "approx_tokens_per_s": round(tokens / elapsed, 1),
                    "example": texts[0][0][:200],
                }
            ),
            flush=True,
        )


def run() -> None:
    """The command line (also the `wat-jax-llm-bench` console script)."""
    app.run(main)


if __name__ == "__main__":
    run()
