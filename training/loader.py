"""Batches of training clips for one process: a torch IterableDataset over the clip stream of
the configured data (each data worker of each process gets its own seeded stream)."""

from __future__ import annotations

from collections.abc import Iterator

from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from training.clips import Batch, Clip, collate
from training.config import TrainConfig
from training.datasets import DatasetClips
from training.synthetic_data import SyntheticClips


class ClipStream(IterableDataset):
    """Clips for process ``rank``; ``epoch`` (e.g. the step a run resumes at) changes the
    stream, so that a resumed run does not see the clips it already trained on again."""

    def __init__(self, config: TrainConfig, rank: int, epoch: int):
        super().__init__()
        self.config = config
        self.rank = rank
        self.epoch = epoch

    def __iter__(self) -> Iterator[Clip]:
        worker = get_worker_info()
        stream = (self.rank * 1024 + (worker.id if worker else 0)) * 1_000_003 + self.epoch
        data, augment, seed = self.config.data, self.config.augment, self.config.run.seed
        if data.kind == "synthetic":
            return iter(SyntheticClips(data, augment, self.config.model.depth_range, seed, stream))
        return iter(DatasetClips(data, augment, seed, stream))


def batches(config: TrainConfig, rank: int, epoch: int) -> Iterator[Batch]:
    """An endless iterator of :class:`Batch` of ``schedule.batch_size`` clips."""
    if config.data.kind != "synthetic":
        DatasetClips(config.data, config.augment, config.run.seed)  # open the dataset here: errors surface at once
    loader = DataLoader(
        ClipStream(config, rank, epoch),
        batch_size=config.schedule.batch_size,
        collate_fn=collate,
        num_workers=config.data.workers,
        persistent_workers=config.data.workers > 0,
        prefetch_factor=2 if config.data.workers > 0 else None,
    )
    return iter(loader)
