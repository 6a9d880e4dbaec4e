"""`graphdsl train --backend keras --devices N`: tf.distribute.MirroredStrategy.

N GPUs when there are N, else N logical CPU devices (for testing; they must be declared
before TensorFlow initialises its devices, so the engine does it before it builds
anything). With TF_CONFIG set (one process per machine, see docs/distributed.md),
MultiWorkerMirroredStrategy spans the machines instead.

Every replica reads a share of the global batch (split as evenly as the rows allow) and
weights its mean loss by its share of the rows, so the sum of the replicas' gradients is
the gradient of the mean over the whole batch. The sum is taken before L2 decay and
clipping, which act on the whole batch's gradient as on one device; the Keras optimizer
then sums the replicas' (now identical) gradients once more, so each replica hands it
its 1/N of the total.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from graphdsl.runtime.distributed import World
from graphdsl.runtime.training import train_error


def strategy_for(devices: int) -> tf.distribute.Strategy | None:
    if "TF_CONFIG" in os.environ:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if devices <= 1:
        return None
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        if len(gpus) < devices:
            raise train_error("train-setting", f"--devices {devices}: TensorFlow sees "
                              f"{len(gpus)} GPU{'s' * (len(gpus) != 1)}",
                              help=f"use --devices {len(gpus)} or fewer")
        return tf.distribute.MirroredStrategy([f"/gpu:{i}" for i in range(devices)])
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(devices)])
    except RuntimeError:  # already initialised: fine if it already has enough
        if len(tf.config.list_logical_devices("CPU")) < devices:
            raise train_error("train-setting", f"--devices {devices}: TensorFlow's CPU "
                              "devices were set up before graphdsl could split the CPU",
                              help="start a fresh process") from None
    # NCCL, the default all-reduce, is for GPUs.
    return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(devices)],
                                          cross_device_ops=tf.distribute.ReductionToOneDevice())


def worker_world() -> World:
    """Under MultiWorkerMirroredStrategy every worker reads the whole global batch (each
    replica takes its share), and the chief (task 0) alone writes."""
    config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    return World(rank=int(config.get("task", {}).get("index", 0)), size=1)


def per_replica(strategy: tf.distribute.Strategy, batch: Mapping[str, np.ndarray],
                names: tuple[tuple[str, ...], tuple[str, ...]]) -> tuple[Any, Any, Any]:
    """(inputs, targets, weight) of each replica: its rows of the batch and its share."""
    total = len(next(iter(batch.values())))
    replicas = strategy.num_replicas_in_sync

    def rows(ctx: tf.distribute.ValueContext) -> tuple[Any, Any, Any]:
        index = np.array_split(np.arange(total), replicas)[ctx.replica_id_in_sync_group]
        if len(index) == 0:  # fewer rows than replicas: a spare row, weighted 0
            index, weight = np.arange(1), 0.0
        else:
            weight = len(index) / total
        part = {k: v[index[0]: index[-1] + 1] for k, v in batch.items()}
        return ({k: tf.constant(part[k]) for k in names[0]},
                {k: tf.constant(part[k]) for k in names[1]}, tf.constant(weight, tf.float32))

    return strategy.experimental_distribute_values_from_function(rows)  # type: ignore[no-any-return]
