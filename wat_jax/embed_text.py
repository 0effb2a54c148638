"""`python -m wat_jax.embed_text`, the contract's name for wat_jax/tools/embed_text.py.

python -m wat_jax.embed_text --encoder=minilm --input=sentences.txt --output=out.npy
"""

if __name__ == "__main__":
    from wat_jax.tools import embed_text

    embed_text.run()
