"""Greedy decoding for a T5-family student, written out instead of `model.generate`.

A student's labels are a few tokens long and its model is small, so what `generate` costs is
mostly its own machinery per step (logits processors, stopping criteria, cache bookkeeping), not the
model. This loop does only what greedy decoding needs: the encoder once per batch, one decoder
step per token with the KV cache, and a stop as soon as every row has emitted `</s>`. It gives
`generate(do_sample=False, num_beams=1)`'s tokens (tests/test_predict.py checks it).
"""

from __future__ import annotations

from typing import Any

import torch


@torch.inference_mode()
def greedy(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """The greedy continuation of each row, `</s>` included, padded with `<pad>` after it."""
    config = model.config
    encoder_outputs = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask)
    rows = input_ids.shape[0]
    step = torch.full((rows, 1), config.decoder_start_token_id, dtype=torch.long)
    done = torch.zeros(rows, dtype=torch.bool)
    cache, tokens = None, []
    for _ in range(max_new_tokens):
        out = model(encoder_outputs=encoder_outputs, attention_mask=attention_mask, decoder_input_ids=step,
                    cache=cache, use_cache=True)  # fmt: skip
        cache = out.cache
        chosen = out.logits[:, -1].argmax(-1).masked_fill(done, config.pad_token_id)
        tokens.append(chosen)
        done |= chosen == config.eos_token_id
        if bool(done.all()):
            break
        step = chosen[:, None]
    return torch.stack(tokens, dim=1) if tokens else torch.empty((rows, 0), dtype=torch.long)
