"""The training objective, computed per device inside the data-parallel step.

Every term is a (sum over this device's rows, row count) pair. The step
divides each device's sum by the mean count across devices and `pmean`s the
gradients, which equals the gradient of the global mean exactly, whatever the
device count: the property the 8-vs-1-device test checks. Contrastive terms see
global negatives through `all_gather`; its transpose sends every device's
gradient contributions back to the rows' owners.
"""

import jax
import jax.numpy as jnp

from wat_jax import losses, parallel

LOSSES = ("mse", "infonce", "siglip", "triplet")
MAX_LOG_SCALE = 4.6052  # log(100): CLIP's clip on the learned temperature


def _row_terms(mean_value, rows):
    """A mean over `rows` local rows as a (sum, count) pair."""
    return mean_value * rows, jnp.asarray(rows, jnp.float32)


def objective_terms(model, params, batch, rng, loss_cfg, *, train=True):
    """Computes each loss term's (sum, count) on this device's rows.

    Args:
      model: the MotionTextModel.
      params: its parameters (replicated).
      batch: this device's rows: motion [b, T, J, F], mask [b, T], labels
        [b, C], text [b, K, Dt] frozen text vectors, text_mask [b, K].
      rng: dropout key for this device and step.
      loss_cfg: config.loss.
      train: dropout on or off.

    Returns:
      dict term name -> (sum, count), and dict of auxiliary scalars.
    """
    variables = {"params": params}
    rngs = {"dropout": rng}
    motion_emb = model.apply(
        variables, batch["motion"], batch["mask"], train=train, rngs=rngs, method="embed_motion"
    )  # [b, E]
    text_emb = model.apply(
        variables, batch["text"], train=train, rngs=rngs, method="embed_text"
    )  # [b, K, E]
    rows = motion_emb.shape[0]
    labels = batch["labels"]
    terms, aux = {}, {}
    name = loss_cfg.name
    if name not in LOSSES:
        raise ValueError(f"config.loss.name must be one of {LOSSES}, got {name!r}")

    if name == "mse":
        mse = losses.mse_loss(motion_emb, text_emb, batch["text_mask"])
        terms["mse"] = _row_terms(mse, rows)

    if name in ("infonce", "siglip", "triplet"):
        # Global negatives: every device's embeddings and labels, in device order.
        motion_all = parallel.gather(motion_emb)
        text_local = text_emb[:, 0]
        text_all = parallel.gather(text_local)
        labels_all = parallel.gather(labels)
        index = parallel.global_row_index(rows)
        threshold = loss_cfg.get("label_threshold", 0.5)
        log_scale = jnp.minimum(params["log_scale"], MAX_LOG_SCALE)
        aux["temperature"] = jnp.exp(-log_scale)
        if name == "infonce":
            targets = losses.contrastive_targets(
                labels, labels_all, index, loss_cfg.targets, threshold
            )
            value = losses.info_nce_loss(
                motion_emb, text_local, motion_all, text_all, targets, log_scale
            )
            terms["infonce"] = _row_terms(value, rows)
        elif name == "siglip":
            targets = losses.contrastive_targets(
                labels, labels_all, index, loss_cfg.targets, threshold
            )
            value = losses.siglip_loss(
                motion_emb,
                text_all,
                (targets > 0).astype(jnp.float32),
                log_scale,
                params["logit_bias"],
            )
            terms["siglip"] = _row_terms(value, rows)
        else:
            terms["triplet"] = losses.triplet_loss_terms(
                motion_emb,
                text_local,
                text_all,
                labels,
                labels_all,
                loss_cfg.margin,
                threshold,
                loss_cfg.get("mining", "all"),
            )

    if loss_cfg.get("ce_weight", 0.0) > 0:
        logits = model.apply(variables, motion_emb, method="classify")
        terms["ce"] = losses.multilabel_cross_entropy_terms(logits, labels)
    return terms, aux


def combine(terms, loss_cfg):
    """Term weights: `weight` for the named loss, `ce_weight` for the class head."""
    weights = {loss_cfg.name: loss_cfg.get("weight", 1.0)}
    if loss_cfg.get("ce_weight", 0.0) > 0:
        weights["ce"] = loss_cfg.ce_weight
    return weights


def device_loss(model, params, batch, rng, loss_cfg, *, train=True):
    """This device's share of the global mean loss, plus metrics to log.

    pmean over devices of the returned loss equals the global mean of every
    term, because each device's sum is divided by the mean count.
    """
    terms, aux = objective_terms(model, params, batch, rng, loss_cfg, train=train)
    loss = 0.0
    metrics = dict(aux)
    for term, weight in combine(terms, loss_cfg).items():
        total, count = terms[term]
        mean_count = jax.lax.stop_gradient(jax.lax.pmean(count, parallel.AXIS))
        share = total / jnp.maximum(mean_count, 1e-9)
        loss = loss + weight * share
        metrics[term] = share
    return loss, metrics
