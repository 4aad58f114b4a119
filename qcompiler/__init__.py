"""qcompiler (qcc): float ONNX -> verified integer-only int8 models."""
from .errors import QccError
from .ir import Graph, Node, QuantParams, Value

__version__ = "0.1.0"
__all__ = ["Graph", "Node", "Value", "QuantParams", "QccError", "__version__"]
