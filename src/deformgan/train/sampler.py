"""Which pairs each batch holds: a pure function of (seed, iteration, role, rank).

Per iteration the loop draws three batches, in the order of :data:`ROLES`: the discriminator's real pairs,
the pairs the generator renders for the discriminator's fake side, and the generator step's own pairs (the
authors' ``--training_ratio 1``: real and fake sides come from different pairs). The stream of pairs is
one seeded permutation per pass (the authors' loader reshuffles at every pass); because it depends on
nothing but (seed, iteration), a resumed run continues it exactly, and ranks never draw the same batch.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from deformgan.errors import InputError
from deformgan.runtime import seed_of

#: Batches consumed per iteration, in this order: D real side, D fake side (rendered by G), G step.
ROLES = ("d_real", "d_fake", "g")


class PairBatchSampler(torch.utils.data.Sampler):
    """Index batches for iterations ``start_step .. end_step - 1``, in the order (D real, D fake, G).

    Batch ``counter = (step * 3 + role) * world_size + rank`` takes positions ``counter * B ...
    counter * B + B - 1`` of an endless stream made of one seeded random permutation of the pairs per pass
    (the reference reshuffles its pairs at every pass). Everything is a function of (seed, step): a resumed
    run continues the stream exactly, and ranks never draw the same batch.
    """

    def __init__(
        self,
        num_pairs: int,
        batch_size: int,
        seed: int,
        start_step: int,
        end_step: int,
        rank: int = 0,
        world_size: int = 1,
    ):
        if num_pairs < 1:
            raise InputError("training data: no pairs to train on")
        self.num_pairs, self.batch_size, self.seed = num_pairs, batch_size, seed
        self.start_step, self.end_step = start_step, end_step
        self.rank, self.world_size = rank, world_size
        self._permutations: dict[int, torch.Tensor] = {}

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch not in self._permutations:
            if len(self._permutations) > 2:
                self._permutations.pop(min(self._permutations))
            generator = torch.Generator().manual_seed(seed_of(self.seed, epoch, 0xDA7A))
            self._permutations[epoch] = torch.randperm(self.num_pairs, generator=generator)
        return self._permutations[epoch]

    def batch(self, step: int, role: int) -> list[int]:
        """The pair indices of batch ``role`` (0 D real, 1 D fake, 2 G) of iteration ``step``."""
        counter = (step * len(ROLES) + role) * self.world_size + self.rank
        positions = range(counter * self.batch_size, (counter + 1) * self.batch_size)
        return [int(self._permutation(p // self.num_pairs)[p % self.num_pairs]) for p in positions]

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start_step, self.end_step):
            for role in range(len(ROLES)):
                yield self.batch(step, role)

    def __len__(self) -> int:
        return max(self.end_step - self.start_step, 0) * len(ROLES)
