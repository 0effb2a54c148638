"""The training objective, computed per device inside the data-parallel step.

`LOSSES` maps each config.loss.name to one function of this device's `Rows`
returning the loss's (sum, count) straight from losses.py: the sum over the rows
that count (rows without a text target, a valid negative or a label do not)
and how many they are. The step divides each device's sum by the mean count
across devices and `pmean`s the gradients, which equals the gradient of the
global mean exactly, whatever the device count and however the counted rows
fall on devices: the property the 8-vs-1-device tests check. Contrastive terms
see global negatives through `all_gather`; its transpose sends every device's
gradient contributions back to the rows' owners.

Randomness: the step passes one key per step, the same on every device. Each
device folds in its axis index for its dropout masks; draws that must agree
across devices (the reference triplet's permutation of the global batch) use
the step key itself, so 8 devices draw what 1 device draws.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections

from wat_jax import losses, parallel

MAX_LOG_SCALE = 4.6052  # log(100): CLIP's clip on the learned temperature
# fold_in constant of the step key's stream for draws shared by every device; dropout
# uses fold_in(step key, axis index), and axis indices are small, so the two never meet.
_SHARED_STREAM = 2**31 - 1


class Rows(NamedTuple):
    """This device's rows, embedded, and what a loss reads beside them."""

    motion: jax.Array  # [b, E] motion embeddings
    text: jax.Array  # [b, K, E] embedded text targets, one per config.text.targets
    text_mask: jax.Array  # [b, K] which targets exist
    labels: jax.Array  # [b, C]
    params: dict  # the model's parameters (log_scale, logit_bias)
    loss_cfg: ml_collections.ConfigDict
    step_key: jax.Array  # this step's key, the same on every device
    threshold: float  # config.data.threshold: a label above it is in the set


def _log_scale(rows):
    return jnp.minimum(rows.params["log_scale"], MAX_LOG_SCALE)


def _global(rows):
    """What the losses with global negatives read: (this device's first text targets
    [b, E], every device's motion [N, E], first text targets [N, E] and labels [N, C]
    in device order, this device's rows' columns among them [b])."""
    text_local = rows.text[:, 0]
    return (
        text_local,
        parallel.gather(rows.motion),
        parallel.gather(text_local),
        parallel.gather(rows.labels),
        parallel.global_row_index(rows.motion.shape[0]),
    )


def _mse(rows):
    return losses.mse_loss_terms(rows.motion, rows.text, rows.text_mask)


def _infonce(rows):
    text_local, motion_all, text_all, labels_all, index = _global(rows)
    targets = losses.contrastive_targets(
        rows.labels, labels_all, index, rows.loss_cfg.targets, rows.threshold
    )
    return losses.info_nce_loss_terms(
        rows.motion, text_local, motion_all, text_all, targets, _log_scale(rows)
    )


def _siglip(rows):
    _, _, text_all, labels_all, index = _global(rows)
    targets = losses.contrastive_targets(
        rows.labels, labels_all, index, rows.loss_cfg.targets, rows.threshold
    )
    positives = (targets > 0).astype(jnp.float32)
    return losses.siglip_loss_terms(
        rows.motion, text_all, positives, _log_scale(rows), rows.params["logit_bias"]
    )


def shared_key(step_key):
    """The step's key for draws every device must make alike (not dropout's)."""
    return jax.random.fold_in(step_key, _SHARED_STREAM)


def dropout_key(step_key):
    """This device's dropout key: the step key folded with the device's axis index."""
    return jax.random.fold_in(step_key, jax.lax.axis_index(parallel.AXIS))


def drawn_negatives(step_key, global_rows, index):
    """The reference triplet's negatives: one permutation of the global batch per step,
    drawn alike on every device, read at this device's rows' columns `index` [b]."""
    perm = jax.random.permutation(shared_key(step_key), global_rows)  # [N]
    return perm[index]


def _triplet(rows):
    text_local, _, text_all, labels_all, index = _global(rows)
    negative_index = None
    if rows.loss_cfg.mining == "reference":
        negative_index = drawn_negatives(rows.step_key, text_all.shape[0], index)
    return losses.triplet_loss_terms(
        rows.motion,
        text_local,
        text_all,
        rows.labels,
        labels_all,
        rows.loss_cfg.margin,
        rows.threshold,
        rows.loss_cfg.mining,
        negative_index,
    )


# config.loss.name -> the (sum, count) of that loss on this device's rows.
LOSSES = {"mse": _mse, "infonce": _infonce, "siglip": _siglip, "triplet": _triplet}
# Losses that see global negatives, and so the learned temperature (logged).
_GLOBAL = ("infonce", "siglip", "triplet")


def objective_terms(model, params, batch, step_key, loss_cfg, threshold, *, train=True):
    """Computes each loss term's (sum, count) on this device's rows.

    Runs inside `jax.shard_map` over parallel.AXIS (it reads the axis index).

    Args:
      model: the MotionTextModel.
      params: its parameters (replicated).
      batch: this device's rows: motion [b, T, J, F], mask [b, T], labels
        [b, C], text [b, K, Dt] frozen text vectors, text_mask [b, K].
      step_key: this step's key, the same on every device; dropout gets
        `dropout_key(step_key)`, shared draws `shared_key(step_key)`.
      loss_cfg: config.loss.
      threshold: config.data.threshold, which labels are in a window's set.
      train: dropout on or off.

    Returns:
      dict term name -> (sum, count): config.loss.name's loss, and "ce" for the
      class head when ce_weight > 0; and a dict of auxiliary scalars.
    """
    name = loss_cfg.name
    if name not in LOSSES:
        raise ValueError(f"config.loss.name must be one of {tuple(LOSSES)}, got {name!r}")
    variables = {"params": params}
    # Folded with the axis index: each device's rows get their own masks (one shared key
    # would drop the same positions on every device), reproducible from the step key.
    rngs = {"dropout": dropout_key(step_key)}
    motion_emb = model.apply(
        variables, batch["motion"], batch["mask"], train=train, rngs=rngs, method="embed_motion"
    )  # [b, E]
    text_emb = model.apply(
        variables, batch["text"], train=train, rngs=rngs, method="embed_text"
    )  # [b, K, E]
    rows = Rows(
        motion_emb,
        text_emb,
        batch["text_mask"],
        batch["labels"],
        params,
        loss_cfg,
        step_key,
        threshold,
    )
    terms = {name: LOSSES[name](rows)}
    aux = {"temperature": jnp.exp(-_log_scale(rows))} if name in _GLOBAL else {}
    if loss_cfg.ce_weight > 0:
        logits = model.apply(variables, motion_emb, method="classify")
        terms["ce"] = losses.multilabel_cross_entropy_terms(logits, rows.labels)
    return terms, aux


def _weight(term, loss_cfg):
    """`ce_weight` for the class head, `weight` for the named loss."""
    return loss_cfg.ce_weight if term == "ce" else loss_cfg.weight


def device_loss(model, params, batch, step_key, loss_cfg, threshold, *, train=True):
    """This device's share of the global mean loss, plus metrics to log.

    pmean over devices of the returned loss equals the global mean of every
    term, because each device's sum is divided by the mean count. step_key is
    the step's key, the same on every device (see objective_terms).
    """
    terms, aux = objective_terms(model, params, batch, step_key, loss_cfg, threshold, train=train)
    loss = 0.0
    metrics = dict(aux)
    for term, (total, count) in terms.items():
        mean_count = jax.lax.stop_gradient(jax.lax.pmean(count, parallel.AXIS))
        share = total / jnp.maximum(mean_count, 1e-9)
        loss = loss + _weight(term, loss_cfg) * share
        metrics[term] = share
    return loss, metrics
