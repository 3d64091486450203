"""Each worker's share of the machine, so N workers use N× the cores instead of fighting for them.

A worker with c cores codes up to c images of its task at once (threads: ffmpeg runs out of
process, torch releases the GIL), each encoder single-threaded (vcfc's pictures are small:
processes in parallel beat one encoder's threads, and the bitstream is the same either way, see
tests/test_codecs.py); when a task has fewer images than cores, the spare cores code an image's
QPs in parallel (frame bank) or give its one encoder more threads (mosaics).

torch runs ONE intra-op thread per worker (parallelism comes from the images): with 2 threads
the head's convolutions sum in another order, a few features round to other codes, and the rows
of a 2-worker run differed from a 1-worker run's (measured: 12 of 64 rows, a few bytes each).
One thread everywhere keeps results identical whatever the worker count.
The default number of workers is one per core.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from vcfc.errors import InputError


def available_cores() -> int:
    """Cores this process may run on (the affinity mask, e.g. inside a cgroup or taskset)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Budget:
    cores: int  # per worker

    @classmethod
    def share(cls, workers: int, cores: int | None = None, per_worker: int | None = None) -> Budget:
        if per_worker is not None:
            if per_worker < 1:
                raise InputError(f"threads per worker must be >= 1, got {per_worker}")
            return cls(per_worker)
        return cls(max(1, (cores or available_cores()) // max(1, workers)))

    def image_workers(self, images: int) -> int:
        """Images of one task coded at once."""
        return max(1, min(images, self.cores))

    def per_image(self, images: int) -> int:
        """Cores left to each image: parallel QPs in its frame bank, or its encoder's threads."""
        return max(1, self.cores // self.image_workers(images))

    def apply(self) -> None:
        """Set this process's torch threads (call once per worker process): one, see above."""
        torch.set_num_threads(1)


def default_workers(cores: int | None = None) -> int:
    return max(1, cores or available_cores())
