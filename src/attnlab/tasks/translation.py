"""Neural machine translation as a LightningModule: loss, decoding, metrics, optimiser, media.

The architecture lives in :mod:`attnlab.models.seq2seq`; this module only trains and scores it.

Logged metrics:
    train/loss                      label-smoothed token cross-entropy (step and epoch)
    val/loss, val/ppl               smoothed loss; perplexity from the *unsmoothed* token NLL
    val/bleu, val/chrf              greedy decoding (``val_beam_size``), sacreBLEU 0-100
    test/bleu, test/chrf            beam search (``beam_size``)
    {val,test}/bleu_len_<bucket>    BLEU by source length (01-10 ... gt40, and gt20)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torchmetrics.aggregation import SumMetric

from attnlab.models.seq2seq import MAX_DECODE_LEN, Hypotheses, Seq2Seq
from attnlab.tasks.optim_factories import factory_to_config
from attnlab.tasks.schedule import configure_from_hparams
from attnlab.tasks.translation_metrics import TranslationMetrics
from attnlab.plain import plain

__all__ = ["TranslationTask"]

log = logging.getLogger(__name__)

Batch = dict[str, Any]


class TranslationTask(pl.LightningModule):
    """Train and evaluate :class:`~attnlab.models.seq2seq.Seq2Seq` on a translation datamodule.

    Args:
        src_vocab_size, tgt_vocab_size, pad_id, bos_id, eos_id, src_tokenizer_json, tgt_tokenizer_json:
            from ``datamodule.model_kwargs()``; the tokenizers are stored (as JSON) in the checkpoint
            so a checkpoint alone can translate.
        attention: the ``attention`` config group as a dict (``kind`` + options).
        net: model sizes for :class:`Seq2Seq`: ``emb_dim``, ``hidden_dim``, ``num_layers``, ``dropout``.
        optimizer: ``functools.partial`` of a torch optimizer, called with ``params=`` (stored in the
            hyper-parameters as ``{"_target_": ..., **kwargs}``, see :mod:`attnlab.tasks.optim_factories`).
        scheduler: ``functools.partial`` of an LR scheduler (called with ``optimizer=``; ``total_steps``
            / ``T_max`` are filled in from the trainer when the partial leaves them out) or None.
        scheduler_interval: ``step`` or ``epoch``.
        label_smoothing: for the training (and reported validation) loss.
        val_beam_size: beam for validation decoding (1 = greedy, the fast default).
        beam_size: beam for test decoding and :meth:`translate`.
        length_penalty, length_penalty_kind: see :func:`attnlab.models.beam_search.length_penalty_factor`.
        max_len_a, max_len_b: decode at most ``a * src_len + b`` tokens ...
        max_decode_len: ... and never more than this, however long the source (a hard cap: one
            10,000-word line in a test set must not make decoding run for minutes).
        bleu_tokenize: sacreBLEU tokenizer for BLEU.
        n_media_examples: alignment heat maps per validation epoch (W&B only).
        n_table_rows: validation sentences in the W&B sample table.
    """

    # Hyper-parameters eval.py may change on a trained model (``model.beam_size=10``): read at decode time.
    EVAL_SETTINGS = ("val_beam_size", "beam_size", "length_penalty", "length_penalty_kind", "max_len_a",
                     "max_len_b", "max_decode_len")

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        pad_id: int,
        bos_id: int,
        eos_id: int,
        src_tokenizer_json: str,
        tgt_tokenizer_json: str,
        attention: dict[str, Any],
        net: dict[str, Any] | None = None,
        optimizer: Callable[..., torch.optim.Optimizer] | Mapping[str, Any] | None = None,
        scheduler: Callable[..., Any] | Mapping[str, Any] | None = None,
        scheduler_interval: str = "step",
        label_smoothing: float = 0.1,
        val_beam_size: int = 1,
        beam_size: int = 5,
        length_penalty: float = 0.6,
        length_penalty_kind: str = "gnmt",
        max_len_a: float = 1.5,
        max_len_b: int = 10,
        max_decode_len: int = MAX_DECODE_LEN,
        bleu_tokenize: str = "13a",
        n_media_examples: int = 4,
        n_table_rows: int = 16,
    ) -> None:
        super().__init__()
        # Plain containers before save_hyperparameters() (which reads these locals), so the
        # checkpoint's hparams do not depend on OmegaConf objects.
        attention = dict(plain(attention))
        net = dict(plain(net) or {})
        if scheduler_interval not in ("step", "epoch"):
            raise ValueError(f"scheduler_interval must be 'step' or 'epoch', got {scheduler_interval!r}")
        if max_decode_len < 1:
            raise ValueError(f"max_decode_len must be >= 1, got {max_decode_len}")
        # Plain dicts, not pickled partials: checkpoints must load with torch.load(weights_only=True).
        optimizer = factory_to_config(optimizer, "optimizer")
        scheduler = factory_to_config(scheduler, "scheduler")
        # logger=False: the hparams hold both tokenizers as JSON (hundreds of KB); they belong in the
        # checkpoint, not in the W&B config, which train.py fills with the resolved config instead.
        self.save_hyperparameters(logger=False)
        self.model = Seq2Seq(
            src_vocab_size,
            tgt_vocab_size,
            attention=attention,
            pad_id=pad_id,
            bos_id=bos_id,
            eos_id=eos_id,
            **net,
        )
        self.val_metrics = TranslationMetrics(bleu_tokenize)
        self.test_metrics = TranslationMetrics(bleu_tokenize)
        # Token-weighted NLL for perplexity: sums (synced across ranks), divided at epoch end.
        self.val_nll_sum = SumMetric()
        self.val_tokens = SumMetric()
        self._src_tokenizer: Any = None
        self._tgt_tokenizer: Any = None
        # (source, reference, hypothesis, source words) of the first validation sentences, for the W&B table.
        self.val_samples: list[tuple[str, str, str, int]] = []
        # (position in the test split, hypothesis, reference) of this rank's test sentences: test_outputs().
        self._test_outputs: list[tuple[int, str, str]] = []
        self._test_outputs_indexed = True

    # ------------------------------------------------------------------ tokenizers
    @property
    def src_tokenizer(self) -> Any:
        """Source :class:`attnlab.data.tokenizer.TextTokenizer`, rebuilt from the stored JSON."""
        if self._src_tokenizer is None:
            from attnlab.data.tokenizer import TextTokenizer

            self._src_tokenizer = TextTokenizer.from_json(self.hparams.src_tokenizer_json)
        return self._src_tokenizer

    @property
    def tgt_tokenizer(self) -> Any:
        """Target :class:`attnlab.data.tokenizer.TextTokenizer`, rebuilt from the stored JSON."""
        if self._tgt_tokenizer is None:
            from attnlab.data.tokenizer import TextTokenizer

            self._tgt_tokenizer = TextTokenizer.from_json(self.hparams.tgt_tokenizer_json)
        return self._tgt_tokenizer

    # ------------------------------------------------------------------ model
    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor, src_mask: Tensor | None = None) -> Tensor:
        """Teacher-forced logits (B, T, V) for src (B, S), src_lengths (B,), tgt_in (B, T)."""
        logits, _ = self.model(src, src_lengths, tgt_in, src_mask, need_weights=False)
        return logits

    def _losses(self, batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
        """Smoothed mean loss, unsmoothed NLL summed over tokens, and the token count."""
        logits = self(batch["src"], batch["src_lengths"], batch["tgt_in"], batch.get("src_mask"))
        flat_logits = logits.flatten(0, 1)
        target = batch["tgt_out"].flatten()
        pad = self.hparams.pad_id
        loss = F.cross_entropy(flat_logits, target, ignore_index=pad, label_smoothing=self.hparams.label_smoothing)
        if self.hparams.label_smoothing == 0:
            tokens = (target != pad).sum()
            return loss, loss.detach() * tokens, tokens
        with torch.no_grad():
            nll = F.cross_entropy(flat_logits, target, ignore_index=pad, reduction="sum")
        return loss, nll, (target != pad).sum()

    def decode(self, batch: Batch, beam_size: int) -> Hypotheses:
        """Decode a batch greedily (``beam_size == 1``) or with beam search."""
        src, lengths, mask = batch["src"], batch["src_lengths"], batch.get("src_mask")
        hp = self.hparams
        cap = self.decode_cap
        if beam_size <= 1:
            return self.model.greedy_decode(src, lengths, mask, max_len_a=hp.max_len_a, max_len_b=hp.max_len_b,
                                            max_len=cap)
        return self.model.beam_search(
            src,
            lengths,
            mask,
            beam_size=beam_size,
            length_penalty=hp.length_penalty,
            length_penalty_kind=hp.length_penalty_kind,
            max_len_a=hp.max_len_a,
            max_len_b=hp.max_len_b,
            max_len=cap,
        )

    @property
    def decode_cap(self) -> int:
        """The absolute decoding cap, ``max_decode_len``."""
        return int(self.hparams.max_decode_len)

    def ids_to_text(self, tokens: Tensor) -> list[str]:
        """Target ids (B, T) -> detokenised strings, cut at the first ``eos``."""
        eos, pad, bos = self.hparams.eos_id, self.hparams.pad_id, self.hparams.bos_id
        texts = []
        for row in tokens.tolist():
            if eos in row:
                row = row[: row.index(eos)]
            texts.append(self.tgt_tokenizer.decode([i for i in row if i not in (pad, bos)]))
        return texts

    def encode_sources(self, sentences: Sequence[str]) -> Batch:
        """Raw source sentences -> the ``src``, ``src_mask``, ``src_lengths`` part of a batch (+ ``eos``)."""
        ids = [list(self.src_tokenizer.encode(s)) + [self.hparams.eos_id] for s in sentences]
        width = max(len(x) for x in ids)
        src = torch.full((len(ids), width), self.hparams.pad_id, dtype=torch.long)
        for i, x in enumerate(ids):
            src[i, : len(x)] = torch.tensor(x, dtype=torch.long)
        lengths = torch.tensor([len(x) for x in ids], dtype=torch.long)
        mask = torch.arange(width)[None, :] < lengths[:, None]
        return {"src": src.to(self.device), "src_mask": mask.to(self.device), "src_lengths": lengths.to(self.device)}

    @torch.no_grad()
    def translate(self, sentences: Sequence[str], beam_size: int | None = None, batch_size: int = 64) -> list[str]:
        """Translate raw sentences (beam ``beam_size``, default the test beam); returns detokenised text."""
        was_training = self.training
        self.eval()
        beam = self.hparams.beam_size if beam_size is None else int(beam_size)
        out: list[str] = []
        try:
            for start in range(0, len(sentences), batch_size):
                chunk = list(sentences[start : start + batch_size])
                out.extend(self.ids_to_text(self.decode(self.encode_sources(chunk), beam).tokens))
        finally:
            self.train(was_training)
        return out

    # ------------------------------------------------------------------ training
    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        loss, _, _ = self._losses(batch)
        # No .item(): logging a tensor keeps the step free of host syncs.
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=batch["src"].size(0))
        return loss

    def on_validation_epoch_start(self) -> None:
        self.val_samples = []

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        loss, nll, tokens = self._losses(batch)
        self.log("val/loss", loss, on_epoch=True, sync_dist=True, batch_size=batch["src"].size(0))
        self.val_nll_sum.update(nll)
        self.val_tokens.update(tokens.float())
        hyps = self.ids_to_text(self.decode(batch, self.hparams.val_beam_size).tokens)
        self.val_metrics.update(hyps, batch["tgt_text"], batch["src_num_words"])
        room = self.hparams.n_table_rows - len(self.val_samples)
        if room > 0:
            words = batch["src_num_words"].tolist()
            self.val_samples.extend(
                zip(batch["src_text"][:room], batch["tgt_text"][:room], hyps[:room], words[:room])
            )

    def on_validation_epoch_end(self) -> None:
        nll, tokens = self.val_nll_sum.compute(), self.val_tokens.compute()
        self.log("val/ppl", torch.exp(nll / tokens.clamp(min=1.0)), sync_dist=True)
        self._log_metrics("val", self.val_metrics)
        self.val_nll_sum.reset()
        self.val_tokens.reset()

    def on_test_epoch_start(self) -> None:
        self._test_outputs = []
        self._test_outputs_indexed = True

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        loss, _, _ = self._losses(batch)
        self.log("test/loss", loss, on_epoch=True, sync_dist=True, batch_size=batch["src"].size(0))
        hyps = self.ids_to_text(self.decode(batch, self.hparams.beam_size).tokens)
        self.test_metrics.update(hyps, batch["tgt_text"], batch["src_num_words"])
        # Batches come in length order: the dataset position puts hypotheses back in reference order.
        # Without one, batch order is kept (still the same for every run on the same data).
        if "index" in batch:
            positions = batch["index"].tolist()
        else:
            self._test_outputs_indexed = False
            start = self.global_rank * 2**40 + len(self._test_outputs)
            positions = list(range(start, start + len(hyps)))
        self._test_outputs.extend(zip(positions, hyps, batch["tgt_text"]))

    def test_outputs(self) -> dict[str, Any]:
        """The test split's hypotheses and references in reference order, gathered from every rank
        (call on all ranks after the test batches): what :mod:`attnlab.runs.test_outputs` keeps."""
        from attnlab.tasks.gather import gather_lists

        rows = sorted(dict((pos, (hyp, ref)) for pos, hyp, ref in gather_lists(self._test_outputs)).items())
        return {
            "task": "translation",
            "hypotheses": [hyp for _, (hyp, _) in rows],
            "references": [ref for _, (_, ref) in rows],
            "order": "reference" if rows and self._test_outputs_indexed else "test batches",
            "bleu_tokenize": self.hparams.bleu_tokenize,
        }

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test", self.test_metrics)

    def _log_metrics(self, split: str, metrics: TranslationMetrics) -> None:
        values = metrics.compute()  # already synced across ranks by torchmetrics
        metrics.reset()
        # sync_dist only silences Lightning's epoch-level warning: the values agree on every rank.
        self.log(f"{split}/bleu", values.pop("bleu"), prog_bar=True, sync_dist=True)
        self.log_dict({f"{split}/{k}": v for k, v in values.items()}, sync_dist=True)

    # ------------------------------------------------------------------ cost
    #: What training throughput counts (:meth:`batch_units`), for the cost figures.
    throughput_unit = "tokens"

    def batch_units(self, batch: Batch) -> tuple[int, Tensor]:
        """(sentences, target tokens) in a batch; the token count stays on the device (no host sync)."""
        return batch["src"].size(0), (batch["tgt_out"] != self.hparams.pad_id).sum()

    # ------------------------------------------------------------------ media
    def log_media(self, wandb_loggers: Sequence[Any]) -> None:
        """Alignment heat maps of the datamodule's fixed examples and a table of validation samples
        (called by :class:`attnlab.callbacks.MediaLogger` on rank 0 after validation)."""
        from attnlab.tasks.translation_media import log_translation_media

        log_translation_media(self, wandb_loggers)

    # ------------------------------------------------------------------ optimisation
    def compile_targets(self) -> dict[str, nn.Module]:
        """What ``compile.enabled=true`` compiles: the modules every decoder step calls. The whole
        model would be re-traced for every target length, since its decoder loop runs in Python."""
        decoder = self.model.decoder
        return {"decoder.attention": decoder.attention, "decoder.cells": decoder.cells,
                "decoder.combine": decoder.combine, "decoder.out": decoder.out}

    def configure_optimizers(self) -> Any:
        return configure_from_hparams(self.hparams, self.parameters(), self.trainer, "TranslationTask")
