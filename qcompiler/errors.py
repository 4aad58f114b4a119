"""One exception hierarchy for every user-facing failure.

The CLI maps each class to an exit code and prints only the message, so every
message must name the file / node / tensor at fault and, where possible, the fix.
"""


class QccError(Exception):
    """Base class of all errors qcc reports to the user."""

    exit_code = 1


class ModelLoadError(QccError):
    """The model file is missing, unreadable or not valid ONNX."""

    exit_code = 2


class UnsupportedOpError(QccError):
    """The model uses operators (or attribute values) that qcc cannot compile."""

    exit_code = 3

    def __init__(self, problems, where="the model"):
        self.problems = list(problems)
        lines = "; ".join(self.problems)
        super().__init__(f"{len(self.problems)} unsupported op(s) in {where}: {lines}")


class GraphError(QccError):
    """The IR is inconsistent (a bug in a pass, or an invalid input graph)."""

    exit_code = 4


class CalibrationError(QccError):
    """Calibration data is missing, malformed or does not fit the model inputs."""

    exit_code = 5


class QuantizationError(QccError):
    """The model cannot be quantized (e.g. NaN or infinite weights)."""

    exit_code = 6


class BackendError(QccError):
    """A backend cannot lower the graph or its runtime refused the artifact."""

    exit_code = 7


class MissingDependencyError(QccError):
    """An optional dependency needed for the requested target is not installed."""

    exit_code = 8


class VerificationError(QccError):
    """An emitted artifact does not match the integer reference interpreter."""

    exit_code = 9


def require_ops(nodes, supported, where: str = "the model", why: dict | None = None) -> None:
    """Raise one UnsupportedOpError naming every op (and its first nodes) not in `supported`.

    `nodes` are IR nodes (anything with .op and .name); `why` adds a reason per op.
    """
    missing: dict[str, list[str]] = {}
    for n in nodes:
        if n.op not in supported:
            missing.setdefault(n.op, []).append(n.name)
    if missing:
        why = why or {}
        raise UnsupportedOpError(
            [f"{op} (nodes: {', '.join(names[:5])}{', ...' if len(names) > 5 else ''})"
             + (f": {why[op]}" if op in why else "") for op, names in sorted(missing.items())], where)
