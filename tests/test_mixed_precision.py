"""trainer.precision=bf16-mixed on CPU and precision=auto: what runs in bf16, what stays float32, and
that both tasks train, validate, decode, score and draw under CPU autocast with a real Trainer."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from attnlab.cli import precision
from attnlab.models.recurrent import GRUCell, bidirectional_gru

from .helpers import TINY_DETECTION, TINY_TRANSLATION, compose_train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def bf16() -> torch.autocast:
    """What Lightning's ``bf16-mixed`` runs the steps under on CPU."""
    return torch.autocast("cpu", dtype=torch.bfloat16)


# ------------------------------------------------------------------------------------------ policy
@pytest.mark.parametrize(
    "support, expected", [("AMX-BF16", "bf16-mixed"), ("AVX512-BF16", "bf16-mixed"), (None, "32-true")]
)
def test_auto_precision_follows_the_cpu(support: str | None, expected: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cpu_bf16_support", lambda: support)
    node = OmegaConf.create({"accelerator": "cpu", "precision": "auto"})
    assert precision.resolve_precision(node) == expected
    assert node.precision == expected  # written back: W&B config and metrics.json record what ran
    # An explicit value is never second-guessed.
    explicit = OmegaConf.create({"accelerator": "cpu", "precision": "32-true"})
    assert precision.resolve_precision(explicit) == "32-true" and explicit.precision == "32-true"


def test_auto_precision_elsewhere_is_float32_without_bf16_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert precision.resolved_precision("gpu", "auto")[0] == "32-true"
    assert precision.resolved_precision("mps", "auto")[0] == "32-true"
    assert precision.resolved_precision("cpu", "16-mixed") == ("16-mixed", "as configured")


def test_cpu_bf16_support_agrees_with_the_kernel_flags() -> None:
    flags = precision._cpu_flags()
    if not flags:
        pytest.skip("no /proc/cpuinfo flags on this platform")
    found = precision.cpu_bf16_support()
    assert (found == "AMX-BF16") == ("amx_bf16" in flags)
    if found is None:
        assert "avx512_bf16" not in flags


def test_default_trainer_is_auto_and_gpu_is_bf16() -> None:
    conf = Path(__file__).resolve().parents[1] / "conf" / "trainer"
    assert OmegaConf.load(conf / "default.yaml").precision == "auto"
    assert OmegaConf.load(conf / "gpu.yaml").precision == "bf16-mixed"


# ------------------------------------------------------------------------------------------ GRUs
@pytest.mark.parametrize("num_layers", [1, 2])
def test_bidirectional_gru_equals_packed_nn_gru(num_layers: int) -> None:
    """Same outputs, final states and gradients as nn.GRU over a packed batch (padding excluded)."""
    torch.manual_seed(0)
    rnn = nn.GRU(6, 5, num_layers=num_layers, batch_first=True, bidirectional=True).eval()
    lengths = torch.tensor([7, 3, 1, 5])
    x = torch.randn(4, 7, 6, requires_grad=True)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, h_n = rnn(packed)
    want, _ = pad_packed_sequence(out, batch_first=True, total_length=7)
    got, got_h = bidirectional_gru(rnn, x, lengths)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(got_h, h_n, atol=1e-6, rtol=1e-5)
    grads_want = torch.autograd.grad(want.square().sum() + h_n.sum(), [x, *rnn.parameters()])
    grads_got = torch.autograd.grad(got.square().sum() + got_h.sum(), [x, *rnn.parameters()])
    for g, w in zip(grads_got, grads_want):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-4)


def test_grus_follow_cpu_autocast_and_keep_the_state_float32() -> None:
    torch.manual_seed(0)
    ours, rnn = GRUCell(6, 5), nn.GRU(6, 5, batch_first=True, bidirectional=True)
    torch_cell = nn.GRUCell(6, 5)
    torch_cell.load_state_dict(ours.state_dict())  # same parameters, same keys
    x, h = torch.randn(3, 6), torch.randn(3, 5)
    torch.testing.assert_close(ours(x, h), torch_cell(x, h))  # float32: torch's own math
    torch.testing.assert_close(ours(x), torch_cell(x))
    with bf16():
        state = ours(x, h)
        out, _ = bidirectional_gru(rnn, torch.randn(3, 4, 6), torch.tensor([4, 2, 1]))
    assert state.dtype == torch.float32 and out.dtype == torch.bfloat16
    # bf16 gate matmuls: the state agrees with float32 to bf16 rounding (8 mantissa bits).
    torch.testing.assert_close(state, torch_cell(x, h), atol=2e-2, rtol=2e-2)


# ------------------------------------------------------------------------------------------ detector
def test_detector_heads_give_float32_and_p7_gradients_stay_finite_under_bf16() -> None:
    """64 px images give a 1x1 P6: oneDNN's bf16 weight gradient of the stride-2 P7 convolution
    over it is garbage / NaN in about half the calls, which is why P6/P7 run in float32."""
    from attnlab.models.detector import build_detector

    torch.manual_seed(0)
    model = build_detector(
        4,
        {"kind": "none"},
        min_size=64,
        max_size=64,
        fpn_channels=32,
        small_cnn_widths=(16, 32, 64, 64),
        small_cnn_depth=1,
    ).train()
    images = [torch.rand(3, 64, 64) for _ in range(4)]
    targets = [{"boxes": torch.tensor([[4.0, 6.0, 30.0, 40.0]]), "labels": torch.tensor([1])} for _ in images]
    p7 = model.detector.backbone.fpn.extra_blocks.p7.weight
    grads = []
    for _ in range(8):
        model.zero_grad()
        with bf16():
            losses = model(images, targets)
        assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values()), losses
        sum(losses.values()).backward()
        grads.append(p7.grad.clone())
    assert all(torch.isfinite(g).all() and torch.equal(g, grads[0]) for g in grads)


# ------------------------------------------------------------------------------------------ tasks
@pytest.mark.parametrize("task", ["translation", "detection"])
def test_cached_autocast_plugin_gives_every_parameter_its_gradient(task: str, tmp_path: Path) -> None:
    """bf16-mixed runs through CachedMixedPrecision (autocast's weight cache on, unlike Lightning
    2.6's own plugin): no weight may lose its gradient to a cast cached without grad history."""
    import pytorch_lightning as pl

    from attnlab.cli.autocast_plugin import CachedMixedPrecision
    from attnlab.cli.build import build_datamodule, build_task, build_trainer

    missing: list[list[str]] = []

    class GradCheck(pl.Callback):
        def on_before_optimizer_step(self, trainer: pl.Trainer, module: pl.LightningModule, optimizer: object) -> None:
            missing.append([n for n, p in module.named_parameters() if p.requires_grad and p.grad is None])

    data = TINY_TRANSLATION if task == "translation" else TINY_DETECTION
    cfg = compose_train(["trainer.precision=auto", *data], tmp_path)
    cfg.trainer.accelerator = "cpu"
    precision.cpu_bf16_support.cache_clear()
    trainer = build_trainer(
        cfg,
        logger=False,
        callbacks=[GradCheck()],
        max_steps=2,
        limit_val_batches=0,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    if cfg.trainer.precision != "bf16-mixed":
        pytest.skip("this CPU has no fast bf16, so precision=auto trains in float32")
    assert isinstance(trainer.precision_plugin, CachedMixedPrecision) and trainer.precision == "bf16-mixed"
    datamodule = build_datamodule(cfg)
    trainer.fit(build_task(cfg, datamodule), datamodule=datamodule)
    assert missing and all(m == [] for m in missing), missing


@pytest.mark.parametrize("task", ["translation", "detection"])
def test_bf16_mixed_run_trains_validates_tests_and_draws(task: str, tmp_path: Path) -> None:
    """A real run with trainer.precision=bf16-mixed on CPU: training and validation steps, beam
    search (translation test) or the COCO evaluator (detection), W&B media, all under autocast."""
    from attnlab.cli.training import train

    data = TINY_TRANSLATION if task == "translation" else TINY_DETECTION
    # Not debug=fdr: fast_dev_run swaps the loggers for a dummy, and media need the W&B one.
    cfg = compose_train(
        [
            "debug=limit",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=1",
            "trainer.limit_val_batches=1",
            "trainer.limit_test_batches=1",
            "trainer.precision=bf16-mixed",
            "extras.print_config=false",
            "callbacks.rich_progress_bar=null",
            *data,
        ],
        tmp_path,
    )
    try:
        metrics, objects = train(cfg)
        model = objects["model"]
        assert objects["trainer"].precision == "bf16-mixed"
        assert math.isfinite(metrics["train/loss"])
        if task == "translation":
            assert 0.0 <= metrics["test/bleu"] <= 100.0 and math.isfinite(metrics["test/chrf"])
            with torch.no_grad(), bf16():  # beam search itself under autocast
                out = model.translate(["the student did not laugh ."], beam_size=3)
            assert len(out) == 1 and isinstance(out[0], str)
        else:
            assert 0.0 <= metrics["test/map_50"] <= 1.0 and 0.0 <= metrics["val/map"] <= 1.0
        loggers = [lg for lg in objects["trainer"].loggers if type(lg).__name__ == "WandbLogger"]
        assert loggers, "the default logger group should give a (offline) W&B logger"
        with bf16():  # drawing never depends on which precision produced the tensors
            model.log_media(loggers)
    finally:
        import wandb

        wandb.finish()
    media = list((tmp_path / "logs").rglob("*.png"))
    assert media, "no media written to the offline W&B run"
