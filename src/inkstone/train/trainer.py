"""transformers' Trainer with Inkstone's two changes. Its own module because it
imports transformers at once: qlora.py, which the web UI imports, stays light."""
from __future__ import annotations

from pathlib import Path

import torch
from transformers import Trainer

from ..checkpoints import INCOMPLETE_MARKER
from .fused_loss import causal_lm_loss_sum


class InkstoneTrainer(Trainer):
    """Checkpoints are marked incomplete until every file is written (a crash
    mid-save never leaves a folder that resume or the UI would pick up); with
    `fused`, the loss is computed slice by slice without materialising all logits;
    evaluation runs in inference mode."""

    def __init__(self, *args, fused: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.fused = fused

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self.fused:
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        total, count = causal_lm_loss_sum(model, inputs["input_ids"], inputs.get("attention_mask"),
                                          inputs["labels"])
        # Same convention as the Trainer: normalised by the tokens of the whole accumulated batch when known.
        loss = total / (num_items_in_batch if num_items_in_batch is not None else max(count, 1))
        return (loss, {"loss": loss}) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        # Only the loss is wanted: inference mode records nothing for autograd (no_grad still tracks
        # versions and views). Nothing made here outlives the step, so training never meets an inference tensor.
        with torch.inference_mode():
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)

    def _save_checkpoint(self, model, trial):
        folder = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / INCOMPLETE_MARKER).touch()
        super()._save_checkpoint(model, trial)
        (folder / INCOMPLETE_MARKER).unlink(missing_ok=True)
