"""Fine-tuning with the SAM-Med2D recipe: epochs, checkpoints, resume, logging, single process or DDP.

What trains (``trainable``; ``auto`` is the first for models with adapters, else the second):
- ``adapters+decoder``: the paper's SAM-Med2D — encoder frozen except its adapters, plus prompt encoder and decoder;
- ``all-but-encoder``: prompt encoder and decoder (models without adapters, e.g. LiteMedSAM);
- ``decoder``: the mask decoder only (the paper's FT-SAM-style decoder fine-tuning);
- ``adapters``: the encoder's adapters only, everything else frozen — adapts the image features while the
  prompt handling the model already has stays exactly as it was. Only the first step of each batch
  reaches the encoder (later steps reuse detached embeddings), so it needs ``interaction_steps=0``;
- ``all``: every weight, encoder included (training a small model from scratch, not fine-tuning).
Per batch, ``interaction.run_interaction`` makes the paper's 1 + 8 optimizer steps. Adam (lr 1e-4)
is halved at the milestone epochs. After every epoch the run state goes to ``last.pth`` and, when the
validation Dice (box prompts) improves, the weights to ``best.pth``; ``train.jsonl`` records each step.

Randomness is derived from (seed, epoch, process rank) at the start of every epoch, so a resumed run
draws exactly the prompts and batches the uninterrupted run would have drawn.
"""

from __future__ import annotations

import json
import logging
import math
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal, get_args

import numpy as np
import torch
from segment_anything.modeling import Sam
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..checkpoints import CheckpointError, apply_state_dict
from ..models import DEFAULT_MODEL, ViTConfig, get_spec, load_model
from ..progress import ProgressBar, progress_bar
from . import distributed, state
from .datasets import TrainingItem
from .inputs import prepare_batch
from .interaction import InteractionSettings, PromptedSam, run_interaction
from .runlog import RunLog
from .validation import box_dice_sum
from ..errors import InputError

logger = logging.getLogger(__name__)

Trainable = Literal["auto", "adapters+decoder", "all-but-encoder", "decoder", "adapters", "all"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
TRAINABLE: tuple[str, ...] = get_args(Trainable)
PRECISIONS: tuple[str, ...] = get_args(Precision)
LOG_NAME = "train.jsonl"


@dataclass(frozen=True)
class TrainingConfig:
    """Defaults are the reference's (train.py), except that the learning-rate schedule is on."""

    out: Path
    model: str = DEFAULT_MODEL  # the CLI's default too
    checkpoint: Path | None = None
    vit: ViTConfig | None = None
    init_from_sam: bool = False
    random_weights: bool = False  # tests and timing only
    trainable: Trainable = "auto"
    epochs: int = 15
    batch_size: int = 2
    accumulate: int = 1  # batches per optimizer step
    masks_per_image: int = 5
    interaction_steps: int = 8
    point_choices: tuple[int, ...] = (1, 3, 5, 9)
    lr: float = 1e-4
    lr_milestones: tuple[int, ...] = (5, 10)
    lr_gamma: float = 0.5
    precision: Precision = "auto"
    seed: int = 0
    device: str = "auto"
    workers: int = 0
    resume: bool = False
    progress: bool = True

    def check(self) -> None:
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "accumulate": self.accumulate,
                    "masks_per_image": self.masks_per_image}
        for name, value in positive.items():
            if value < 1:
                raise InputError(f"{name} must be at least 1; got {value}")
        if self.interaction_steps < 0:
            raise InputError(f"interaction_steps must be 0 or more; got {self.interaction_steps}")
        if not self.point_choices or min(self.point_choices) < 1:
            raise InputError(f"point_choices must be positive click counts; got {self.point_choices}")
        if self.trainable not in TRAINABLE:
            raise InputError(f"trainable must be one of {', '.join(TRAINABLE)}; got {self.trainable!r}")
        if self.trainable == "adapters" and self.interaction_steps:
            raise InputError("trainable 'adapters' learns from the first prompt of a batch only (the corrective steps "
                             "reuse detached embeddings and train just the decoder): set interaction_steps to 0")
        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}; got {self.precision!r}")

    def to_plain(self) -> dict[str, Any]:
        """Numbers, strings and lists only: stored in checkpoints and the log."""
        return {key: str(value) if isinstance(value, Path) else value for key, value in asdict(self).items()}


@dataclass
class TrainingResult:
    network: Sam
    epochs: list[dict[str, Any]] = field(default_factory=list)  # the records of the epochs run by this call
    last: Path | None = None  # checkpoints, on the main process only
    best: Path | None = None


def train(
    config: TrainingConfig, train_set: Dataset[TrainingItem], val_set: Dataset[TrainingItem] | None = None
) -> TrainingResult:
    """Run (or, with ``config.resume``, continue) a fine-tuning run; under torchrun each process calls this."""
    config.check()
    if len(train_set) == 0:  # type: ignore[arg-type]
        raise InputError("the training set is empty")
    processes = distributed.start(config.device)
    try:
        return _Run(config, processes, train_set, val_set).run()
    finally:
        distributed.stop(processes)


def resolve_trainable(network: Sam, trainable: Trainable) -> Trainable:
    """``auto`` → the paper's adapters + decoder when the model has adapters, else prompt encoder + decoder."""
    has_adapters = any(".Adapter." in name for name, _ in network.named_parameters())
    if trainable == "auto":
        return "adapters+decoder" if has_adapters else "all-but-encoder"
    if trainable in ("adapters+decoder", "adapters") and not has_adapters:
        raise InputError("this model has no adapters to train: use trainable 'all-but-encoder', 'decoder' or 'all'")
    return trainable


def select_trainable(network: Sam, trainable: Trainable) -> list[torch.nn.Parameter]:
    """Set ``requires_grad`` for the chosen parts and return the parameters to optimise."""
    trainable = resolve_trainable(network, trainable)
    for name, parameter in network.named_parameters():
        if name.startswith("image_encoder."):
            adapter = trainable in ("adapters+decoder", "adapters") and ".Adapter." in name
            parameter.requires_grad = trainable == "all" or adapter
        elif name.startswith("prompt_encoder."):
            parameter.requires_grad = trainable in ("adapters+decoder", "all-but-encoder", "all")
        else:
            parameter.requires_grad = trainable != "adapters"
    return [parameter for parameter in network.parameters() if parameter.requires_grad]


def autocast_dtype(precision: Precision, device: torch.device) -> torch.dtype | None:
    """Mixed precision where the device supports it; ``auto`` is bf16 (else fp16) on CUDA and fp32 on CPU."""
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if precision == "fp16" and device.type != "cuda":
        raise InputError("fp16 autocast needs a CUDA device; use bf16 or fp32 on the CPU")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise InputError("this GPU does not support bf16; use fp16 or fp32")
    return torch.bfloat16 if precision == "bf16" else torch.float16


def _as_list(items: list[TrainingItem]) -> list[TrainingItem]:
    """Collate nothing: items of different sizes are prepared per image by ``prepare_batch``."""
    return items


def _groups(loader: DataLoader, size: int) -> Iterator[list[list[TrainingItem]]]:
    group: list[list[TrainingItem]] = []
    for batch in loader:
        group.append(batch)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


class _Run:
    """One call of ``train``: the model, optimiser and bookkeeping of one process."""

    def __init__(
        self,
        config: TrainingConfig,
        processes: distributed.Processes,
        train_set: Dataset[TrainingItem],
        val_set: Dataset[TrainingItem] | None,
    ) -> None:
        self.config, self.processes = config, processes
        self.train_set, self.val_set = train_set, val_set
        self.spec = get_spec(config.model)
        self.model_description = state.describe_model(config.model, config.vit or self.spec.vit)
        resumed = self._read_resume_state()
        torch.manual_seed(config.seed)
        loaded = load_model(
            config.model, None if resumed else config.checkpoint, device=processes.device, vit=config.vit,
            init_from_sam=config.init_from_sam and not resumed, random_weights=config.random_weights or bool(resumed),
            precision="exact",  # training updates the fp32 weights; its --precision autocasts instead
        )
        self.network = loaded.network
        self.trainable = resolve_trainable(self.network, config.trainable)
        if resumed:
            if resumed["trainable"] != self.trainable:
                raise CheckpointError(f"{config.out / state.LAST} trained {resumed['trainable']!r}; this run asks for "
                                      f"{self.trainable!r} (the optimizer state only fits the same parts)")
            apply_state_dict(self.network, resumed["model"], config.out / state.LAST)
        parameters = select_trainable(self.network, self.trainable)
        prompted = PromptedSam(self.network, self.spec.multimask_default)
        self.model: torch.nn.Module = prompted
        if processes.distributed:
            device_ids = [processes.device.index] if processes.device.type == "cuda" else None
            # some parameters sit out some steps (adapters after step 0, box vs click embeddings)
            self.model = DistributedDataParallel(prompted, device_ids=device_ids, find_unused_parameters=True)
        self.optimizer = torch.optim.Adam(parameters, lr=config.lr)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, milestones=list(config.lr_milestones), gamma=config.lr_gamma
        )
        self.dtype = autocast_dtype(config.precision, processes.device)
        self.scaler = torch.amp.GradScaler(processes.device.type, enabled=self.dtype == torch.float16)
        has_validation = val_set is not None and len(val_set) > 0  # type: ignore[arg-type]
        self.best = state.Best("val_dice" if has_validation else "train_loss")
        self.start_epoch = 0
        if resumed:
            self.optimizer.load_state_dict(resumed["optimizer"])
            self.scheduler.load_state_dict(resumed["scheduler"])
            self.scaler.load_state_dict(resumed["scaler"])
            self.best = state.Best(**resumed["best"])
            self.start_epoch = int(resumed["epoch"])
        self.settings = InteractionSettings(config.interaction_steps, config.point_choices, self.spec.mask_prompt)

    def _read_resume_state(self) -> dict[str, Any] | None:
        config = self.config
        last = config.out / state.LAST
        if not config.resume:
            if last.exists():
                raise InputError(f"{config.out} already holds a run ({last}); "
                                 "resume it or choose another output folder")
            return None
        resumed = state.read_last(config.out)
        if resumed is None:
            logger.warning("nothing to resume in %s: starting a new run", config.out)
            return None
        # JSON round trips make tuples and lists compare equal
        stored = json.loads(json.dumps({key: resumed.get(key) for key in self.model_description}))
        wanted = json.loads(json.dumps(self.model_description))
        if stored != wanted:
            raise CheckpointError(f"{last} holds a model built as {stored}; this run asks for {wanted}")
        return resumed

    def run(self) -> TrainingResult:
        config, processes = self.config, self.processes
        result = TrainingResult(self.network)
        sampler = DistributedSampler(
            self.train_set, num_replicas=processes.world_size, rank=processes.rank, shuffle=True, seed=config.seed
        )
        loader = DataLoader(self.train_set, batch_size=config.batch_size, sampler=sampler, collate_fn=_as_list,
                            num_workers=config.workers)
        log = RunLog(config.out / LOG_NAME if processes.is_main else None)
        log.write("resume" if self.start_epoch else "start", epoch=self.start_epoch, processes=processes.world_size,
                  trainable=self.trainable, train_items=len(self.train_set),  # type: ignore[arg-type]
                  val_items=len(self.val_set) if self.val_set is not None else 0,  # type: ignore[arg-type]
                  config=config.to_plain())
        bar = progress_bar(total=config.epochs * len(loader), initial=self.start_epoch * len(loader), unit="batch",
                   desc="training", disable=not (processes.is_main and config.progress), dynamic_ncols=True)
        try:
            for epoch in range(self.start_epoch, config.epochs):
                sampler.set_epoch(epoch)
                record = self._epoch(epoch, loader, log, bar)
                result.epochs.append(record)
        finally:
            bar.close()
            log.close()
        self.network.eval()  # handed back ready for inference, like load_model's networks
        if processes.is_main:
            result.last = config.out / state.LAST if (config.out / state.LAST).exists() else None
            result.best = config.out / state.BEST if (config.out / state.BEST).exists() else None
        return result

    def _epoch(self, epoch: int, loader: DataLoader, log: RunLog, bar: ProgressBar) -> dict[str, Any]:
        config, processes = self.config, self.processes
        seeds = np.random.SeedSequence([config.seed, epoch, processes.rank])
        rng = np.random.default_rng(seeds)
        torch.manual_seed(int(seeds.generate_state(1)[0]))
        self.network.train()
        if self.trainable != "all":
            self.network.image_encoder.eval()  # frozen: keeps e.g. TinyViT's batch-norm statistics as they are
        lr = self.optimizer.param_groups[0]["lr"]
        started = time.perf_counter()
        step_losses = []
        for number, group in enumerate(_groups(loader, config.accumulate), start=1):
            step_started = time.perf_counter()
            batches = [
                prepare_batch(items, self.spec, config.masks_per_image, rng, processes.device) for items in group
            ]
            losses = run_interaction(self.model, batches, self.optimizer, self.scaler, self.settings, rng,
                                     self._autocast)
            step_losses.append(float(np.mean(losses)))
            log.write("step", epoch=epoch + 1, step=number, loss=step_losses[-1], loss_first=losses[0],
                      loss_last=losses[-1], lr=lr, images=sum(len(items) for items in group),
                      seconds=round(time.perf_counter() - step_started, 3))
            bar.set_postfix(epoch=f"{epoch + 1}/{config.epochs}", loss=f"{step_losses[-1]:.4f}", refresh=False)
            bar.update(len(group))
        self.scheduler.step()
        loss_sum, loss_count = distributed.sum_over_processes([sum(step_losses), len(step_losses)], processes)
        train_loss = loss_sum / loss_count
        val_dice = self._validate()
        value = val_dice if self.best.metric == "val_dice" else train_loss
        improved = self.best.improved_by(value)
        if improved:
            self.best = state.Best(self.best.metric, value, epoch + 1)
        if processes.is_main:
            if improved:
                state.save_best(self.network, config.out, self.model_description, epoch + 1, self.best)
            state.save_last(
                self.network, config.out, self.model_description, epoch + 1, self.best,
                optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
                scaler=self.scaler.state_dict(), trainable=self.trainable, config=config.to_plain(),
                rng={"seed": config.seed, "derivation": "numpy SeedSequence([seed, epoch, rank]) at each epoch start"},
            )
        record = {"epoch": epoch + 1, "train_loss": train_loss, "val_dice": None if math.isnan(val_dice) else val_dice,
                  "lr": lr, "best": improved, "seconds": round(time.perf_counter() - started, 3)}
        log.write("epoch", **record)
        logger.info("epoch %d/%d: train loss %.4f, validation Dice %s, lr %g%s", epoch + 1, config.epochs, train_loss,
                    "n/a" if math.isnan(val_dice) else f"{val_dice:.4f}", lr, " (best)" if improved else "")
        return record

    def _validate(self) -> float:
        """Mean per-mask box Dice over the validation set, each process scoring its share."""
        if self.val_set is None or len(self.val_set) == 0:  # type: ignore[arg-type]
            return math.nan
        rank, world = self.processes.rank, self.processes.world_size
        share = (self.val_set[index] for index in range(rank, len(self.val_set), world))  # type: ignore[arg-type]
        total, count = box_dice_sum(self.network, self.spec, self.processes.device, share)
        total, count = distributed.sum_over_processes([total, count], self.processes)
        return total / count if count else math.nan

    def _autocast(self) -> AbstractContextManager:
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.processes.device.type, dtype=self.dtype)

