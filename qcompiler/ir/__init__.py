"""The graph IR: Graph / Node / Value, quantization parameters, serialization, memory planning
and the pass infrastructure. The bottom layer: imports nothing of qcompiler but `errors`."""
from qcompiler.ir.graph import Graph, Node, Value
from qcompiler.ir.quant import QuantParams

__all__ = ["Graph", "Node", "Value", "QuantParams"]
