"""Tiny synthetic ONNX models whose outputs are chosen by the test.

Each output is a constant per-image tensor broadcast over the batch (``0 * mean(input) + c``), so
a test knows exactly what the "model" says and can check the decoding, thresholds, NMS and the
mapping back to source pixels without a real network. Built with the ``onnx`` package, which is a
test-only dependency.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper


def constant_model(
    path: Path,
    outputs: Mapping[str, NDArray[np.float32]],
    *,
    input_hw: tuple[int, int] | tuple[str, str] = (64, 64),
    batch: int | str = "batch",
    metadata: Mapping[str, str] | None = None,
    fixed_reshape: bool = False,
) -> Path:
    """Write a model with one ``images [B, 3, H, W]`` input and the given per-image outputs.

    Args:
        path: Where to write the ``.onnx`` file.
        outputs: Output name -> per-image value (without the batch axis).
        input_hw: Fixed input size, or symbolic names for a dynamic one.
        batch: Fixed batch size, or a symbolic name for a dynamic one.
        metadata: ONNX ``metadata_props`` (``names``, ``task``, ``imgsz`` ...).
        fixed_reshape: Reshape every output to batch 1 inside the graph, like exports whose batch
            axis is declared dynamic but is not (they fail on two images).
    """
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
    ]
    initializers = [numpy_helper.from_array(np.zeros(1, np.float32), "zero")]
    graph_outputs = []
    for i, (name, given) in enumerate(outputs.items()):
        value = np.asarray(given, np.float32)
        axes = list(range(1, value.ndim + 1))
        initializers.append(numpy_helper.from_array(value[None], f"const{i}"))
        initializers.append(numpy_helper.from_array(np.asarray(axes, np.int64), f"axes{i}"))
        nodes.append(helper.make_node("Unsqueeze", ["nothing", f"axes{i}"], [f"lifted{i}"]))
        target = f"sum{i}" if fixed_reshape else name
        nodes.append(helper.make_node("Add", [f"lifted{i}", f"const{i}"], [target]))
        if fixed_reshape:
            shape = np.asarray([1, *value.shape], np.int64)
            initializers.append(numpy_helper.from_array(shape, f"shape{i}"))
            nodes.append(helper.make_node("Reshape", [target, f"shape{i}"], [name]))
        out_batch: int | str = 1 if fixed_reshape else batch
        graph_outputs.append(
            helper.make_tensor_value_info(name, TensorProto.FLOAT, [out_batch, *value.shape])
        )
    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, *input_hw])
    graph = helper.make_graph(nodes, "fake", [images], graph_outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
