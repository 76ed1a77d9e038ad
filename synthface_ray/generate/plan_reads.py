"""Ray Data's side of a streamed plan (:mod:`synthface_ray.generate.plan_source`): a datasource
whose read tasks each read one shard's rows from the plan file where the pipeline runs."""

from __future__ import annotations

import functools

from ray.data import Datasource
from ray.data.block import BlockMetadata
from ray.data.datasource import ReadTask

from synthface_ray.generate.plan_source import PlanFile, read_shard


class PlanShards(Datasource):
    """A Ray Data source of a plan file's shards: one read task, and block, per shard to do."""

    def __init__(self, file: PlanFile, rows_per_file: int, todo: list[int], driver_node_only: bool) -> None:
        super().__init__()
        self.file, self.rows_per_file, self.todo, self.driver_node_only = file, rows_per_file, todo, driver_node_only

    @property
    def supports_distributed_reads(self) -> bool:
        """A local plan path on a cluster of several nodes is read on the driver's node only."""
        return not self.driver_node_only

    def estimate_inmemory_data_size(self) -> int:
        return 64 * len(self.todo) * self.rows_per_file

    def get_read_tasks(self, parallelism: int, per_task_row_limit=None, data_context=None) -> list:
        tasks = []
        for shard in self.todo:
            rows = min(self.rows_per_file, self.file.num_rows - shard * self.rows_per_file)
            meta = BlockMetadata(num_rows=rows, size_bytes=64 * rows, input_files=None, exec_stats=None)
            tasks.append(ReadTask(functools.partial(read_shard, self.file, shard, self.rows_per_file), meta))
        return tasks


__all__ = ["PlanShards"]
