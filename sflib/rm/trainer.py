"""The reward-model ``Trainer`` (importing this module imports ``transformers``; :mod:`sflib.rm.training`
imports it only when it trains, so ``import sflib`` stays light).

:class:`RewardTrainer` computes the ratings loss (MSE of ``sigmoid(reward)`` onto ``(score − 1) / 6``) or the
Bradley–Terry loss on our batches (packed or padded; one :class:`~sflib.rm.encoding.TokenBatches` batch per
step) and, as TRL's ``RewardTrainer`` does, logs per-batch metrics from ``compute_loss`` averaged over each
logging interval: for rankings ``accuracy`` (share of non-tied pairs with the preferred reward higher) and
``margin`` (mean ``r_preferred − r_other``); for ratings ``mae`` on the 1–7 scale. Evaluation metrics get
the ``eval_`` prefix.
"""
from __future__ import annotations

from collections import defaultdict

import torch
from transformers import Trainer

from .forward import rewards
from .objectives import bradley_terry_loss, ratings_loss


class RewardTrainer(Trainer):
    """``Trainer`` with the ratings or the Bradley–Terry loss (``kind``) and accuracy / margin logging."""

    def __init__(self, *args, kind: str, margin: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.kind, self.margin = kind, margin
        self.loss_is_scaled_for_ga = False  # compute_loss returns a per-batch mean
        self._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}

    def _record(self, model, name: str, value: torch.Tensor) -> None:
        metrics = getattr(self, "_metrics", None)  # absent on an instance made without __init__ (tests)
        if metrics is not None:
            metrics["train" if model.training else "eval"][name].append(float(value.detach().float().mean()))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        r = rewards(model, inputs)
        if self.kind == "ratings":
            loss = ratings_loss(r, inputs["labels"])
            self._record(model, "mae", 6 * (torch.sigmoid(r.float()) - inputs["labels"].float()).abs())
        else:
            b = inputs["ties"].shape[0]
            loss = bradley_terry_loss(r[:b], r[b:], self.margin, inputs["ties"])
            d = (r[:b] - r[b:]).float()
            strict = ~inputs["ties"].bool()
            if bool(strict.any()):
                self._record(model, "accuracy", (d[strict] > 0).float())
                self._record(model, "margin", d[strict])
        return (loss, {"rewards": r}) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if self.model.training else "eval"
        metrics = getattr(self, "_metrics", {}).get(mode, {})
        prefix = "eval_" if mode == "eval" and any(k.startswith("eval_") for k in logs) else ""
        logs = {**logs, **{f"{prefix}{k}": sum(v) / len(v) for k, v in metrics.items() if v}}
        if metrics:
            metrics.clear()
        super().log(logs, start_time)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def _get_eval_sampler(self, eval_dataset):
        return torch.utils.data.SequentialSampler(eval_dataset)
