"""Autoregressive sampling from a language model, one token at a time.

``generate(model, prompt_ids, max_new_tokens, temperature=..., top_k=..., top_p=...)`` yields
each new token id as soon as it is drawn, so a CLI can stream text. At every step the model sees
the last ``model.block_size`` tokens (the longest context it was trained on), and the next token
is drawn from ``softmax(filter_logits(logits / temperature))``:

* ``temperature`` scales the logits; 0 means greedy decoding (argmax, no randomness);
* ``top_k`` keeps the k largest logits (Fan et al. 2018);
* ``top_p`` keeps the nucleus, the smallest set of most probable tokens whose probability mass
  reaches p (Holtzman et al., The Curious Case of Neural Text Degeneration, ICLR 2020);
  top-k applies first when both are given, top-p then acts on the renormalized survivors.

Both filters are thresholds on the logit value, so tokens tied with the last one kept are kept
too: the result never depends on the order of the vocabulary (top-k may keep more than k
tokens, top-p more than the smallest set, only under exact ties).

The model runs in eval mode under ``torch.no_grad`` for each step; its mode and the caller's
grad mode are restored before every ``yield``. No key/value cache: each step recomputes the
cropped context, which is cheap at character-level block sizes.
"""

from __future__ import annotations

import math
from typing import Iterator

import torch
from torch import nn


def filter_logits(logits: torch.Tensor, top_k: int | None = None,
                  top_p: float | None = None) -> torch.Tensor:
    """Logits (..., V) with the tokens outside top-k and then the top-p nucleus set to -inf.

    ``None`` disables a filter. The most probable token always survives.
    """
    _check_filters(top_k, top_p)
    out = logits
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]  # (..., 1) k-th largest
        out = out.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        # float64 so the cumulative sum is not the thing that decides borderline tokens.
        probs = out.double().softmax(dim=-1)
        sorted_probs = probs.sort(dim=-1, descending=True).values
        mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass of strictly-better ones
        # Token i (in sorted order) belongs to the nucleus iff the mass before it is < p: the
        # first token always does, and the set stops at the first one reaching p.
        in_nucleus = mass_before < top_p
        cutoff = sorted_probs.masked_fill(~in_nucleus, math.inf).amin(dim=-1, keepdim=True)
        out = out.masked_fill(probs < cutoff, float("-inf"))
    return out


def next_token(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
               top_p: float | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one token per row of logits (..., V) -> ids (...,), as ``generate`` does each step."""
    _check_temperature(temperature)
    if temperature == 0:
        return logits.argmax(dim=-1)
    scaled = filter_logits(logits.float() / temperature, top_k, top_p)
    probs = scaled.softmax(dim=-1)
    if generator is not None:
        probs = probs.to(generator.device)  # the generator decides where the draw happens
    flat = probs.reshape(-1, probs.shape[-1])
    ids = torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1])
    return ids.to(logits.device)


def generate(model: nn.Module, prompt_ids: torch.Tensor, max_new_tokens: int, *,
             temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
             generator: torch.Generator | None = None) -> Iterator[int]:
    """Yield ``max_new_tokens`` token ids continuing ``prompt_ids`` ((T0,) or (1, T0)).

    ``model(ids (1, T)) -> logits (1, T, V)``; its ``block_size`` attribute (if any) crops the
    context. The same ``generator`` seed gives the same tokens. Arguments are checked here, when
    ``generate`` is called, not at the first ``next()``.
    """
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) \
            or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    _check_temperature(temperature)
    _check_filters(top_k, top_p)
    if not isinstance(prompt_ids, torch.Tensor) or prompt_ids.dtype.is_floating_point \
            or prompt_ids.dtype == torch.bool:
        raise ValueError("prompt_ids must be an integer tensor of token ids")
    if prompt_ids.ndim == 2 and prompt_ids.shape[0] == 1:
        prompt_ids = prompt_ids[0]
    if prompt_ids.ndim != 1:
        raise ValueError(f"prompt_ids must have shape (T0,) or (1, T0), got "
                         f"{tuple(prompt_ids.shape)}")
    if prompt_ids.numel() == 0:
        raise ValueError("prompt_ids is empty; give at least one token to condition on")
    return _generate(model, prompt_ids, max_new_tokens, temperature, top_k, top_p, generator)


def _generate(model, prompt_ids, max_new_tokens, temperature, top_k, top_p,
              generator) -> Iterator[int]:
    device = next(iter(model.parameters()), prompt_ids).device
    block_size = getattr(model, "block_size", None)
    context = prompt_ids.to(device=device, dtype=torch.long)[None]  # (1, T)
    for _ in range(max_new_tokens):
        if block_size is not None:
            context = context[:, -block_size:]
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                logits = model(context)[0, -1]  # (1, T, V) -> (V,) at the last position
                token = next_token(logits, temperature, top_k, top_p, generator)
        finally:
            model.train(was_training)
        context = torch.cat([context, token.view(1, 1)], dim=1)
        yield int(token)


def _check_temperature(temperature: float) -> None:
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature)
            and temperature >= 0):
        raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), "
                         f"got {temperature!r}")


def _check_filters(top_k: int | None, top_p: float | None) -> None:
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int)
                              or top_k < 1):
        raise ValueError(f"top_k must be an int >= 1 or None, got {top_k!r}")
    if top_p is not None and not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p!r}")
