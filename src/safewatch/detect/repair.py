"""Repairs of model files that are published broken, applied once when they are downloaded.

The only public copy of the 14-class PPE YOLOv8n (``ppe14_yolov8n_int8`` in the catalogue) is a
static QDQ int8 export whose graph output passes one last QuantizeLinear/DequantizeLinear pair.
Its scale (~1.39) suits the box coordinates but rounds every class score (0-1) to 0, so the model
as published detects nothing. Removing that final pair, and nothing else, gives the float output
the rest of the int8 graph computes (Hardhat AP50 0.805 at 320 px on Hard Hat Workers). The step
is named in ``catalogue.json`` so the download that needs it records which repair made the file.
"""

from __future__ import annotations

from pathlib import Path

from safewatch.errors import ModelError

__all__ = ["strip_output_qdq"]


def strip_output_qdq(source: Path, target: Path, *, output: str) -> None:
    """Write ``source`` to ``target`` without the Q/DQ pair that produces graph output ``output``.

    The pair's input becomes the graph output under the same name, so the model's interface is
    unchanged; its scale and zero-point initialisers go when nothing else uses them.

    Raises:
        ModelError: The file is not ONNX, has no such output, or the output is not produced by a
            DequantizeLinear fed by a QuantizeLinear that nothing else reads (a different file
            from the one this repair was written for).
    """
    import onnx  # imported here: only this download step needs it

    try:
        model = onnx.load(str(source))
    except Exception as exc:  # onnx raises protobuf's DecodeError and its own types
        raise ModelError(f"cannot repair {source}: not an ONNX file ({exc})") from exc
    graph = model.graph
    if output not in {o.name for o in graph.output}:
        raise ModelError(f"cannot repair {source}: it has no output {output!r}")
    producer = {name: node for node in graph.node for name in node.output}
    dequant = producer.get(output)
    quant = producer.get(dequant.input[0]) if dequant is not None else None
    readers = [n for n in graph.node if quant is not None and quant.output[0] in n.input]
    if (
        dequant is None
        or quant is None
        or dequant.op_type != "DequantizeLinear"
        or quant.op_type != "QuantizeLinear"
        or len(readers) != 1
    ):
        raise ModelError(
            f"cannot repair {source}: output {output!r} does not end in a "
            "QuantizeLinear/DequantizeLinear pair (not the file this repair is for)"
        )
    upstream = producer.get(quant.input[0])
    if upstream is None:
        raise ModelError(f"cannot repair {source}: the Q/DQ pair on {output!r} has no producer")
    inner = quant.input[0]
    for node in (dequant, quant):
        graph.node.remove(node)
    upstream.output[list(upstream.output).index(inner)] = output
    still_used = {name for node in graph.node for name in node.input}
    dropped = (set(quant.input[1:]) | set(dequant.input[1:])) - still_used
    for init in [i for i in graph.initializer if i.name in dropped]:
        graph.initializer.remove(init)
    for info in [v for v in graph.value_info if v.name in (inner, quant.output[0])]:
        graph.value_info.remove(info)
    try:
        onnx.checker.check_model(model)
        onnx.save(model, str(target))
    except (onnx.checker.ValidationError, OSError) as exc:
        raise ModelError(f"repair of {source} failed: {exc}") from exc
